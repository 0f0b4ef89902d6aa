// Package conf holds Tide's configuration: the Go types of tide.toml, their
// defaults, loading and validation. Every problem in a file is reported at
// once, each with its file, line and key path (see Errors).
//
// The options specific to a sink type are decoded by the package that
// implements the type, which registers them with RegisterSinkOptions.
package conf

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is Tide's whole configuration.
type Config struct {
	Log         Log         `toml:"log"`
	MQTT        MQTT        `toml:"mqtt"`
	Listeners   []Listener  `toml:"listener"`
	Auth        Auth        `toml:"auth"`
	Persistence Persistence `toml:"persistence"`
	Admin       Admin       `toml:"admin"`
	Plugins     []Plugin    `toml:"plugin"`
	Sinks       []Sink      `toml:"sink"`
	Routes      []Route     `toml:"route"`
	Jobs        []Job       `toml:"job"`
	Aggregates  []Aggregate `toml:"aggregate"`
	Alert       Alert       `toml:"alert"`

	// File is the path the configuration was read from: the name given to
	// Load or Parse, empty for Default.
	File string `toml:"-"`
	// DefaultListener reports that the file has no [[listener]], so that
	// Listeners holds the one Tide adds (tcp on 127.0.0.1:1883, anonymous
	// clients allowed, as Mosquitto 2 does); the broker should log it.
	DefaultListener bool `toml:"-"`

	meta *meta
}

// Log configures the broker's log output.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn or error
	Format string `toml:"format"` // text or json
}

// MQTT holds the protocol limits and features of the broker.
type MQTT struct {
	// SysInterval is how often $SYS topics are published; 0 disables them.
	SysInterval Duration `toml:"sys_interval"`
	// MaxPacketSize is the largest packet accepted, at most 268435455.
	MaxPacketSize Size `toml:"max_packet_size"`
	// MaxKeepAlive caps the client's keep alive: a larger or zero value is
	// replaced, and MQTT 5 clients are told in CONNACK. 0 accepts any value.
	MaxKeepAlive Duration `toml:"max_keepalive"`
	// ReceiveMaximum is the number of inbound QoS 1/2 publishes in flight per
	// client, advertised to MQTT 5 clients.
	ReceiveMaximum int `toml:"receive_maximum"`
	// MaxInflight is the outbound QoS 1/2 window per client, also capped by
	// the client's own receive maximum.
	MaxInflight int `toml:"max_inflight"`
	// MaxQueuedMessages is the number of QoS 1/2 messages queued per session
	// beyond the in-flight window or while offline; 0 is unlimited.
	MaxQueuedMessages int    `toml:"max_queued_messages"`
	QueueFullPolicy   string `toml:"queue_full_policy"` // drop_new or drop_oldest
	// MaxQueuedQoS0 is the number of QoS 0 messages waiting to be written to
	// one connected client.
	MaxQueuedQoS0 int `toml:"max_queued_qos0"`
	// StallTimeout is how long a publisher may wait for room in a connected
	// subscriber's full queue before the message is dropped for it; 0 never waits.
	StallTimeout Duration `toml:"stall_timeout"`
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions.
	QueueQoS0 bool `toml:"queue_qos0"`
	// TopicAliasMaximum is the number of topic aliases a client may use; 0 disables them.
	TopicAliasMaximum int `toml:"topic_alias_maximum"`
	// MaxSessionExpiry caps the session expiry interval clients ask for; 0 is no cap.
	MaxSessionExpiry Duration `toml:"max_session_expiry"`
	// The features below are advertised to MQTT 5 clients; when off, the
	// broker refuses their use by any client.
	RetainAvailable         bool `toml:"retain_available"`
	WildcardSubscriptions   bool `toml:"wildcard_subscriptions"`
	SharedSubscriptions     bool `toml:"shared_subscriptions"`
	SubscriptionIdentifiers bool `toml:"subscription_identifiers"`
	// AllowEmptyClientID accepts clients without a client id, assigning one.
	AllowEmptyClientID bool `toml:"allow_empty_client_id"`
	MaxClientIDLength  int  `toml:"max_client_id_length"` // 23..65535
}

// Listener is one [[listener]]: a network endpoint accepting MQTT clients.
// The TLS keys are valid only for types tls and wss, the WebSocket keys only
// for ws and wss.
type Listener struct {
	Name           string `toml:"name"` // default "<type>:<address>"
	Type           string `toml:"type"` // tcp, tls, ws or wss
	Address        string `toml:"address"`
	AllowAnonymous bool   `toml:"allow_anonymous"`
	MaxConnections int    `toml:"max_connections"` // 0 is unlimited

	// TLS, for tls and wss; omitempty keeps them out of WriteTOML for the
	// other types, where they are an error.
	CertFile          string `toml:"cert_file,omitempty"`
	KeyFile           string `toml:"key_file,omitempty"`
	CAFile            string `toml:"ca_file,omitempty"`
	RequireClientCert bool   `toml:"require_client_cert,omitempty"`
	MinVersion        string `toml:"min_version,omitempty"`   // "1.2" or "1.3"
	UsernameFrom      string `toml:"username_from,omitempty"` // "", "cn" or "san" of the client certificate

	// WebSocket, for ws and wss.
	Path           string   `toml:"path,omitempty"`
	AllowedOrigins []string `toml:"allowed_origins,omitempty"` // empty allows any origin
}

// Auth configures the built-in authenticator.
type Auth struct {
	// PasswordFile is a password file in mosquitto_passwd's format
	// ("user:hash" lines; see core/passwd), read at start and on reload.
	PasswordFile string `toml:"password_file,omitempty"`
	// ACLFile is an ACL file in Mosquitto's format (acl_file; see
	// core/acl), read at start and on reload.
	ACLFile string `toml:"acl_file,omitempty"`
	Users   []User `toml:"user"`
}

// User is one [[auth.user]].
type User struct {
	Username     string `toml:"username"`
	PasswordHash string `toml:"password_hash"` // bcrypt, or mosquitto_passwd's $7$ / $6$
}

// Persistence configures the broker state store (sessions, queues, retained).
type Persistence struct {
	Enabled bool `toml:"enabled"`
	// Dir is relative to the working directory unless absolute.
	Dir          string   `toml:"dir"`
	Sync         string   `toml:"sync"` // always, periodic or never
	SyncInterval Duration `toml:"sync_interval"`
}

// Admin configures the admin HTTP API; it is off while Address is empty.
type Admin struct {
	Address  string `toml:"address"`
	Token    string `toml:"token"`    // bearer token
	Username string `toml:"username"` // basic auth, with Password
	Password string `toml:"password"`
}

// Plugin is one [[plugin]]: a Lua script hooked into the broker.
type Plugin struct {
	Name      string         `toml:"name"`
	Script    string         `toml:"script"`
	Timeout   Duration       `toml:"timeout"`
	Pool      int            `toml:"pool"` // Lua VMs; 0 is GOMAXPROCS
	Fail      string         `toml:"fail"` // closed or open: what a failed gate hook decides
	CacheTTL  Duration       `toml:"cache_ttl"`
	QueueSize int            `toml:"queue_size"`
	Settings  map[string]any `toml:"settings,omitempty"` // given to the script as-is
}

// Sink is one [[sink]]: a datastore that receives routed messages. The
// Runner that feeds it owns batching, retries and the spool.
type Sink struct {
	Name          string   `toml:"name"`
	Type          string   `toml:"type"`
	BatchSize     int      `toml:"batch_size"`
	FlushInterval Duration `toml:"flush_interval"`
	QueueSize     int      `toml:"queue_size"`
	RetryInitial  Duration `toml:"retry_initial"`
	RetryMax      Duration `toml:"retry_max"`
	SpoolDir      string   `toml:"spool_dir"` // default <persistence.dir>/spool/<name>
	SpoolMax      Size     `toml:"spool_max"`
	FullPolicy    string   `toml:"full_policy"` // backpressure or drop_oldest
	DeadLetter    string   `toml:"dead_letter"` // default <persistence.dir>/deadletter/<name>.ndjson

	// Options is the whole [[sink]] table, for the sink type to decode its
	// own keys with Config.DecodeOptions (which skips the keys above).
	Options toml.Primitive `toml:"-"`
	// Settings is the type's options as decoded by Load, when the type is
	// registered with RegisterSinkOptions.
	Settings any `toml:"-"`
}

// Route is one [[route]]: the messages whose topic matches one of Topics
// (MQTT filters) go to each of Sinks (names of [[sink]]).
type Route struct {
	Topics []string `toml:"topics"`
	Sinks  []string `toml:"sinks"`
}

// Job is one [[job]]: a Lua script run on a schedule, either Every or Cron.
type Job struct {
	// Name names the job in logs, $SYS, /metrics and the state file
	// <persistence.dir>/jobs/<name>.json, so it cannot hold / \ + or #.
	Name   string   `toml:"name"`
	Script string   `toml:"script"`
	Every  Duration `toml:"every,omitempty"`
	// Cron has five fields: minute hour day-of-month month day-of-week, in
	// the broker's local time zone.
	Cron     string         `toml:"cron,omitempty"`
	Timeout  Duration       `toml:"timeout"`
	Jitter   Duration       `toml:"jitter"`
	Settings map[string]any `toml:"settings,omitempty"` // given to the script as-is
}

// Aggregate is one [[aggregate]]: live windows over the numeric values
// published on Topics.
type Aggregate struct {
	Name   string   `toml:"name"` // default: the first topic
	Topics []string `toml:"topics"`
	// Value locates the number in the payload: "" is the payload itself
	// parsed as a number, otherwise a JSON path such as "sensor.temp".
	Value   string     `toml:"value"`
	Windows []Duration `toml:"windows"`
	// MaxTopics bounds the topics the aggregate tracks; samples of further
	// topics are dropped (counted and logged) until old topics expire.
	MaxTopics int `toml:"max_topics"`
}

// Alert configures where scheduler alerts go besides MQTT topics under TopicPrefix.
type Alert struct {
	TopicPrefix string `toml:"topic_prefix"`
	// ResolvedRetain is how long a resolved notice stays the retained
	// message of its alert's topic (as an MQTT message expiry) before the
	// topic is empty again.
	ResolvedRetain Duration  `toml:"resolved_retain"`
	Webhooks       []Webhook `toml:"webhook"`
}

// Webhook is one [[alert.webhook]]: alerts are POSTed to URL.
type Webhook struct {
	URL     string            `toml:"url"`
	Headers map[string]string `toml:"headers,omitempty"`
	Timeout Duration          `toml:"timeout"`
	Retries int               `toml:"retries"`
}

func newConfig() *Config {
	return &Config{
		Log: Log{Level: "info", Format: "text"},
		MQTT: MQTT{
			SysInterval:             Duration{10 * time.Second},
			MaxPacketSize:           1 << 20,
			ReceiveMaximum:          1024,
			MaxInflight:             64,
			MaxQueuedMessages:       1000,
			QueueFullPolicy:         "drop_new",
			MaxQueuedQoS0:           10000,
			StallTimeout:            Duration{100 * time.Millisecond},
			TopicAliasMaximum:       10,
			RetainAvailable:         true,
			WildcardSubscriptions:   true,
			SharedSubscriptions:     true,
			SubscriptionIdentifiers: true,
			AllowEmptyClientID:      true,
			MaxClientIDLength:       65535,
		},
		Persistence: Persistence{Enabled: true, Dir: "data", Sync: "periodic", SyncInterval: Duration{time.Second}},
		Alert:       Alert{TopicPrefix: "tide/alerts", ResolvedRetain: Duration{time.Hour}},
	}
}

// The defaults of array elements, applied before an element is decoded.

func (l *Listener) setDefaults() { l.Type = "tcp" }

func (p *Plugin) setDefaults() {
	*p = Plugin{Timeout: Duration{100 * time.Millisecond}, Fail: "closed", QueueSize: 10000}
}

func (s *Sink) setDefaults() {
	*s = Sink{BatchSize: 500, FlushInterval: Duration{200 * time.Millisecond}, QueueSize: 10000,
		RetryInitial: Duration{100 * time.Millisecond}, RetryMax: Duration{30 * time.Second},
		SpoolMax: 1 << 30, FullPolicy: "backpressure"}
}

func (j *Job) setDefaults() { j.Timeout = Duration{30 * time.Second} }

func (a *Aggregate) setDefaults() {
	a.Windows = []Duration{{time.Minute}, {5 * time.Minute}, {10 * time.Minute}}
	a.MaxTopics = 10000
}

func (w *Webhook) setDefaults() { *w = Webhook{Timeout: Duration{5 * time.Second}, Retries: 3} }

// defaultAddress is the address of a listener that has none, by type.
var defaultAddress = map[string]string{"tcp": ":1883", "tls": ":8883", "ws": ":8083", "wss": ":8084"}

// fill sets the defaults that depend on other keys.
func (c *Config) fill() {
	if len(c.Listeners) == 0 {
		c.Listeners = []Listener{{Type: "tcp", Address: "127.0.0.1:1883", AllowAnonymous: true}}
		c.DefaultListener = true
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Address == "" {
			l.Address = defaultAddress[l.Type]
		}
		if (l.Type == "tls" || l.Type == "wss") && l.MinVersion == "" {
			l.MinVersion = "1.2"
		}
		if (l.Type == "ws" || l.Type == "wss") && l.Path == "" {
			l.Path = "/mqtt"
		}
		if l.Name == "" {
			l.Name = l.Type + ":" + l.Address
		}
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.SpoolDir == "" && s.Name != "" {
			s.SpoolDir = filepath.Join(c.Persistence.Dir, "spool", s.Name)
		}
		if s.DeadLetter == "" && s.Name != "" {
			s.DeadLetter = filepath.Join(c.Persistence.Dir, "deadletter", s.Name+".ndjson")
		}
	}
	for i := range c.Aggregates {
		if a := &c.Aggregates[i]; a.Name == "" && len(a.Topics) > 0 {
			a.Name = a.Topics[0]
		}
	}
}

var sinkTypes = struct {
	sync.RWMutex
	m map[string]func() any
}{m: map[string]func() any{}}

// RegisterSinkOptions declares the sink type typ, whose options (the keys of
// a [[sink]] table beyond the common ones) decode into the value newOptions
// returns: a pointer to a struct with toml tags, holding the defaults. If the
// value has a method Validate() error, Load calls it after decoding; an
// *Error or Errors it returns may name a Key relative to the sink table
// ("path") to point at a line. Load stores the value in Sink.Settings.
// Sink packages call it from init; it panics if typ is registered twice.
func RegisterSinkOptions(typ string, newOptions func() any) {
	sinkTypes.Lock()
	defer sinkTypes.Unlock()
	if newOptions == nil {
		panic("conf: RegisterSinkOptions of " + typ + " with nil newOptions")
	}
	if _, dup := sinkTypes.m[typ]; dup {
		panic("conf: sink type " + typ + " registered twice")
	}
	sinkTypes.m[typ] = newOptions
}

//go:embed tide.toml
var defaultFile []byte

// Default returns the configuration of the embedded tide.toml, which Tide
// uses when no file is given. Unlike Load, it accepts sink types that are not
// registered, leaving their Settings nil: a program that links no sink can
// still use the defaults. Registered types are decoded and validated as usual.
func Default() (*Config, error) {
	c, err := parse("tide.toml (built-in)", defaultFile, true)
	if err != nil {
		return nil, err
	}
	c.File = ""
	return c, nil
}

// Load reads, decodes and validates the configuration file at path. Its
// error, if any, is an Errors listing every problem found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes and validates a configuration; name is the file name used
// in error messages and set as Config.File. Its error, if any, is an Errors.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, false)
}

func parse(name string, data []byte, lenient bool) (*Config, error) {
	var root toml.Primitive
	md, err := toml.Decode(string(data), &root)
	if err != nil {
		if pe := (toml.ParseError{}); errors.As(err, &pe) {
			return nil, Errors{{File: name, Line: pe.Position.Line, Msg: pe.Message}}
		}
		return nil, Errors{{File: name, Msg: err.Error()}}
	}
	m := &meta{md: md, file: name, lines: indexLines(string(data)), decoded: map[string]bool{}}
	c := newConfig()
	c.File, c.meta = name, m
	d := &decoder{meta: m, schema: true}
	d.table(root, "", reflect.ValueOf(c).Elem())
	ck := &checker{meta: m, errs: d.errs, bad: map[string]bool{}}
	for _, e := range d.errs {
		ck.bad[e.Key] = true
	}
	c.fill()
	c.decodeSinkOptions(ck, lenient)
	c.validate(ck)
	if len(ck.errs) > 0 {
		ck.errs.sort()
		return nil, ck.errs
	}
	return c, nil
}

func (c *Config) decodeSinkOptions(ck *checker, lenient bool) {
	sinkTypes.RLock()
	defer sinkTypes.RUnlock()
	for i := range c.Sinks {
		s, key := &c.Sinks[i], fmt.Sprintf("sink[%d]", i)
		newOptions, ok := sinkTypes.m[s.Type]
		switch {
		case s.Type == "" || ck.bad[key+".type"]:
			continue // reported by validate
		case !ok && !lenient:
			registered := "none"
			if len(sinkTypes.m) > 0 {
				registered = strings.Join(slices.Sorted(maps.Keys(sinkTypes.m)), ", ")
			}
			ck.add(key+".type", "unknown sink type %q (registered: %s)", s.Type, registered)
			continue
		case !ok:
			continue
		}
		s.Settings = newOptions()
		if err := c.DecodeOptions(s.Options, key, s.Settings); err != nil {
			ck.errs = append(ck.errs, err.(Errors)...)
		} else if v, ok := s.Settings.(interface{ Validate() error }); ok {
			ck.external(key, v.Validate())
		}
	}
}

// DecodeOptions decodes the table p, from the file c was parsed from, into
// v, a pointer to a struct with toml tags (such as a sink's Options into its
// type's options struct). It returns Errors, with the file, line and key
// prefixed by keyPrefix (e.g. "sink[2]"), for type errors and for keys that
// neither v nor c's own schema knows.
func (c *Config) DecodeOptions(p toml.Primitive, keyPrefix string, v any) error {
	rv := reflect.ValueOf(v)
	if c.meta == nil || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("conf: DecodeOptions needs a Config from Load or Parse and a non-nil pointer")
	}
	c.meta.mu.Lock()
	defer c.meta.mu.Unlock()
	d := &decoder{meta: c.meta}
	d.value(p, keyPrefix, rv.Elem())
	if len(d.errs) == 0 {
		return nil
	}
	d.errs.sort()
	return d.errs
}

// WriteTOML writes the effective configuration, defaults included, as TOML
// that Parse reads back to the same Config. It includes secrets (admin
// password and token, sink credentials) as they are in the file.
func (c *Config) WriteTOML(w io.Writer) error {
	head := *c
	head.Sinks, head.Routes, head.Jobs, head.Aggregates = nil, nil, nil, nil
	tail := struct {
		Sinks      []map[string]any `toml:"sink"`
		Routes     []Route          `toml:"route"`
		Jobs       []Job            `toml:"job"`
		Aggregates []Aggregate      `toml:"aggregate"`
	}{Routes: c.Routes, Jobs: c.Jobs, Aggregates: c.Aggregates}
	for _, s := range c.Sinks {
		t, err := c.sinkTable(s)
		if err != nil {
			return err
		}
		tail.Sinks = append(tail.Sinks, t)
	}
	enc := toml.NewEncoder(w)
	enc.Indent = ""
	if err := enc.Encode(head); err != nil {
		return err
	}
	return enc.Encode(tail)
}

// sinkTable merges the common keys of s with its type's options: the
// decoded Settings if the type is registered, else the keys as written.
func (c *Config) sinkTable(s Sink) (map[string]any, error) {
	t, err := toTable(s)
	if err != nil {
		return nil, err
	}
	var opts map[string]any
	switch {
	case s.Settings != nil:
		opts, err = toTable(s.Settings)
	case c.meta != nil:
		c.meta.mu.Lock()
		err = c.meta.md.PrimitiveDecode(s.Options, &opts)
		c.meta.mu.Unlock()
	}
	for k, v := range opts {
		if _, ok := t[k]; !ok {
			t[k] = v
		}
	}
	return t, err
}

// toTable converts a struct to a map through TOML, so that tags, omitempty
// and text marshalers apply as they do when encoding.
func toTable(v any) (map[string]any, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	var t map[string]any
	_, err := toml.Decode(b.String(), &t)
	return t, err
}
