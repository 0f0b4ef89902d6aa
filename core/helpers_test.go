package core_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

// testLogger logs to the test output when TIDE_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TIDE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startServer runs a broker on an ephemeral loopback port.
func startServer(t testing.TB, opts core.Options, lopts ...core.ListenerOptions) (*core.Server, string) {
	t.Helper()
	if opts.SysInterval == 0 {
		opts.SysInterval = -1
	}
	s := core.New(opts, testLogger(t))
	lo := core.ListenerOptions{Name: "test", AllowAnonymous: true}
	if len(lopts) > 0 {
		lo = lopts[0]
	}
	addr, err := s.ListenTCP("127.0.0.1:0", lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, addr.String()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// raw is a test client on a plain socket, speaking through core/packet, for
// exact control over what is sent and checked.
type raw struct {
	t    testing.TB
	conn net.Conn
	r    *packet.Reader
	v    byte
}

func dialRaw(t testing.TB, addr string, v byte) *raw {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := packet.NewReader(conn)
	r.Version = v
	return &raw{t: t, conn: conn, r: r, v: v}
}

func (c *raw) send(p packet.Packet) {
	c.t.Helper()
	c.sendBytes(packet.Encode(p, c.v))
}

func (c *raw) sendBytes(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next reads the next packet within d.
func (c *raw) next(d time.Duration) (packet.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	p, _, err := c.r.ReadPacket()
	return p, err
}

// expect reads the next packet and requires it to be of type T.
func expect[T packet.Packet](c *raw) T {
	c.t.Helper()
	p, err := c.next(5 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for %T: %v", *new(T), err)
	}
	v, ok := p.(T)
	if !ok {
		c.t.Fatalf("got %T %+v, want %T", p, p, *new(T))
	}
	return v
}

// expectClosed requires the server to close the connection within 5s,
// skipping (and returning) the packets sent before it.
func (c *raw) expectClosed() []packet.Packet {
	c.t.Helper()
	var got []packet.Packet
	for {
		p, err := c.next(5 * time.Second)
		if err == nil {
			got = append(got, p)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after 5s (received %v)", got)
		}
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return got
		}
		c.t.Fatalf("read: %v (received %v)", err, got)
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// connect sends CONNECT and requires a successful CONNACK.
func (c *raw) connect(cp *packet.Connect) *packet.Connack {
	c.t.Helper()
	if cp.ProtocolLevel == 0 {
		cp.ProtocolLevel = c.v
	}
	c.send(cp)
	ack := expect[*packet.Connack](c)
	if ack.ReasonCode != packet.Success {
		c.t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	return ack
}

func rawConnected(t testing.TB, addr string, v byte, id string) *raw {
	t.Helper()
	c := dialRaw(t, addr, v)
	c.connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
	return c
}

// v5 is a paho.golang client with its received messages.
type v5 struct {
	*paho.Client
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
}

func dialV5(t testing.TB, addr string, cp *paho.Connect) (*v5, *paho.Connack) {
	t.Helper()
	c, ack, err := dialV5With(t, addr, cp, nil)
	if err != nil {
		t.Fatalf("v5 connect %q: %v", cp.ClientID, err)
	}
	return c, ack
}

// dialV5With connects with an MQTT 5 enhanced authentication handler (or
// nil) and returns the CONNACK and the error of a refused connect.
func dialV5With(t testing.TB, addr string, cp *paho.Connect, auth paho.Auther) (*v5, *paho.Connack, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &v5{msgs: make(chan *paho.Publish, 1000), disc: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID:    cp.ClientID,
		Conn:        conn,
		AuthHandler: auth,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disc <- d },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ack, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ack, nil
}

func (c *v5) subscribe(t testing.TB, opts ...paho.SubscribeOptions) *paho.Suback {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return sa
}

func (c *v5) publish(t testing.TB, p *paho.Publish) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, p)
	if err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
	return r
}

// recv waits for the next message.
func (c *v5) recv(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return nil
}

// none requires that no message arrives within d.
func (c *v5) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message %s %q", m.Topic, m.Payload)
	case <-time.After(d):
	}
}

// v3 is a paho.mqtt.golang client (3.1 or 3.1.1).
type v3 struct {
	mqtt3.Client
	msgs chan mqtt3.Message
}

func dialV3(t testing.TB, addr, id string, version uint, configure ...func(*mqtt3.ClientOptions)) *v3 {
	t.Helper()
	c := &v3{msgs: make(chan mqtt3.Message, 1000)}
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(version).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { c.msgs <- m }).SetOrderMatters(true)
	for _, f := range configure {
		f(o)
	}
	c.Client = mqtt3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("v3 connect %q: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func wait(t testing.TB, tok mqtt3.Token) {
	t.Helper()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("token timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

func (c *v3) recv(t testing.TB) mqtt3.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return nil
}

var idSeq struct {
	sync.Mutex
	n int
}

// uid returns a client id unique within the test binary.
func uid(prefix string) string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return fmt.Sprintf("%s-%d", prefix, idSeq.n)
}
