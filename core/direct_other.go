//go:build !linux

package core

import (
	"net"
	"syscall"
)

// rawConnOf returns nil: direct reads and writes are made on Linux only.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func rawWrite(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }

func rawRead(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }
