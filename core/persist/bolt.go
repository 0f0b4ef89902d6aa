package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the store's file inside the persistence directory.
const FileName = "tide.db"

var (
	bktMeta     = []byte("meta")
	bktSessions = []byte("sessions")
	bktSubs     = []byte("subs")
	bktQueues   = []byte("queues")
	bktInbound  = []byte("inbound")
	bktRetained = []byte("retained")
	formatKey   = []byte("format")
	formatValue = []byte("tide-persist-1")
)

// Bolt is the Backend on a bbolt file: one B+tree file, single writer,
// consistent reads, and a copy of a running store with Backup.
type Bolt struct {
	db   *bolt.DB
	path string
}

var _ Backend = (*Bolt)(nil)

// OpenBolt opens (or creates) dir/tide.db. A file that is not a store, or
// one another process holds, is an error naming the file.
func OpenBolt(dir string) (b *Bolt, err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	path := filepath.Join(dir, FileName)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("persistence: %s is corrupt or unreadable: %v", path, r)
		}
	}()
	db, err := bolt.Open(path, 0o640, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("persistence: %s is in use by another process (is another tide running with the same persistence.dir?)", path)
		}
		return nil, fmt.Errorf("persistence: cannot open %s: %w (if the file is damaged, restore it from a backup or move it away; tide never resets it by itself)", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bktMeta)
		if err != nil {
			return err
		}
		switch f := meta.Get(formatKey); {
		case f == nil:
			if err := meta.Put(formatKey, formatValue); err != nil {
				return err
			}
		case string(f) != string(formatValue):
			return fmt.Errorf("unknown store format %q", f)
		}
		for _, name := range [][]byte{bktSessions, bktSubs, bktQueues, bktInbound, bktRetained} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("persistence: %s: %w", path, err)
	}
	return &Bolt{db: db, path: path}, nil
}

// Path implements Backend.
func (b *Bolt) Path() string { return b.path }

// Close implements Backend.
func (b *Bolt) Close() error { return b.db.Close() }

// Sync implements Backend.
func (b *Bolt) Sync() error { return b.db.Sync() }

// Backup implements Backend: a consistent snapshot taken in a read
// transaction, while writers go on.
func (b *Bolt) Backup(w io.Writer) (int64, error) {
	var n int64
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func pidKey(pid uint16) []byte { return []byte{byte(pid >> 8), byte(pid)} }

// Apply implements Backend.
func (b *Bolt) Apply(ops []Op, sync bool) error {
	b.db.NoSync = !sync
	return b.db.Update(func(tx *bolt.Tx) error {
		sessions := tx.Bucket(bktSessions)
		subs := tx.Bucket(bktSubs)
		queues := tx.Bucket(bktQueues)
		inbound := tx.Bucket(bktInbound)
		retained := tx.Bucket(bktRetained)
		for i := range ops {
			op := &ops[i]
			id := []byte(op.Session)
			var err error
			switch op.Kind {
			case PutSession:
				err = sessions.Put(id, encodeSession(op.Sess))
			case DelSession:
				err = sessions.Delete(id)
				for _, parent := range []*bolt.Bucket{subs, queues, inbound} {
					if err == nil && parent.Bucket(id) != nil {
						err = parent.DeleteBucket(id)
					}
				}
			case PutSub:
				err = put(subs, id, []byte(op.Sub.Raw), encodeSub(op.Sub))
			case DelSub:
				if bk := subs.Bucket(id); bk != nil {
					err = bk.Delete([]byte(op.Raw))
				}
			case PutEntry:
				err = put(queues, id, seqKey(op.Entry.Seq), encodeEntry(op.Entry))
			case DelEntry:
				if bk := queues.Bucket(id); bk != nil {
					err = bk.Delete(seqKey(op.Seq))
				}
			case PutInbound:
				err = put(inbound, id, pidKey(op.PID), nil)
			case DelInbound:
				if bk := inbound.Bucket(id); bk != nil {
					err = bk.Delete(pidKey(op.PID))
				}
			case PutRetained:
				err = retained.Put([]byte(op.Topic), encodeMessage(op.Retained))
			case DelRetained:
				err = retained.Delete([]byte(op.Topic))
			default:
				err = fmt.Errorf("unknown operation %d", op.Kind)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", b.path, err)
			}
		}
		return nil
	})
}

func put(parent *bolt.Bucket, id, key, value []byte) error {
	bk, err := parent.CreateBucketIfNotExists(id)
	if err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	return bk.Put(key, value)
}

// Load implements Backend. A record that does not decode stops the load
// with an error naming the file and the record.
func (b *Bolt) Load() (st *State, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("persistence: %s is corrupt: %v", b.path, r)
		}
	}()
	st = &State{Subs: map[string][]*Subscription{}, Inbound: map[string][]uint16{}, Queues: map[string]QueueInfo{}}
	err = b.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bktSessions).ForEach(func(k, v []byte) error {
			s, err := decodeSession(v)
			if err != nil {
				return fmt.Errorf("session %q: %w", k, err)
			}
			st.Sessions = append(st.Sessions, s)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bktSubs).ForEachBucket(func(id []byte) error {
			return tx.Bucket(bktSubs).Bucket(id).ForEach(func(k, v []byte) error {
				s, err := decodeSub(v)
				if err != nil {
					return fmt.Errorf("subscription %q of %q: %w", k, id, err)
				}
				st.Subs[string(id)] = append(st.Subs[string(id)], s)
				return nil
			})
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bktInbound).ForEachBucket(func(id []byte) error {
			return tx.Bucket(bktInbound).Bucket(id).ForEach(func(k, _ []byte) error {
				if len(k) != 2 {
					return fmt.Errorf("inbound id of %q: %w", id, errCorrupt)
				}
				st.Inbound[string(id)] = append(st.Inbound[string(id)], uint16(k[0])<<8|uint16(k[1]))
				return nil
			})
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bktQueues).ForEachBucket(func(id []byte) error {
			var qi QueueInfo
			c := tx.Bucket(bktQueues).Bucket(id).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("queue of %q: %w", id, errCorrupt)
				}
				seq := binary.BigEndian.Uint64(k)
				if qi.Len == 0 {
					qi.FirstSeq = seq
				}
				qi.Len++
				qi.NextSeq = seq + 1
			}
			if qi.Len > 0 {
				st.Queues[string(id)] = qi
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bktRetained).ForEach(func(k, v []byte) error {
			m, err := decodeMessage(v)
			if err != nil {
				return fmt.Errorf("retained message %q: %w", k, err)
			}
			st.Retained = append(st.Retained, m)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("persistence: %s: %w", b.path, err)
	}
	return st, nil
}

// Queue implements Backend.
func (b *Bolt) Queue(session string, from uint64, limit int) ([]*Entry, error) {
	var out []*Entry
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bktQueues).Bucket([]byte(session))
		if bk == nil {
			return nil
		}
		c := bk.Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil && len(out) < limit; k, v = c.Next() {
			e, err := decodeEntry(v)
			if err != nil {
				return fmt.Errorf("queue entry %d of %q: %w", binary.BigEndian.Uint64(k), session, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("persistence: %s: %w", b.path, err)
	}
	return out, nil
}
