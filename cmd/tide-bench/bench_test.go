package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/listener"
)

// checkComplete asserts a run delivered everything, once, in order.
func checkComplete(t *testing.T, r *result) {
	t.Helper()
	if !r.OK {
		t.Errorf("run not OK: problems %q errors %q", r.Problems, r.Errors)
	}
	if r.Delivered != r.Expected || r.Lost != 0 {
		t.Errorf("delivered %d lost %d, want %d delivered, 0 lost", r.Delivered, r.Lost, r.Expected)
	}
	if r.Published != r.Planned {
		t.Errorf("published %d, want %d", r.Published, r.Planned)
	}
	if r.QoS > 0 && r.Acked != r.Published {
		t.Errorf("acked %d, want %d", r.Acked, r.Published)
	}
	if r.Duplicates != 0 || r.OutOfOrder != 0 || r.Unexpected != 0 {
		t.Errorf("duplicates %d out of order %d unexpected %d, want 0", r.Duplicates, r.OutOfOrder, r.Unexpected)
	}
	if r.Generator == nil || r.Generator.WallSecs <= 0 {
		t.Errorf("generator usage %+v, want a measured wall time", r.Generator)
	}
}

func TestScenariosAgainstTide(t *testing.T) {
	_, addr := startTide(t, core.Options{})
	cases := []struct {
		name         string
		args         []string
		wantExpected uint64
		wantPubs     int
		wantSubs     int
	}{
		{"fanin qos0 v3.1.1", []string{"fanin", "-n", "5", "--count", "1000"}, 1000, 5, 1},
		{"fanin qos1 v5", []string{"fanin", "-n", "4", "--count", "801", "--qos", "1", "--version", "5", "--window", "10"}, 801, 4, 1},
		{"fanout qos2 v3.1", []string{"fanout", "-n", "6", "--count", "200", "--qos", "2", "--version", "3"}, 1200, 1, 6},
		{"pairs qos1", []string{"pairs", "--clients", "8", "--count", "800", "--qos", "1", "--size", "1000"}, 800, 8, 8},
		{"pairs qos2 v5", []string{"pairs", "--clients", "3", "--count", "300", "--qos", "2", "--version", "5", "--size", "20"}, 300, 3, 3},
		{"latency qos1", []string{"latency", "--qos", "1", "--rate", "2000", "--count", "400"}, 400, 1, 1},
		{"fanin pub qos2 sub qos0", []string{"fanin", "-n", "3", "--count", "300", "--qos", "2", "--sub-qos", "0"}, 300, 3, 1},
		{"fanout quickack", []string{"fanout", "-n", "2", "--count", "100", "--qos", "1", "--quickack", "on"}, 200, 1, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, rep, stderr := benchJSON(t, append(tc.args, "--host", addr)...)
			if code != exitOK {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			if len(rep.Runs) != 1 {
				t.Fatalf("%d runs, want 1", len(rep.Runs))
			}
			r := rep.Runs[0]
			checkComplete(t, r)
			if r.Expected != tc.wantExpected || r.Publishers != tc.wantPubs || r.Subscribers != tc.wantSubs {
				t.Errorf("expected %d pubs %d subs %d, want %d %d %d", r.Expected, r.Publishers, r.Subscribers,
					tc.wantExpected, tc.wantPubs, tc.wantSubs)
			}
			if r.Latency == nil || r.Latency.Count != int64(r.Delivered) || r.Latency.P99 <= 0 {
				t.Errorf("latency %+v, want one sample per delivery", r.Latency)
			}
			if !rep.OK {
				t.Errorf("report ok = false")
			}
		})
	}
}

func TestHumanOutput(t *testing.T) {
	_, addr := startTide(t, core.Options{})
	code, out, _ := bench(t, "fanin", "-n", "3", "--count", "300", "--qos", "1", "--host", addr, "--label", "tide")
	if code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, want := range []string{"fanin against tide", "delivered   300 of 300", "lost        0", "latency", "generator", "result: OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// dropGate is a broker-side publish gate that silently drops every
// message whose sequence number is a multiple of every: a broker that
// loses messages, deterministically.
type dropGate struct {
	every   uint32
	dropped atomic.Uint64
}

func (g *dropGate) OnPublish(_ context.Context, _ *event.Client, m *event.Message) event.PublishDecision {
	if len(m.Payload) >= hdrLen && binary.BigEndian.Uint32(m.Payload[8:])%g.every == 0 {
		g.dropped.Add(1)
		return event.PublishDecision{Verdict: event.Drop}
	}
	return event.PublishDecision{Verdict: event.Pass}
}

func TestLossIsDetected(t *testing.T) {
	for _, qos := range []string{"0", "1", "2"} {
		t.Run("qos"+qos, func(t *testing.T) {
			s, addr := startTide(t, core.Options{})
			g := &dropGate{every: 5}
			s.SetGates(nil, nil, g)
			// 4 publishers x 50 messages: sequence numbers 0..49, ten of
			// which are multiples of 5, per publisher.
			code, rep, stderr := benchJSON(t, "fanin", "-n", "4", "--count", "200", "--qos", qos, "--drain", "500ms", "--host", addr)
			if code != exitFailed {
				t.Fatalf("exit %d, want %d (loss)", code, exitFailed)
			}
			r := rep.Runs[0]
			if r.Lost != 40 || r.Delivered != 160 || g.dropped.Load() != 40 {
				t.Errorf("lost %d delivered %d (broker dropped %d), want 40 lost, 160 delivered", r.Lost, r.Delivered, g.dropped.Load())
			}
			if r.OK || rep.OK {
				t.Errorf("ok = true with a loss")
			}
			if !strings.Contains(stderr, "LOST 40 of 200") {
				t.Errorf("stderr does not shout the loss:\n%s", stderr)
			}
		})
	}
}

func TestKilledSubscriberIsDetected(t *testing.T) {
	s, addr := startTide(t, core.Options{})
	done := make(chan bool, 1)
	go func() {
		// Kill the subscriber once it has received some messages.
		deadline := time.Now().Add(20 * time.Second)
		for s.Stats().MessagesSent < 50 {
			if time.Now().After(deadline) {
				done <- false
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		killed := false
		for _, c := range s.Clients() {
			if strings.HasSuffix(c.ID, "-s0") {
				killed = s.DisconnectClient(c.ID, "test kills the subscriber")
			}
		}
		done <- killed
	}()
	code, rep, _ := benchJSON(t, "fanin", "-n", "2", "--count", "1000", "--rate", "1000", "--qos", "1", "--drain", "500ms", "--host", addr)
	if !<-done {
		t.Fatalf("the subscriber was not killed")
	}
	if code != exitFailed {
		t.Fatalf("exit %d, want %d", code, exitFailed)
	}
	r := rep.Runs[0]
	if r.Lost == 0 || r.Delivered+r.Lost != r.Expected {
		t.Errorf("lost %d delivered %d expected %d: want a loss that adds up", r.Lost, r.Delivered, r.Expected)
	}
	found := false
	for _, e := range r.Errors {
		if strings.HasPrefix(e, "subscriber 0:") {
			found = true
		}
	}
	if !found {
		t.Errorf("errors %q, want one for subscriber 0", r.Errors)
	}
}

// stallGate holds every publish until released: a broker that never
// acknowledges, for the timeout.
type stallGate struct{ release chan struct{} }

func (g *stallGate) OnPublish(ctx context.Context, _ *event.Client, _ *event.Message) event.PublishDecision {
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return event.PublishDecision{Verdict: event.Pass}
}

func TestTimeoutReportsWhatArrived(t *testing.T) {
	s, addr := startTide(t, core.Options{})
	g := &stallGate{release: make(chan struct{})}
	t.Cleanup(func() { close(g.release) }) // runs before the broker's shutdown
	s.SetGates(nil, nil, g)
	start := time.Now()
	code, rep, stderr := benchJSON(t, "pairs", "-n", "2", "--count", "100", "--qos", "1", "--timeout", "1s", "--host", addr)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d", code, exitFailed)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("took %v with --timeout 1s", el)
	}
	r := rep.Runs[0]
	if !r.TimedOut || r.Lost != r.Expected || r.Delivered != 0 {
		t.Errorf("timed out %v lost %d delivered %d expected %d: want all counted lost", r.TimedOut, r.Lost, r.Delivered, r.Expected)
	}
	if !strings.Contains(stderr, "--timeout") {
		t.Errorf("stderr does not say the run timed out:\n%s", stderr)
	}
}

func TestConnsScenario(t *testing.T) {
	_, addr := startTide(t, core.Options{})
	code, rep, stderr := benchJSON(t, "conns", "-n", "200", "--rate", "2000", "--hold", "200ms", "--keepalive", "2s",
		"--host", addr, "--pid", strconv.Itoa(os.Getpid()))
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	r := rep.Runs[0]
	c := r.Conns
	if c == nil {
		t.Fatalf("no conns result")
	}
	if c.Opened != 200 || c.Failed != 0 || c.Dropped != 0 {
		t.Errorf("opened %d failed %d dropped %d, want 200 0 0", c.Opened, c.Failed, c.Dropped)
	}
	if c.RSSBefore <= 0 || c.RSSAfter <= 0 || r.Broker == nil || r.Broker.PID != os.Getpid() {
		t.Errorf("rss before %d after %d broker %+v: want sampled figures with --pid", c.RSSBefore, c.RSSAfter, r.Broker)
	}
	if c.Connack == nil || c.Connack.Count != 200 {
		t.Errorf("CONNACK latency %+v, want 200 samples", c.Connack)
	}
	// 200 connections at 2000/s take about 0.1 s.
	if c.Seconds < 0.05 || c.Seconds > 10 {
		t.Errorf("took %.3f s to open 200 connections at 2000/s", c.Seconds)
	}
}

func TestConnsFailuresAreCounted(t *testing.T) {
	s := core.New(core.Options{SysInterval: -1}, nil)
	a, err := s.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "small", AllowAnonymous: true, MaxConnections: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, s) })
	code, rep, _ := benchJSON(t, "conns", "-n", "80", "--rate", "0", "--hold", "0s", "--connect-timeout", "2s", "--host", a.String())
	if code != exitFailed {
		t.Fatalf("exit %d, want %d", code, exitFailed)
	}
	c := rep.Runs[0].Conns
	if c.Opened+c.Failed != 80 || c.Failed < 30 {
		t.Errorf("opened %d failed %d, want 80 attempts with at least 30 refused", c.Opened, c.Failed)
	}
}

func TestCompareTwoBrokers(t *testing.T) {
	_, a := startTide(t, core.Options{})
	_, b := startTide(t, core.Options{})
	code, out, stderr := bench(t, "fanin", "-n", "2", "--count", "200", "--qos", "1",
		"--host", a, "--label", "first", "--compare", b, "--compare-label", "second", "--reps", "2")
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"A = first", "B = second", "medians of 2 runs each", "ratio A/B", "delivery rate", "pair by pair"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Two pairs: the p99s of the two repetitions split 2:0, 1:1 or 0:2
	// (ties aside), and the sign test's p is 1 or 0.5.
	if !regexp.MustCompile(`(?m)^  latency p99 +2 +[0-2] +[0-2] +(1|0\.5)$`).MatchString(out) {
		t.Errorf("no pair-by-pair row for p99 over two repetitions:\n%s", out)
	}
	// Interleaved, each first in turn: A B B A.
	var order []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "fanin against ") {
			order = append(order, strings.Fields(line)[2])
		}
	}
	if got := strings.Join(order, " "); got != "first second second first" {
		t.Errorf("run order %q, want first second second first", got)
	}

	code, rep, _ := benchJSON(t, "pairs", "-n", "2", "--count", "100", "--host", a, "--compare", b, "--reps", "1")
	if code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	var rate *summaryRow
	for i := range rep.Summary {
		if rep.Summary[i].Metric == "delivery rate" {
			rate = &rep.Summary[i]
		}
	}
	if rate == nil || rate.A == nil || rate.B == nil || rate.Ratio == nil {
		t.Fatalf("summary %+v, want a delivery rate with A, B and ratio", rep.Summary)
	}
	if got, want := *rate.Ratio, *rate.A / *rate.B; got != want {
		t.Errorf("ratio %g, want A/B = %g", got, want)
	}
}

func TestMochi(t *testing.T) {
	m, addr, err := startMochi("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	code, rep, stderr := benchJSON(t, "pairs", "-n", "4", "--count", "400", "--qos", "1", "--host", addr)
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	checkComplete(t, rep.Runs[0])
}

func TestServeMochi(t *testing.T) {
	var out, errb syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	codeCh := make(chan int, 1)
	go func() { codeCh <- run(ctx, []string{"serve-mochi", "--addr", "127.0.0.1:0"}, &out, &errb, false) }()
	var addr string
	eventually(t, "serve-mochi to print its address", func() bool {
		_, rest, ok := strings.Cut(out.String(), "listening on ")
		if !ok {
			return false
		}
		addr = strings.Fields(rest)[0]
		return true
	})
	code, rep, stderr := benchJSON(t, "fanin", "-n", "2", "--count", "100", "--qos", "1", "--host", addr)
	if code != exitOK {
		t.Errorf("exit %d against serve-mochi, want 0; stderr:\n%s", code, stderr)
	} else {
		checkComplete(t, rep.Runs[0])
	}
	cancel()
	select {
	case code := <-codeCh:
		if code != exitOK {
			t.Errorf("serve-mochi exit %d, want 0; stderr:\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("serve-mochi did not stop when interrupted")
	}
}

func TestTLSAndWebSocket(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	certFile, keyFile := writeFile(t, "cert.pem", certPEM), writeFile(t, "key.pem", keyPEM)
	tlsAddr := startTideOn(t, conf.Listener{Type: listener.TypeTLS, CertFile: certFile, KeyFile: keyFile, MinVersion: "1.2"})
	wsAddr := startTideOn(t, conf.Listener{Type: listener.TypeWS, Path: "/mqtt"})
	wssAddr := startTideOn(t, conf.Listener{Type: listener.TypeWSS, Path: "/mqtt", CertFile: certFile, KeyFile: keyFile, MinVersion: "1.2"})
	cases := []struct {
		name string
		args []string
	}{
		{"tls", []string{"--tls", "--ca", certFile, "--host", tlsAddr}},
		{"tls insecure", []string{"--tls", "--insecure", "--host", tlsAddr}},
		{"ws", []string{"--ws", "--host", wsAddr}},
		{"wss", []string{"--ws", "--tls", "--ca", certFile, "--host", wssAddr}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, rep, stderr := benchJSON(t, append([]string{"pairs", "-n", "2", "--count", "200", "--qos", "1"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			checkComplete(t, rep.Runs[0])
			code, rep, stderr = benchJSON(t, append([]string{"conns", "-n", "20", "--hold", "0s"}, tc.args...)...)
			if code != exitOK || rep.Runs[0].Conns.Opened != 20 {
				t.Fatalf("conns: exit %d; stderr:\n%s", code, stderr)
			}
		})
	}

	// Without the CA, the certificate does not verify: a clear error.
	code, _, stderr := bench(t, "pairs", "-n", "1", "--count", "1", "--tls", "--host", tlsAddr)
	if code != exitAborted || !strings.Contains(stderr, "certificate") {
		t.Errorf("exit %d stderr %q, want %d and a certificate error", code, stderr, exitAborted)
	}
	// A wrong WebSocket path is refused by the broker's HTTP side.
	code, _, stderr = bench(t, "pairs", "-n", "1", "--count", "1", "--ws", "--ws-path", "/nope", "--host", wsAddr)
	if code != exitAborted || !strings.Contains(stderr, "404") {
		t.Errorf("exit %d stderr %q, want %d and a 404", code, stderr, exitAborted)
	}
}

func TestMosquittoIfRunning(t *testing.T) {
	const addr = "127.0.0.1:1883"
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		if os.Getenv("TIDE_REQUIRE_SERVICES") == "1" {
			t.Fatalf("TIDE_REQUIRE_SERVICES=1 and no broker at %s: %v", addr, err)
		}
		t.Skipf("no broker at %s (%v): start Mosquitto there to run this test", addr, err)
	}
	c.Close()
	code, rep, stderr := benchJSON(t, "fanin", "-n", "3", "--count", "300", "--qos", "1", "--host", addr)
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	checkComplete(t, rep.Runs[0])
}

func TestProgressLines(t *testing.T) {
	_, addr := startTide(t, core.Options{})
	code, _, stderr := bench(t, "latency", "--rate", "1000", "--count", "300", "--progress", "50ms", "--host", addr)
	if code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	if !strings.Contains(stderr, "latency 127.0.0.1") || !strings.Contains(stderr, "sent ") || !strings.Contains(stderr, "recv ") {
		t.Errorf("no progress lines on stderr:\n%s", stderr)
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "no scenario"},
		{[]string{"fanball"}, `unknown scenario "fanball"`},
		{[]string{"fanin", "--qos", "3"}, "--qos 3"},
		{[]string{"fanin", "--sub-qos", "7"}, "--sub-qos 7"},
		{[]string{"fanin", "--quickack", "maybe"}, `--quickack "maybe"`},
		{[]string{"fanin", "--size", "10"}, "--size 10: want at least 20"},
		{[]string{"fanin", "--version", "6"}, "--version 6"},
		{[]string{"fanin", "--window", "0"}, "--window 0"},
		{[]string{"fanin", "-n", "10", "--count", "5"}, "--count 5 is less than the 10 publishers"},
		{[]string{"fanin", "--host", "nocolon"}, `--host "nocolon": want host:port`},
		{[]string{"fanin", "--timeout", "-1s"}, "--timeout"},
		{[]string{"fanin", "--pid", "999999999"}, "no such process"},
		{[]string{"fanin", "--compare-pid", "1"}, "need --compare"},
		{[]string{"fanin", "--insecure"}, "need --tls"},
		{[]string{"fanin", "--tls", "--ca", "/nonexistent/ca.pem"}, "--ca"},
		{[]string{"fanin", "--bogus"}, "flag provided but not defined"},
		{[]string{"fanin", "extra"}, "unexpected arguments"},
		{[]string{"fanin", "--qos", "5", "--size", "1"}, "--size 1"}, // all errors at once
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := bench(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q lacks %q", stderr, tc.want)
			}
		})
	}
}

func TestUnreachableBroker(t *testing.T) {
	addr := freeAddr(t)
	code, _, stderr := bench(t, "fanin", "-n", "2", "--count", "10", "--host", addr)
	if code != exitAborted {
		t.Errorf("exit %d, want %d", code, exitAborted)
	}
	if want := fmt.Sprintf("connect to %s", addr); !strings.Contains(stderr, want) || !strings.Contains(stderr, "refused") {
		t.Errorf("stderr %q, want %q and connection refused", stderr, want)
	}
}

func TestRefusedConnection(t *testing.T) {
	s := core.New(core.Options{SysInterval: -1}, nil)
	a, err := s.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "closed", AllowAnonymous: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, s) })
	code, _, stderr := bench(t, "fanin", "-n", "1", "--count", "1", "--host", a.String())
	if code != exitAborted || !strings.Contains(stderr, "broker refused the connection") {
		t.Errorf("exit %d stderr %q, want %d and the refusal", code, stderr, exitAborted)
	}
}
