package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The WebSocket subprotocols accepted. MQTT 3.1.1 and 5.0 (§6) name "mqtt":
// the client must offer it and the server must select it. "mqttv3.1" is
// what MQTT 3.1 clients offered, before the name was standardised.
//
// The decision for other handshakes, following RFC 6455 §4.1-4.2: a client
// that offers only other subprotocols would fail the connection itself when
// the server answers without one, so it is refused at once with 400 and a
// message that says what to offer, and counted. A client that offers no
// subprotocol at all (command-line tools, some embedded stacks) is
// accepted: it breaks no rule of RFC 6455, and what it sends is checked as
// MQTT anyway, from the first packet.
var wsSubprotocols = []string{"mqtt", "mqttv3.1"}

// wsServer is the HTTP server of a ws or wss listener. Upgraded connections
// are handed to Accept through an unbuffered channel, so a broker that stops
// accepting stops the handshakes too, instead of piling up connections.
type wsServer struct {
	l     *Listener
	srv   *http.Server
	conns chan net.Conn
	done  chan struct{}
	opts  websocket.AcceptOptions

	errMu sync.Mutex
	err   error // why Serve stopped, when not Close
}

func newWSServer(l *Listener) *wsServer {
	ws := &wsServer{
		l:     l,
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
		opts: websocket.AcceptOptions{
			Subprotocols: wsSubprotocols,
			// An empty allow-list accepts any origin (the configuration's
			// documented default); the library would otherwise allow only
			// pages served by the same host.
			InsecureSkipVerify: len(l.cfg.AllowedOrigins) == 0,
			OriginPatterns:     l.cfg.AllowedOrigins,
		},
	}
	ws.srv = &http.Server{
		Handler: ws,
		// A handshake is one small request; these bound what a client that
		// never finishes one can hold.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(&httpErrorLog{l: l}, "", 0),
	}
	return ws
}

func (ws *wsServer) start() {
	ln := ws.l.tcp
	if ws.l.tls != nil {
		// The HTTP server sees a *tls.Conn and so fills Request.TLS, from
		// which the MQTT connection gets its ConnectionState.
		ln = tls.NewListener(ln, ws.l.tls.base)
	}
	go func() {
		err := ws.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			return
		}
		ws.l.log.Error("WebSocket listener stopped", "err", err)
		ws.errMu.Lock()
		ws.err = err
		ws.errMu.Unlock()
		ws.stop()
	}()
}

func (ws *wsServer) stop() {
	select {
	case <-ws.done:
	default:
		close(ws.done)
	}
}

func (ws *wsServer) close() error {
	ws.errMu.Lock()
	ws.stop()
	ws.errMu.Unlock()
	// Close, not Shutdown: upgraded connections were hijacked and are not
	// the HTTP server's any more; the handshakes in progress are dropped.
	err := ws.srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (ws *wsServer) accept() (net.Conn, error) {
	select {
	case c := <-ws.conns:
		return c, nil
	case <-ws.done:
		ws.errMu.Lock()
		defer ws.errMu.Unlock()
		if ws.err != nil {
			return nil, fmt.Errorf("listener %s: %v: %w", ws.l.cfg.Name, ws.err, net.ErrClosed)
		}
		return nil, net.ErrClosed
	}
}

// ServeHTTP upgrades requests on the listener's path to MQTT connections.
func (ws *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := ws.l
	if r.URL.Path != l.cfg.Path {
		http.Error(w, "not found: MQTT over WebSocket is served at "+l.cfg.Path, http.StatusNotFound)
		return
	}
	if offered := headerTokens(r.Header, "Sec-WebSocket-Protocol"); len(offered) > 0 && !offersMQTT(offered) {
		l.reject(ReasonWSSubprotocol, r.RemoteAddr, fmt.Errorf("subprotocols offered: %q", offered))
		http.Error(w, `no supported WebSocket subprotocol: offer "mqtt" (MQTT 3.1.1 and 5.0) or "mqttv3.1"`, http.StatusBadRequest)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	c, err := websocket.Accept(sw, r, &ws.opts)
	if err != nil {
		reason := ReasonWSHandshake
		if sw.status == http.StatusForbidden {
			reason = ReasonWSOrigin
		}
		l.reject(reason, r.RemoteAddr, err)
		return
	}
	wc := newWSConn(c, sw.conn)
	var conn net.Conn = wc
	if r.TLS != nil {
		conn = &wssConn{wsConn: wc, state: *r.TLS}
	}
	select {
	case ws.conns <- conn:
	case <-ws.done:
		c.Close(websocket.StatusGoingAway, "listener closed")
	}
}

// wsConn is an MQTT connection over WebSocket. Every Write is one binary
// message; reads return the bytes of binary messages in order whatever
// their framing, so a packet split over messages or several packets in one
// message read the same. A text message closes the connection with 1003
// [MQTT-6.0.0-1].
//
// CloseWrite is WebSocket's half-close: it starts the closing handshake,
// sending the close frame (1000) after what was written, and returns; the
// peer's close frame then ends reading with io.EOF. The core calls it, then
// bounds its last read with a deadline, as for TCP, so the broker's last
// packets (a DISCONNECT with its reason) arrive and a peer that does not
// answer costs at most that deadline. Close waits a little for the
// handshake, then closes the socket under it.
type wsConn struct {
	net.Conn // websocket.NetConn of ws
	ws       *websocket.Conn
	// raw is the socket under the WebSocket (under TLS for wss), closed to
	// end a handshake the peer does not answer.
	raw       net.Conn
	closeOnce sync.Once
	closed    chan struct{} // the closing handshake is over
}

// closeGrace is how long Close waits for the peer's close frame once the
// core has finished reading.
const closeGrace = 500 * time.Millisecond

func newWSConn(ws *websocket.Conn, raw net.Conn) *wsConn {
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	return &wsConn{
		// The connection outlives the HTTP request, whose context ends
		// when the handler returns: it has a context of its own, and ends
		// when the broker closes it.
		Conn:   websocket.NetConn(context.Background(), ws, websocket.MessageBinary),
		ws:     ws,
		raw:    raw,
		closed: make(chan struct{}),
	}
}

// CloseWrite sends the close frame and returns at once.
func (c *wsConn) CloseWrite() error {
	c.closeOnce.Do(func() {
		go func() {
			defer close(c.closed)
			_ = c.ws.Close(websocket.StatusNormalClosure, "")
		}()
	})
	return nil
}

// Close ends the connection: the closing handshake if it is not under way,
// at most closeGrace of waiting for the peer, then the socket.
func (c *wsConn) Close() error {
	_ = c.CloseWrite()
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-c.closed:
	case <-t.C:
		_ = c.raw.Close()
		<-c.closed
	}
	// Stops the net.Conn's deadline timers; the WebSocket is closed already.
	_ = c.Conn.Close()
	return nil
}

// wssConn is a wsConn on TLS; ConnectionState gives the core the client
// certificate, as for a tls listener.
type wssConn struct {
	*wsConn
	state tls.ConnectionState
}

// ConnectionState returns the state of the TLS connection under the WebSocket.
func (c *wssConn) ConnectionState() tls.ConnectionState { return c.state }

// statusWriter records the status of a refused handshake, to tell an
// Origin refusal (403) from the rest.
type statusWriter struct {
	http.ResponseWriter
	status int
	conn   net.Conn // the hijacked socket
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the socket over with the HTTP server's deadlines cleared:
// they bound the handshake, and would otherwise cut the MQTT connection
// after ReadTimeout. The broker sets its own (connect, keep alive).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.conn = c
		err = c.SetDeadline(time.Time{})
	}
	return c, brw, err
}

func offersMQTT(offered []string) bool {
	for _, o := range offered {
		for _, s := range wsSubprotocols {
			if strings.EqualFold(o, s) {
				return true
			}
		}
	}
	return false
}

func headerTokens(h http.Header, key string) []string {
	var out []string
	for _, v := range h[textproto.CanonicalMIMEHeaderKey(key)] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// checkOrigin validates an allowed_origins entry as the WebSocket library
// will use it: a path.Match pattern against the Origin's host, or against
// scheme://host when it contains "://".
func checkOrigin(o string) error {
	if o == "" {
		return errors.New("empty")
	}
	if _, err := path.Match(strings.ToLower(o), ""); err != nil {
		return fmt.Errorf("bad pattern: %w", err)
	}
	if i := strings.Index(o, "://"); i >= 0 && strings.Trim(o[i+3:], "/") != o[i+3:] {
		return errors.New(`must be scheme://host[:port] without a path (as browsers send it)`)
	}
	return nil
}

// httpErrorLog receives the HTTP server's own log lines: failed TLS
// handshakes of wss clients, which are counted, and the rest, which are
// logged (both rate-limited).
type httpErrorLog struct{ l *Listener }

func (e *httpErrorLog) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	if strings.Contains(msg, "TLS handshake error") {
		remote := ""
		if _, rest, ok := strings.Cut(msg, " from "); ok {
			remote, _, _ = strings.Cut(rest, ": ")
		}
		e.l.reject(ReasonTLSHandshake, remote, errors.New(msg))
		return len(p), nil
	}
	if ok, suppressed := e.l.limiter.Allow("http"); ok {
		e.l.log.Warn("WebSocket HTTP server", "msg", msg, "lines_since_last_log", suppressed+1)
	}
	return len(p), nil
}
