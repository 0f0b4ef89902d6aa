// Package admin is Tide's admin HTTP server: health, Prometheus metrics and
// a JSON API over the broker (clients, retained messages, publish, reload,
// jobs).
//
// It is off while Options.Address is empty. Every path but /healthz needs
// the bearer token and/or the basic-auth user of the options when any is
// set; credentials are compared in constant time. Browsers' cross-origin
// unsafe requests are refused (net/http's CrossOriginProtection), so a
// page cannot drive the API with a user's cached credentials or from the
// loopback interface.
//
// Endpoints (errors are always JSON {"error": "..."}: 400 bad input, 401
// no or wrong credentials, 404 unknown, 405 wrong method, 501 a hook the
// program did not set):
//
//	GET    /healthz                   {"status":"ok"}, without credentials
//	GET    /metrics                   Prometheus text format
//	GET    /api/clients               connected clients
//	GET    /api/clients/{id}          one client (the id path-escaped)
//	DELETE /api/clients/{id}          disconnect it (?reason=...); its will is published
//	GET    /api/retained?filter=#&limit=100
//	DELETE /api/retained/{topic}      the topic path-escaped (a%2Fb or a/b)
//	POST   /api/publish               {"topic","payload"|"payload_base64","qos","retain"} -> {"delivered":n}
//	POST   /api/reload                calls the hook of SetReload
//	GET    /api/jobs                  the value of the hook of SetJobs
//
// The package does not import core: Broker is met by an adapter over
// *core.Server in cmd/tide (adapter_test.go in this package is one to copy).
// Wiring:
//
//	a := admin.New(adminBroker{srv}, admin.Options(cfg.Admin), log)
//	a.SetReload(reloadFunc)                       // the same as SIGHUP
//	a.SetJobs(func() any { return sched.Jobs() }) // when the scheduler exists
//	a.Register(ln)                                // each *listener.Listener; sinks, plugins...
//	if err := a.ListenAndServe(); err != nil { ... }
//	defer a.Shutdown(ctx)
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/ratelog"
)

// Options configures the admin server; its fields are those of conf.Admin,
// so admin.Options(cfg.Admin) converts.
type Options struct {
	// Address is host:port to listen on; empty turns the server off.
	Address string
	// Token, when set, is accepted as "Authorization: Bearer <token>".
	Token string
	// Username and Password, when set, are accepted as basic auth.
	Username string
	Password string
}

// Broker is what the admin server needs of the broker. *core.Server has
// these methods with core's types; cmd/tide adapts it (see the package doc).
type Broker interface {
	Clients() []ClientInfo
	Client(id string) (ClientInfo, bool)
	// DisconnectClient closes a client's connection as an administrative
	// action and reports whether it was connected.
	DisconnectClient(id, reason string) bool
	// RetainedMatch returns up to limit retained messages matching filter,
	// sorted by topic.
	RetainedMatch(filter string, limit int) []Message
	DeleteRetained(topic string) bool
	// Publish routes a message from the broker itself and returns the
	// number of subscribers it was delivered to.
	Publish(m Message) (int, error)
	Stats() Stats
}

// BusSource is an optional capability of a Broker: with it, /metrics has the
// event bus's per-subscriber queue figures.
type BusSource interface {
	Bus() *event.Bus
}

// ClientInfo describes a connected client (core.ClientInfo).
type ClientInfo = event.ClientInfo

// Message is an application message (core.Message, the fields used here).
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Received is when the broker received it; zero when unknown.
	Received time.Time
}

// Stats are the broker's counters and gauges (core.StatsView).
type Stats struct {
	Uptime           time.Duration
	ClientsConnected int64
	Sessions         int64 // connected or not
	ConnectsTotal    uint64
	Refused          uint64 // connections refused (max_connections, CONNACK failures)
	BytesReceived    uint64
	BytesSent        uint64
	PublishReceived  [3]uint64 // PUBLISH packets from clients, by QoS
	PublishSent      [3]uint64 // PUBLISH packets to clients, by QoS
	Retained         int
	Subscriptions    int
	// Messages dropped, by reason.
	DroppedQoS0Full    uint64
	DroppedQueueFull   uint64
	DroppedTooLarge    uint64
	DroppedExpired     uint64
	DroppedOfflineQoS0 uint64
	Denied             uint64
	// NoSubscribers counts messages accepted that matched no subscriber:
	// not a loss, but worth seeing.
	NoSubscribers uint64
}

// Admin is the admin HTTP server. Create it with New; it is safe for
// concurrent use.
type Admin struct {
	b    Broker
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry
	h    http.Handler

	reload atomic.Pointer[func() error]
	jobs   atomic.Pointer[func() any]
	backup atomic.Pointer[func(io.Writer) (int64, error)]

	authFailures prometheus.Counter
	limiter      ratelog.Limiter

	mu      sync.Mutex
	srv     *http.Server
	ln      net.Listener
	stopped bool
}

// New returns the admin server of b. A nil log discards. It listens only
// once ListenAndServe or Serve is called.
func New(b Broker, opts Options, log *slog.Logger) *Admin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Admin{
		b:    b,
		opts: opts,
		log:  log.With("component", "admin"),
		reg:  prometheus.NewRegistry(),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tide_admin_auth_failures_total",
			Help: "Admin API requests refused for missing or wrong credentials.",
		}),
	}
	a.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBrokerCollector(b),
		a.authFailures,
	)
	a.h = a.handler()
	return a
}

// Registry returns the Prometheus registry /metrics serves.
func (a *Admin) Registry() *prometheus.Registry { return a.reg }

// Register adds a collector to /metrics: sinks, plugins, jobs and listeners
// add their figures this way. Names should follow Prometheus conventions
// with the tide_ prefix.
func (a *Admin) Register(c prometheus.Collector) error { return a.reg.Register(c) }

// SetReload sets what POST /api/reload calls (the same as SIGHUP); until
// it is set, the endpoint answers 501.
func (a *Admin) SetReload(f func() error) {
	if f == nil {
		a.reload.Store(nil)
		return
	}
	a.reload.Store(&f)
}

// SetJobs sets what GET /api/jobs returns, encoded as JSON; until it is
// set, the endpoint answers 501.
func (a *Admin) SetJobs(f func() any) {
	if f == nil {
		a.jobs.Store(nil)
		return
	}
	a.jobs.Store(&f)
}

// SetBackup sets what GET /api/backup streams: a consistent copy of the
// persistent store; until it is set, the endpoint answers 501.
func (a *Admin) SetBackup(f func(io.Writer) (int64, error)) {
	if f == nil {
		a.backup.Store(nil)
		return
	}
	a.backup.Store(&f)
}

// Handler returns the admin server's HTTP handler, credentials checked, for
// a program that serves it itself.
func (a *Admin) Handler() http.Handler { return a.h }

// Enabled reports whether Options.Address is set.
func (a *Admin) Enabled() bool { return a.opts.Address != "" }

// ListenAndServe listens on Options.Address and serves in the background;
// the error is the listen error (address in use...). It does nothing when
// the address is empty.
func (a *Admin) ListenAndServe() error {
	if a.opts.Address == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.opts.Address)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if err := a.Serve(ln); err != nil {
		ln.Close()
		return err
	}
	return nil
}

// Serve serves ln in the background until Shutdown. It returns an error
// only if the server is already serving or shut down.
func (a *Admin) Serve(ln net.Listener) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return errors.New("admin: shut down")
	}
	if a.srv != nil {
		return errors.New("admin: already serving")
	}
	a.srv = &http.Server{
		Handler:           a.h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.ln = ln
	if a.opts.Token == "" && a.opts.Username == "" && !isLoopback(ln.Addr()) {
		a.log.Warn("admin API without credentials on a non-loopback address: anyone who reaches it can disconnect clients and publish",
			"address", ln.Addr().String())
	}
	a.log.Info("admin API listening", "address", ln.Addr().String(),
		"token", a.opts.Token != "", "basic_auth", a.opts.Username != "")
	srv := a.srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin API stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the address served, or nil before Serve.
func (a *Admin) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Shutdown stops the server, letting requests in progress finish until ctx
// is done.
func (a *Admin) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	srv := a.srv
	a.stopped = true
	a.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
