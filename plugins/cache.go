package plugins

import (
	"sync"
	"time"
)

// maxCacheEntries bounds a plugin's answer cache; when full, expired
// entries are swept, and if none expired the cache starts over.
const maxCacheEntries = 100000

// cache remembers a plugin's answers to on_connect and on_subscribe for
// cache_ttl, so that a reconnect storm or a resubscribe does not call the
// script (and the identity service behind it) again.
type cache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]cached
}

type cached struct {
	expires time.Time
	connect connectAnswer
	sub     subscribeAnswer
}

func newCache(ttl time.Duration) *cache { return &cache{ttl: ttl, m: map[string]cached{}} }

func (c *cache) get(key string) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return cached{}, false
	}
	if time.Now().After(e.expires) {
		delete(c.m, key)
		return cached{}, false
	}
	return e, true
}

func (c *cache) put(key string, e cached) {
	now := time.Now()
	e.expires = now.Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCacheEntries {
		for k, v := range c.m {
			if now.After(v.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCacheEntries {
			clear(c.m)
		}
	}
	c.m[key] = e
}
