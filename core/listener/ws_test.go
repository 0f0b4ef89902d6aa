package listener_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/listener"
	"github.com/tidemq/tide/core/packet"
)

// wsClient is a raw WebSocket client speaking MQTT through core/packet:
// writes choose the framing exactly, reads parse the binary messages as
// one stream.
type wsClient struct {
	t  testing.TB
	ws *websocket.Conn
	r  *packet.Reader
}

func dialWS(ctx context.Context, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	if opts == nil {
		opts = &websocket.DialOptions{Subprotocols: []string{"mqtt"}}
	}
	return websocket.Dial(ctx, url, opts)
}

func newWSClient(t testing.TB, url string, opts *websocket.DialOptions) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, url, opts)
	if err != nil {
		t.Fatalf("WebSocket dial %s: %v", url, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	r := packet.NewReader(websocket.NetConn(context.Background(), ws, websocket.MessageBinary))
	r.Version = packet.V311
	return &wsClient{t: t, ws: ws, r: r}
}

// send writes one binary message holding parts concatenated.
func (c *wsClient) send(parts ...[]byte) {
	c.t.Helper()
	var msg []byte
	for _, p := range parts {
		msg = append(msg, p...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next reads the next packet, failing the test after five seconds.
func (c *wsClient) next() packet.Packet {
	c.t.Helper()
	type res struct {
		p   packet.Packet
		err error
	}
	ch := make(chan res, 1)
	go func() {
		p, _, err := c.r.ReadPacket()
		ch <- res{p, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			c.t.Fatalf("read: %v", r.err)
		}
		return r.p
	case <-time.After(5 * time.Second):
		c.t.Fatalf("no packet within 5s")
		return nil
	}
}

func enc(p packet.Packet) []byte { return packet.Encode(p, packet.V311) }

func connectPacket(id string, keepAlive uint16) []byte {
	return enc(&packet.Connect{ProtocolLevel: packet.V311, ClientID: id, CleanStart: true, KeepAlive: keepAlive})
}

func expectConnack(t testing.TB, c *wsClient) {
	t.Helper()
	ack, ok := c.next().(*packet.Connack)
	if !ok || ack.ReasonCode != 0 {
		t.Fatalf("got %+v, want a successful CONNACK", ack)
	}
}

func TestWebSocketPahoV3(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws"})
	c := mustDialV3(t, "ws://"+b.addr+"/mqtt", "paho-ws", nil)
	c.roundTrip(t, "ws/paho", "hello over WebSocket")

	info, ok := b.srv.Client("paho-ws")
	if !ok {
		t.Fatalf("client paho-ws not listed")
	}
	if host, _, _ := net.SplitHostPort(info.RemoteAddr); host != "127.0.0.1" {
		t.Errorf("RemoteAddr = %q, want 127.0.0.1:port", info.RemoteAddr)
	}
	if info.Listener != "test-ws" {
		t.Errorf("Listener = %q, want test-ws", info.Listener)
	}
	if ci := b.gate.get("paho-ws"); ci == nil || ci.TLS != nil {
		t.Errorf("gate saw %+v, want a client without TLS info", ci)
	}
}

func TestWebSocketFraming(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws"})
	c := newWSClient(t, "ws://"+b.addr+"/mqtt", &websocket.DialOptions{
		Subprotocols: []string{"mqtt"},
		// Not trusted: the broker must see the socket's peer.
		HTTPHeader: http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Real-Ip": {"203.0.113.7"}},
	})
	if got := c.ws.Subprotocol(); got != "mqtt" {
		t.Fatalf("subprotocol = %q, want mqtt", got)
	}

	// One packet over three messages.
	conn := connectPacket("framing", 30)
	c.send(conn[:1])
	c.send(conn[1:7])
	c.send(conn[7:])
	expectConnack(t, c)

	// Three packets in one message.
	c.send(
		enc(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "frames/#", QoS: 0}}}),
		enc(&packet.Publish{Topic: "frames/joined", Payload: []byte("joined")}),
		enc(&packet.Pingreq{}),
	)
	if sa, ok := c.next().(*packet.Suback); !ok || sa.PacketID != 1 {
		t.Fatalf("got %+v, want SUBACK 1", sa)
	}
	gotPub, gotPing := false, false
	for range 2 {
		switch p := c.next().(type) {
		case *packet.Publish:
			if p.Topic != "frames/joined" || string(p.Payload) != "joined" {
				t.Fatalf("got PUBLISH %s %q", p.Topic, p.Payload)
			}
			gotPub = true
		case *packet.Pingresp:
			gotPing = true
		default:
			t.Fatalf("got %T, want PUBLISH and PINGRESP", p)
		}
	}
	if !gotPub || !gotPing {
		t.Fatalf("PUBLISH %v, PINGRESP %v; want both", gotPub, gotPing)
	}

	// A packet split across two messages, the second also carrying the next
	// packet whole.
	pub := enc(&packet.Publish{Topic: "frames/split", Payload: []byte(strings.Repeat("x", 300))})
	c.send(pub[:5])
	c.send(pub[5:], enc(&packet.Publish{Topic: "frames/after", Payload: []byte("after")}))
	for _, want := range []string{"frames/split", "frames/after"} {
		p, ok := c.next().(*packet.Publish)
		if !ok || p.Topic != want {
			t.Fatalf("got %+v, want PUBLISH on %s", p, want)
		}
	}

	info, ok := b.srv.Client("framing")
	if !ok {
		t.Fatal("client framing not listed")
	}
	if host, _, _ := net.SplitHostPort(info.RemoteAddr); host != "127.0.0.1" {
		t.Errorf("RemoteAddr = %q, want the socket's peer 127.0.0.1, not X-Forwarded-For", info.RemoteAddr)
	}
}

func TestWebSocketSubprotocols(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws"})
	url := "ws://" + b.addr + "/mqtt"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, tc := range []struct {
		offered []string
		want    string
	}{
		{[]string{"mqtt"}, "mqtt"},
		{[]string{"mqttv3.1"}, "mqttv3.1"},
		{[]string{"wamp", "mqtt"}, "mqtt"},
		{nil, ""}, // no subprotocol offered: accepted
	} {
		ws, _, err := dialWS(ctx, url, &websocket.DialOptions{Subprotocols: tc.offered})
		if err != nil {
			t.Fatalf("offering %q: %v", tc.offered, err)
		}
		if got := ws.Subprotocol(); got != tc.want {
			t.Errorf("offering %q: selected %q, want %q", tc.offered, got, tc.want)
		}
		ws.CloseNow()
	}

	_, resp, err := dialWS(ctx, url, &websocket.DialOptions{Subprotocols: []string{"wamp", "graphql-ws"}})
	if err == nil {
		t.Fatalf("offering only foreign subprotocols: accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("offering only foreign subprotocols: response %v, want 400", resp)
	}
	if got := rejected(b.ln, listener.ReasonWSSubprotocol); got != 1 {
		t.Errorf("rejected[%s] = %d, want 1", listener.ReasonWSSubprotocol, got)
	}
}

func TestWebSocketOrigins(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws", AllowedOrigins: []string{"https://app.example.com", "*.trusted.example"}})
	url := "ws://" + b.addr + "/mqtt"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(origin string) (*http.Response, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ws, resp, err := dialWS(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPHeader: h})
		if err == nil {
			ws.CloseNow()
		}
		return resp, err
	}
	for _, ok := range []string{"https://app.example.com", "http://x.trusted.example", ""} {
		if _, err := dial(ok); err != nil {
			t.Errorf("Origin %q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"https://evil.example.com", "http://app.example.com"} {
		resp, err := dial(bad)
		if err == nil {
			t.Errorf("Origin %q accepted", bad)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %q: response %v, want 403", bad, resp)
		}
	}
	if got := rejected(b.ln, listener.ReasonWSOrigin); got != 2 {
		t.Errorf("rejected[%s] = %d, want 2", listener.ReasonWSOrigin, got)
	}

	// Without allowed_origins, any origin is accepted.
	open := startBroker(t, conf.Listener{Type: "ws"})
	h := http.Header{"Origin": {"https://anywhere.example"}}
	ws, _, err := dialWS(ctx, "ws://"+open.addr+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPHeader: h})
	if err != nil {
		t.Fatalf("any origin on a listener without allowed_origins: %v", err)
	}
	ws.CloseNow()
}

func TestWebSocketRefusesOtherRequests(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws", Path: "/ws/mqtt"})
	get := func(path string) int {
		resp, err := http.Get("http://" + b.addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/mqtt"); got != http.StatusNotFound {
		t.Errorf("GET /mqtt: %d, want 404", got)
	}
	if got := get("/ws/mqtt"); got != http.StatusUpgradeRequired {
		t.Errorf("GET /ws/mqtt without upgrade: %d, want 426", got)
	}
	if got := rejected(b.ln, listener.ReasonWSHandshake); got != 1 {
		t.Errorf("rejected[%s] = %d, want 1", listener.ReasonWSHandshake, got)
	}
}

func TestWebSocketTextMessageCloses(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws"})
	c := newWSClient(t, "ws://"+b.addr+"/mqtt", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, connectPacket("text", 30)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ws.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusUnsupportedData {
		t.Fatalf("read after a text message: %v (status %d), want close 1003 [MQTT-6.0.0-1]", err, got)
	}
	if _, ok := b.srv.Client("text"); ok {
		t.Errorf("a client that sent a text message is connected")
	}
}

func TestWebSocketKeepAlive(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws"})
	c := newWSClient(t, "ws://"+b.addr+"/mqtt", nil)
	c.send(connectPacket("keepalive", 1))
	expectConnack(t, c)
	c.send(enc(&packet.Pingreq{}))
	if _, ok := c.next().(*packet.Pingresp); !ok {
		t.Fatalf("no PINGRESP")
	}
	// Then silence: the broker closes the connection after 1.5 x keep alive.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := c.ws.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("connection still open after %v", time.Since(start))
			}
			break
		}
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("closed after %v, before the keep alive ran out", d)
	}
	eventually(t, "the client to be gone", func() bool {
		_, ok := b.srv.Client("keepalive")
		return !ok
	})
}

func TestTakeOverBetweenTCPAndWebSocket(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws"})
	tcp, err := listener.Listen(conf.Listener{Name: "test-tcp", Type: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Serve(tcp, core.ListenerOptions{Name: tcp.Name(), AllowAnonymous: true}); err != nil {
		t.Fatal(err)
	}
	tcpURL, wsURL := "tcp://"+tcp.Addr().String(), "ws://"+b.addr+"/mqtt"
	lost := func(c *v3, what string) {
		t.Helper()
		select {
		case <-c.lost:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s was not disconnected by the take-over", what)
		}
	}

	first := mustDialV3(t, tcpURL, "same-id", nil)
	first.roundTrip(t, "takeover/1", "tcp")
	second := mustDialV3(t, wsURL, "same-id", nil)
	lost(first, "the TCP connection")
	second.roundTrip(t, "takeover/2", "ws")
	if info, _ := b.srv.Client("same-id"); info.Listener != "test-ws" {
		t.Errorf("same-id is on listener %q, want test-ws", info.Listener)
	}
	third := mustDialV3(t, tcpURL, "same-id", nil)
	lost(second, "the WebSocket connection")
	third.roundTrip(t, "takeover/3", "tcp again")
	if info, _ := b.srv.Client("same-id"); info.Listener != "test-tcp" {
		t.Errorf("same-id is on listener %q, want test-tcp", info.Listener)
	}
}

func TestWebSocketSecureMutualTLS(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, conf.Listener{Type: "wss", CertFile: p.certFile, KeyFile: p.keyFile,
		CAFile: p.caPEM, RequireClientCert: true, UsernameFrom: "cn"})
	url := "wss://" + b.addr + "/mqtt"
	alice := p.ca.issue(t, leafOpts{cn: "alice"})

	// paho over wss with a client certificate.
	c := mustDialV3(t, url, "wss-paho", clientTLS(p.ca.pool(), alice.tls))
	c.roundTrip(t, "wss/paho", "hello over wss")
	if ci := b.gate.get("wss-paho"); ci == nil || ci.TLS == nil || !ci.TLS.Verified || ci.Username != "alice" {
		t.Fatalf("gate saw %+v, want a verified certificate and username alice", ci)
	}

	// A raw client: the connection exposes the TLS state to the core.
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(p.ca.pool(), alice.tls)}}
	raw := newWSClient(t, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: httpc})
	raw.send(connectPacket("wss-raw", 30))
	expectConnack(t, raw)
	if ci := b.gate.get("wss-raw"); ci == nil || ci.TLS == nil || ci.TLS.CN != "alice" {
		t.Fatalf("gate saw %+v, want TLS info with CN alice", ci)
	}

	// Without a client certificate: refused and counted.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nocert := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(p.ca.pool())}}
	if ws, _, err := dialWS(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: nocert}); err == nil {
		ws.CloseNow()
		t.Fatalf("a wss client without a certificate connected")
	}
	eventually(t, "the refused handshake to be counted", func() bool {
		return rejected(b.ln, listener.ReasonTLSHandshake) >= 1
	})
}

func TestListenerCloseKeepsConnectionsAndMetrics(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws"})
	c := mustDialV3(t, "ws://"+b.addr+"/mqtt", "stays", nil)

	reg := prometheus.NewRegistry()
	if err := reg.Register(b.ln); err != nil {
		t.Fatalf("register: %v", err)
	}
	other, err := listener.Listen(conf.Listener{Name: "other", Type: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := reg.Register(other); err != nil {
		t.Fatalf("register a second listener: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "tide_listener_accepted_connections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "listener" && lp.GetValue() == "test-ws" {
					found = true
					if got := m.GetCounter().GetValue(); got != 1 {
						t.Errorf("accepted for test-ws = %v, want 1", got)
					}
				}
			}
		}
	}
	if !found {
		t.Errorf("no tide_listener_accepted_connections_total{listener=\"test-ws\"} in %d families", len(mfs))
	}

	if err := b.ln.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ws, _, err := dialWS(ctx, "ws://"+b.addr+"/mqtt", nil); err == nil {
		ws.CloseNow()
		t.Errorf("dial after Close succeeded")
	}
	c.roundTrip(t, "close/stays", "still connected")
}

func TestWebSocketKickDeliversDisconnect(t *testing.T) {
	b := startBroker(t, conf.Listener{Type: "ws"})
	tcp, err := listener.Listen(conf.Listener{Name: "test-tcp", Type: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Serve(tcp, core.ListenerOptions{Name: tcp.Name(), AllowAnonymous: true}); err != nil {
		t.Fatal(err)
	}
	connect5 := packet.Encode(&packet.Connect{ProtocolLevel: packet.V5, ClientID: "kicked", CleanStart: true, KeepAlive: 60}, packet.V5)

	old := newWSClient(t, "ws://"+b.addr+"/mqtt", nil)
	old.r.Version = packet.V5
	old.send(connect5)
	expectConnack(t, old)

	// The same client id over TCP takes the session over: the WebSocket
	// client gets DISCONNECT 0x8E, then the close frame (read as EOF).
	start := time.Now()
	conn, err := net.DialTimeout("tcp", tcp.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(connect5); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	nr := packet.NewReader(conn)
	nr.Version = packet.V5
	if p, _, err := nr.ReadPacket(); err != nil {
		t.Fatalf("new connection: %v", err)
	} else if ack, ok := p.(*packet.Connack); !ok || ack.ReasonCode != 0 {
		t.Fatalf("new connection got %+v, want a successful CONNACK", p)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("take-over took %v", d)
	}
	if d, ok := old.next().(*packet.Disconnect); !ok || d.ReasonCode != 0x8E {
		t.Fatalf("old connection got %+v, want DISCONNECT 0x8E session taken over", d)
	}
	if _, _, err := old.r.ReadPacket(); err != io.EOF {
		t.Errorf("after DISCONNECT: %v, want EOF (a normal close frame)", err)
	}
}
