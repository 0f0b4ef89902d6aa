package datastore

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
)

// Env is what a Factory may use besides its options.
type Env struct {
	// Log is the sink's logger (already tagged with the sink's name).
	Log *slog.Logger
	// DataDir is the broker's persistence directory ([persistence] dir),
	// where sinks keep their files unless configured otherwise.
	DataDir string
}

// Factory builds a sink of one type. settings is the value the type
// registered with conf.RegisterSinkOptions, decoded from the [[sink]] table
// (a pointer to the type's options struct), or nil when the configuration
// did not decode it (conf.Default with the type unregistered): the factory
// then uses its defaults. A Factory does no I/O; Connect does.
type Factory func(name string, settings any, env Env) (Sink, error)

// Settings returns the options a Factory was given: settings itself when
// it is a *T, defaults() when it is nil (the configuration did not decode
// the type's options). Anything else is an error naming typ: the type
// registered options of another kind than its factory reads.
func Settings[T any](typ string, settings any, defaults func() *T) (*T, error) {
	switch o := settings.(type) {
	case nil:
		return defaults(), nil
	case *T:
		return o, nil
	default:
		return nil, fmt.Errorf("%s: options of type %T, want %T", typ, settings, (*T)(nil))
	}
}

var registry = struct {
	sync.RWMutex
	m map[string]Factory
}{m: map[string]Factory{}}

// Register makes a sink type available to NewSink. Sink packages call it
// from init, next to conf.RegisterSinkOptions; it panics if typ is
// registered twice, as that is a programming error.
func Register(typ string, f Factory) {
	registry.Lock()
	defer registry.Unlock()
	if f == nil {
		panic("datastore: Register of " + typ + " with a nil factory")
	}
	if _, dup := registry.m[typ]; dup {
		panic("datastore: sink type " + typ + " registered twice")
	}
	registry.m[typ] = f
}

// Types returns the registered sink types, sorted.
func Types() []string {
	registry.RLock()
	defer registry.RUnlock()
	return slices.Sorted(maps.Keys(registry.m))
}

// NewSink builds the sink called name of type typ.
func NewSink(typ, name string, settings any, env Env) (Sink, error) {
	registry.RLock()
	f, ok := registry.m[typ]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("sink %q: unknown type %q (registered: %v)", name, typ, Types())
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	s, err := f(name, settings, env)
	if err != nil {
		return nil, fmt.Errorf("sink %q: %w", name, err)
	}
	return s, nil
}
