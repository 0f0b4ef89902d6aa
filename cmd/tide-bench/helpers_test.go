package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/listener"
)

// startTide runs Tide's core on an ephemeral loopback port.
func startTide(t testing.TB, opts core.Options) (*core.Server, string) {
	t.Helper()
	if opts.SysInterval == 0 {
		opts.SysInterval = -1
	}
	s := core.New(opts, nil)
	addr, err := s.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "test", AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, s) })
	return s, addr.String()
}

func shutdown(t testing.TB, s *core.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bench runs tide-bench with args (progress off unless asked) and returns
// its exit status and output.
func bench(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncBuffer
	hasProgress := false
	for _, a := range args {
		if strings.HasPrefix(a, "--progress") {
			hasProgress = true
		}
	}
	if !hasProgress {
		args = append(args, "--quiet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code = run(ctx, args, &out, &errb, false)
	if testing.Verbose() {
		t.Logf("tide-bench %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return code, out.String(), errb.String()
}

// benchJSON runs with --json and decodes the report.
func benchJSON(t testing.TB, args ...string) (int, *report, string) {
	t.Helper()
	code, out, errs := bench(t, append(args, "--json")...)
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json output does not parse: %v\nstdout:\n%s\nstderr:\n%s", err, out, errs)
	}
	return code, &r, errs
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// selfSigned returns a certificate for 127.0.0.1 and its key, in PEM.
func selfSigned(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tide-bench test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	return certPEM, keyPEM
}

// writeFile writes b to a file in the test's temporary directory.
func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startTideOn serves Tide's core on a listener of Tide's own
// core/listener (tcp, tls, ws or wss) and returns its address.
func startTideOn(t testing.TB, lc conf.Listener) string {
	t.Helper()
	lc.Address = "127.0.0.1:0"
	ln, err := listener.Listen(lc, listener.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	s := core.New(core.Options{SysInterval: -1}, nil)
	if err := s.Serve(ln, core.ListenerOptions{Name: ln.Name(), AllowAnonymous: true}); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, s) })
	return ln.Addr().String()
}

// freeAddr returns a loopback address where nothing listens.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}
