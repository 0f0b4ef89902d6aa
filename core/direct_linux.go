//go:build linux

package core

import (
	"net"
	"syscall"
	"unsafe"
)

// rawConnOf returns the socket of a plain TCP connection for direct reads
// and writes, or nil.
func rawConnOf(conn net.Conn) syscall.RawConn {
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

// rawWrite and rawRead are write(2) and read(2) on a non-blocking socket.
// They are raw system calls: they cannot block, so they need not tell the
// Go scheduler, and doing so would wake its monitor thread on every call
// of a broker idle between messages.
func rawWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}
