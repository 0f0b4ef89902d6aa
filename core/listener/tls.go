package listener

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"github.com/tidemq/tide/conf"
)

var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// tlsConfig is one loaded generation of a listener's TLS files.
type tlsConfig struct {
	cfg  *tls.Config
	leaf *x509.Certificate
}

// tlsState holds the current generation. Handshakes read it through
// GetConfigForClient, so Reload swaps it for new connections only.
type tlsState struct {
	cur  atomic.Pointer[tlsConfig]
	base *tls.Config
}

func newTLSState(st *tlsConfig) *tlsState {
	s := &tlsState{}
	s.cur.Store(st)
	s.base = &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().cfg, nil
		},
	}
	return s
}

// server starts the server side of TLS on an accepted socket; the handshake
// runs on the broker's first read, under its connect deadline.
func (s *tlsState) server(c net.Conn, l *Listener) net.Conn {
	return &tlsConn{Conn: tls.Server(c, s.base), l: l}
}

// loadTLS reads the files of lc and builds the server configuration. Errors
// name the key and the file.
func loadTLS(lc conf.Listener) (*tlsConfig, error) {
	certPEM, err := os.ReadFile(lc.CertFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(lc.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cert_file %q with key_file %q: %w", lc.CertFile, lc.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("cert_file %q: %w", lc.CertFile, err)
		}
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tlsVersions[lc.MinVersion],
		ClientAuth:   tls.NoClientCert,
	}
	if cfg.MinVersion == 0 {
		return nil, fmt.Errorf("min_version %q: must be \"1.2\" or \"1.3\"", lc.MinVersion)
	}
	if lc.CAFile != "" {
		caPEM, err := os.ReadFile(lc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("ca_file %q: no PEM certificate found in it", lc.CAFile)
		}
		cfg.ClientCAs = pool
		// With a CA but no requirement, a certificate is optional but,
		// when given, must verify: an unverifiable one is an attack or a
		// mistake, and either deserves a refusal rather than anonymity.
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if lc.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if lc.RequireClientCert {
		return nil, fmt.Errorf("require_client_cert needs ca_file, the CA that signs client certificates")
	}
	if lc.Type == TypeWSS {
		// WebSocket upgrades need HTTP/1.1; saying so keeps browsers from
		// choosing h2.
		cfg.NextProtos = []string{"http/1.1"}
	}
	return &tlsConfig{cfg: cfg, leaf: leaf}, nil
}

// tlsConn counts and logs a failed handshake, which would otherwise be
// only a read error among others in the broker. Embedding *tls.Conn keeps
// ConnectionState (for username_from) and CloseWrite (for the core's
// half-close).
type tlsConn struct {
	*tls.Conn
	l *Listener
	// state: 0 before the handshake, 1 done, 2 failed (counted once).
	state atomic.Int32
}

func (c *tlsConn) Read(p []byte) (int, error) {
	if c.state.Load() == 0 {
		if err := c.Conn.Handshake(); err != nil {
			if c.state.CompareAndSwap(0, 2) {
				c.l.reject(ReasonTLSHandshake, c.RemoteAddr().String(), err)
			}
			return 0, err
		}
		c.state.Store(1)
	}
	return c.Conn.Read(p)
}
