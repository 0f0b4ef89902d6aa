package main

import (
	"io"
	"net"
	"net/http"
	"os"
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
