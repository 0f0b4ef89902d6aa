package listener_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/listener"
)

// testLogger logs to stderr when TIDE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("TIDE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// ca is a certificate authority made for one test.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t testing.TB, name string) *ca {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf is a certificate and its key, as PEM and as a tls.Certificate.
type leaf struct {
	certPEM, keyPEM []byte
	tls             tls.Certificate
}

type leafOpts struct {
	cn        string
	dns       []string
	server    bool
	notBefore time.Time
	notAfter  time.Time
}

func (c *ca) issue(t testing.TB, o leafOpts) leaf {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: o.cn},
		DNSNames:     o.dns,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if !o.notBefore.IsZero() {
		tmpl.NotBefore = o.notBefore
	}
	if !o.notAfter.IsZero() {
		tmpl.NotAfter = o.notAfter
	}
	if o.server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := leaf{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
	l.tls, err = tls.X509KeyPair(l.certPEM, l.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (c *ca) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// pki is a test's certificate files: a CA, a server certificate for
// 127.0.0.1 and localhost signed by it, and their paths.
type pki struct {
	dir                      string
	ca                       *ca
	server                   leaf
	certFile, keyFile, caPEM string
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), ca: newCA(t, "Tide Test CA")}
	p.server = p.ca.issue(t, leafOpts{cn: "tide-server", server: true})
	p.certFile = writeFile(t, p.dir, "server.crt", p.server.certPEM)
	p.keyFile = writeFile(t, p.dir, "server.key", p.server.keyPEM)
	p.caPEM = writeFile(t, p.dir, "ca.crt", p.ca.pem)
	return p
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	// Write then rename, as a certificate manager does, so a reload never
	// reads half a file.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientTLS is the configuration of a client that trusts roots and shows
// certs.
func clientTLS(roots *x509.CertPool, certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: roots, Certificates: certs, ServerName: "127.0.0.1"}
}

// clientTLSAlways is clientTLS with a certificate sent even when the
// server asks for other CAs: Go clients otherwise send none, which would
// test the wrong refusal.
func clientTLSAlways(roots *x509.CertPool, cert tls.Certificate) *tls.Config {
	tc := clientTLS(roots)
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return tc
}

// connectGate records what a CONNECT looked like to the broker's gates,
// and passes.
type connectGate struct {
	mu   sync.Mutex
	seen map[string]*event.Client // by client id
}

func (g *connectGate) OnConnect(_ context.Context, req *event.ConnectRequest) event.ConnectDecision {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil {
		g.seen = map[string]*event.Client{}
	}
	c := *req.Client
	g.seen[c.ID] = &c
	return event.ConnectDecision{Verdict: event.Pass}
}

func (g *connectGate) get(id string) *event.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen[id]
}

// broker is a core.Server serving one listener opened by this package.
type broker struct {
	srv  *core.Server
	ln   *listener.Listener
	gate *connectGate
	addr string // host:port
}

// startBroker opens lc on 127.0.0.1:0 and serves it with a real broker,
// anonymous clients allowed and a recording connect gate, unless setup
// changes them.
func startBroker(t testing.TB, lc conf.Listener, setup ...func(*core.Server, *core.ListenerOptions)) *broker {
	t.Helper()
	if lc.Address == "" {
		lc.Address = "127.0.0.1:0"
	}
	if lc.Name == "" {
		lc.Name = "test-" + lc.Type
	}
	if (lc.Type == "tls" || lc.Type == "wss") && lc.MinVersion == "" {
		lc.MinVersion = "1.2"
	}
	if (lc.Type == "ws" || lc.Type == "wss") && lc.Path == "" {
		lc.Path = "/mqtt"
	}
	log := testLogger()
	ln, err := listener.Listen(lc, listener.WithLogger(log))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	srv := core.New(core.Options{SysInterval: -1}, log)
	g := &connectGate{}
	srv.SetGates(g, nil, nil)
	lo := core.ListenerOptions{Name: ln.Name(), AllowAnonymous: true, UsernameFrom: lc.UsernameFrom}
	for _, f := range setup {
		f(srv, &lo)
	}
	if err := srv.Serve(ln, lo); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &broker{srv: srv, ln: ln, gate: g, addr: ln.Addr().String()}
}

// eventually polls cond until it holds or ten seconds pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rejected returns the listener's count for a reason.
func rejected(ln *listener.Listener, reason string) uint64 { return ln.Stats().Rejected[reason] }
