package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// aclFileText exercises every kind of line: anonymous lines, users,
// access kinds, a deny inside a grant, patterns with %c and %u.
const aclFileText = `# clients without a user name
topic read public/#

user admin
topic readwrite #

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic read shared/#

user bob
topic write shared/#
topic read bob/+/status

pattern readwrite devices/%c/#
pattern read home/%u/#
`

// mosquittoBin is the Mosquitto broker binary (in /usr/sbin, often not on
// the PATH); without it the test skips, unless TIDE_REQUIRE_SERVICES=1.
func mosquittoBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	needTool(t, "mosquitto", "mosquitto")
	return ""
}

// startMosquitto runs a Mosquitto of its own on a free loopback port with
// the same password and ACL files, and returns its address.
func startMosquitto(t *testing.T, pw, aclPath string) string {
	t.Helper()
	bin := mosquittoBin(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := strings.Cut(addr, ":")
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npassword_file %s\nacl_file %s\npersistence false\n", port, pw, aclPath)
	if os.Geteuid() == 0 {
		conf += "user root\n" // else it drops to user mosquitto, who cannot read the test's files
	}
	cf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cf)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %s:\n%s", addr, out.String())
		}
	}
}

// aclMatrix has each user publish each topic, and returns what each user's
// subscription to "#" received, as "publisher>topic" lines.
func aclMatrix(t *testing.T, addr string) map[string][]string {
	t.Helper()
	users := []string{"", "admin", "alice", "bob"}
	topics := []string{"public/x", "alice/x", "alice/secret/x", "shared/x", "bob/1/status", "bob/1/other",
		"devices/dev-alice/x", "devices/dev-bob/x", "devices/dev-/x", "home/alice/x", "home/bob/x", "other/x"}
	name := func(u string) string {
		if u == "" {
			return "anon"
		}
		return u
	}
	connect := func(u string, handler mqtt3.MessageHandler) mqtt3.Client {
		t.Helper()
		id := "dev-" + u
		if handler == nil {
			id = "retainer"
		}
		o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
			SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4).SetDefaultPublishHandler(handler)
		if u != "" {
			o.SetUsername(u).SetPassword("pw-" + u)
		}
		c := mqtt3.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect to %s: %v", name(u), addr, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	// Retained messages first, set by admin: what each subscriber gets of
	// them on subscribing is read through the file too.
	r := connect("admin", nil)
	for _, topic := range topics {
		if tok := r.Publish(topic, 1, true, "retained>"+topic); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("retain %s: %v", topic, tok.Error())
		}
	}
	var mu sync.Mutex
	got := map[string][]string{}
	clients := map[string]mqtt3.Client{}
	for _, u := range users {
		u := u
		c := connect(u, func(_ mqtt3.Client, m mqtt3.Message) {
			mu.Lock()
			got[name(u)] = append(got[name(u)], string(m.Payload()))
			mu.Unlock()
		})
		if tok := c.Subscribe("#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: subscribe: %v", name(u), tok.Error())
		}
		clients[u] = c
	}
	for _, u := range users {
		for _, topic := range topics {
			tok := clients[u].Publish(topic, 1, false, name(u)+">"+topic)
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("%s: publish %s: %v", name(u), topic, tok.Error())
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // every publish is acknowledged; let the deliveries land
	mu.Lock()
	defer mu.Unlock()
	for _, v := range got {
		slices.Sort(v)
	}
	return got
}

// An ACL file in Mosquitto's format means the same to Tide as to Mosquitto:
// the same users publish the same topics to a Mosquitto started with the
// same files, and every subscriber receives exactly the same messages.
func TestACLFileAgainstMosquitto(t *testing.T) {
	needTool(t, "mosquitto_passwd", "mosquitto")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "users.pw")
	for i, u := range []string{"admin", "alice", "bob"} {
		args := []string{"-b", pw, u, "pw-" + u}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
		}
	}
	aclPath := filepath.Join(dir, "tide.acl")
	if err := os.WriteFile(aclPath, []byte(aclFileText), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(pw, 0o644)

	mosq := startMosquitto(t, pw, aclPath)
	_, tide := startTide(t, writeConfig(t, `[[listener]]
address = "127.0.0.1:0"
allow_anonymous = true
[persistence]
enabled = false
[auth]
password_file = "`+pw+`"
acl_file = "`+aclPath+`"
`))
	want := aclMatrix(t, mosq)
	got := aclMatrix(t, tide)
	for _, u := range []string{"anon", "admin", "alice", "bob"} {
		if !slices.Equal(got[u], want[u]) {
			t.Errorf("%s received from Tide:\n  %s\nfrom Mosquitto:\n  %s", u, strings.Join(got[u], "\n  "), strings.Join(want[u], "\n  "))
		}
	}
	if len(want["alice"]) == 0 || len(want["admin"]) <= len(want["alice"]) {
		t.Errorf("the matrix shows little: %v", want)
	}
}
