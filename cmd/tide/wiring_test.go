package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemq/tide/core/packet"
)

// waitLog polls the broker's log until re matches, and returns the first group.
func waitLog(t *testing.T, cmd any, re *regexp.Regexp) string {
	t.Helper()
	lf, _ := logs.Load(cmd)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(lf.(string))
		if m := re.FindSubmatch(b); m != nil {
			return string(m[1])
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log never matched %s", re)
	return ""
}

// v5publish connects, publishes at QoS 1 and returns the PUBACK's reason code.
func v5publish(t *testing.T, addr, topic string) packet.ReasonCode {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := packet.NewReader(c)
	r.Version = packet.V5
	c.Write(packet.Encode(&packet.Connect{ClientID: "w-" + topic, CleanStart: true}, packet.V5))
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	c.Write(packet.Encode(&packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte(`{"v":1}`)}, packet.V5))
	p, _, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	return p.(*packet.Ack).ReasonCode
}

func httpGet(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The binary with everything on: a Lua plugin, the SQLite sink, the store,
// the admin API; SIGHUP reloads the plugin.
func TestWiredBroker(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "deny.lua")
	write := func(prefix string) {
		src := `function on_publish(client, msg)
  if string.find(msg.topic, "^` + prefix + `/") then return false, "not here" end
  return nil
end
`
		if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("forbidden")
	cfg := writeConfig(t, `[[listener]]
address = "127.0.0.1:0"
allow_anonymous = true
[persistence]
dir = "`+filepath.Join(dir, "data")+`"
[admin]
address = "127.0.0.1:0"
token = "secret"
[[plugin]]
name = "deny"
script = "`+script+`"
[[sink]]
name = "history"
type = "sqlite"
flush_interval = "10ms"
[[route]]
topics = ["#"]
sinks = ["history"]
`)
	cmd, addr := startTide(t, cfg)
	adminAddr := waitLog(t, cmd, regexp.MustCompile(`msg="admin API listening" address=(\S+)`))
	base := "http://" + adminAddr

	if code := v5publish(t, addr, "forbidden/x"); code != packet.NotAuthorized {
		t.Fatalf("publish to forbidden/x: %v, want not authorized", code)
	}
	if code := v5publish(t, addr, "ok/x"); code.IsError() {
		t.Fatalf("publish to ok/x: %v", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := httpGet(t, base+"/metrics", "secret")
		if strings.Contains(string(body), `tide_sink_written_total{sink="history"} 1`) &&
			strings.Contains(string(body), `tide_plugin_denied_total{hook="on_publish",plugin="deny"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed the stored message and the denial:\n%s", grep(body, "tide_sink_written|tide_plugin_denied"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, body := httpGet(t, base+"/api/backup", "secret"); status != 200 || len(body) < 4096 {
		t.Fatalf("backup: status %d, %d bytes", status, len(body))
	}

	write("alsoforbidden")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, cmd, regexp.MustCompile(`msg=(reloaded)`))
	if code := v5publish(t, addr, "alsoforbidden/x"); code != packet.NotAuthorized {
		t.Fatalf("after reload, publish to alsoforbidden/x: %v", code)
	}
	if code := v5publish(t, addr, "forbidden/x"); code.IsError() {
		t.Fatalf("after reload, publish to forbidden/x: %v", code)
	}
}

func grep(b []byte, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The scheduler in the binary: an [[aggregate]] fed by MQTT, the room
// temperature job firing its alert on tide/alerts/..., job status through
// /api/jobs, $SYS and `tide jobs` (both ways), and a job added on SIGHUP.
func TestWiredScheduler(t *testing.T) {
	dir := t.TempDir()
	script, err := filepath.Abs("../../scripts/alerts/room_temperature.lua")
	if err != nil {
		t.Fatal(err)
	}
	counter := filepath.Join(dir, "counter.lua")
	if err := os.WriteFile(counter, []byte("function run(ctx)\n  state.n = (state.n or 0) + 1\nend\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := `[mqtt]
sys_interval = "1s"
[[listener]]
address = "127.0.0.1:0"
allow_anonymous = true
[persistence]
dir = "` + filepath.Join(dir, "data") + `"
[admin]
address = "127.0.0.1:0"
token = "secret"
[[aggregate]]
name = "temperature"
topics = ["home/+/temperature"]
windows = ["1m", "5m", "10m"]
[[job]]
name = "room-temperature"
script = "` + script + `"
every = "1s"
[job.settings]
threshold = 30.0
min_samples = 3
`
	cfg := writeConfig(t, base)
	cmd, addr := startTide(t, cfg)
	adminAddr := waitLog(t, cmd, regexp.MustCompile(`msg="admin API listening" address=(\S+)`))

	// An alert subscriber, then three hot readings from the kitchen.
	sub := dialV311(t, addr, "alerts")
	sub.Write(packet.Encode(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "tide/alerts/#"}}}, packet.V311))
	sensor := dialV311(t, addr, "sensor")
	for _, v := range []string{"31", "33", "35"} {
		sensor.Write(packet.Encode(&packet.Publish{Topic: "home/kitchen/temperature", Payload: []byte(v)}, packet.V311))
	}
	r := packet.NewReader(sub)
	r.Version = packet.V311
	sub.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		p, _, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("waiting for the alert: %v", err)
		}
		if pub, ok := p.(*packet.Publish); ok {
			if pub.Topic != "tide/alerts/high-temperature-kitchen" || !strings.Contains(string(pub.Payload), `"firing"`) ||
				!strings.Contains(string(pub.Payload), "33.0 °C over 5 minutes") {
				t.Fatalf("alert %s %s", pub.Topic, pub.Payload)
			}
			break
		}
	}

	// The notice went out during the run; its outcome is recorded when it ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body := httpGet(t, "http://"+adminAddr+"/api/jobs", "secret")
		if status == 200 && strings.Contains(string(body), `"name":"room-temperature"`) && strings.Contains(string(body), `"last_outcome":"ok"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/jobs: %d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := exec.Command(tideBin, "jobs", "-c", cfg, "-admin", adminAddr).CombinedOutput()
	if err != nil || !regexp.MustCompile(`room-temperature\s+every 1s\s+\d+\s+0\s+0\s+\d+\s+\S+ \S+\s+\S+s\s+(ok|running)`).Match(out) ||
		!strings.Contains(string(out), "admin API") {
		t.Fatalf("tide jobs (admin): %v\n%s", err, out)
	}
	// Through $SYS, as `tide jobs` does without an admin API.
	deadline = time.Now().Add(10 * time.Second)
	for {
		out, err = exec.Command(tideBin, "jobs", "-c", cfg, "-mqtt", addr).CombinedOutput()
		if err == nil && regexp.MustCompile(`room-temperature\s+-\s+[1-9]\d*\s+0\s+0\s+\d+\s+\S+ \S+\s+\S+s\s+ok`).Match(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tide jobs (MQTT): %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// SIGHUP adds a job.
	if err := os.WriteFile(cfg, []byte(base+`[[job]]
name = "counter"
script = "`+counter+`"
every = "1s"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, body := httpGet(t, "http://"+adminAddr+"/api/jobs", "secret")
		if regexp.MustCompile(`"name":"counter"[^}]*"runs":[1-9]`).Match(body) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job added on SIGHUP never ran: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Its state is on disk, for the next start: saved when a run ends (the
	// run count above goes up when it starts).
	deadline = time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "data", "jobs", "counter.json"))
		if err == nil && strings.Contains(string(b), `"n"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state file: %v %s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialV311 connects an MQTT 3.1.1 client and reads its CONNACK.
func dialV311(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write(packet.Encode(&packet.Connect{ProtocolName: "MQTT", ProtocolLevel: packet.V311, ClientID: id, CleanStart: true}, packet.V311))
	r := packet.NewReader(c)
	r.Version = packet.V311
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, _, err := r.ReadPacket(); err != nil || p.(*packet.Connack).ReasonCode != 0 {
		t.Fatalf("CONNACK: %v %v", p, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}
