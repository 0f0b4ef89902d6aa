package main

import (
	"context"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdSleeper waits on a non-blocking timerfd read through the runtime's
// poller: the goroutine parks like on a socket and the kernel's
// high-resolution timer wakes it.
type fdSleeper struct {
	ctx  context.Context
	fd   int
	f    *os.File
	buf  [8]byte
	stop func() bool // unregisters the context's interruption
}

// newSleeper returns a timerfd sleeper, or the portable one when the kernel
// refuses a timerfd. When ctx ends, every sleep returns false at once.
func newSleeper(ctx context.Context) sleeper {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newTimerSleeper(ctx)
	}
	s := &fdSleeper{ctx: ctx, fd: fd, f: os.NewFile(uintptr(fd), "timerfd")}
	// A deadline in the past interrupts the read under way and every later one.
	s.stop = context.AfterFunc(ctx, func() { _ = s.f.SetReadDeadline(time.Unix(1, 0)) })
	return s
}

func (s *fdSleeper) sleep(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil // an unarmed timerfd would never fire
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(s.fd, 0, &spec, nil); err != nil {
		return false
	}
	_, err := s.f.Read(s.buf[:])
	return err == nil
}

func (s *fdSleeper) close() {
	s.stop()
	_ = s.f.Close()
}

// setQuickAck turns delayed ACKs off until the kernel decides otherwise,
// which it may after any read: hence once per read. A broker with Nagle's
// algorithm on (Mosquitto's default) holds small packets until its last
// segment is acknowledged; a delayed ACK from the generator would stall
// it for up to 40 ms, a figure of the generator rather than the broker.
// It is a raw system call, like the reads it follows (see core/rawio).
func setQuickAck(fd uintptr) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_QUICKACK,
		uintptr(unsafe.Pointer(&one)), unsafe.Sizeof(one), 0)
}
