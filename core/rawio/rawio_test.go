package rawio_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemq/tide/core/rawio"
	"github.com/tidemq/tide/core/rawio/rawiotest"
)

// socketPair is a loopback connection for the tests of raw I/O, which is
// made on Linux only.
func socketPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("raw socket I/O is made on Linux only")
	}
	return rawiotest.SocketPair(t)
}

func TestOfPlainTCPOnly(t *testing.T) {
	a, _ := socketPair(t)
	if rawio.Of(a) == nil {
		t.Error("Of(TCP connection) = nil")
	}
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if rawio.Of(p) != nil {
		t.Error("Of(pipe) is not nil")
	}
}

// Write waits while the socket is full and delivers every byte in order;
// the Reader reads them all and then io.EOF, calling after once per read.
func TestWriteAndReadEverything(t *testing.T) {
	a, b := socketPair(t)
	_ = a.SetWriteBuffer(8 << 10) // the writer waits for room many times
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	errc := make(chan error, 1)
	go func() {
		n, err := rawio.NewWriter(rawio.Of(a)).Write(data)
		if err == nil && n != len(data) {
			err = io.ErrShortWrite
		}
		a.Close()
		errc <- err
	}()
	var afters, reads atomic.Int64
	r := rawio.NewReader(rawio.Of(b), func(fd uintptr) {
		if fd == 0 {
			t.Error("after got no socket")
		}
		afters.Add(1)
	})
	var got bytes.Buffer
	buf := make([]byte, 3000)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		reads.Add(1)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes, not the %d written", got.Len(), len(data))
	}
	if afters.Load() != reads.Load() {
		t.Errorf("after called %d times for %d reads", afters.Load(), reads.Load())
	}
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Errorf("empty read: %d, %v", n, err)
	}
}

// stalledWriter returns a writer on a connection with small socket buffers
// whose peer reads nothing, and that connection.
func stalledWriter(t *testing.T) (*rawio.Writer, *net.TCPConn) {
	a, b := socketPair(t)
	_ = a.SetWriteBuffer(8 << 10)
	_ = b.SetReadBuffer(8 << 10)
	return rawio.NewWriter(rawio.Of(a)), a
}

// TryWrite takes what fits and returns at once when the peer reads nothing.
func TestTryWriteNeverWaits(t *testing.T) {
	w, _ := stalledWriter(t)
	big := make([]byte, 8<<20)
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		n, err = w.TryWrite(big)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("TryWrite waited for a peer that reads nothing")
	}
	if err != nil || n <= 0 || n >= len(big) {
		t.Fatalf("TryWrite = %d, %v; want part of %d bytes", n, err, len(big))
	}
	if !w.Reached() {
		t.Error("Reached() = false after writing to the socket")
	}
	if n2, err := w.TryWrite(big[n:]); n2 != 0 || err != nil {
		t.Errorf("TryWrite on a full socket = %d, %v; want 0, nil", n2, err)
	}
}

// Write fails with the connection's write deadline, and once the deadline
// has passed the poller refuses before the socket is reached.
func TestDeadlines(t *testing.T) {
	w, a := stalledWriter(t)
	_ = a.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := w.Write(make([]byte, 8<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a peer that reads nothing: %v, want a deadline error", err)
	}
	if _, err := w.TryWrite([]byte{1}); !errors.Is(err, os.ErrDeadlineExceeded) || w.Reached() {
		t.Errorf("TryWrite after the deadline: %v, reached %v; want a deadline error before the socket", err, w.Reached())
	}

	r := rawio.NewReader(rawio.Of(a), nil)
	_ = a.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read with nothing sent: %v, want a deadline error", err)
	}
}
