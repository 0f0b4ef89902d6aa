//go:build linux || darwin

package main

import (
	"fmt"
	"syscall"
)

// raiseNoFile makes room for n more open files, raising the soft limit
// (and the hard one when allowed) as needed.
func raiseNoFile(n int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	need := uint64(n) + 256
	if rl.Cur >= need {
		return nil
	}
	want := rl
	want.Cur = need
	if want.Max < need {
		want.Max = need
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("%d connections need RLIMIT_NOFILE %d, the limit is %d (hard %d) and raising it failed: %w (try ulimit -n)",
			n, need, rl.Cur, rl.Max, err)
	}
	return nil
}
