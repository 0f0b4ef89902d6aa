//go:build windows

package main

import "golang.org/x/sys/windows"

// selfCPU is the CPU seconds (user and kernel) this process has used.
func selfCPU() float64 {
	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(windows.CurrentProcess(), &creation, &exit, &kernel, &user); err != nil {
		return 0
	}
	ft := func(t windows.Filetime) float64 {
		return float64(uint64(t.HighDateTime)<<32|uint64(t.LowDateTime)) / 1e7
	}
	return ft(kernel) + ft(user)
}
