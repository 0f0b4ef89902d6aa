package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemq/tide/core/packet"
)

var tideBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tide-bin")
	if err != nil {
		panic(err)
	}
	tideBin = filepath.Join(dir, "tide")
	out, err := exec.Command("go", "build", "-o", tideBin, ".").CombinedOutput()
	if err != nil {
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// anonymousEphemeral is the smallest configuration a test serves with: one
// listener on a free loopback port, anonymous clients, nothing on disk.
const anonymousEphemeral = `[[listener]]
address = "127.0.0.1:0"
allow_anonymous = true
[persistence]
enabled = false
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tide.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckReportsEveryErrorWithFileLineAndKey(t *testing.T) {
	cfg := writeConfig(t, `[mqtt]
max_inflght = 10
receive_maximum = 0

[[listener]]
address = "localhost"
`)
	cmd := exec.Command(tideBin, "check", "-c", cfg)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("tide check succeeded on a bad config:\n%s", out)
	}
	for _, want := range []string{
		"tide.toml:2: mqtt.max_inflght: unknown key",
		`did you mean "max_inflight"`,
		"tide.toml:3: mqtt.receive_maximum",
		"tide.toml:6: listener[0].address",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckPrintsEffectiveConfig(t *testing.T) {
	out, err := exec.Command(tideBin, "check").CombinedOutput()
	if err != nil {
		t.Fatalf("tide check on the default config: %v\n%s", err, out)
	}
	for _, want := range []string{"[mqtt]", "max_inflight = 64", `address = "127.0.0.1:1883"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective config lacks %q", want)
		}
	}
}

func TestVersionAndPasswd(t *testing.T) {
	out, err := exec.Command(tideBin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "tide ") {
		t.Fatalf("version: %q %v", out, err)
	}
	cmd := exec.Command(tideBin, "passwd")
	cmd.Stdin = strings.NewReader("s3cret\n")
	out, err = cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "$2a$") {
		t.Fatalf("passwd: %q %v", out, err)
	}
	for _, args := range [][]string{{"a", "b"}, {"a:b"}, {""}} {
		cmd := exec.Command(tideBin, append([]string{"passwd"}, args...)...)
		cmd.Stdin = strings.NewReader("s3cret\n")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "tide passwd: ") {
			t.Errorf("passwd %q: %v %q, want a usage error", args, err, out)
		}
	}
}

// logs maps a started broker to the file holding its log.
var logs sync.Map

var listenRe = regexp.MustCompile(`msg=listening .*address=([0-9.]+:[0-9]+)`)

// startTide runs the binary with cfg and returns its MQTT address.
func startTide(t *testing.T, cfg string, flags ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(tideBin, append(flags, "-c", cfg)...)
	cmd.Dir = t.TempDir()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	logf, err := os.CreateTemp("", "tide-test-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.Remove(logf.Name()) // kept for reading when the test failed
		}
	})
	logs.Store(cmd, logf.Name())
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("tide exited before listening")
			}
			if m := listenRe.FindStringSubmatch(l); m != nil {
				return cmd, m[1]
			}
		case <-deadline:
			t.Fatal("tide did not report a listening address")
		}
	}
}

// --allocprofile writes, when the broker stops, a profile of what it
// allocated: here the handling of a PUBLISH shows up in it.
func TestAllocProfile(t *testing.T) {
	cfg := writeConfig(t, anonymousEphemeral)
	prof := filepath.Join(t.TempDir(), "allocs.prof")
	cmd, addr := startTide(t, cfg, "-allocprofile", prof)
	conn := dialV311(t, addr, "p")
	conn.Write(packet.Encode(&packet.Publish{Topic: "t", QoS: 1, PacketID: 1, Payload: []byte("x")}, packet.V311))
	r := packet.NewReader(conn)
	r.Version = packet.V311
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, _, err := r.ReadPacket(); err != nil || p.Type() != packet.PUBACK {
		t.Fatalf("PUBACK: %+v %v", p, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd)
	f, err := os.Open(prof)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f) // a pprof profile is gzipped protobuf
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	for _, want := range []string{"alloc_space", "handlePublish"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("profile of %d bytes does not mention %s", len(b), want)
		}
	}
}

func TestServeAndGracefulStop(t *testing.T) {
	cfg := writeConfig(t, anonymousEphemeral)
	cmd, addr := startTide(t, cfg)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(packet.Encode(&packet.Connect{ClientID: "c", CleanStart: true}, packet.V5))
	r := packet.NewReader(conn)
	r.Version = packet.V5
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, _, err := r.ReadPacket(); err != nil || p.(*packet.Connack).ReasonCode != 0 {
		t.Fatalf("CONNACK: %+v %v", p, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p, _, err := r.ReadPacket()
	if err != nil {
		t.Fatalf("waiting for DISCONNECT: %v", err)
	}
	if d, ok := p.(*packet.Disconnect); !ok || d.ReasonCode != packet.ServerShuttingDown {
		t.Fatalf("got %+v, want DISCONNECT 0x8B", p)
	}
	waitExit(t, cmd)
}

// waitExit waits for a signalled tide to exit cleanly.
func waitExit(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tide did not exit after SIGTERM")
	}
}
