// Package listener opens the network endpoints of Tide's [[listener]]s:
// plain TCP, TLS (optionally verifying client certificates), MQTT over
// WebSocket (ws) and over WebSocket on TLS (wss).
//
// A *Listener is a net.Listener: the broker serves it like any other
// (core.Server.Serve), and every connection it returns carries what the core
// looks for. A TLS connection (tls, and wss through the WebSocket wrapper)
// has ConnectionState, from which the core takes the client certificate's
// common name or SAN (username_from); a plain tls connection also has
// CloseWrite, so the core can half-close it. RemoteAddr is always the
// socket's peer: X-Forwarded-For and similar headers are not trusted.
//
// Certificates are re-read by Reload (SIGHUP) without dropping a connection:
// each handshake takes the configuration current at that moment from an
// atomically swapped value, and a reload that fails keeps the previous one.
//
// What the listener refuses (TLS handshakes that fail, WebSocket handshakes
// with a foreign Origin, a wrong subprotocol or no upgrade) is counted by
// reason (Stats, SysValues, and the Prometheus figures of Collect) and
// logged at most once per reason every ten seconds.
//
// Wiring in cmd/tide, for each configured listener lc:
//
//	ln, err := listener.Listen(lc, listener.WithLogger(log))
//	srv.Serve(ln, core.ListenerOptions{Name: ln.Name(), AllowAnonymous: lc.AllowAnonymous,
//		MaxConnections: lc.MaxConnections, UsernameFrom: lc.UsernameFrom})
//	srv.AddSysSource(ln.SysValues)
//	admin.Register(ln)       // Prometheus figures
//	// on SIGHUP: ln.Reload() (a no-op for tcp and ws)
//
// and `tide check` calls listener.Check(lc) for each listener.
package listener

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/ratelog"
)

// The listener types of conf.Listener.Type.
const (
	TypeTCP = "tcp"
	TypeTLS = "tls"
	TypeWS  = "ws"
	TypeWSS = "wss"
)

// The reasons a connection is refused before it reaches the broker, as
// counted in Stats.Rejected and labelled in the metrics.
const (
	// ReasonTLSHandshake: the TLS handshake failed (no or a bad client
	// certificate, a client that does not trust the server, a protocol
	// version below min_version, a connection closed mid-handshake).
	ReasonTLSHandshake = "tls_handshake"
	// ReasonWSOrigin: the browser's Origin is not in allowed_origins.
	ReasonWSOrigin = "ws_origin"
	// ReasonWSSubprotocol: the client offered WebSocket subprotocols, none
	// of them MQTT's.
	ReasonWSSubprotocol = "ws_subprotocol"
	// ReasonWSHandshake: a request on the WebSocket path that is not a valid
	// WebSocket upgrade.
	ReasonWSHandshake = "ws_handshake"
)

var reasons = []string{ReasonTLSHandshake, ReasonWSOrigin, ReasonWSSubprotocol, ReasonWSHandshake}

// Option adjusts Listen.
type Option func(*options)

type options struct {
	log *slog.Logger
}

// WithLogger sets the logger (default: slog.Default()); the listener adds
// component=listener and its name.
func WithLogger(log *slog.Logger) Option {
	return func(o *options) {
		if log != nil {
			o.log = log
		}
	}
}

// Listener is one open [[listener]]: a net.Listener of MQTT connections.
// Its methods are safe for concurrent use.
type Listener struct {
	cfg conf.Listener
	log *slog.Logger

	tcp net.Listener // the socket; for ws and wss, served by the HTTP server
	tls *tlsState    // nil for tcp and ws
	ws  *wsServer    // nil for tcp and tls

	accepted atomic.Uint64
	rejected map[string]*atomic.Uint64
	reloads  [2]atomic.Uint64 // ok, failed
	limiter  ratelog.Limiter  // log lines, keyed by reason

	closeOnce sync.Once
	descOnce  sync.Once
	desc      listenerDescs
}

// Listen opens the listener lc describes and returns it ready to be served.
// Every problem of the configuration (see Check) is returned before
// anything listens.
func Listen(lc conf.Listener, opts ...Option) (*Listener, error) {
	o := options{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	name := lc.Name
	if name == "" {
		name = lc.Type + ":" + lc.Address
		lc.Name = name
	}
	l := &Listener{
		cfg:      lc,
		log:      o.log.With("component", "listener", "listener", name),
		rejected: map[string]*atomic.Uint64{},
	}
	for _, r := range reasons {
		l.rejected[r] = new(atomic.Uint64)
	}
	if err := checkStatic(lc); err != nil {
		return nil, err
	}
	if isTLS(lc.Type) {
		st, err := loadTLS(lc)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", name, err)
		}
		l.tls = newTLSState(st)
		l.warnExpiry(st)
	}
	tcp, err := net.Listen("tcp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", name, err)
	}
	l.tcp = tcp
	if isWS(lc.Type) {
		l.ws = newWSServer(l)
		l.ws.start()
	}
	return l, nil
}

// Check validates lc as Listen would, without listening: the type, the
// address, the WebSocket path and origin patterns, and for tls and wss that
// the certificate and key files can be read and belong together and that
// the CA file holds certificates. Errors name the file at fault. It also
// refuses a certificate that has expired or is not valid yet, which Listen
// accepts with a warning so that a broker still starts. Every problem found
// is returned, joined.
func Check(lc conf.Listener) error {
	if lc.Name == "" {
		lc.Name = lc.Type + ":" + lc.Address
	}
	if err := checkStatic(lc); err != nil {
		return err
	}
	if !isTLS(lc.Type) {
		return nil
	}
	st, err := loadTLS(lc)
	if err != nil {
		return fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	now := time.Now()
	if leaf := st.leaf; leaf != nil {
		if now.After(leaf.NotAfter) {
			return fmt.Errorf("listener %s: cert_file %q: certificate expired on %s", lc.Name, lc.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if now.Before(leaf.NotBefore) {
			return fmt.Errorf("listener %s: cert_file %q: certificate is not valid before %s", lc.Name, lc.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// checkStatic validates what needs no file: everything but the TLS files.
func checkStatic(lc conf.Listener) error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("listener %s: "+format, append([]any{lc.Name}, args...)...))
	}
	switch lc.Type {
	case TypeTCP, TypeTLS, TypeWS, TypeWSS:
	default:
		add("type %q: must be tcp, tls, ws or wss", lc.Type)
	}
	if lc.Address == "" {
		add("address is empty")
	} else if _, port, err := net.SplitHostPort(lc.Address); err != nil {
		add("address %q: %v", lc.Address, err)
	} else if port == "" {
		add("address %q: no port", lc.Address)
	}
	if lc.MaxConnections < 0 {
		add("max_connections %d: must be 0 (unlimited) or more", lc.MaxConnections)
	}
	if isTLS(lc.Type) {
		if lc.CertFile == "" {
			add("cert_file is required for a %s listener", lc.Type)
		}
		if lc.KeyFile == "" {
			add("key_file is required for a %s listener", lc.Type)
		}
		if _, ok := tlsVersions[lc.MinVersion]; !ok {
			add("min_version %q: must be \"1.2\" or \"1.3\"", lc.MinVersion)
		}
		switch lc.UsernameFrom {
		case "":
		case "cn", "san":
			if lc.CAFile == "" {
				add("username_from %q needs ca_file: a client certificate is only read once verified against it", lc.UsernameFrom)
			}
		default:
			add("username_from %q: must be \"\", \"cn\" or \"san\"", lc.UsernameFrom)
		}
		if lc.RequireClientCert && lc.CAFile == "" {
			add("require_client_cert needs ca_file, the CA that signs client certificates")
		}
	}
	if isWS(lc.Type) {
		if !strings.HasPrefix(lc.Path, "/") {
			add("path %q: must start with /", lc.Path)
		}
		for _, o := range lc.AllowedOrigins {
			if err := checkOrigin(o); err != nil {
				add("allowed_origins %q: %v", o, err)
			}
		}
	}
	return errors.Join(errs...)
}

func isTLS(typ string) bool { return typ == TypeTLS || typ == TypeWSS }
func isWS(typ string) bool  { return typ == TypeWS || typ == TypeWSS }

// Name returns the listener's name (conf's default "<type>:<address>").
func (l *Listener) Name() string { return l.cfg.Name }

// Type returns tcp, tls, ws or wss.
func (l *Listener) Type() string { return l.cfg.Type }

// Config returns the configuration the listener was opened with.
func (l *Listener) Config() conf.Listener { return l.cfg }

// Addr returns the address listened on (the actual port when the
// configuration asked for port 0).
func (l *Listener) Addr() net.Addr { return l.tcp.Addr() }

// Accept waits for the next MQTT connection. After Close it returns an
// error that matches net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	switch {
	case l.ws != nil:
		c, err := l.ws.accept()
		if err == nil {
			l.accepted.Add(1)
		}
		return c, err
	case l.tls != nil:
		c, err := l.tcp.Accept()
		if err != nil {
			return nil, err
		}
		l.accepted.Add(1)
		return l.tls.server(c, l), nil
	default:
		c, err := l.tcp.Accept()
		if err == nil {
			l.accepted.Add(1)
		}
		return c, err
	}
}

// Close stops listening. Connections already accepted stay open: the broker
// closes them (core.Server.Shutdown tells MQTT 5 clients why first).
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		if l.ws != nil {
			err = l.ws.close()
			return
		}
		err = l.tcp.Close()
	})
	return err
}

// Reload re-reads the certificate, key and CA files of a tls or wss
// listener. New handshakes use them; established connections are not
// touched. If a file cannot be read or the key does not match, the previous
// certificate stays in use and the error is returned (and logged). It does
// nothing for tcp and ws listeners. The file names are those given to
// Listen: changing them, or any other key, needs a restart.
func (l *Listener) Reload() error {
	if l.tls == nil {
		return nil
	}
	st, err := loadTLS(l.cfg)
	if err != nil {
		l.reloads[1].Add(1)
		err = fmt.Errorf("listener %s: reload: %w (keeping the previous certificate)", l.cfg.Name, err)
		l.log.Error("TLS reload failed", "err", err)
		return err
	}
	l.tls.cur.Store(st)
	l.reloads[0].Add(1)
	l.log.Info("TLS certificate reloaded", "subject", st.leaf.Subject.String(), "not_after", st.leaf.NotAfter)
	l.warnExpiry(st)
	return nil
}

func (l *Listener) warnExpiry(st *tlsConfig) {
	now := time.Now()
	switch leaf := st.leaf; {
	case now.After(leaf.NotAfter):
		l.log.Warn("TLS certificate has expired: clients that verify it will refuse to connect", "cert_file", l.cfg.CertFile, "not_after", leaf.NotAfter)
	case now.Before(leaf.NotBefore):
		l.log.Warn("TLS certificate is not valid yet: clients that verify it will refuse to connect", "cert_file", l.cfg.CertFile, "not_before", leaf.NotBefore)
	}
}

// Stats are a listener's counters since Listen.
type Stats struct {
	// Accepted counts the connections handed to the broker.
	Accepted uint64
	// Rejected counts the connections refused before reaching the broker,
	// by reason (the Reason constants; every reason is present).
	Rejected map[string]uint64
	// Reloads and ReloadFailures count Reload calls of a TLS listener.
	Reloads, ReloadFailures uint64
	// CertNotAfter is the expiry of the certificate in use (TLS only).
	CertNotAfter time.Time
}

// Stats returns a snapshot of the counters.
func (l *Listener) Stats() Stats {
	st := Stats{
		Accepted:       l.accepted.Load(),
		Rejected:       make(map[string]uint64, len(l.rejected)),
		Reloads:        l.reloads[0].Load(),
		ReloadFailures: l.reloads[1].Load(),
	}
	for r, n := range l.rejected {
		st.Rejected[r] = n.Load()
	}
	if l.tls != nil {
		st.CertNotAfter = l.tls.cur.Load().leaf.NotAfter
	}
	return st
}

// SysValues adds the listener's counters to $SYS, below
// $SYS/broker/listeners/<name>/; it has the signature of core.SysSource.
func (l *Listener) SysValues(emit func(topic, value string)) {
	st := l.Stats()
	p := "listeners/" + sysName(l.cfg.Name) + "/"
	emit(p+"accepted", fmt.Sprint(st.Accepted))
	for r, n := range st.Rejected {
		if !isTLS(l.cfg.Type) && r == ReasonTLSHandshake || !isWS(l.cfg.Type) && r != ReasonTLSHandshake {
			continue
		}
		emit(p+"rejected/"+r, fmt.Sprint(n))
	}
}

// sysName makes a listener name usable as one topic level.
func sysName(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/', '+', '#':
			return '_'
		}
		return r
	}, s)
}

// reject counts a refused connection and logs it, rate-limited.
func (l *Listener) reject(reason, remote string, err error) {
	l.rejected[reason].Add(1)
	if ok, suppressed := l.limiter.Allow(reason); ok {
		l.log.Warn("connection refused", "reason", reason, "remote", remote, "err", err, "refused_since_last_log", suppressed+1)
	}
}
