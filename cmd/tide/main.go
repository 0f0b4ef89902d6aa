// Command tide is the Tide MQTT broker.
//
//	tide [-c FILE]            run the broker (the built-in default config without -c)
//	tide check [-c FILE]      validate a config and print the effective one
//	tide jobs [-c FILE]       print the status of a running broker's jobs
//	tide passwd [USER]        read a password on stdin, print its bcrypt hash
//	                          (with USER, a "USER:hash" line for [auth] password_file)
//	tide version              print the version
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
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
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the broker to this file until it stops")
	allocProfile := fs.String("allocprofile", "", "record every allocation and write the allocation profile to this file when the broker stops (slow: for finding allocations, not for measuring speed)")
	var jf jobsFlags
	if cmd == "jobs" {
		fs.StringVar(&jf.admin, "admin", "", "admin API address (default: [admin] address of the config)")
		fs.StringVar(&jf.mqtt, "mqtt", "", "MQTT address to read $SYS from when there is no admin API (default: the config's first tcp listener)")
		fs.StringVar(&jf.user, "u", "", "MQTT username")
		fs.StringVar(&jf.password, "P", "", "MQTT password")
		fs.BoolVar(&jf.json, "json", false, "print JSON")
	}
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
		return passwdCmd(fs.Args(), stdin, stdout, stderr)
	case "jobs":
		cfg, err := loadConfig(cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := jobs(cfg, jf, stdout); err != nil {
			fmt.Fprintln(stderr, "tide jobs:", err)
			return 1
		}
		return 0
	case "serve":
		cfg, err := loadConfig(cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				fmt.Fprintln(stderr, "tide:", err)
				return 1
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(stderr, "tide:", err)
				return 1
			}
			defer pprof.StopCPUProfile()
		}
		if *allocProfile != "" {
			runtime.MemProfileRate = 1
			defer func() {
				if err := writeAllocProfile(*allocProfile); err != nil {
					fmt.Fprintln(stderr, "tide:", err)
				}
			}()
		}
		if err := serve(cfgPath, cfg, stderr); err != nil {
			fmt.Fprintln(stderr, "tide:", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "tide: unknown command %q (commands: serve, check, jobs, passwd, version)\n", cmd)
		return 2
	}
}

// writeAllocProfile writes the allocations recorded since start to path.
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile holds what the last collection saw
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadConfig(path string) (*conf.Config, error) {
	if path == "" {
		return conf.Default()
	}
	return conf.Load(path)
}

// passwdCmd prints the bcrypt hash of the password read from stdin, for
// [[auth.user]] password_hash, or given a user name a "user:hash" line for
// [auth] password_file.
func passwdCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	user := ""
	switch {
	case len(args) > 1:
		fmt.Fprintln(stderr, "tide passwd: at most one argument, the user name")
		return 2
	case len(args) == 1:
		user = args[0]
		if user == "" || strings.Contains(user, ":") {
			fmt.Fprintln(stderr, "tide passwd: a user name is not empty and holds no colon")
			return 2
		}
	}
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
	if user != "" {
		fmt.Fprintf(stdout, "%s:%s\n", user, h)
		return 0
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
