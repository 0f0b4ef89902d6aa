package conf

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tidemq/tide/core/acl"
	"github.com/tidemq/tide/core/passwd"
)

// cronParser reads the five-field expressions of [[job]] cron.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// ParseCron parses a [[job]] cron expression: five fields (minute hour
// day-of-month month day-of-week) with *, lists, ranges, steps and month and
// day names. The schedule's times are in the location of the time given to
// its Next. The error says what is wrong with the expression.
func ParseCron(spec string) (cron.Schedule, error) {
	if len(strings.Fields(spec)) != 5 {
		return nil, fmt.Errorf("must have 5 space-separated fields (minute hour day-of-month month day-of-week), got %q", spec)
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("invalid cron expression %q: %v", spec, err)
	}
	if s.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("cron expression %q never matches: no such date in the next five years", spec)
	}
	return s, nil
}

// checker collects validation errors, each with the line of its key.
type checker struct {
	*meta
	errs Errors
	bad  map[string]bool // keys that failed to decode: their value is not worth checking
}

func (ck *checker) add(key, format string, args ...any) {
	if !ck.bad[key] {
		ck.errs = append(ck.errs, ck.errorf(key, format, args...))
	}
}

// external records an error returned by code outside conf (a sink type's
// Validate), whose *Error or Errors name keys relative to prefix.
func (ck *checker) external(prefix string, err error) {
	var es Errors
	var e *Error
	switch {
	case err == nil:
	case errors.As(err, &es):
		for _, e := range es {
			ck.add(subKey(prefix, e.Key), "%s", e.Msg)
		}
	case errors.As(err, &e):
		ck.add(subKey(prefix, e.Key), "%s", e.Msg)
	default:
		ck.add(prefix, "%v", err)
	}
}

func subKey(prefix, key string) string {
	if key == "" {
		return prefix
	}
	return prefix + "." + key
}

func (ck *checker) required(key, v string) bool {
	switch {
	case v != "":
		return true
	case ck.decoded[key]:
		ck.add(key, "must not be empty")
	default:
		ck.add(key, "missing (required)")
	}
	return false
}

func (ck *checker) requiredList(key string, n int) bool {
	switch {
	case n > 0:
		return true
	case ck.decoded[key]:
		ck.add(key, "must not be empty")
	default:
		ck.add(key, "missing (required)")
	}
	return false
}

func (ck *checker) oneOf(key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		q := make([]string, len(allowed))
		for i, a := range allowed {
			q[i] = strconv.Quote(a)
		}
		ck.add(key, "invalid value %q (allowed: %s)", v, strings.Join(q, ", "))
	}
}

func (ck *checker) between(key string, v, lo, hi int) {
	if v < lo || v > hi {
		ck.add(key, "must be between %d and %d, got %d", lo, hi, v)
	}
}

func (ck *checker) atLeast(key string, v, lo int) {
	if v < lo {
		ck.add(key, "must be at least %d, got %d", lo, v)
	}
}

func (ck *checker) nonNegative(key string, d Duration) {
	if d.Duration < 0 {
		ck.add(key, "must not be negative, got %q", formatDuration(d.Duration))
	}
}

func (ck *checker) positive(key string, d Duration) {
	if d.Duration <= 0 {
		ck.add(key, "must be greater than zero, got %q", formatDuration(d.Duration))
	}
}

// address checks a host:port listening address; the host may be empty (all
// interfaces) and the port 0 (any free port).
func (ck *checker) address(key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
		ck.add(key, "%s %q", ae.Err, ae.Addr) // Err is e.g. "missing port in address"
	} else if err != nil {
		ck.add(key, "%v", err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		ck.add(key, "invalid port %q in address %q (want a number from 0 to 65535)", port, addr)
	}
}

// unique checks that name is not already in seen, which maps a name to the
// key of its first use.
func (ck *checker) unique(key, name string, seen map[string]string) {
	if name == "" {
		return
	}
	if first, dup := seen[name]; dup {
		ck.add(key, "duplicate name %q (also used by %s)", name, first)
		return
	}
	seen[name] = key
}

// filter checks the form of an MQTT topic filter; core/topic checks the rest.
func (ck *checker) filter(key, f string) {
	if f == "" {
		ck.add(key, "empty topic filter")
		return
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 || l == "#" && i != len(levels)-1 {
			ck.add(key, "invalid topic filter %q: + and # must fill a whole level, and # must be last", f)
			return
		}
	}
}

func (c *Config) validate(ck *checker) {
	ck.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ck.oneOf("log.format", c.Log.Format, "text", "json")

	m := c.MQTT
	ck.nonNegative("mqtt.sys_interval", m.SysInterval)
	ck.between("mqtt.max_packet_size", int(m.MaxPacketSize), 1, 268435455)
	ck.nonNegative("mqtt.max_keepalive", m.MaxKeepAlive)
	if m.MaxKeepAlive.Duration > 65535*time.Second {
		ck.add("mqtt.max_keepalive", "must be at most 65535s (18h12m15s), got %q", formatDuration(m.MaxKeepAlive.Duration))
	}
	ck.between("mqtt.receive_maximum", m.ReceiveMaximum, 1, 65535)
	ck.between("mqtt.max_inflight", m.MaxInflight, 1, 65535)
	ck.atLeast("mqtt.max_queued_messages", m.MaxQueuedMessages, 0)
	ck.oneOf("mqtt.queue_full_policy", m.QueueFullPolicy, "drop_new", "drop_oldest")
	ck.atLeast("mqtt.max_queued_qos0", m.MaxQueuedQoS0, 1)
	ck.nonNegative("mqtt.stall_timeout", m.StallTimeout)
	ck.between("mqtt.topic_alias_maximum", m.TopicAliasMaximum, 0, 65535)
	ck.nonNegative("mqtt.max_session_expiry", m.MaxSessionExpiry)
	ck.between("mqtt.max_client_id_length", m.MaxClientIDLength, 23, 65535)

	c.validateListeners(ck)

	c.validateAuth(ck)

	p := c.Persistence
	ck.oneOf("persistence.sync", p.Sync, "always", "periodic", "never")
	if p.Enabled {
		ck.required("persistence.dir", p.Dir)
	}
	if p.Sync == "periodic" {
		ck.positive("persistence.sync_interval", p.SyncInterval)
	} else {
		ck.nonNegative("persistence.sync_interval", p.SyncInterval)
	}

	a := c.Admin
	if a.Address != "" {
		ck.address("admin.address", a.Address)
	}
	if a.Username != "" && a.Password == "" {
		ck.add("admin.password", "missing: admin.username is set, and basic auth needs both")
	} else if a.Username == "" && a.Password != "" {
		ck.add("admin.username", "missing: admin.password is set, and basic auth needs both")
	}

	names := map[string]string{}
	for i, pl := range c.Plugins {
		key := fmt.Sprintf("plugin[%d]", i)
		if ck.required(key+".name", pl.Name) {
			ck.unique(key+".name", pl.Name, names)
		}
		ck.required(key+".script", pl.Script)
		ck.positive(key+".timeout", pl.Timeout)
		ck.atLeast(key+".pool", pl.Pool, 0)
		ck.oneOf(key+".fail", pl.Fail, "closed", "open")
		ck.nonNegative(key+".cache_ttl", pl.CacheTTL)
		ck.atLeast(key+".queue_size", pl.QueueSize, 1)
	}

	c.validateSinks(ck)

	names = map[string]string{}
	for i, j := range c.Jobs {
		key := fmt.Sprintf("job[%d]", i)
		if ck.required(key+".name", j.Name) {
			if strings.ContainsAny(j.Name, `/\+#`) || j.Name == "." || j.Name == ".." {
				ck.add(key+".name", "%q cannot be used: the name is part of a file path (<persistence.dir>/jobs/<name>.json) and of $SYS topics, so it cannot hold / \\ + or #", j.Name)
			}
			ck.unique(key+".name", j.Name, names)
		}
		ck.required(key+".script", j.Script)
		every, cron := ck.decoded[key+".every"], ck.decoded[key+".cron"]
		switch {
		case every && cron:
			ck.add(key+".cron", "a job runs either every interval or on a cron schedule: remove every or cron")
		case !every && !cron:
			ck.add(key, `missing schedule: set every (e.g. "1m") or cron (e.g. "*/5 * * * *")`)
		case every:
			ck.positive(key+".every", j.Every)
			if j.Every.Duration > 0 && j.Jitter.Duration >= j.Every.Duration {
				ck.add(key+".jitter", "must be shorter than every (%s), got %q", formatDuration(j.Every.Duration), formatDuration(j.Jitter.Duration))
			}
		default:
			if _, err := ParseCron(j.Cron); err != nil {
				ck.add(key+".cron", "%v", err)
			}
		}
		ck.positive(key+".timeout", j.Timeout)
		ck.nonNegative(key+".jitter", j.Jitter)
	}

	names = map[string]string{}
	for i, ag := range c.Aggregates {
		key := fmt.Sprintf("aggregate[%d]", i)
		if ck.requiredList(key+".topics", len(ag.Topics)) {
			for k, t := range ag.Topics {
				ck.filter(fmt.Sprintf("%s.topics[%d]", key, k), t)
			}
		}
		ck.unique(key+".name", ag.Name, names)
		if ag.Value != "" && slices.Contains(strings.Split(ag.Value, "."), "") {
			ck.add(key+".value", "invalid JSON path %q: want names separated by dots, such as \"sensor.temp\"", ag.Value)
		}
		if ck.requiredList(key+".windows", len(ag.Windows)) {
			for k, w := range ag.Windows {
				wk := fmt.Sprintf("%s.windows[%d]", key, k)
				ck.positive(wk, w)
				if w.Duration > 0 && w.Duration < time.Second {
					ck.add(wk, "must be at least 1s, got %q", formatDuration(w.Duration))
				}
			}
		}
		ck.atLeast(key+".max_topics", ag.MaxTopics, 1)
	}

	if ck.required("alert.topic_prefix", c.Alert.TopicPrefix) && strings.ContainsAny(c.Alert.TopicPrefix, "+#") {
		ck.add("alert.topic_prefix", "must be a topic name, without + or #: %q", c.Alert.TopicPrefix)
	}
	if r := c.Alert.ResolvedRetain.Duration; r < time.Second || r > math.MaxUint32*time.Second {
		ck.add("alert.resolved_retain", "must be between 1s and %s (an MQTT message expiry), got %q", formatDuration(math.MaxUint32*time.Second), formatDuration(r))
	}
	for i, w := range c.Alert.Webhooks {
		key := fmt.Sprintf("alert.webhook[%d]", i)
		if ck.required(key+".url", w.URL) {
			if u, err := url.Parse(w.URL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
				ck.add(key+".url", "invalid URL %q: want http://host/... or https://host/...", w.URL)
			}
		}
		ck.positive(key+".timeout", w.Timeout)
		ck.atLeast(key+".retries", w.Retries, 0)
	}
}

var (
	tlsKeys = []string{"cert_file", "key_file", "ca_file", "require_client_cert", "min_version", "username_from"}
	wsKeys  = []string{"path", "allowed_origins"}
)

// validateAuth checks the built-in users: [[auth.user]] and the password
// file, which is read here so that its problems come with its line numbers.
func (c *Config) validateAuth(ck *checker) {
	users := map[string]string{}
	for i, u := range c.Auth.Users {
		key := fmt.Sprintf("auth.user[%d]", i)
		if ck.required(key+".username", u.Username) {
			ck.unique(key+".username", u.Username, users)
		}
		if ck.required(key+".password_hash", u.PasswordHash) {
			if err := passwd.Check(u.PasswordHash); err != nil {
				ck.add(key+".password_hash", "%v", err)
			}
		}
	}
	if c.Auth.ACLFile != "" {
		_, err := acl.ParseFile(c.Auth.ACLFile)
		for _, e := range multiErrors(err) {
			ck.add("auth.acl_file", "%v", e)
		}
	}
	if c.Auth.PasswordFile == "" {
		return
	}
	entries, err := passwd.ReadFile(c.Auth.PasswordFile)
	for _, e := range multiErrors(err) {
		ck.add("auth.password_file", "%v", e)
	}
	for _, e := range entries {
		if key, dup := users[e.Username]; dup {
			ck.add(key, "user %q is also in the password file (%s:%d)", e.Username, c.Auth.PasswordFile, e.Line)
		}
	}
}

// multiErrors unwraps errors.Join.
func multiErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

func (c *Config) validateListeners(ck *checker) {
	names := map[string]string{}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("listener[%d]", i)
		ck.oneOf(key+".type", l.Type, "tcp", "tls", "ws", "wss")
		if _, ok := defaultAddress[l.Type]; ok || l.Address != "" {
			ck.address(key+".address", l.Address)
		}
		ck.atLeast(key+".max_connections", l.MaxConnections, 0)
		ck.unique(key+".name", l.Name, names)
		isTLS, isWS := l.Type == "tls" || l.Type == "wss", l.Type == "ws" || l.Type == "wss"
		for _, k := range tlsKeys {
			if !isTLS && ck.decoded[key+"."+k] {
				ck.add(key+"."+k, "only valid for tls and wss listeners, this one is %s", l.Type)
			}
		}
		for _, k := range wsKeys {
			if !isWS && ck.decoded[key+"."+k] {
				ck.add(key+"."+k, "only valid for ws and wss listeners, this one is %s", l.Type)
			}
		}
		if isTLS {
			ck.required(key+".cert_file", l.CertFile)
			ck.required(key+".key_file", l.KeyFile)
			ck.oneOf(key+".min_version", l.MinVersion, "1.2", "1.3")
			ck.oneOf(key+".username_from", l.UsernameFrom, "", "cn", "san")
			if l.RequireClientCert && l.CAFile == "" {
				ck.add(key+".ca_file", "missing: require_client_cert needs the CA that signs client certificates")
			}
		}
		if isWS {
			if !strings.HasPrefix(l.Path, "/") {
				ck.add(key+".path", "must start with /, got %q", l.Path)
			}
			for k, o := range l.AllowedOrigins {
				if o == "" {
					ck.add(fmt.Sprintf("%s.allowed_origins[%d]", key, k), "empty origin")
				}
			}
		}
	}
}

func (c *Config) validateSinks(ck *checker) {
	names := map[string]string{}
	for i, s := range c.Sinks {
		key := fmt.Sprintf("sink[%d]", i)
		if ck.required(key+".name", s.Name) {
			if strings.ContainsAny(s.Name, `/\`) || s.Name == "." || s.Name == ".." {
				ck.add(key+".name", "%q cannot be used: the name is part of file paths (spool_dir, dead_letter)", s.Name)
			}
			ck.unique(key+".name", s.Name, names)
		}
		ck.required(key+".type", s.Type)
		ck.atLeast(key+".batch_size", s.BatchSize, 1)
		ck.positive(key+".flush_interval", s.FlushInterval)
		ck.atLeast(key+".queue_size", s.QueueSize, 1)
		ck.positive(key+".retry_initial", s.RetryInitial)
		if s.RetryMax.Duration < s.RetryInitial.Duration {
			ck.add(key+".retry_max", "must be at least retry_initial (%s), got %q", formatDuration(s.RetryInitial.Duration), formatDuration(s.RetryMax.Duration))
		}
		if s.SpoolMax <= 0 {
			ck.add(key+".spool_max", "must be greater than zero")
		}
		ck.oneOf(key+".full_policy", s.FullPolicy, "backpressure", "drop_oldest")
	}
	configured := "no sinks are configured"
	if len(names) > 0 {
		configured = "configured: " + strings.Join(slices.Sorted(maps.Keys(names)), ", ")
	}
	for i, r := range c.Routes {
		key := fmt.Sprintf("route[%d]", i)
		if ck.requiredList(key+".topics", len(r.Topics)) {
			for k, t := range r.Topics {
				ck.filter(fmt.Sprintf("%s.topics[%d]", key, k), t)
			}
		}
		if ck.requiredList(key+".sinks", len(r.Sinks)) {
			for _, s := range r.Sinks {
				if _, ok := names[s]; !ok {
					ck.add(key+".sinks", "unknown sink %q (%s)", s, configured)
				}
			}
		}
	}
}
