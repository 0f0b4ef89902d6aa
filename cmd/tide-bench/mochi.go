package main

// serve-mochi: mochi-mqtt embedded at its defaults, so that a comparison
// with it needs nothing but this binary. Kept apart from the rest: nothing
// else in tide-bench knows about mochi.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// allowAll is mochi's auth.AllowHook, restated: importing hooks/auth
// would pull in gopkg.in/yaml.v3, which Tide does not otherwise need.
type allowAll struct{ mqtt.HookBase }

func (*allowAll) ID() string { return "allow-all-auth" }

func (*allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (*allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// startMochi starts mochi-mqtt with default capabilities and allow-all
// auth on a TCP address, and returns it with the address it listens on.
func startMochi(addr string, log *slog.Logger) (*mqtt.Server, string, error) {
	s := mqtt.New(&mqtt.Options{Logger: log})
	if err := s.AddHook(new(allowAll), nil); err != nil {
		return nil, "", err
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	if err := s.AddListener(tcp); err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	if err := s.Serve(); err != nil {
		s.Close()
		return nil, "", err
	}
	return s, tcp.Address(), nil
}

// serveMochi runs mochi until ctx ends (SIGINT or SIGTERM).
func serveMochi(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tide-bench serve-mochi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "TCP `address` to listen on (port 0: any free port)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tide-bench serve-mochi: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, a, err := startMochi(*addr, log)
	if err != nil {
		fmt.Fprintf(stderr, "tide-bench serve-mochi: %v\n", err)
		return exitAborted
	}
	fmt.Fprintf(stdout, "mochi-mqtt %s listening on %s (pid %d); Ctrl-C stops it\n", mqtt.Version, a, os.Getpid())
	<-ctx.Done()
	s.Close()
	return exitOK
}
