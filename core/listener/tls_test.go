package listener_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/listener"
)

func tlsDial(addr string, tc *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, tc)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func TestTLSPahoV3AndV5(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, conf.Listener{Type: "tls", CertFile: p.certFile, KeyFile: p.keyFile})

	c3 := mustDialV3(t, "ssl://"+b.addr, "tls-v3", clientTLS(p.ca.pool()))
	c3.roundTrip(t, "tls/v3", "hello over TLS")

	conn, err := tlsDial(b.addr, clientTLS(p.ca.pool()))
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	c5, err := dialV5(t, conn, "tls-v5")
	if err != nil {
		t.Fatalf("v5 connect: %v", err)
	}
	c5.roundTrip(t, "tls/v5", "hello over TLS, v5")

	// The core sees a TLS connection without a client certificate.
	ci := b.gate.get("tls-v5")
	if ci == nil || ci.TLS == nil {
		t.Fatalf("connect gate saw TLS info %+v, want non-nil", ci)
	}
	if ci.TLS.Verified {
		t.Errorf("Verified = true without a client certificate")
	}
	if got := b.ln.Stats().Accepted; got != 2 {
		t.Errorf("Accepted = %d, want 2", got)
	}
}

func TestTLSClientWithWrongCARefusesServer(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, conf.Listener{Type: "tls", CertFile: p.certFile, KeyFile: p.keyFile})
	other := newCA(t, "Another CA")

	_, err := tlsDial(b.addr, clientTLS(other.pool()))
	var uerr x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &uerr) {
		t.Fatalf("dial with the wrong CA: err = %v, want x509.UnknownAuthorityError", err)
	}
	if _, err := dialV3(t, "ssl://"+b.addr, "wrong-ca", clientTLS(other.pool())); err == nil {
		t.Fatalf("paho connected with the wrong CA")
	}
	eventually(t, "the refused handshakes to be counted", func() bool {
		return rejected(b.ln, listener.ReasonTLSHandshake) >= 2
	})
}

func TestTLSMinVersion(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, conf.Listener{Type: "tls", CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: "1.3"})
	tc := clientTLS(p.ca.pool())
	tc.MaxVersion = tls.VersionTLS12
	if c, err := tlsDial(b.addr, tc); err == nil {
		c.Close()
		t.Fatalf("a TLS 1.2 client connected to a min_version 1.3 listener")
	}
	conn, err := tlsDial(b.addr, clientTLS(p.ca.pool()))
	if err != nil {
		t.Fatalf("TLS 1.3 dial: %v", err)
	}
	if got := conn.ConnectionState().Version; got != tls.VersionTLS13 {
		t.Errorf("version = %x, want TLS 1.3", got)
	}
	conn.Close()
}

// A user name from a verified client certificate is the client's identity
// (Mosquitto's use_identity_as_username): on a listener without anonymous
// access and with built-in users, the certificate is enough, no password is
// asked; a client without a certificate (where it is optional) still needs
// a user and its password.
func TestCertificateUserWithoutAnonymous(t *testing.T) {
	p := newPKI(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("b0b"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, conf.Listener{Type: "tls", CertFile: p.certFile, KeyFile: p.keyFile,
		CAFile: p.caPEM, UsernameFrom: "cn"}, func(s *core.Server, lo *core.ListenerOptions) {
		s.SetGates(nil, nil, nil)
		s.SetUsers(core.NewStaticUsers(map[string]string{"bob": string(hash)}))
		lo.AllowAnonymous = false
	})
	alice := p.ca.issue(t, leafOpts{cn: "alice"})
	c := mustDialV3(t, "ssl://"+b.addr, "cert-alice", clientTLS(p.ca.pool(), alice.tls))
	c.roundTrip(t, "cert/alice", "no password")
	if info, ok := b.srv.Client("cert-alice"); !ok || info.Username != "alice" {
		t.Errorf("Client(cert-alice) = %+v, %v; want username alice", info, ok)
	}

	dial := func(id, user, pass string) error {
		o := mqtt3.NewClientOptions().AddBroker("ssl://" + b.addr).SetClientID(id).
			SetTLSConfig(clientTLS(p.ca.pool())).SetUsername(user).SetPassword(pass).
			SetAutoReconnect(false).SetConnectRetry(false)
		cl := mqtt3.NewClient(o)
		tok := cl.Connect()
		if !tok.WaitTimeout(5 * time.Second) {
			return errors.New("connect timed out")
		}
		if tok.Error() == nil {
			cl.Disconnect(0)
		}
		return tok.Error()
	}
	if err := dial("pw-bob", "bob", "b0b"); err != nil {
		t.Errorf("bob with his password, no certificate: %v", err)
	}
	if err := dial("pw-bob-bad", "bob", "nope"); err == nil {
		t.Errorf("bob with a wrong password, no certificate: connected")
	}
	if err := dial("anon", "", ""); err == nil {
		t.Errorf("anonymous without a certificate: connected")
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, conf.Listener{Type: "tls", CertFile: p.certFile, KeyFile: p.keyFile,
		CAFile: p.caPEM, RequireClientCert: true, UsernameFrom: "cn"})
	alice := p.ca.issue(t, leafOpts{cn: "alice"})

	t.Run("accepted with a certificate of the CA", func(t *testing.T) {
		c := mustDialV3(t, "ssl://"+b.addr, "alice-1", clientTLS(p.ca.pool(), alice.tls))
		c.roundTrip(t, "mtls/alice", "signed")
		ci := b.gate.get("alice-1")
		if ci == nil || ci.TLS == nil || !ci.TLS.Verified || ci.TLS.CN != "alice" {
			t.Fatalf("connect gate saw %+v, want a verified certificate with CN alice", ci)
		}
		if ci.Username != "alice" {
			t.Errorf("username seen by the connect gate = %q, want alice (username_from cn)", ci.Username)
		}
		info, ok := b.srv.Client("alice-1")
		if !ok || info.Username != "alice" {
			t.Errorf("Client(alice-1) = %+v, %v; want username alice", info, ok)
		}
	})

	t.Run("refused without a certificate", func(t *testing.T) {
		before := rejected(b.ln, listener.ReasonTLSHandshake)
		if _, err := dialV3(t, "ssl://"+b.addr, "nocert", clientTLS(p.ca.pool())); err == nil {
			t.Fatalf("a client without a certificate connected")
		}
		// TLS 1.3 clients finish their side before the server has checked
		// their certificate: the refusal comes on the first read.
		conn, err := tlsDial(b.addr, clientTLS(p.ca.pool()))
		if err == nil {
			if _, err = dialV5(t, conn, "nocert-v5"); err == nil {
				t.Fatalf("an MQTT 5 client without a certificate connected")
			}
		}
		eventually(t, "the refusals to be counted", func() bool {
			return rejected(b.ln, listener.ReasonTLSHandshake) >= before+2
		})
		if b.gate.get("nocert") != nil || b.gate.get("nocert-v5") != nil {
			t.Errorf("a refused client reached the connect gate")
		}
	})

	t.Run("refused with a certificate of another CA", func(t *testing.T) {
		other := newCA(t, "Another CA")
		mallory := other.issue(t, leafOpts{cn: "alice"})
		before := rejected(b.ln, listener.ReasonTLSHandshake)
		if _, err := dialV3(t, "ssl://"+b.addr, "mallory", clientTLSAlways(p.ca.pool(), mallory.tls)); err == nil {
			t.Fatalf("a client with a certificate of another CA connected")
		}
		eventually(t, "the refusal to be counted", func() bool {
			return rejected(b.ln, listener.ReasonTLSHandshake) > before
		})
		if b.gate.get("mallory") != nil {
			t.Errorf("a refused client reached the connect gate")
		}
	})
}

func TestOptionalClientCertUsernameFromSAN(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, conf.Listener{Type: "tls", CertFile: p.certFile, KeyFile: p.keyFile,
		CAFile: p.caPEM, UsernameFrom: "san"})

	// Without a certificate: accepted, with the CONNECT's own user name.
	conn, err := tlsDial(b.addr, clientTLS(p.ca.pool()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialV5(t, conn, "anon"); err != nil {
		t.Fatalf("connect without a certificate: %v", err)
	}
	if ci := b.gate.get("anon"); ci == nil || ci.TLS == nil || ci.TLS.Verified || ci.Username != "" {
		t.Errorf("gate saw %+v, want TLS without a verified certificate and no username", ci)
	}

	// With one: its first SAN is the user name.
	bob := p.ca.issue(t, leafOpts{cn: "Bob", dns: []string{"bob.devices.example", "other.example"}})
	conn, err = tlsDial(b.addr, clientTLS(p.ca.pool(), bob.tls))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialV5(t, conn, "bob"); err != nil {
		t.Fatalf("connect with a certificate: %v", err)
	}
	if ci := b.gate.get("bob"); ci == nil || ci.Username != "bob.devices.example" {
		t.Errorf("gate saw %+v, want username bob.devices.example", ci)
	}

	// A certificate that does not verify is refused even though optional.
	other := newCA(t, "Another CA")
	eve := other.issue(t, leafOpts{cn: "eve"})
	if _, err := dialV3(t, "ssl://"+b.addr, "eve", clientTLSAlways(p.ca.pool(), eve.tls)); err == nil {
		t.Fatalf("a client with an unverifiable certificate connected")
	}
}

func TestReloadKeepsConnections(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, conf.Listener{Type: "tls", CertFile: p.certFile, KeyFile: p.keyFile})
	ca2 := newCA(t, "Second CA")
	both := p.ca.pool()
	both.AddCert(ca2.cert)

	old := mustDialV3(t, "ssl://"+b.addr, "before-reload", clientTLS(both))
	old.roundTrip(t, "reload/old", "one")

	// A new certificate from another CA, written in place, then Reload.
	next := ca2.issue(t, leafOpts{cn: "tide-server-2", server: true})
	writeFile(t, p.dir, "server.crt", next.certPEM)
	writeFile(t, p.dir, "server.key", next.keyPEM)
	if err := b.ln.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}

	// The established connection is untouched.
	select {
	case err := <-old.lost:
		t.Fatalf("connection lost on reload: %v", err)
	default:
	}
	old.roundTrip(t, "reload/old2", "still here")

	// New connections get the new certificate.
	conn, err := tlsDial(b.addr, clientTLS(ca2.pool()))
	if err != nil {
		t.Fatalf("dial trusting only the new CA: %v", err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "tide-server-2" {
		t.Errorf("served certificate CN = %q, want tide-server-2", cn)
	}
	conn.Close()
	if c, err := tlsDial(b.addr, clientTLS(p.ca.pool())); err == nil {
		c.Close()
		t.Errorf("a client trusting only the old CA still connects after reload")
	}

	// A reload that fails keeps the certificate in use.
	writeFile(t, p.dir, "server.key", p.server.keyPEM) // the old key: no longer matches
	err = b.ln.Reload()
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Reload with a mismatched key: err = %v, want one saying the key does not match", err)
	}
	conn, err = tlsDial(b.addr, clientTLS(ca2.pool()))
	if err != nil {
		t.Fatalf("dial after the failed reload: %v", err)
	}
	conn.Close()
	st := b.ln.Stats()
	if st.Reloads != 1 || st.ReloadFailures != 1 {
		t.Errorf("reloads = %d ok, %d failed; want 1 and 1", st.Reloads, st.ReloadFailures)
	}
	old.roundTrip(t, "reload/old3", "and still here")
}

func TestCheck(t *testing.T) {
	p := newPKI(t)
	other := p.ca.issue(t, leafOpts{cn: "other", server: true})
	otherKey := writeFile(t, p.dir, "other.key", other.keyPEM)
	notPEM := writeFile(t, p.dir, "notpem.crt", []byte("this is not a certificate\n"))
	expired := p.ca.issue(t, leafOpts{cn: "old", server: true, notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	expiredCert := writeFile(t, p.dir, "expired.crt", expired.certPEM)
	expiredKey := writeFile(t, p.dir, "expired.key", expired.keyPEM)
	missing := filepath.Join(p.dir, "missing.crt")

	tlsL := func(mod func(*conf.Listener)) conf.Listener {
		l := conf.Listener{Name: "secure", Type: "tls", Address: "127.0.0.1:0", CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: "1.2"}
		if mod != nil {
			mod(&l)
		}
		return l
	}
	cases := []struct {
		name string
		l    conf.Listener
		want []string // substrings of the error; none: no error
	}{
		{"valid tls", tlsL(nil), nil},
		{"valid mtls", tlsL(func(l *conf.Listener) { l.CAFile, l.RequireClientCert, l.UsernameFrom = p.caPEM, true, "cn" }), nil},
		{"valid tcp", conf.Listener{Name: "plain", Type: "tcp", Address: ":1883"}, nil},
		{"valid ws", conf.Listener{Name: "web", Type: "ws", Address: ":8083", Path: "/mqtt", AllowedOrigins: []string{"https://app.example.com", "*.example.org"}}, nil},
		{"missing cert file", tlsL(func(l *conf.Listener) { l.CertFile = missing }), []string{"cert_file", missing, "no such file"}},
		{"missing key file", tlsL(func(l *conf.Listener) { l.KeyFile = missing }), []string{"key_file", missing}},
		{"key of another certificate", tlsL(func(l *conf.Listener) { l.KeyFile = otherKey }), []string{p.certFile, otherKey, "does not match"}},
		{"cert file is not PEM", tlsL(func(l *conf.Listener) { l.CertFile = notPEM }), []string{notPEM}},
		{"missing CA file", tlsL(func(l *conf.Listener) { l.CAFile = missing }), []string{"ca_file", missing}},
		{"CA file without certificates", tlsL(func(l *conf.Listener) { l.CAFile = notPEM }), []string{"ca_file", notPEM, "no PEM certificate"}},
		{"expired certificate", tlsL(func(l *conf.Listener) { l.CertFile, l.KeyFile = expiredCert, expiredKey }), []string{expiredCert, "expired"}},
		{"require_client_cert without CA", tlsL(func(l *conf.Listener) { l.RequireClientCert = true }), []string{"require_client_cert needs ca_file"}},
		{"username_from without CA", tlsL(func(l *conf.Listener) { l.UsernameFrom = "cn" }), []string{"username_from", "needs ca_file"}},
		{"bad min_version", tlsL(func(l *conf.Listener) { l.MinVersion = "1.0" }), []string{"min_version", "1.0"}},
		{"no cert_file", tlsL(func(l *conf.Listener) { l.CertFile = "" }), []string{"cert_file is required"}},
		{"bad type", conf.Listener{Name: "x", Type: "quic", Address: ":1"}, []string{"type", "quic"}},
		{"bad address", conf.Listener{Name: "x", Type: "tcp", Address: "localhost"}, []string{"address", "localhost"}},
		{"bad path", conf.Listener{Name: "x", Type: "ws", Address: ":1", Path: "mqtt"}, []string{"path", "must start with /"}},
		{"bad origin pattern", conf.Listener{Name: "x", Type: "ws", Address: ":1", Path: "/mqtt", AllowedOrigins: []string{"https://[bad"}}, []string{"allowed_origins", "bad pattern"}},
		{"origin with a path", conf.Listener{Name: "x", Type: "ws", Address: ":1", Path: "/mqtt", AllowedOrigins: []string{"https://app.example.com/"}}, []string{"allowed_origins", "without a path"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := listener.Check(tc.l)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Check: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check: nil, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check: %v; want it to mention %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "listener "+tc.l.Name) {
				t.Errorf("Check: %v; want it to name the listener %q", err, tc.l.Name)
			}
			// Listen refuses the same configurations (the expired
			// certificate aside: a broker still starts with it, warning).
			if tc.name == "expired certificate" {
				return
			}
			if ln, err := listener.Listen(tc.l, listener.WithLogger(testLogger())); err == nil {
				ln.Close()
				t.Errorf("Listen accepted what Check refused")
			}
		})
	}
}

func TestListenReportsBusyAddress(t *testing.T) {
	ln, err := listener.Listen(conf.Listener{Name: "a", Type: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = listener.Listen(conf.Listener{Name: "b", Type: "tcp", Address: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "listener b") {
		t.Fatalf("Listen on a busy address: err = %v, want an error naming listener b", err)
	}
	if err := ln.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}
