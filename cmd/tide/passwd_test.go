package main

import (
	"net"
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

// needTool skips without the named Debian tool, unless
// TIDE_REQUIRE_SERVICES=1.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("TIDE_REQUIRE_SERVICES") == "1" {
			t.Fatalf("TIDE_REQUIRE_SERVICES=1 but %s is not installed (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
}

// A Mosquitto password file works unchanged: users written by
// mosquitto_passwd (both its formats) and by `tide passwd USER` connect
// with mosquitto_pub, a wrong password or an unknown user is refused, and
// SIGHUP reads the file again (a broken file keeps the users loaded).
func TestWiredPasswordFile(t *testing.T) {
	needTool(t, "mosquitto_passwd", "mosquitto")
	needTool(t, "mosquitto_pub", "mosquitto-clients")
	pw := filepath.Join(t.TempDir(), "users.pw")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("mosquitto_passwd", "-c", "-b", pw, "alice", "s3cret")
	run("mosquitto_passwd", "-H", "sha512", "-b", pw, "bob", "hunter2")
	tp := exec.Command(tideBin, "passwd", "carol")
	tp.Stdin = strings.NewReader("tr0ub4dor\n")
	line, err := tp.Output()
	if err != nil || !strings.HasPrefix(string(line), "carol:$2a$") {
		t.Fatalf("tide passwd carol: %q %v", line, err)
	}
	f, err := os.OpenFile(pw, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line)
	f.Close()

	cmd, addr := startTide(t, writeConfig(t, `[[listener]]
address = "127.0.0.1:0"
allow_anonymous = false
[persistence]
enabled = false
[auth]
password_file = "`+pw+`"
`))
	host, port, _ := strings.Cut(addr, ":")
	pub := func(user, pass string) (string, error) {
		out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-i", "pw-"+user,
			"-u", user, "-P", pass, "-t", "pw/test", "-q", "1", "-m", "x").CombinedOutput()
		return string(out), err
	}
	accepted := func(user, pass string) {
		t.Helper()
		if out, err := pub(user, pass); err != nil {
			t.Errorf("%s with the right password: %v\n%s", user, err, out)
		}
	}
	refused := func(user, pass string) {
		t.Helper()
		if out, err := pub(user, pass); err == nil || !strings.Contains(out, "bad user name or password") {
			t.Errorf("%s/%s: %v %q, want refused with bad user name or password", user, pass, err, out)
		}
	}
	accepted("alice", "s3cret")
	accepted("bob", "hunter2")
	accepted("carol", "tr0ub4dor")
	refused("alice", "hunter2")
	refused("dave", "s3cret")

	// alice stays connected until the reload that deletes her.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := packet.NewReader(c)
	r.Version = packet.V5
	c.Write(packet.Encode(&packet.Connect{ProtocolLevel: 5, ClientID: "alice-online", CleanStart: true,
		UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("s3cret")}, packet.V5))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, _, err := r.ReadPacket()
	if ack, ok := p.(*packet.Connack); err != nil || !ok || ack.ReasonCode != packet.Success {
		t.Fatalf("alice online: %v %v", p, err)
	}

	run("mosquitto_passwd", "-b", pw, "dave", "d4ve")
	run("mosquitto_passwd", "-D", pw, "alice")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, cmd, regexp.MustCompile(`msg=(reloaded)`))
	accepted("dave", "d4ve")
	refused("alice", "s3cret")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, _, err = r.ReadPacket()
	if d, ok := p.(*packet.Disconnect); err != nil || !ok || d.ReasonCode != packet.AdministrativeAction {
		t.Errorf("alice online after the reload that deleted her: %v %v, want DISCONNECT 0x98", p, err)
	}

	f, err = os.OpenFile(pw, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("erin:plaintext\n")
	f.Close()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, cmd, regexp.MustCompile(`msg="(reload refused)[^"]*".*auth.password_file: [^ ]*users.pw:4: user \\"erin\\": the password is not hashed`))
	accepted("dave", "d4ve")
	refused("erin", "plaintext")
}
