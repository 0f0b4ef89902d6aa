package datastore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemq/tide/conf"
)

// FromConfig builds the configured sinks (their types must be registered:
// import the sink packages, e.g. _ "github.com/tidemq/tide/datastore/sqlite"),
// a Runner for each and the Router of the routes. Call Start on the Router
// to feed it from the bus, and Close to stop it.
func FromConfig(cfg *conf.Config, log *slog.Logger) (*Router, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var runners []*Runner
	fail := func(err error) (*Router, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, r := range runners {
			_ = r.Close(ctx)
		}
		return nil, err
	}
	for _, cs := range cfg.Sinks {
		sinkLog := log.With("sink", cs.Name)
		s, err := NewSink(cs.Type, cs.Name, cs.Settings, Env{Log: sinkLog, DataDir: cfg.Persistence.Dir})
		if err != nil {
			return fail(err)
		}
		opts := RunnerOptionsFromConf(cs)
		opts.Log = log
		r, err := NewRunner(s, opts)
		if err != nil {
			return fail(err)
		}
		runners = append(runners, r)
	}
	routes := make([]Route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routes[i] = Route{Topics: r.Topics, Sinks: r.Sinks}
	}
	rt, err := NewRouter(runners, routes, RouterOptions{Log: log})
	if err != nil {
		return fail(fmt.Errorf("datastore: %w", err))
	}
	return rt, nil
}
