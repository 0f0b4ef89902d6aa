//go:build !linux

package rawio

import "syscall"

// supported is false: Of returns nil, so these are never called.
const supported = false

func rawWrite(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }

func rawRead(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }
