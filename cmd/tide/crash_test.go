package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidemq/tide/core/packet"
)

// broker runs the tide binary and restarts it on the same store; addr is
// where it listens now (it changes with every start: port 0).
type broker struct {
	t    *testing.T
	cfg  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	addr string
}

func (b *broker) start() {
	cmd, addr := startTide(b.t, b.cfg)
	b.mu.Lock()
	b.cmd, b.addr = cmd, addr
	b.mu.Unlock()
}

func (b *broker) address() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

func (b *broker) kill() {
	b.mu.Lock()
	cmd := b.cmd
	b.addr = ""
	b.mu.Unlock()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// conn is a reconnecting test client speaking MQTT through core/packet.
type conn struct {
	b     *broker
	id    string
	v     byte
	props packet.Properties
	c     net.Conn
	r     *packet.Reader
}

func (c *conn) connect(stop <-chan struct{}) bool {
	for {
		select {
		case <-stop:
			return false
		default:
		}
		if c.c != nil {
			c.c.Close()
			c.c = nil
		}
		addr := c.b.address()
		if addr == "" {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		_ = nc.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := nc.Write(packet.Encode(&packet.Connect{ProtocolLevel: c.v, ClientID: c.id, KeepAlive: 30, Props: c.props}, c.v)); err != nil {
			nc.Close()
			continue
		}
		r := packet.NewReader(nc)
		r.Version = c.v
		p, _, err := r.ReadPacket()
		if ack, ok := p.(*packet.Connack); err != nil || !ok || ack.ReasonCode != 0 {
			nc.Close()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		_ = nc.SetDeadline(time.Time{})
		c.c, c.r = nc, r
		return true
	}
}

func (c *conn) send(p packet.Packet) error {
	_, err := c.c.Write(packet.Encode(p, c.v))
	return err
}

func (c *conn) read(d time.Duration) (packet.Packet, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	p, _, err := c.r.ReadPacket()
	return p, err
}

// publisher sends numbered messages one at a time and records each number
// the broker acknowledged (PUBACK for QoS 1, PUBREC for QoS 2), resending
// after a crash as the protocol requires.
func publisher(b *broker, name string, qos byte, n int, acked []atomic.Bool, stop <-chan struct{}) {
	c := &conn{b: b, id: name, v: packet.V311}
	if !c.connect(stop) {
		return
	}
	for i := 1; i <= n; {
		pid := uint16(i%60000 + 1)
		pub := &packet.Publish{Topic: "crash/" + name, QoS: qos, PacketID: pid, Payload: []byte(fmt.Sprintf("%s:%d", name, i))}
		relPending := false
		err := c.send(pub)
		for err == nil {
			var p packet.Packet
			p, err = c.read(2 * time.Second)
			if err != nil {
				break
			}
			a, ok := p.(*packet.Ack)
			if !ok || a.PacketID != pid {
				continue
			}
			if a.Kind == packet.PUBACK || a.Kind == packet.PUBREC {
				acked[i].Store(true)
			}
			if a.Kind == packet.PUBREC {
				relPending = true
				err = c.send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
				continue
			}
			if a.Kind == packet.PUBACK || a.Kind == packet.PUBCOMP {
				break
			}
		}
		if err == nil {
			i++
			continue
		}
		// The broker went away: reconnect and resume this message.
		for {
			if !c.connect(stop) {
				return
			}
			if relPending {
				err = c.send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
			} else {
				pub.Dup = qos > 0
				err = c.send(pub)
			}
			if err == nil {
				break
			}
		}
		// Wait for the rest of the exchange on the new connection.
		for {
			p, err := c.read(2 * time.Second)
			if err != nil {
				break // connection lost again: the outer loop resends
			}
			a, ok := p.(*packet.Ack)
			if !ok || a.PacketID != pid {
				continue
			}
			if a.Kind == packet.PUBACK || a.Kind == packet.PUBREC {
				acked[i].Store(true)
			}
			if a.Kind == packet.PUBREC {
				relPending = true
				_ = c.send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
				continue
			}
			if a.Kind == packet.PUBACK || a.Kind == packet.PUBCOMP {
				i++
				break
			}
		}
	}
}

// subscriber counts every numbered message it receives, keeping QoS 2
// receiver state across its reconnects so that a resent PUBLISH of an
// exchange it already has is not counted twice. When offline is set it
// disconnects now and then, leaving the broker to queue for it.
type subscriber struct {
	name    string
	mu      sync.Mutex
	counts  map[string]int
	waitRel map[uint16]bool
}

func (s *subscriber) run(b *broker, v byte, props packet.Properties, filter string, qos byte, offline bool, stop <-chan struct{}) {
	c := &conn{b: b, id: s.name, v: v, props: props}
	if !c.connect(stop) {
		return
	}
	if err := c.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: filter, QoS: qos}}}); err != nil {
		panic(err)
	}
	onlineUntil := time.Now().Add(time.Duration(500+rand.IntN(700)) * time.Millisecond)
	for {
		select {
		case <-stop:
			c.c.Close()
			return
		default:
		}
		if offline && time.Now().After(onlineUntil) {
			c.c.Close()
			c.c = nil
			time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
			onlineUntil = time.Now().Add(time.Duration(300+rand.IntN(700)) * time.Millisecond)
			if !c.connect(stop) {
				return
			}
			continue
		}
		p, err := c.read(300 * time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if !c.connect(stop) {
				return
			}
			continue
		}
		switch p := p.(type) {
		case *packet.Publish:
			s.mu.Lock()
			dup := p.QoS == 2 && s.waitRel[p.PacketID]
			if !dup {
				s.counts[string(p.Payload)]++
			}
			if debugCrash && s.name[1] == '3' {
				fmt.Printf("%s %s got %s pid %d dup %v counted %v\n", time.Now().Format("15:04:05.000"), s.name, p.Payload, p.PacketID, p.Dup, !dup)
			}
			if p.QoS == 2 {
				s.waitRel[p.PacketID] = true
			}
			s.mu.Unlock()
			switch p.QoS {
			case 1:
				_ = c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			case 2:
				_ = c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
			}
		case *packet.Ack:
			if p.Kind == packet.PUBREL {
				if debugCrash && s.name[1] == '3' {
					fmt.Printf("%s %s PUBREL %d\n", time.Now().Format("15:04:05.000"), s.name, p.PacketID)
				}
				s.mu.Lock()
				delete(s.waitRel, p.PacketID)
				s.mu.Unlock()
				_ = c.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			}
		}
	}
}

const debugCrash = false

func (s *subscriber) count(payload string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[payload]
}

// TestCrashLosesNothingAcknowledged kills the real broker with SIGKILL at
// random moments while publishers send numbered QoS 1 and QoS 2 messages to
// persistent sessions (some offline), restarts it each time on the same
// store, and checks that every acknowledged message reached every
// subscriber at least once (QoS 1) or exactly once (QoS 2), and that the
// retained message and the subscriptions survived.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf(`[log]
level = "info"
[mqtt]
max_queued_messages = 0
[[listener]]
address = "127.0.0.1:0"
allow_anonymous = true
[persistence]
dir = %q
sync = "always"
`, filepath.Join(dir, "data")))
	b := &broker{t: t, cfg: cfg}
	b.start()

	// A retained message before anything else.
	rc := &conn{b: b, id: "retainer", v: packet.V311}
	rc.connect(nil)
	rc.send(&packet.Publish{Topic: "crash/retained", Retain: true, QoS: 1, PacketID: 1, Payload: []byte("kept")})
	if p, err := rc.read(5 * time.Second); err != nil || p.Type() != packet.PUBACK {
		t.Fatalf("retained publish: %v %v", p, err)
	}
	rc.c.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	subs := []*subscriber{
		{name: "s1-online-q1"}, {name: "s2-offline-q2"}, {name: "s3-v5-offline-q2"},
	}
	for _, s := range subs {
		s.counts = map[string]int{}
		s.waitRel = map[uint16]bool{}
	}
	wg.Add(3)
	go func() { defer wg.Done(); subs[0].run(b, packet.V311, packet.Properties{}, "crash/#", 1, false, stop) }()
	go func() { defer wg.Done(); subs[1].run(b, packet.V311, packet.Properties{}, "crash/#", 2, true, stop) }()
	go func() {
		defer wg.Done()
		subs[2].run(b, packet.V5, packet.Properties{SessionExpiry: packet.Ptr[uint32](3600)}, "crash/p2", 2, true, stop)
	}()
	time.Sleep(300 * time.Millisecond) // let the subscriptions in before the first publish

	const n = 1500
	ack1 := make([]atomic.Bool, n+1)
	ack2 := make([]atomic.Bool, n+1)
	pubStop := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Add(2)
	go func() { defer pwg.Done(); publisher(b, "p1", 1, n, ack1, pubStop) }()
	go func() { defer pwg.Done(); publisher(b, "p2", 2, n, ack2, pubStop) }()

	pubsDone := make(chan struct{})
	go func() { pwg.Wait(); close(pubsDone) }()
	progress := func() string {
		a1, a2 := 0, 0
		for i := 1; i <= n; i++ {
			if ack1[i].Load() {
				a1++
			}
			if ack2[i].Load() {
				a2++
			}
		}
		return fmt.Sprintf("p1 %d/%d acknowledged, p2 %d/%d", a1, n, a2, n)
	}
	for k := 0; k < 4; k++ {
		select {
		case <-pubsDone:
		case <-time.After(time.Duration(300+rand.IntN(600)) * time.Millisecond):
		}
		b.kill()
		t.Logf("SIGKILL %d: %s", k+1, progress())
		if debugCrash {
			fmt.Printf("%s SIGKILL %d\n", time.Now().Format("15:04:05.000"), k+1)
		}
		b.start()
	}
	select {
	case <-pubsDone:
	case <-time.After(90 * time.Second):
		close(pubStop)
		b.mu.Lock()
		_ = b.cmd.Process.Signal(syscall.SIGQUIT)
		time.Sleep(time.Second)
		lf, _ := logs.Load(b.cmd)
		b.mu.Unlock()
		t.Fatalf("publishers did not finish: %s (broker log with goroutines: %v)", progress(), lf)
	}

	// Every acknowledged message arrives: wait for the subscribers to drain.
	expectAll := func() string {
		for i := 1; i <= n; i++ {
			for _, s := range subs {
				if ack1[i].Load() && s != subs[2] {
					if c := s.count(fmt.Sprintf("p1:%d", i)); c < 1 {
						return fmt.Sprintf("%s lacks p1:%d", s.name, i)
					}
				}
				if ack2[i].Load() {
					if c := s.count(fmt.Sprintf("p2:%d", i)); c < 1 {
						return fmt.Sprintf("%s lacks p2:%d", s.name, i)
					}
				}
			}
		}
		return ""
	}
	deadline := time.Now().Add(60 * time.Second)
	for msg := expectAll(); msg != ""; msg = expectAll() {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("after the crashes: %s", msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // room for duplicates to show
	close(stop)
	wg.Wait()

	acked := 0
	for i := 1; i <= n; i++ {
		if ack1[i].Load() {
			acked++
		}
		if ack2[i].Load() {
			acked++
		}
		for _, s := range subs[1:] { // QoS 2 subscriptions: exactly once
			if c := s.count(fmt.Sprintf("p2:%d", i)); c > 1 {
				t.Errorf("%s received p2:%d %d times (QoS 2: exactly once)", s.name, i, c)
			}
		}
	}
	if acked < n {
		t.Fatalf("only %d messages acknowledged: the test did not exercise enough", acked)
	}

	// The retained message and the subscriptions survived.
	rc = &conn{b: b, id: "checker", v: packet.V311}
	rc.connect(nil)
	rc.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "crash/retained"}}})
	var gotRetained bool
	for k := 0; k < 3 && !gotRetained; k++ {
		p, err := rc.read(5 * time.Second)
		if err != nil {
			break
		}
		if m, ok := p.(*packet.Publish); ok && m.Retain && string(m.Payload) == "kept" {
			gotRetained = true
		}
	}
	if !gotRetained {
		t.Fatal("retained message lost")
	}
	rc.send(&packet.Publish{Topic: "crash/p2", QoS: 1, PacketID: 2, Payload: []byte("final")})
	deadline = time.Now().Add(10 * time.Second)
	stop2 := make(chan struct{})
	defer close(stop2)
	for _, s := range subs {
		s := s
		go s.run(b, map[bool]byte{true: packet.V5, false: packet.V311}[s == subs[2]],
			map[bool]packet.Properties{true: {SessionExpiry: packet.Ptr[uint32](3600)}}[s == subs[2]], "unused/"+s.name, 0, false, stop2)
	}
	for _, s := range subs {
		for s.count("final") == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: subscription lost (no message after the last restart)", s.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("%d messages acknowledged through 4 SIGKILLs; counts: %s", acked, summary(subs))
}

func summary(subs []*subscriber) string {
	var parts []string
	for _, s := range subs {
		s.mu.Lock()
		parts = append(parts, s.name+"="+strconv.Itoa(len(s.counts)))
		s.mu.Unlock()
	}
	return strings.Join(parts, " ")
}
