// Package core is the MQTT broker: connections, sessions, in-flight state,
// routing and retained messages. It emits events through core/event and
// asks gates there for decisions; it never imports the packages that
// observe it (plugins, datastore, scheduler).
package core

import (
	"context"
	"errors"
	"fmt"
	"github.com/tidemq/tide/core/acl"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/persist"
	"github.com/tidemq/tide/core/ratelog"
	"github.com/tidemq/tide/core/topic"
)

// Server is an MQTT broker. Create it with New, attach listeners with Serve,
// stop it with Shutdown.
type Server struct {
	opts Options
	log  *slog.Logger
	bus  *event.Bus

	gates       atomic.Pointer[gateSet]
	authDefault atomic.Pointer[StaticUsers]
	aclFile     atomic.Pointer[acl.File]

	subs     *topic.Trie
	retained *topic.Retained[*Message]

	// mu serialises changes to the session table (connect, take-over,
	// expiry); lookups on the publish path go through sessions without it.
	mu       sync.Mutex
	sessions sync.Map // client id -> *session
	nSess    atomic.Int64

	clientsMu sync.Mutex
	clients   map[*client]struct{}

	stats   Stats
	load    loadMeter // light or heavy, for direct writes
	started time.Time

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closing   atomic.Bool
	lnMu      sync.Mutex
	lns       []*listenerState
	idSeq     atomic.Uint64
	routePool sync.Pool
	drops     ratelog.Limiter // "message dropped" lines, keyed by reason

	sysMu      sync.Mutex
	sysSources []SysSource

	// journal writes durable state (nil: persistence disabled); see Restore.
	journal    *persist.Journal
	syncAlways bool

	backpressure Backpressure
}

// Backpressure is asked before a QoS 1/2 publish is acknowledged, so that
// publishers slow down to what saturated stores (datastore sinks) take
// rather than records being dropped. WaitUnsaturated is called only when
// Saturated is true, with a bounded context; the publish is acknowledged
// when it returns, whatever it returns.
type Backpressure interface {
	Saturated(topic string) bool
	WaitUnsaturated(ctx context.Context, topic string) error
}

// SetBackpressure installs b. Call before Serve.
func (s *Server) SetBackpressure(b Backpressure) { s.backpressure = b }

type listenerState struct {
	opts  ListenerOptions
	ln    net.Listener
	conns atomic.Int64
}

// New returns a broker with the given options. A nil logger discards.
func New(opts Options, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts.withDefaults(),
		log:      log,
		bus:      event.NewBus(log),
		subs:     topic.NewTrie(),
		retained: topic.NewRetained[*Message](),
		clients:  map[*client]struct{}{},
		started:  time.Now(),
		ctx:      ctx,
		cancel:   cancel,
	}
	s.routePool.New = func() any { return &router{} }
	s.gates.Store(&gateSet{})
	if s.opts.SysInterval > 0 {
		s.goFunc(s.sysLoop)
	}
	s.goFunc(s.expiryLoop)
	return s
}

// Bus returns the event bus observers subscribe to.
func (s *Server) Bus() *event.Bus { return s.bus }

// Options returns the effective options.
func (s *Server) Options() Options { return s.opts }

// gateSet holds the decision hooks; nil ones cost nothing.
type gateSet struct {
	connect   event.ConnectGate
	subscribe event.SubscribeGate
	publish   event.PublishGate
}

// SetGates installs the decision hooks. Any may be nil (all nil removes
// them). It may be called while serving (a reload that adds or removes
// plugins): later decisions use the new set.
func (s *Server) SetGates(c event.ConnectGate, sub event.SubscribeGate, pub event.PublishGate) {
	s.gates.Store(&gateSet{connect: c, subscribe: sub, publish: pub})
}

// SetUsers installs the built-in user table consulted when no connect gate
// answers; nil removes it. It may be called while serving (a reload): later
// connections use the new table, and connected clients that the old one
// accepted with credentials the new one no longer holds are disconnected.
func (s *Server) SetUsers(u *StaticUsers) {
	s.authDefault.Store(u)
	s.revoke(u)
}

// goFunc starts a goroutine tracked for Shutdown, or refuses once closing.
func (s *Server) goFunc(f func()) bool {
	if s.closing.Load() {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Serve accepts connections from ln in a new goroutine until ln is closed or
// the server shuts down. It returns immediately.
func (s *Server) Serve(ln net.Listener, opts ListenerOptions) error {
	if opts.Name == "" {
		opts.Name = ln.Addr().Network() + ":" + ln.Addr().String()
	}
	st := &listenerState{opts: opts, ln: ln}
	s.lnMu.Lock()
	if s.closing.Load() {
		s.lnMu.Unlock()
		return errors.New("server is shutting down")
	}
	s.lns = append(s.lns, st)
	s.lnMu.Unlock()
	s.goFunc(func() { s.acceptLoop(st) })
	return nil
}

// ListenTCP opens a TCP listener on address and serves it.
func (s *Server) ListenTCP(address string, opts ListenerOptions) (net.Addr, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	if err := s.Serve(ln, opts); err != nil {
		ln.Close()
		return nil, err
	}
	return ln.Addr(), nil
}

func (s *Server) acceptLoop(st *listenerState) {
	var delay time.Duration
	for {
		conn, err := st.ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE...): back off as net/http does.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.log.Warn("accept failed", "listener", st.opts.Name, "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if max := st.opts.MaxConnections; max > 0 && st.conns.Load() >= int64(max) {
			s.stats.Refused.Add(1)
			s.log.Warn("connection refused: listener at max_connections", "listener", st.opts.Name, "remote", conn.RemoteAddr().String(), "max", max)
			conn.Close()
			continue
		}
		st.conns.Add(1)
		c := newClient(s, conn, st)
		if !s.goFunc(c.serve) {
			conn.Close()
			st.conns.Add(-1)
			return
		}
	}
}

// Shutdown stops accepting, tells v5 clients the server is shutting down
// (DISCONNECT 0x8B), closes every connection, and waits for the broker's
// goroutines until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.lnMu.Lock()
	already := s.closing.Swap(true)
	lns := s.lns
	s.lnMu.Unlock()
	if already {
		return nil
	}
	for _, st := range lns {
		st.ln.Close()
	}
	s.clientsMu.Lock()
	cl := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		cl = append(cl, c)
	}
	s.clientsMu.Unlock()
	for _, c := range cl {
		c.kick(0x8B, "server shutting down")
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: %w", ctx.Err())
	}
}

// ListenerAddrs returns the addresses being served, in Serve order.
func (s *Server) ListenerAddrs() []net.Addr {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	out := make([]net.Addr, len(s.lns))
	for i, st := range s.lns {
		out[i] = st.ln.Addr()
	}
	return out
}

func (s *Server) addClient(c *client) {
	s.clientsMu.Lock()
	s.clients[c] = struct{}{}
	s.clientsMu.Unlock()
}

func (s *Server) removeClient(c *client) {
	s.clientsMu.Lock()
	delete(s.clients, c)
	s.clientsMu.Unlock()
}

// Stats are the broker's counters, read with atomic loads.
type Stats struct {
	Connected        atomic.Int64
	ConnectsTotal    atomic.Uint64
	Refused          atomic.Uint64
	MessagesReceived atomic.Uint64
	MessagesSent     atomic.Uint64
	BytesReceived    atomic.Uint64
	BytesSent        atomic.Uint64
	PublishReceived  [3]atomic.Uint64 // by QoS
	PublishSent      [3]atomic.Uint64 // by QoS
	// Drops, by reason. Every one is also logged (rate-limited).
	DroppedQoS0Full    atomic.Uint64 // a connected client's QoS 0 queue was full
	DroppedQueueFull   atomic.Uint64 // a session's queue was full
	DroppedTooLarge    atomic.Uint64 // larger than the subscriber's maximum packet size
	DroppedExpired     atomic.Uint64 // message expiry passed while queued
	DroppedOfflineQoS0 atomic.Uint64 // QoS 0 for an offline session (queue_qos0 off)
	DroppedNoRoute     atomic.Uint64 // accepted but matched no subscriber (not a loss)
	Denied             atomic.Uint64 // refused by a gate or the $ rule
}

// StatsView is a snapshot of Stats plus gauges.
type StatsView struct {
	Uptime             time.Duration
	ClientsConnected   int64
	ClientsTotal       int64 // sessions, connected or not
	ConnectsTotal      uint64
	Refused            uint64
	MessagesReceived   uint64
	MessagesSent       uint64
	BytesReceived      uint64
	BytesSent          uint64
	PublishReceived    [3]uint64
	PublishSent        [3]uint64
	Retained           int
	Subscriptions      int
	DroppedQoS0Full    uint64
	DroppedQueueFull   uint64
	DroppedTooLarge    uint64
	DroppedExpired     uint64
	DroppedOfflineQoS0 uint64
	NoSubscribers      uint64
	Denied             uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() StatsView {
	v := StatsView{
		Uptime:             time.Since(s.started),
		ClientsConnected:   s.stats.Connected.Load(),
		ClientsTotal:       s.nSess.Load(),
		ConnectsTotal:      s.stats.ConnectsTotal.Load(),
		Refused:            s.stats.Refused.Load(),
		MessagesReceived:   s.stats.MessagesReceived.Load(),
		MessagesSent:       s.stats.MessagesSent.Load(),
		BytesReceived:      s.stats.BytesReceived.Load(),
		BytesSent:          s.stats.BytesSent.Load(),
		Retained:           s.retained.Len(),
		Subscriptions:      s.subs.Count(),
		DroppedQoS0Full:    s.stats.DroppedQoS0Full.Load(),
		DroppedQueueFull:   s.stats.DroppedQueueFull.Load(),
		DroppedTooLarge:    s.stats.DroppedTooLarge.Load(),
		DroppedExpired:     s.stats.DroppedExpired.Load(),
		DroppedOfflineQoS0: s.stats.DroppedOfflineQoS0.Load(),
		NoSubscribers:      s.stats.DroppedNoRoute.Load(),
		Denied:             s.stats.Denied.Load(),
	}
	for i := range 3 {
		v.PublishReceived[i] = s.stats.PublishReceived[i].Load()
		v.PublishSent[i] = s.stats.PublishSent[i].Load()
	}
	return v
}

// logDrop logs a dropped message, rate-limited: one line per reason every
// ten seconds, with the number of drops since the last line (this one
// included).
func (s *Server) logDrop(reason, clientID, topicName string) {
	if ok, suppressed := s.drops.Allow(reason); ok {
		s.log.Warn("message dropped", "reason", reason, "client", clientID, "topic", topicName, "dropped_since_last_log", suppressed+1)
	}
}
