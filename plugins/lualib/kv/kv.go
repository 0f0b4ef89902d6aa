// Package kv is the Lua module "kv": a key/value store in the broker's
// memory, shared by every Lua VM of every plugin, so that the VMs of a
// pool (which do not share globals) can count and remember together.
//
//	local kv = require("kv")
//	kv.set("k", "v")          -- true, or nil and an error (store full)
//	kv.set("k", "v", 30)      -- expires in 30 seconds (fractions allowed)
//	kv.get("k")               -- the value, or nil
//	kv.incr("n")              -- adds 1 (a missing key counts from 0): the new value
//	kv.incr("n", 5, 1)        -- adds 5; a key it creates expires in 1 second
//	kv.del("k")               -- true if the key existed
//
// Values are strings, numbers and booleans (encode tables with json). The
// store is bounded in keys and bytes; a set or incr that would pass a bound
// fails with a clear error rather than evicting someone else's data. Expired
// keys are removed when read and by a background sweep.
package kv

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// Name is the module's name for require.
const Name = "kv"

// Default bounds of a Store.
const (
	DefaultMaxKeys  = 100000
	DefaultMaxBytes = 64 << 20
	// MaxValueBytes bounds one key plus its value.
	MaxValueBytes = 1 << 20
)

const shards = 32

// ErrFull is returned when a new key would pass the store's bounds.
var ErrFull = errors.New("kv: store full")

type entry struct {
	v       lua.LValue // LString, LNumber or LBool: immutable, safe to share between VMs
	expires int64      // unix nanoseconds; 0 never
}

type shard struct {
	mu sync.Mutex
	m  map[string]entry
}

// Store is the shared store. Its zero value is not usable; call NewStore.
type Store struct {
	maxKeys  int64
	maxBytes int64
	keys     atomic.Int64
	bytes    atomic.Int64
	full     atomic.Uint64
	seed     maphash.Seed
	shards   [shards]shard
	stop     chan struct{}
	stopOnce sync.Once
	now      func() time.Time
}

// NewStore returns a store bounded to maxKeys keys and maxBytes bytes of
// keys and string values (0 or less: the defaults), and starts its sweeper;
// Close stops it.
func NewStore(maxKeys, maxBytes int) *Store {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	s := &Store{maxKeys: int64(maxKeys), maxBytes: int64(maxBytes), seed: maphash.MakeSeed(), stop: make(chan struct{}), now: time.Now}
	for i := range s.shards {
		s.shards[i].m = map[string]entry{}
	}
	go s.sweepLoop(10 * time.Second)
	return s
}

// Close stops the background sweep.
func (s *Store) Close() { s.stopOnce.Do(func() { close(s.stop) }) }

// Len returns the number of keys (expired keys not yet swept included).
func (s *Store) Len() int { return int(s.keys.Load()) }

// Bytes returns the bytes held by keys and string values.
func (s *Store) Bytes() int { return int(s.bytes.Load()) }

// FullErrors counts the writes refused because the store was full.
func (s *Store) FullErrors() uint64 { return s.full.Load() }

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shards]
}

func size(key string, v lua.LValue) int64 {
	n := int64(len(key)) + 16
	if str, ok := v.(lua.LString); ok {
		n += int64(len(str))
	}
	return n
}

// Get returns a key's value, or LNil.
func (s *Store) Get(key string) lua.LValue {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[key]
	if !ok {
		return lua.LNil
	}
	if e.expires != 0 && s.now().UnixNano() >= e.expires {
		s.remove(sh, key, e)
		return lua.LNil
	}
	return e.v
}

// Set stores a value; ttl 0 keeps it until deleted.
func (s *Store) Set(key string, v lua.LValue, ttl time.Duration) error {
	switch v.(type) {
	case lua.LString, lua.LNumber, lua.LBool:
	default:
		return fmt.Errorf("kv: a value must be a string, number or boolean, not a %s (encode tables with json)", v.Type())
	}
	n := size(key, v)
	if n > MaxValueBytes {
		return fmt.Errorf("kv: key and value of %d bytes exceed the limit of %d", n, MaxValueBytes)
	}
	e := entry{v: v}
	if ttl > 0 {
		e.expires = s.now().Add(ttl).UnixNano()
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old, existed := sh.m[key]
	var oldSize int64
	if existed {
		oldSize = size(key, old.v)
	}
	if err := s.reserve(sh, key, !existed, n-oldSize); err != nil {
		return err
	}
	sh.m[key] = e
	return nil
}

// Incr adds delta to a numeric key (missing or expired: from 0) and returns
// the result. A key it creates gets ttl; an existing key keeps its expiry,
// which makes fixed windows ("at most N per second") a single call.
func (s *Store) Incr(key string, delta float64, ttl time.Duration) (float64, error) {
	if len(key)+16 > MaxValueBytes {
		return 0, fmt.Errorf("kv: key of %d bytes exceeds the limit of %d", len(key), MaxValueBytes)
	}
	now := s.now().UnixNano()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[key]
	if ok && e.expires != 0 && now >= e.expires {
		s.remove(sh, key, e)
		ok = false
	}
	if ok {
		n, isNum := e.v.(lua.LNumber)
		if !isNum {
			return 0, fmt.Errorf("kv: incr of %q, which holds a %s", key, e.v.Type())
		}
		e.v = n + lua.LNumber(delta)
		sh.m[key] = e
		return float64(e.v.(lua.LNumber)), nil
	}
	if err := s.reserve(sh, key, true, size(key, lua.LNumber(0))); err != nil {
		return 0, err
	}
	e = entry{v: lua.LNumber(delta)}
	if ttl > 0 {
		e.expires = now + int64(ttl)
	}
	sh.m[key] = e
	return delta, nil
}

// Del removes a key and reports whether it was there (and not expired).
func (s *Store) Del(key string) bool {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[key]
	if !ok {
		return false
	}
	s.remove(sh, key, e)
	return e.expires == 0 || s.now().UnixNano() < e.expires
}

// reserve accounts for a write of a new key (newKey) growing the store by
// grow bytes, atomically so that concurrent writers cannot pass a bound
// together. When a bound would be passed it sweeps expired keys once before
// refusing. The caller holds the lock of held, the shard of key, which the
// sweep then covers without locking; key itself is left for the caller.
func (s *Store) reserve(held *shard, key string, newKey bool, grow int64) error {
	if s.tryReserve(newKey, grow) {
		return nil
	}
	s.sweep(held, key)
	if s.tryReserve(newKey, grow) {
		return nil
	}
	s.full.Add(1)
	return fmt.Errorf("%w (%d keys, %d bytes; limits %d keys, %d bytes)", ErrFull, s.keys.Load(), s.bytes.Load(), s.maxKeys, s.maxBytes)
}

func (s *Store) tryReserve(newKey bool, grow int64) bool {
	if newKey && !addBounded(&s.keys, 1, s.maxKeys) {
		return false
	}
	if !addBounded(&s.bytes, grow, s.maxBytes) {
		if newKey {
			s.keys.Add(-1)
		}
		return false
	}
	return true
}

// addBounded adds d to v unless that passes max; shrinking always succeeds.
func addBounded(v *atomic.Int64, d, max int64) bool {
	for {
		cur := v.Load()
		if d > 0 && cur+d > max {
			return false
		}
		if v.CompareAndSwap(cur, cur+d) {
			return true
		}
	}
}

func (s *Store) remove(sh *shard, key string, e entry) {
	delete(sh.m, key)
	s.keys.Add(-1)
	s.bytes.Add(-size(key, e.v))
}

// sweep removes expired keys. held, when not nil, is a shard whose lock
// the caller holds: it is swept without locking, except for its key skip.
// Another writer's shard is skipped rather than waited for: two writers
// sweeping at once would otherwise wait for each other.
func (s *Store) sweep(held *shard, skip string) {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		switch {
		case sh == held:
		case held == nil:
			sh.mu.Lock()
		case !sh.mu.TryLock():
			continue
		}
		for k, e := range sh.m {
			if e.expires != 0 && now >= e.expires && !(sh == held && k == skip) {
				s.remove(sh, k, e)
			}
		}
		if sh != held {
			sh.mu.Unlock()
		}
	}
}

func (s *Store) sweepLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.sweep(nil, "")
		case <-s.stop:
			return
		}
	}
}

// Loader is the lua.LGFunction that require calls: it pushes the module.
func (s *Store) Loader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"get":  s.luaGet,
		"set":  s.luaSet,
		"incr": s.luaIncr,
		"del":  s.luaDel,
	})
	L.Push(mod)
	return 1
}

func (s *Store) luaGet(L *lua.LState) int {
	L.Push(s.Get(L.CheckString(1)))
	return 1
}

func optTTL(L *lua.LState, n int) time.Duration {
	if L.Get(n) == lua.LNil {
		return 0
	}
	d, err := luaconv.Seconds(float64(L.CheckNumber(n)))
	if err != nil {
		L.ArgError(n, "ttl: "+err.Error())
	}
	return d
}

func (s *Store) luaSet(L *lua.LState) int {
	key := L.CheckString(1)
	v := L.CheckAny(2)
	if err := s.Set(key, v, optTTL(L, 3)); err != nil {
		return luaconv.Fail(L, err)
	}
	L.Push(lua.LTrue)
	return 1
}

func (s *Store) luaIncr(L *lua.LState) int {
	key := L.CheckString(1)
	delta := float64(L.OptNumber(2, 1))
	n, err := s.Incr(key, delta, optTTL(L, 3))
	if err != nil {
		return luaconv.Fail(L, err)
	}
	L.Push(lua.LNumber(n))
	return 1
}

func (s *Store) luaDel(L *lua.LState) int {
	L.Push(lua.LBool(s.Del(L.CheckString(1))))
	return 1
}
