// Package rawio reads and writes plain TCP sockets with raw read(2) and
// write(2) system calls through Go's network poller.
//
// A socket of the net package is non-blocking, so a read or write on it
// cannot block; the scheduler's bookkeeping for an ordinary system call is
// then pure cost, and worse, it keeps Go's monitor thread (sysmon) awake:
// a write on loopback runs the receiver's TCP stack inline and often takes
// long enough for sysmon to hand the caller's processor to another thread.
// In a process idle between messages that was a fifth of the CPU time per
// message, and a thread competing for the cores. Calls through
// syscall.RawConn still wait in the poller when the socket is not ready,
// so deadlines set on the net.Conn apply as usual.
//
// Only Linux is supported; elsewhere Of returns nil and callers use the
// net.Conn.
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
)

// Of returns the socket of a plain TCP connection, or nil when conn is
// anything else or the platform is not supported.
func Of(conn net.Conn) syscall.RawConn {
	if !supported {
		return nil
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Writer writes a socket. One goroutine at a time may use it (callers hold
// their own lock); its callback is made once, so a write allocates nothing.
type Writer struct {
	raw    syscall.RawConn
	fn     func(fd uintptr) bool
	b      []byte
	n      int
	err    error
	wait   bool
	called bool
}

// NewWriter returns a Writer on raw (from Of).
func NewWriter(raw syscall.RawConn) *Writer {
	w := &Writer{raw: raw}
	w.fn = w.write
	return w
}

func (w *Writer) write(fd uintptr) bool {
	w.called = true
	for w.n < len(w.b) {
		n, e := rawWrite(fd, w.b[w.n:])
		switch e {
		case 0:
			if n <= 0 { // write(2) takes something or fails; never spin
				w.err = io.ErrShortWrite
				return true
			}
			w.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return !w.wait
		default:
			w.err = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}

// Write writes all of b, waiting in the poller while the socket is full
// (and failing with the net.Conn's write deadline). It is an io.Writer.
func (w *Writer) Write(b []byte) (int, error) { return w.do(b, true) }

// TryWrite writes what the socket takes at once and returns how much that
// was; it never waits.
func (w *Writer) TryWrite(b []byte) (int, error) { return w.do(b, false) }

// Reached reports whether the last write got as far as the socket: false
// when the poller refused it first, as it does once the write deadline
// has passed.
func (w *Writer) Reached() bool { return w.called }

func (w *Writer) do(b []byte, wait bool) (int, error) {
	w.b, w.n, w.err, w.wait, w.called = b, 0, nil, wait, false
	err := w.raw.Write(w.fn)
	n := w.n
	if err == nil {
		err = w.err
	}
	w.b = nil
	return n, err
}

// Reader reads a socket, waiting in the poller while nothing is there (and
// failing with the net.Conn's read deadline). One goroutine at a time may
// use it; a read allocates nothing.
type Reader struct {
	raw   syscall.RawConn
	fn    func(fd uintptr) bool
	after func(fd uintptr)
	b     []byte
	n     int
	err   error
}

// NewReader returns a Reader on raw (from Of). after, when not nil, is
// called with the socket after every successful read (for socket options
// the kernel resets, such as TCP_QUICKACK); it must not block.
func NewReader(raw syscall.RawConn, after func(fd uintptr)) *Reader {
	r := &Reader{raw: raw, after: after}
	r.fn = r.read
	return r
}

func (r *Reader) read(fd uintptr) bool {
	for {
		n, e := rawRead(fd, r.b)
		switch e {
		case 0:
			r.n = n
			if n == 0 {
				r.err = io.EOF
			} else if r.after != nil {
				r.after(fd)
			}
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for the poller, which honours the deadline
		default:
			r.err = os.NewSyscallError("read", e)
			return true
		}
	}
}

// Read reads into p. It is an io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.b, r.n, r.err = p, 0, nil
	err := r.raw.Read(r.fn)
	r.b = nil
	if err != nil {
		return r.n, err
	}
	return r.n, r.err
}
