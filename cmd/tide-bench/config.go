package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tidemq/tide/core/packet"
)

// The scenarios.
const (
	scFanin   = "fanin"
	scFanout  = "fanout"
	scPairs   = "pairs"
	scLatency = "latency"
	scConns   = "conns"
)

var scenarios = []string{scFanin, scFanout, scPairs, scLatency, scConns}

// hdrLen is the part of every payload that carries the accounting: magic
// (4 bytes, per run), publisher id (4), sequence number (4) and the send
// time on the generator's monotonic clock (8).
const hdrLen = 20

// config is one invocation's settings, after defaults and validation.
type config struct {
	scenario string

	host, label           string
	compare, compareLabel string
	pid, comparePID       int
	qos                   int
	size                  int
	count                 int
	clients               int
	window                int
	version               int
	rate                  float64
	reps                  int
	timeout, drain, hold  time.Duration
	connectTimeout        time.Duration
	keepAlive             time.Duration
	json                  bool
	useTLS, insecure      bool
	caFile                string
	ws                    bool
	wsPath                string
	username, password    string
	topicPrefix           string
	connectParallel       int
	progressEvery         time.Duration
	noProgress            bool
	cpuProfile            string
	subQoS                int
	quickAck              bool
	quickAckMode          string
	tlsConfig             *tls.Config
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

const usageHead = `tide-bench measures an MQTT broker: throughput, latency, memory per
connection, and every message lost, duplicated or reordered on the way.

Usage:
  tide-bench <scenario> [flags]
  tide-bench serve-mochi [--addr 127.0.0.1:0]

Scenarios (--count is always the total number of messages PUBLISHED, summed
over all publishers and split evenly between them):
  fanin    --clients publishers -> 1 subscriber on <prefix>/fanin/+
           (default: 100 publishers, 100000 messages)
  fanout   1 publisher -> --clients subscribers on one topic; every message is
           expected --clients times (default: 100 subscribers, 10000 messages
           = 1000000 deliveries)
  pairs    --clients publisher/subscriber pairs, each on its own topic
           (default: 100 pairs, 100000 messages)
  latency  --clients publishers (default 1) -> 1 subscriber at a paced total
           --rate (default 1000 msg/s), --count messages (default 10000);
           end-to-end latency from the send time carried in the payload
  conns    open --clients idle connections (default 1000) at --rate
           connections/s (default 1000; 0 = unpaced), hold them --hold, and
           with --pid report the broker's memory per connection

Flags:
`

// parseConfig parses the command line (everything after the program name).
func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("tide-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.host, "host", "127.0.0.1:1883", "broker `host:port` to measure (A)")
	fs.StringVar(&c.label, "label", "", "name of the --host broker in reports (default: its address)")
	fs.StringVar(&c.compare, "compare", "", "second broker `host:port` (B): run the same scenario on both, interleaved A B B A A B ...")
	fs.StringVar(&c.compareLabel, "compare-label", "", "name of the --compare broker in reports")
	fs.IntVar(&c.pid, "pid", 0, "`pid` of the --host broker: sample its CPU (/proc/<pid>/stat) and RSS (/proc/<pid>/status)")
	fs.IntVar(&c.comparePID, "compare-pid", 0, "`pid` of the --compare broker")
	fs.IntVar(&c.qos, "qos", 0, "QoS of publishes and subscriptions (0, 1, 2)")
	fs.IntVar(&c.subQoS, "sub-qos", -1, "QoS of subscriptions when it differs from --qos (delivery is at the lower of the two)")
	fs.StringVar(&c.quickAckMode, "quickack", "auto", "TCP_QUICKACK after every read: on, off, or auto (on when --rate paces the publishers)")
	fs.IntVar(&c.size, "size", 64, fmt.Sprintf("payload `bytes` (at least %d: publisher id, sequence, timestamp)", hdrLen))
	fs.IntVar(&c.count, "count", 0, "total messages published, over all publishers (0: the scenario's default)")
	fs.IntVar(&c.clients, "clients", 0, "publishers (fanin, latency), subscribers (fanout), pairs (pairs) or connections (conns); 0: the scenario's default")
	fs.IntVar(&c.clients, "n", 0, "shorthand for --clients")
	fs.IntVar(&c.window, "window", 100, "in-flight window of each QoS 1/2 publisher (capped by an MQTT 5 broker's Receive Maximum)")
	fs.IntVar(&c.version, "version", 4, "MQTT protocol level: 3 (3.1), 4 (3.1.1), 5 (5.0)")
	fs.Float64Var(&c.rate, "rate", 0, "paced total publish rate in msg/s (latency: default 1000; others: 0 = as fast as possible); conns: connections/s")
	fs.IntVar(&c.reps, "reps", 0, "runs per broker (default 1, or 3 with --compare); medians are reported")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "bound on one run; what has not arrived by then is counted lost")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "after the last publish, stop waiting when nothing arrived for this long (the rest is lost)")
	fs.DurationVar(&c.hold, "hold", 5*time.Second, "conns: how long the connections stay idle before memory is sampled")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "bound on one connection's dial + CONNACK")
	fs.DurationVar(&c.keepAlive, "keepalive", 60*time.Second, "MQTT keep alive of every connection (0: none)")
	fs.BoolVar(&c.json, "json", false, "print the results as JSON on stdout (progress and warnings stay on stderr)")
	fs.BoolVar(&c.useTLS, "tls", false, "connect with TLS")
	fs.BoolVar(&c.insecure, "insecure", false, "with --tls: do not verify the broker's certificate")
	fs.StringVar(&c.caFile, "ca", "", "with --tls: PEM `file` of the CA that signed the broker's certificate")
	fs.BoolVar(&c.ws, "ws", false, "connect over WebSocket (ws://, or wss:// with --tls)")
	fs.StringVar(&c.wsPath, "ws-path", "/mqtt", "WebSocket path")
	fs.StringVar(&c.username, "username", "", "MQTT user name")
	fs.StringVar(&c.password, "password", "", "MQTT password")
	fs.StringVar(&c.topicPrefix, "topic-prefix", "bench", "first topic level; each run adds its own random level under it")
	fs.IntVar(&c.connectParallel, "connect-parallel", 32, "connections opened at once while setting up")
	fs.DurationVar(&c.progressEvery, "progress", 0, "progress interval (default: live line on a terminal, a line every 5s otherwise)")
	fs.BoolVar(&c.noProgress, "quiet", false, "no progress output")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the generator's own CPU profile to `file` (to check it is not the bottleneck)")

	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		c.scenario = args[0]
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{msg: err.Error()}
	}
	rest := fs.Args()
	if c.scenario == "" && len(rest) > 0 {
		c.scenario, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return nil, usagef("unexpected arguments %q (flags go before or after the scenario, not between its words)", rest)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := c.finish(set); err != nil {
		return nil, err
	}
	return c, nil
}

// finish applies the scenario's defaults and validates everything at once.
func (c *config) finish(set map[string]bool) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	switch c.scenario {
	case "":
		return usagef("no scenario: want one of %s", strings.Join(scenarios, ", "))
	case scFanin, scPairs:
		defInt(&c.clients, 100)
		defInt(&c.count, 100000)
	case scFanout:
		defInt(&c.clients, 100)
		defInt(&c.count, 10000)
	case scLatency:
		defInt(&c.clients, 1)
		defInt(&c.count, 10000)
		if c.rate == 0 {
			c.rate = 1000
		}
	case scConns:
		defInt(&c.clients, 1000)
		if !set["rate"] {
			c.rate = 1000
		}
	default:
		return usagef("unknown scenario %q: want one of %s", c.scenario, strings.Join(scenarios, ", "))
	}
	if c.clients < 1 {
		bad("--clients %d: want at least 1", c.clients)
	}
	if c.scenario != scConns {
		pubs := c.clients
		if c.scenario == scFanout {
			pubs = 1
		}
		if c.count < pubs {
			bad("--count %d is less than the %d publishers: every publisher sends at least one message", c.count, pubs)
		}
	}
	if c.qos < 0 || c.qos > 2 {
		bad("--qos %d: want 0, 1 or 2", c.qos)
	}
	if c.subQoS == -1 {
		c.subQoS = c.qos
	} else if c.subQoS < 0 || c.subQoS > 2 {
		bad("--sub-qos %d: want 0, 1 or 2", c.subQoS)
	}
	if c.size < hdrLen {
		bad("--size %d: want at least %d bytes (the payload carries magic, publisher id, sequence and timestamp)", c.size, hdrLen)
	}
	if c.size > packet.MaxRemainingLength-1024 {
		bad("--size %d: larger than an MQTT packet can carry", c.size)
	}
	if c.window < 1 || c.window > 65535 {
		bad("--window %d: want 1..65535", c.window)
	}
	switch c.version {
	case 3, 4, 5:
	default:
		bad("--version %d: want 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0)", c.version)
	}
	if c.rate < 0 {
		bad("--rate %g: want 0 or more", c.rate)
	}
	switch c.quickAckMode {
	case "on", "true":
		c.quickAck = true
	case "off", "false":
	case "auto":
		// Sparse traffic is where a delayed ACK stalls a Nagle sender; a
		// flood fills segments anyway and would pay a system call per read.
		c.quickAck = c.rate > 0 && c.scenario != scConns
	default:
		bad("--quickack %q: want on, off or auto", c.quickAckMode)
	}
	if c.reps < 0 {
		bad("--reps %d: want at least 1", c.reps)
	}
	if c.reps == 0 {
		c.reps = 1
		if c.compare != "" {
			c.reps = 3
		}
	}
	if c.timeout <= 0 {
		bad("--timeout %v: want a positive duration", c.timeout)
	}
	if c.drain <= 0 {
		bad("--drain %v: want a positive duration", c.drain)
	}
	if c.hold < 0 {
		bad("--hold %v: want 0 or more", c.hold)
	}
	if c.connectTimeout <= 0 {
		bad("--connect-timeout %v: want a positive duration", c.connectTimeout)
	}
	if c.keepAlive < 0 || c.keepAlive > 65535*time.Second {
		bad("--keepalive %v: want 0 to 65535s", c.keepAlive)
	}
	if c.connectParallel < 1 {
		bad("--connect-parallel %d: want at least 1", c.connectParallel)
	}
	if c.progressEvery < 0 {
		bad("--progress %v: want a positive duration", c.progressEvery)
	}
	checkAddr := func(flagName, a string) {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			bad("--%s %q: want host:port", flagName, a)
		}
	}
	checkAddr("host", c.host)
	if c.compare != "" {
		checkAddr("compare", c.compare)
	} else if c.comparePID != 0 || c.compareLabel != "" {
		bad("--compare-pid and --compare-label need --compare")
	}
	for _, p := range []struct {
		name string
		pid  int
	}{{"pid", c.pid}, {"compare-pid", c.comparePID}} {
		if p.pid < 0 {
			bad("--%s %d: want a process id", p.name, p.pid)
		} else if p.pid > 0 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", p.pid)); err != nil {
				bad("--%s %d: no such process (or /proc is not mounted)", p.name, p.pid)
			}
		}
	}
	if (c.insecure || c.caFile != "") && !c.useTLS {
		bad("--insecure and --ca need --tls")
	}
	if !strings.HasPrefix(c.wsPath, "/") {
		bad("--ws-path %q: want a path starting with /", c.wsPath)
	}
	if c.topicPrefix == "" || strings.ContainsAny(c.topicPrefix, "+#\x00") {
		bad("--topic-prefix %q: want a non-empty topic name without wildcards", c.topicPrefix)
	}
	if c.useTLS {
		c.tlsConfig = &tls.Config{InsecureSkipVerify: c.insecure} //nolint:gosec // only on request, for self-signed test brokers
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				bad("--ca: %v", err)
			} else {
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					bad("--ca %s: no PEM certificate in it", c.caFile)
				}
				c.tlsConfig.RootCAs = pool
			}
		}
	}
	if len(errs) > 0 {
		return &usageError{msg: strings.Join(errs, "\n")}
	}
	if c.label == "" {
		c.label = c.host
	}
	if c.compareLabel == "" {
		c.compareLabel = c.compare
	}
	return nil
}

func defInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

// dialOptions returns how to connect to host.
func (c *config) dialOptions(host string) dialOptions {
	o := dialOptions{
		host:      host,
		ws:        c.ws,
		wsPath:    c.wsPath,
		version:   byte(c.version),
		keepAlive: uint16(c.keepAlive / time.Second),
		username:  c.username,
		password:  c.password,
		timeout:   c.connectTimeout,
		quickAck:  c.quickAck,
	}
	if c.tlsConfig != nil {
		t := c.tlsConfig.Clone()
		if t.ServerName == "" {
			if h, _, err := net.SplitHostPort(host); err == nil {
				t.ServerName = h
			}
		}
		o.tls = t
	}
	return o
}

// versionName returns the protocol name of a level.
func versionName(v int) string {
	switch v {
	case 3:
		return "MQTT 3.1"
	case 4:
		return "MQTT 3.1.1"
	case 5:
		return "MQTT 5.0"
	}
	return "?"
}
