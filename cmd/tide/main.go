// Command tide is the Tide MQTT broker.
//
//	tide [-c FILE]            run the broker (the built-in default config without -c)
//	tide check [-c FILE]      validate a config and print the effective one
//	tide passwd               read a password on stdin, print its bcrypt hash
//	tide version              print the version
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/persist"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func versionString() string {
	v := version
	if v == "" {
		v = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return "tide " + v
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("tide "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath string
	fs.StringVar(&cfgPath, "c", "", "configuration file (default: the built-in conf/tide.toml)")
	fs.StringVar(&cfgPath, "config", "", "configuration file (same as -c)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "%s (%s %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "check":
		cfg, err := loadConfig(cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := checkConfig(cfg); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := cfg.WriteTOML(stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	case "passwd":
		return passwd(stdin, stdout, stderr)
	case "serve":
		cfg, err := loadConfig(cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := serve(cfg, stderr); err != nil {
			fmt.Fprintln(stderr, "tide:", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "tide: unknown command %q (commands: serve, check, passwd, version)\n", cmd)
		return 2
	}
}

func loadConfig(path string) (*conf.Config, error) {
	if path == "" {
		return conf.Default()
	}
	return conf.Load(path)
}

// passwd prints the bcrypt hash of the password read from stdin, for
// [[auth.user]] password_hash.
func passwd(stdin io.Reader, stdout, stderr io.Writer) int {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "tide passwd:", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "tide passwd: empty password (write it on standard input)")
		return 1
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintln(stderr, "tide passwd:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(h))
	return 0
}

func newLogger(cfg conf.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// coreOptions maps the [mqtt] section to the broker's options.
func coreOptions(m conf.MQTT) core.Options {
	o := core.Options{
		SysInterval:             m.SysInterval.Duration,
		MaxPacketSize:           int(m.MaxPacketSize),
		MaxKeepAlive:            m.MaxKeepAlive.Duration,
		ReceiveMaximum:          m.ReceiveMaximum,
		MaxInflight:             m.MaxInflight,
		MaxQueuedMessages:       m.MaxQueuedMessages,
		QueueFullPolicy:         core.QueueFullPolicy(m.QueueFullPolicy),
		MaxQueuedQoS0:           m.MaxQueuedQoS0,
		StallTimeout:            m.StallTimeout.Duration,
		QueueQoS0:               m.QueueQoS0,
		TopicAliasMaximum:       m.TopicAliasMaximum,
		MaxSessionExpiry:        m.MaxSessionExpiry.Duration,
		RetainAvailable:         &m.RetainAvailable,
		WildcardSubscriptions:   &m.WildcardSubscriptions,
		SharedSubscriptions:     &m.SharedSubscriptions,
		SubscriptionIdentifiers: &m.SubscriptionIdentifiers,
		AllowEmptyClientID:      &m.AllowEmptyClientID,
		MaxClientIDLength:       m.MaxClientIDLength,
		Version:                 versionString(),
	}
	if o.SysInterval == 0 {
		o.SysInterval = -1 // [mqtt] sys_interval = "0s" disables $SYS
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = -1 // "0s" never waits
	}
	if o.MaxQueuedMessages == 0 {
		o.MaxQueuedMessages = -1 // 0 is unlimited in the config
	}
	return o
}

// checkConfig does the checks that need more than the config file: that
// every listener type is available in this build.
func checkConfig(cfg *conf.Config) error {
	var errs conf.Errors
	for i, l := range cfg.Listeners {
		if l.Type != "tcp" {
			errs = append(errs, &conf.Error{File: cfg.File, Key: fmt.Sprintf("listener[%d].type", i),
				Msg: fmt.Sprintf("listener type %q is not available yet in this version (tcp only)", l.Type)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func serve(cfg *conf.Config, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut)
	if err := checkConfig(cfg); err != nil {
		return err
	}
	srv := core.New(coreOptions(cfg.MQTT), log.With("component", "broker"))
	if len(cfg.Auth.Users) > 0 {
		users := map[string]string{}
		for _, u := range cfg.Auth.Users {
			users[u.Username] = u.PasswordHash
		}
		srv.SetUsers(core.NewStaticUsers(users))
	}
	src := cfg.File
	if src == "" {
		src = "built-in default"
	}
	log.Info("starting", "version", versionString(), "config", src)
	if cfg.DefaultListener {
		log.Info("no [[listener]] configured: listening on 127.0.0.1:1883 with anonymous access, reachable from this machine only")
	}
	var journal *persist.Journal
	if p := cfg.Persistence; p.Enabled {
		be, err := persist.OpenBolt(p.Dir)
		if err != nil {
			return err
		}
		journal = persist.NewJournal(be, persist.SyncMode(p.Sync), p.SyncInterval.Duration, log.With("component", "persistence"))
		if err := srv.Restore(journal); err != nil {
			journal.Close()
			return err
		}
	} else {
		log.Info("persistence disabled: sessions and retained messages are kept in memory only")
	}
	if len(cfg.Sinks) > 0 {
		log.Warn("datastore sinks are not implemented yet: messages are not stored", "sinks", len(cfg.Sinks))
	}
	for _, l := range cfg.Listeners {
		addr, err := srv.ListenTCP(l.Address, core.ListenerOptions{Name: l.Name, AllowAnonymous: l.AllowAnonymous, MaxConnections: l.MaxConnections})
		if err != nil {
			shutdown(srv, log)
			if journal != nil {
				journal.Close()
			}
			return fmt.Errorf("listener %s: %w", l.Name, err)
		}
		log.Info("listening", "listener", l.Name, "type", l.Type, "address", addr.String(), "allow_anonymous", l.AllowAnonymous)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			log.Info("SIGHUP: nothing to reload yet")
			continue
		}
		log.Info("stopping", "signal", sig.String())
		break
	}
	signal.Stop(sigs)
	shutdown(srv, log)
	if journal != nil {
		if err := journal.Close(); err != nil {
			return err
		}
	}
	return nil
}

func shutdown(srv *core.Server, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown incomplete", "err", err)
		return
	}
	log.Info("stopped")
}
