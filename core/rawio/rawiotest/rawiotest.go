// Package rawiotest provides what tests of raw socket I/O share: both ends
// of a real loopback TCP connection.
package rawiotest

import (
	"net"
	"testing"
)

// SocketPair returns both ends of a loopback TCP connection, closed when
// the test ends.
func SocketPair(t testing.TB) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		cc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	return sc.(*net.TCPConn), cc.(*net.TCPConn)
}
