package conf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// sqliteOptions and fakeOptions stand for the options of sink types that
// the datastore packages register.
type sqliteOptions struct {
	Path string   `toml:"path"`
	Keep Duration `toml:"keep"`
}

func (o *sqliteOptions) Validate() error {
	if o.Keep.Duration < 0 {
		return &Error{Key: "keep", Msg: "must not be negative"}
	}
	return nil
}

type fakeOptions struct {
	URL     string   `toml:"url"`
	Workers int      `toml:"workers"`
	Tags    []string `toml:"tags,omitempty"`
}

func (o *fakeOptions) Validate() error {
	if o.URL == "" {
		return errors.New("url is required")
	}
	return nil
}

func init() {
	RegisterSinkOptions("sqlite", func() any { return &sqliteOptions{Keep: Duration{7 * day}} })
	RegisterSinkOptions("fake", func() any { return &fakeOptions{Workers: 2} })
}

// errString parses src as t.toml and returns its error text, "" if none.
func errString(t *testing.T, src string) string {
	t.Helper()
	_, err := Parse("t.toml", []byte(src))
	if err == nil {
		return ""
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse error is %T, want Errors: %v", err, err)
	}
	return err.Error()
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, "")
	checks := []struct {
		key       string
		got, want any
	}{
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"mqtt.sys_interval", c.MQTT.SysInterval.Duration, 10 * time.Second},
		{"mqtt.max_packet_size", c.MQTT.MaxPacketSize, Size(1 << 20)},
		{"mqtt.max_keepalive", c.MQTT.MaxKeepAlive.Duration, time.Duration(0)},
		{"mqtt.receive_maximum", c.MQTT.ReceiveMaximum, 1024},
		{"mqtt.max_inflight", c.MQTT.MaxInflight, 64},
		{"mqtt.max_queued_messages", c.MQTT.MaxQueuedMessages, 1000},
		{"mqtt.queue_full_policy", c.MQTT.QueueFullPolicy, "drop_new"},
		{"mqtt.max_queued_qos0", c.MQTT.MaxQueuedQoS0, 10000},
		{"mqtt.queue_qos0", c.MQTT.QueueQoS0, false},
		{"mqtt.topic_alias_maximum", c.MQTT.TopicAliasMaximum, 10},
		{"mqtt.max_session_expiry", c.MQTT.MaxSessionExpiry.Duration, time.Duration(0)},
		{"mqtt.retain_available", c.MQTT.RetainAvailable, true},
		{"mqtt.wildcard_subscriptions", c.MQTT.WildcardSubscriptions, true},
		{"mqtt.shared_subscriptions", c.MQTT.SharedSubscriptions, true},
		{"mqtt.subscription_identifiers", c.MQTT.SubscriptionIdentifiers, true},
		{"mqtt.allow_empty_client_id", c.MQTT.AllowEmptyClientID, true},
		{"mqtt.max_client_id_length", c.MQTT.MaxClientIDLength, 65535},
		{"listener", c.Listeners, []Listener{{Name: "tcp:127.0.0.1:1883", Type: "tcp", Address: "127.0.0.1:1883", AllowAnonymous: true}}},
		{"DefaultListener", c.DefaultListener, true},
		{"persistence", c.Persistence, Persistence{Enabled: true, Dir: "data", Sync: "periodic", SyncInterval: Duration{time.Second}}},
		{"admin", c.Admin, Admin{}},
		{"alert", c.Alert, Alert{TopicPrefix: "tide/alerts", ResolvedRetain: Duration{time.Hour}}},
		{"File", c.File, "t.toml"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.key, ck.got, ck.want)
		}
	}
}

func TestElementDefaults(t *testing.T) {
	c := mustParse(t, `
[persistence]
dir = "/var/lib/tide"
[[listener]]
[[listener]]
type = "tls"
cert_file = "c.pem"
key_file = "k.pem"
[[listener]]
type = "ws"
[[listener]]
type = "wss"
cert_file = "c.pem"
key_file = "k.pem"
[[plugin]]
name = "p"
script = "p.lua"
[[sink]]
name = "s"
type = "fake"
url = "http://es:9200"
[[route]]
topics = ["#"]
sinks = ["s"]
[[job]]
name = "j"
script = "j.lua"
cron = "*/5 * * * *"
[[aggregate]]
topics = ["home/+/temp"]
[[alert.webhook]]
url = "https://example.com/hook"
`)
	checks := []struct {
		key       string
		got, want any
	}{
		{"listener", c.Listeners, []Listener{
			{Name: "tcp::1883", Type: "tcp", Address: ":1883"},
			{Name: "tls::8883", Type: "tls", Address: ":8883", CertFile: "c.pem", KeyFile: "k.pem", MinVersion: "1.2"},
			{Name: "ws::8083", Type: "ws", Address: ":8083", Path: "/mqtt"},
			{Name: "wss::8084", Type: "wss", Address: ":8084", CertFile: "c.pem", KeyFile: "k.pem", MinVersion: "1.2", Path: "/mqtt"},
		}},
		{"DefaultListener", c.DefaultListener, false},
		{"plugin", c.Plugins, []Plugin{{Name: "p", Script: "p.lua", Timeout: Duration{100 * time.Millisecond}, Fail: "closed", QueueSize: 10000}}},
		{"job", c.Jobs, []Job{{Name: "j", Script: "j.lua", Cron: "*/5 * * * *", Timeout: Duration{30 * time.Second}}}},
		{"aggregate", c.Aggregates, []Aggregate{{Name: "home/+/temp", Topics: []string{"home/+/temp"},
			Windows: []Duration{{time.Minute}, {5 * time.Minute}, {10 * time.Minute}}, MaxTopics: 10000}}},
		{"alert.webhook", c.Alert.Webhooks, []Webhook{{URL: "https://example.com/hook", Timeout: Duration{5 * time.Second}, Retries: 3}}},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.key, ck.got, ck.want)
		}
	}
	s := c.Sinks[0]
	s.Options = toml.Primitive{}
	want := Sink{Name: "s", Type: "fake", BatchSize: 500, FlushInterval: Duration{200 * time.Millisecond}, QueueSize: 10000,
		RetryInitial: Duration{100 * time.Millisecond}, RetryMax: Duration{30 * time.Second},
		SpoolDir: filepath.Join("/var/lib/tide", "spool", "s"), SpoolMax: 1 << 30, FullPolicy: "backpressure",
		DeadLetter: filepath.Join("/var/lib/tide", "deadletter", "s.ndjson"),
		Settings:   &fakeOptions{URL: "http://es:9200", Workers: 2}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("sink = %#v, want %#v", s, want)
	}
}

// withoutSinkType runs f while typ is not registered.
func withoutSinkType(typ string, f func()) {
	sinkTypes.Lock()
	saved := sinkTypes.m[typ]
	delete(sinkTypes.m, typ)
	sinkTypes.Unlock()
	defer func() {
		sinkTypes.Lock()
		sinkTypes.m[typ] = saved
		sinkTypes.Unlock()
	}()
	f()
}

func TestDefaultFile(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatalf("Default:\n%v", err)
	}
	if c.File != "" || c.DefaultListener {
		t.Errorf("File, DefaultListener = %q, %v; want \"\", false", c.File, c.DefaultListener)
	}
	wantL := []Listener{{Name: "tcp:127.0.0.1:1883", Type: "tcp", Address: "127.0.0.1:1883", AllowAnonymous: true}}
	if !reflect.DeepEqual(c.Listeners, wantL) {
		t.Errorf("listeners = %#v, want %#v", c.Listeners, wantL)
	}
	if len(c.Sinks) != 1 || c.Sinks[0].Name != "history" || c.Sinks[0].Type != "sqlite" {
		t.Fatalf("sinks = %#v, want one sqlite sink named history", c.Sinks)
	}
	if got, want := c.Sinks[0].Settings, (&sqliteOptions{Keep: Duration{30 * day}}); !reflect.DeepEqual(got, want) {
		t.Errorf("history settings = %#v, want %#v", got, want)
	}
	wantR := []Route{{Topics: []string{"#"}, Sinks: []string{"history"}}}
	if !reflect.DeepEqual(c.Routes, wantR) {
		t.Errorf("routes = %#v, want %#v", c.Routes, wantR)
	}
	if !c.Persistence.Enabled || c.Persistence.Dir != "data" {
		t.Errorf("persistence = %#v, want enabled in data", c.Persistence)
	}

	withoutSinkType("sqlite", func() {
		c, err := Default()
		if err != nil {
			t.Fatalf("Default without sqlite registered:\n%v", err)
		}
		if c.Sinks[0].Settings != nil {
			t.Errorf("Settings = %#v, want nil for an unregistered type", c.Sinks[0].Settings)
		}
		_, err = Parse("tide.toml", defaultFile)
		line := bytes.Count(defaultFile[:bytes.Index(defaultFile, []byte(`type = "sqlite"`))], []byte("\n")) + 1
		want := fmt.Sprintf(`tide.toml:%d: sink[0].type: unknown sink type "sqlite" (registered: fake)`, line)
		if err == nil || err.Error() != want {
			t.Errorf("Parse of tide.toml without sqlite: %v, want %s", err, want)
		}
	})
}

// TestDefaultFileExamples turns on every commented-out example of tide.toml.
func TestDefaultFileExamples(t *testing.T) {
	example := regexp.MustCompile(`(?m)^# (\[\[?[a-z][a-z._]*\]\]?$|[a-z_]+ = )`)
	src := example.ReplaceAllString(string(defaultFile), "$1")
	// The example password file, made for the test.
	pw := filepath.Join(t.TempDir(), "users.pw")
	if err := os.WriteFile(pw, []byte("bob:$6$opt1/RM8XHeFBXh3$Xxx+3h1f+GEuV7w6SJau3x/nijJbNxW2bmaroE5u7U9gjiuzd0yV8CagIL2Y0CjCdwXwYlKZQQxAmLhtksz7IA==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src, `password_file = "users.pw"`) {
		t.Fatal("tide.toml lacks the password_file example")
	}
	src = strings.Replace(src, `password_file = "users.pw"`, `password_file = "`+pw+`"`, 1)
	// And the example ACL file.
	aclPath := filepath.Join(t.TempDir(), "tide.acl")
	if err := os.WriteFile(aclPath, []byte("topic read public/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src, `acl_file = "tide.acl"`) {
		t.Fatal("tide.toml lacks the acl_file example")
	}
	src = strings.Replace(src, `acl_file = "tide.acl"`, `acl_file = "`+aclPath+`"`, 1)
	c, err := parse("tide.toml", []byte(src), true)
	if err != nil {
		t.Fatalf("tide.toml with its examples:\n%v\n%s", err, src)
	}
	got := []int{len(c.Listeners), len(c.Auth.Users), len(c.Plugins), len(c.Sinks), len(c.Routes), len(c.Jobs), len(c.Aggregates), len(c.Alert.Webhooks)}
	want := []int{4, 1, 1, 3, 2, 2, 1, 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("listeners, users, plugins, sinks, routes, jobs, aggregates, webhooks = %v, want %v", got, want)
	}
	j := c.Jobs[0]
	if j.Name != "room-temperature" || j.Script != "scripts/alerts/room_temperature.lua" || j.Every.Duration != time.Minute || j.Settings["threshold"] != 30.0 {
		t.Errorf("job = %#v, want the room-temperature alert", j)
	}
	if j := c.Jobs[1]; j.Name != "room-temperature-sql" || j.Cron != "* * * * *" || j.Settings["sink"] != "archive" {
		t.Errorf("job = %#v, want the room-temperature-sql alert", j)
	}
	if a := c.Aggregates[0]; a.Name != "temperature" || a.MaxTopics != 10000 || len(a.Windows) != 3 {
		t.Errorf("aggregate = %#v, want temperature", a)
	}
	for _, j := range c.Jobs {
		if _, err := os.Stat(filepath.Join("..", j.Script)); err != nil {
			t.Errorf("job %s: script %s: %v", j.Name, j.Script, err)
		}
	}
	if c.Admin.Address != "127.0.0.1:8080" {
		t.Errorf("admin.address = %q, want 127.0.0.1:8080", c.Admin.Address)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tide.toml")
	if err := os.WriteFile(path, []byte("[log]\nlevel = \"debug\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.File != path || c.Log.Level != "debug" {
		t.Errorf("File, log.level = %q, %q; want %q, debug", c.File, c.Log.Level, path)
	}
	if err := os.WriteFile(path, []byte("[log]\nlevel = \"loud\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if want := path + `:2: log.level: invalid value "loud" (allowed: "debug", "info", "warn", "error")`; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want ErrNotExist", err)
	}
}

func TestSyntaxError(t *testing.T) {
	got := errString(t, "[log]\nlevel = \"info\"\nformat = \n")
	if !strings.HasPrefix(got, "t.toml:3: ") || strings.Contains(got, "\n") {
		t.Errorf("error = %q, want one error at t.toml:3", got)
	}
	got = errString(t, "[log]\nlevel = \"info\"\n[log]\n")
	if !strings.HasPrefix(got, "t.toml:3: ") {
		t.Errorf("error = %q, want an error at t.toml:3", got)
	}
}

func TestUnknownKeys(t *testing.T) {
	got := errString(t, `[mqtt]
max_inflight = 10
colour = "red"
max_inflght = 5

[mqt]
x = 1

[[listener]]
address = ":1884"
[[listener]]
adress = ":1884"
[listener.tls]
cert_file = "x"
`)
	want := strings.Join([]string{
		`t.toml:3: mqtt.colour: unknown key`,
		`t.toml:4: mqtt.max_inflght: unknown key (did you mean "max_inflight"?)`,
		`t.toml:6: mqt: unknown key (did you mean "mqtt"?)`,
		`t.toml:12: listener[1].adress: unknown key (did you mean "address"?)`,
		`t.toml:13: listener[1].tls: unknown key`,
	}, "\n")
	if got != want {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
}

func TestTypeErrors(t *testing.T) {
	got := errString(t, `[log]
level = 3
[mqtt]
max_inflight = "64"
retain_available = "yes"
sys_interval = 10
max_packet_size = 1.5
[[route]]
topics = "a/b"
sinks = [1, 2]
[[plugin]]
name = "p"
script = "p.lua"
settings = 5
[alert]
webhook = 3
`)
	want := strings.Join([]string{
		`t.toml:2: log.level: expected a string, got integer 3`,
		`t.toml:4: mqtt.max_inflight: expected an integer, got string "64"`,
		`t.toml:5: mqtt.retain_available: expected a boolean, got string "yes"`,
		`t.toml:6: mqtt.sys_interval: invalid duration 10: write a string with a unit, e.g. "10s"`,
		`t.toml:7: mqtt.max_packet_size: invalid size 1.5: write a number of bytes or a string such as "64KB" or "1MB"`,
		`t.toml:9: route[0].topics: expected an array, got string "a/b"`,
		`t.toml:10: route[0].sinks: expected an array, got array [1 2]`,
		`t.toml:14: plugin[0].settings: expected a table, got integer 5`,
		`t.toml:16: alert.webhook: expected an array of tables, got integer 3`,
	}, "\n")
	if got != want {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
}

// TestManyErrors checks that every kind of problem in one file is reported.
func TestManyErrors(t *testing.T) {
	got := errString(t, `[log]
level = "verbose"
[mqtt]
max_inflight = 0
max_inflght = 5
sys_interval = "soon"
[[listener]]
address = "localhost"
[[sink]]
type = "fake"
url = "http://x"
[[route]]
topics = ["a/#"]
sinks = ["pg"]
`)
	want := strings.Join([]string{
		`t.toml:2: log.level: invalid value "verbose" (allowed: "debug", "info", "warn", "error")`,
		`t.toml:4: mqtt.max_inflight: must be between 1 and 65535, got 0`,
		`t.toml:5: mqtt.max_inflght: unknown key (did you mean "max_inflight"?)`,
		`t.toml:6: mqtt.sys_interval: invalid duration "soon": use a number with a unit (ns, us, ms, s, m, h, d), e.g. "10s", "1m30s" or "30d"`,
		`t.toml:8: listener[0].address: missing port in address "localhost"`,
		`t.toml:9: sink[0].name: missing (required)`,
		`t.toml:14: route[0].sinks: unknown sink "pg" (no sinks are configured)`,
	}, "\n")
	if got != want {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
}

func TestValidation(t *testing.T) {
	const tls = "[[listener]]\ntype = \"tls\"\ncert_file = \"c\"\nkey_file = \"k\"\n"
	const sink = "[[sink]]\nname = \"archive\"\ntype = \"fake\"\nurl = \"http://x\"\n"
	const hash = "$2a$10$V4icbocLmpVZTRQOkwo3hekvpQqLuzMSI.lfG2Ejdn6QWqpl8x/MS"
	tests := []struct{ name, src, want string }{
		{"log format", "[log]\nformat = \"xml\"", `t.toml:2: log.format: invalid value "xml" (allowed: "text", "json")`},
		{"negative duration", "[mqtt]\nsys_interval = \"-1s\"", `t.toml:2: mqtt.sys_interval: must not be negative, got "-1s"`},
		{"packet size zero", "[mqtt]\nmax_packet_size = 0", `t.toml:2: mqtt.max_packet_size: must be between 1 and 268435455, got 0`},
		{"packet size large", "[mqtt]\nmax_packet_size = \"1GB\"", `t.toml:2: mqtt.max_packet_size: must be between 1 and 268435455, got 1073741824`},
		{"keepalive", "[mqtt]\nmax_keepalive = \"1d\"", `t.toml:2: mqtt.max_keepalive: must be at most 65535s (18h12m15s), got "1d"`},
		{"receive maximum", "[mqtt]\nreceive_maximum = 70000", `t.toml:2: mqtt.receive_maximum: must be between 1 and 65535, got 70000`},
		{"queued", "[mqtt]\nmax_queued_messages = -1", `t.toml:2: mqtt.max_queued_messages: must be at least 0, got -1`},
		{"queue policy", "[mqtt]\nqueue_full_policy = \"block\"", `t.toml:2: mqtt.queue_full_policy: invalid value "block" (allowed: "drop_new", "drop_oldest")`},
		{"qos0 queue", "[mqtt]\nmax_queued_qos0 = 0", `t.toml:2: mqtt.max_queued_qos0: must be at least 1, got 0`},
		{"alias", "[mqtt]\ntopic_alias_maximum = -1", `t.toml:2: mqtt.topic_alias_maximum: must be between 0 and 65535, got -1`},
		{"session expiry", "[mqtt]\nmax_session_expiry = \"-1h\"", `t.toml:2: mqtt.max_session_expiry: must not be negative, got "-1h"`},
		{"client id length", "[mqtt]\nmax_client_id_length = 10", `t.toml:2: mqtt.max_client_id_length: must be between 23 and 65535, got 10`},

		{"listener type", "[[listener]]\ntype = \"quic\"", `t.toml:2: listener[0].type: invalid value "quic" (allowed: "tcp", "tls", "ws", "wss")`},
		{"listener port", "[[listener]]\naddress = \"localhost:http\"", `t.toml:2: listener[0].address: invalid port "http" in address "localhost:http" (want a number from 0 to 65535)`},
		{"listener port range", "[[listener]]\naddress = \":70000\"", `t.toml:2: listener[0].address: invalid port "70000" in address ":70000" (want a number from 0 to 65535)`},
		{"listener max connections", "[[listener]]\nmax_connections = -5", `t.toml:2: listener[0].max_connections: must be at least 0, got -5`},
		{"listener duplicate", "[[listener]]\naddress = \":1883\"\n[[listener]]\nname = \"tcp::1883\"\naddress = \":1884\"",
			`t.toml:4: listener[1].name: duplicate name "tcp::1883" (also used by listener[0].name)`},
		{"tls key on tcp", "[[listener]]\ncert_file = \"c\"", `t.toml:2: listener[0].cert_file: only valid for tls and wss listeners, this one is tcp`},
		{"ws key on tls", tls + "path = \"/mqtt\"", `t.toml:5: listener[0].path: only valid for ws and wss listeners, this one is tls`},
		{"tls cert missing", "[[listener]]\ntype = \"wss\"\nkey_file = \"k\"", `t.toml:1: listener[0].cert_file: missing (required)`},
		{"tls key empty", "[[listener]]\ntype = \"tls\"\ncert_file = \"c\"\nkey_file = \"\"", `t.toml:4: listener[0].key_file: must not be empty`},
		{"tls version", tls + "min_version = \"1.1\"", `t.toml:5: listener[0].min_version: invalid value "1.1" (allowed: "1.2", "1.3")`},
		{"tls username", tls + "username_from = \"email\"", `t.toml:5: listener[0].username_from: invalid value "email" (allowed: "", "cn", "san")`},
		{"tls client ca", tls + "require_client_cert = true", `t.toml:1: listener[0].ca_file: missing: require_client_cert needs the CA that signs client certificates`},
		{"ws path", "[[listener]]\ntype = \"ws\"\npath = \"mqtt\"", `t.toml:3: listener[0].path: must start with /, got "mqtt"`},
		{"ws origin", "[[listener]]\ntype = \"ws\"\nallowed_origins = [\"a\", \"\"]", `t.toml:3: listener[0].allowed_origins[1]: empty origin`},

		{"user name", "[[auth.user]]\npassword_hash = \"" + hash + "\"", `t.toml:1: auth.user[0].username: missing (required)`},
		{"user hash prefix", "[[auth.user]]\nusername = \"a\"\npassword_hash = \"secret\"", `t.toml:3: auth.user[0].password_hash: unknown hash format: want bcrypt ("$2a$", "$2b$", "$2y$") or mosquitto_passwd ("$7$", "$6$")`},
		{"user hash mosquitto", "[[auth.user]]\nusername = \"a\"\npassword_hash = \"$7$101$c2FsdA==$AAAA\"",
			`t.toml:3: auth.user[0].password_hash: not a valid Mosquitto sha512-pbkdf2 hash: the hash is not 64 bytes in base64`},
		{"user hash short", "[[auth.user]]\nusername = \"a\"\npassword_hash = \"$2b$10$abc\"", `t.toml:3: auth.user[0].password_hash: not a valid bcrypt hash: hashedSecret too short to be a bcrypted password`},
		{"user duplicate", "[[auth.user]]\nusername = \"a\"\npassword_hash = \"" + hash + "\"\n[[auth.user]]\nusername = \"a\"\npassword_hash = \"" + hash + "\"",
			`t.toml:5: auth.user[1].username: duplicate name "a" (also used by auth.user[0].username)`},

		{"persistence sync", "[persistence]\nsync = \"sometimes\"", `t.toml:2: persistence.sync: invalid value "sometimes" (allowed: "always", "periodic", "never")`},
		{"persistence dir", "[persistence]\ndir = \"\"", `t.toml:2: persistence.dir: must not be empty`},
		{"persistence interval", "[persistence]\nsync_interval = \"0s\"", `t.toml:2: persistence.sync_interval: must be greater than zero, got "0s"`},

		{"admin address", "[admin]\naddress = \"8080\"", `t.toml:2: admin.address: missing port in address "8080"`},
		{"admin basic", "[admin]\naddress = \"127.0.0.1:8080\"\nusername = \"a\"", `t.toml:1: admin.password: missing: admin.username is set, and basic auth needs both`},

		{"plugin script", "[[plugin]]\nname = \"p\"", `t.toml:1: plugin[0].script: missing (required)`},
		{"plugin fail", "[[plugin]]\nname = \"p\"\nscript = \"p.lua\"\nfail = \"maybe\"", `t.toml:4: plugin[0].fail: invalid value "maybe" (allowed: "closed", "open")`},
		{"plugin timeout", "[[plugin]]\nname = \"p\"\nscript = \"p.lua\"\ntimeout = \"0s\"", `t.toml:4: plugin[0].timeout: must be greater than zero, got "0s"`},
		{"plugin pool", "[[plugin]]\nname = \"p\"\nscript = \"p.lua\"\npool = -1", `t.toml:4: plugin[0].pool: must be at least 0, got -1`},
		{"plugin queue", "[[plugin]]\nname = \"p\"\nscript = \"p.lua\"\nqueue_size = 0", `t.toml:4: plugin[0].queue_size: must be at least 1, got 0`},
		{"plugin duplicate", "[[plugin]]\nname = \"p\"\nscript = \"p.lua\"\n[[plugin]]\nname = \"p\"\nscript = \"q.lua\"",
			`t.toml:5: plugin[1].name: duplicate name "p" (also used by plugin[0].name)`},

		{"sink type", "[[sink]]\nname = \"s\"\ntype = \"mongo\"", `t.toml:3: sink[0].type: unknown sink type "mongo" (registered: fake, sqlite)`},
		{"sink type missing", "[[sink]]\nname = \"s\"", `t.toml:1: sink[0].type: missing (required)`},
		{"sink name path", "[[sink]]\nname = \"../x\"\ntype = \"sqlite\"", `t.toml:2: sink[0].name: "../x" cannot be used: the name is part of file paths (spool_dir, dead_letter)`},
		{"sink duplicate", sink + sink, `t.toml:6: sink[1].name: duplicate name "archive" (also used by sink[0].name)`},
		{"sink batch", sink + "batch_size = 0", `t.toml:5: sink[0].batch_size: must be at least 1, got 0`},
		{"sink retry", sink + "retry_max = \"10ms\"", `t.toml:5: sink[0].retry_max: must be at least retry_initial (100ms), got "10ms"`},
		{"sink spool", sink + "spool_max = 0", `t.toml:5: sink[0].spool_max: must be greater than zero`},
		{"sink policy", sink + "full_policy = \"block\"", `t.toml:5: sink[0].full_policy: invalid value "block" (allowed: "backpressure", "drop_oldest")`},
		{"sink options validate", "[[sink]]\nname = \"s\"\ntype = \"fake\"", `t.toml:1: sink[0]: url is required`},
		{"sink options validate key", "[[sink]]\nname = \"s\"\ntype = \"sqlite\"\nkeep = \"-1d\"", `t.toml:4: sink[0].keep: must not be negative`},

		{"route sinks", sink + "[[sink]]\nname = \"search\"\ntype = \"fake\"\nurl = \"u\"\n[[route]]\ntopics = [\"#\"]\nsinks = [\"archive\", \"pg\"]",
			`t.toml:11: route[0].sinks: unknown sink "pg" (configured: archive, search)`},
		{"route topics", sink + "[[route]]\nsinks = [\"archive\"]", `t.toml:5: route[0].topics: missing (required)`},
		{"route empty sinks", sink + "[[route]]\ntopics = [\"#\"]\nsinks = []", `t.toml:7: route[0].sinks: must not be empty`},
		{"route filter", sink + "[[route]]\ntopics = [\"a/#\", \"a/#/b\"]\nsinks = [\"archive\"]",
			`t.toml:6: route[0].topics[1]: invalid topic filter "a/#/b": + and # must fill a whole level, and # must be last`},

		{"job schedule", "[[job]]\nname = \"j\"\nscript = \"j.lua\"", `t.toml:1: job[0]: missing schedule: set every (e.g. "1m") or cron (e.g. "*/5 * * * *")`},
		{"job both", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\nevery = \"1m\"\ncron = \"* * * * *\"",
			`t.toml:5: job[0].cron: a job runs either every interval or on a cron schedule: remove every or cron`},
		{"job cron", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\ncron = \"* * *\"",
			`t.toml:4: job[0].cron: must have 5 space-separated fields (minute hour day-of-month month day-of-week), got "* * *"`},
		{"job cron value", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\ncron = \"61 * * * *\"",
			`t.toml:4: job[0].cron: invalid cron expression "61 * * * *": end of range (61) above maximum (59): 61`},
		{"job cron name", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\n\ncron = \"0 9 * * mon-fry\"",
			`t.toml:5: job[0].cron: invalid cron expression "0 9 * * mon-fry": failed to parse int from fry: strconv.Atoi: parsing "fry": invalid syntax`},
		{"job cron never", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\ncron = \"0 0 30 2 *\"",
			`t.toml:4: job[0].cron: cron expression "0 0 30 2 *" never matches: no such date in the next five years`},
		{"job name path", "[[job]]\nname = \"a/b\"\nscript = \"j.lua\"\nevery = \"1m\"",
			`t.toml:2: job[0].name: "a/b" cannot be used: the name is part of a file path (<persistence.dir>/jobs/<name>.json) and of $SYS topics, so it cannot hold / \ + or #`},
		{"job jitter long", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\nevery = \"1m\"\njitter = \"1m\"",
			`t.toml:5: job[0].jitter: must be shorter than every (1m), got "1m"`},
		{"job every", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\nevery = \"0s\"", `t.toml:4: job[0].every: must be greater than zero, got "0s"`},
		{"job jitter", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\nevery = \"1m\"\njitter = \"-1s\"", `t.toml:5: job[0].jitter: must not be negative, got "-1s"`},
		{"job name", "[[job]]\nscript = \"j.lua\"\nevery = \"1m\"", `t.toml:1: job[0].name: missing (required)`},
		{"job duplicate", "[[job]]\nname = \"j\"\nscript = \"j.lua\"\nevery = \"1m\"\n[[job]]\nname = \"j\"\nscript = \"j.lua\"\nevery = \"1m\"",
			`t.toml:6: job[1].name: duplicate name "j" (also used by job[0].name)`},

		{"aggregate windows", "[[aggregate]]\ntopics = [\"t\"]\nwindows = [\"1m\", \"0s\"]", `t.toml:3: aggregate[0].windows[1]: must be greater than zero, got "0s"`},
		{"aggregate window short", "[[aggregate]]\ntopics = [\"t\"]\nwindows = [\"500ms\"]", `t.toml:3: aggregate[0].windows[0]: must be at least 1s, got "500ms"`},
		{"aggregate max topics", "[[aggregate]]\ntopics = [\"t\"]\nmax_topics = 0", `t.toml:3: aggregate[0].max_topics: must be at least 1, got 0`},
		{"alert resolved retain", "[alert]\nresolved_retain = \"0s\"", `t.toml:2: alert.resolved_retain: must be between 1s and 49710d6h28m15s (an MQTT message expiry), got "0s"`},
		{"aggregate value", "[[aggregate]]\ntopics = [\"t\"]\nvalue = \"a..b\"", `t.toml:3: aggregate[0].value: invalid JSON path "a..b": want names separated by dots, such as "sensor.temp"`},
		{"aggregate duplicate", "[[aggregate]]\ntopics = [\"t\"]\n[[aggregate]]\ntopics = [\"t\", \"u\"]",
			`t.toml:3: aggregate[1].name: duplicate name "t" (also used by aggregate[0].name)`},
		{"aggregate topics", "[[aggregate]]\nname = \"x\"", `t.toml:1: aggregate[0].topics: missing (required)`},

		{"alert prefix", "[alert]\ntopic_prefix = \"alerts/#\"", `t.toml:2: alert.topic_prefix: must be a topic name, without + or #: "alerts/#"`},
		{"webhook url", "[[alert.webhook]]\nurl = \"ftp://x\"", `t.toml:2: alert.webhook[0].url: invalid URL "ftp://x": want http://host/... or https://host/...`},
		{"webhook retries", "[[alert.webhook]]\nurl = \"http://x\"\nretries = -1", `t.toml:3: alert.webhook[0].retries: must be at least 0, got -1`},
		{"webhook timeout", "[[alert.webhook]]\nurl = \"http://x\"\ntimeout = \"0s\"", `t.toml:3: alert.webhook[0].timeout: must be greater than zero, got "0s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errString(t, tt.src); got != tt.want {
				t.Errorf("errors:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestDecodeOptions(t *testing.T) {
	got := errString(t, `[[sink]]
name = "s"
type = "fake"
url = "http://x"
worker = 3
[[sink]]
name = "t"
type = "fake"
url = "http://x"
workers = "two"
tags = ["a", 1]
`)
	want := strings.Join([]string{
		`t.toml:5: sink[0].worker: unknown key (did you mean "workers"?)`,
		`t.toml:10: sink[1].workers: expected an integer, got string "two"`,
		`t.toml:11: sink[1].tags: expected an array, got array [a 1]`,
	}, "\n")
	if got != want {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}

	// Called directly, as a sink package does with its own struct.
	c := mustParse(t, "[[sink]]\nname = \"s\"\ntype = \"fake\"\nurl = \"http://x\"\nworkers = 4\n")
	var opts struct {
		URL string `toml:"url"`
	}
	err := c.DecodeOptions(c.Sinks[0].Options, "sink[0]", &opts)
	if want := `t.toml:5: sink[0].workers: unknown key`; err == nil || err.Error() != want {
		t.Errorf("DecodeOptions = %v, want %s", err, want)
	}
	if opts.URL != "http://x" {
		t.Errorf("url = %q, want http://x", opts.URL)
	}
	if err := (&Config{}).DecodeOptions(c.Sinks[0].Options, "sink[0]", &opts); err == nil {
		t.Errorf("DecodeOptions on a Config not from Parse = nil, want an error")
	}
}

func TestWriteTOMLRoundTrip(t *testing.T) {
	const hash = "$2a$10$V4icbocLmpVZTRQOkwo3hekvpQqLuzMSI.lfG2Ejdn6QWqpl8x/MS"
	src := `[log]
level = "debug"
format = "json"
[mqtt]
sys_interval = "0s"
max_packet_size = "64KB"
max_keepalive = "5m"
max_session_expiry = "7d"
queue_qos0 = true
[[listener]]
name = "plain"
address = ":0"
[[listener]]
type = "wss"
cert_file = "c.pem"
key_file = "k.pem"
ca_file = "ca.pem"
require_client_cert = true
username_from = "san"
allowed_origins = ["https://a.example"]
[[auth.user]]
username = "alice"
password_hash = "` + hash + `"
[persistence]
sync = "always"
[admin]
address = "127.0.0.1:8080"
username = "admin"
password = "pw"
[[plugin]]
name = "acl"
script = "acl.lua"
[plugin.settings]
admins = ["alice"]
limit = 3
nested = { ratio = 0.5 }
[[sink]]
name = "history"
type = "sqlite"
keep = "1d12h"
[[sink]]
name = "search"
type = "fake"
url = "http://es"
tags = ["x"]
spool_max = 1000
[[route]]
topics = ["home/#", "+/status"]
sinks = ["history", "search"]
[[job]]
name = "room-temperature"
script = "scripts/alerts/room_temperature.lua"
every = "1m"
[job.settings]
threshold = 30.0
[[job]]
name = "nightly"
script = "n.lua"
cron = "0 3 * * *"
[[aggregate]]
topics = ["home/+/temperature"]
value = "sensor.temp"
windows = ["30s", "1h"]
[alert]
topic_prefix = "ops/alerts"
[[alert.webhook]]
url = "https://hooks.example.com/x"
headers = { Authorization = "Bearer t" }
`
	c1 := mustParse(t, src)
	var out bytes.Buffer
	if err := c1.WriteTOML(&out); err != nil {
		t.Fatalf("WriteTOML: %v", err)
	}
	c2 := mustParse(t, out.String())
	for _, c := range []*Config{c1, c2} {
		c.meta = nil
		for i := range c.Sinks {
			c.Sinks[i].Options = toml.Primitive{}
		}
	}
	if !reflect.DeepEqual(c1, c2) {
		t.Errorf("parsed again:\n%#v\nwant:\n%#v\nTOML:\n%s", c2, c1, out.String())
	}

	// The defaults write out too, and an unregistered sink keeps its keys.
	withoutSinkType("sqlite", func() {
		c, err := Default()
		if err != nil {
			t.Fatal(err)
		}
		out.Reset()
		if err := c.WriteTOML(&out); err != nil {
			t.Fatalf("WriteTOML: %v", err)
		}
		if !strings.Contains(out.String(), `keep = "30d"`) {
			t.Errorf("WriteTOML of Default lacks the sqlite options:\n%s", out.String())
		}
	})
}

// [auth] password_file is read while validating: its problems come with the
// config's line and key and the password file's own line; a user both in
// the file and in [[auth.user]] is an error.
func TestPasswordFile(t *testing.T) {
	const hash = "$7$101$0TArXXNeae+K+/lU$rQWECzWL4IjhSKMAoxeJNh1yCKauJeny8OOZ6wVrIn2AF2+mgFiLOPs7bxdu13a9IWbcV85fmJvaEx3mb0jOog=="
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pw")
	bad := filepath.Join(dir, "bad.pw")
	if err := os.WriteFile(good, []byte("alice:"+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("alice:"+hash+"\nbob:hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("t.toml", []byte("[auth]\npassword_file = \""+good+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth.PasswordFile != good {
		t.Errorf("password_file = %q", cfg.Auth.PasswordFile)
	}
	for _, tt := range []struct{ name, src, want string }{
		{"bad line", "[auth]\npassword_file = \"" + bad + "\"",
			`t.toml:2: auth.password_file: ` + bad + `:2: user "bob": the password is not hashed (mosquitto_passwd -U hashes a file of plain passwords)`},
		{"missing", "[auth]\npassword_file = \"" + dir + "/nope.pw\"",
			`t.toml:2: auth.password_file: open ` + dir + `/nope.pw: no such file or directory`},
		{"also in auth.user", "[auth]\npassword_file = \"" + good + "\"\n[[auth.user]]\nusername = \"alice\"\npassword_hash = \"" + hash + "\"",
			`t.toml:4: auth.user[0].username: user "alice" is also in the password file (` + good + `:1)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := errString(t, tt.src); got != tt.want {
				t.Errorf("errors:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// [auth] acl_file is parsed while validating: its problems come with the
// config's line and key and the ACL file's own line.
func TestACLFileConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.acl")
	bad := filepath.Join(dir, "bad.acl")
	if err := os.WriteFile(good, []byte("user alice\ntopic readwrite alice/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("user alice\ntopic rw alice/#/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("t.toml", []byte("[auth]\nacl_file = \""+good+"\"\n"))
	if err != nil || cfg.Auth.ACLFile != good {
		t.Fatalf("acl_file: %v %q", err, cfg.Auth.ACLFile)
	}
	want := `t.toml:2: auth.acl_file: ` + bad + `:2: unknown access "rw": want read, write, readwrite or deny`
	if got := errString(t, "[auth]\nacl_file = \""+bad+"\""); !strings.HasPrefix(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s…", got, want)
	}
}
