package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports; reading it properly
// needs sysconf(3), which needs cgo.
const clockTicks = 100

// procCPU returns a process's user + system CPU seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may contain spaces: fields
	// are counted after the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// procRSS returns a process's resident set size in kB (VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(string(f[0]), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// procUsage is a process's resource use over one run.
type procUsage struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// Cores is CPU seconds per wall second; Share is that over the
	// machine's CPUs (1.0 = every core busy).
	Cores     float64 `json:"cores"`
	Share     float64 `json:"share"`
	RSSStart  int64   `json:"rss_start_kb,omitempty"`
	RSSEnd    int64   `json:"rss_end_kb,omitempty"`
	RSSPeak   int64   `json:"rss_peak_kb,omitempty"`
	WallSecs  float64 `json:"wall_seconds"`
	SampleErr string  `json:"sample_error,omitempty"`
}

// sampler watches a broker process during a run: CPU at both ends, RSS
// every 100 ms for the peak.
type sampler struct {
	pid   int
	start time.Time
	cpu0  float64
	rss0  int64

	mu   sync.Mutex
	peak int64
	err  error

	stop chan struct{}
	done chan struct{}
}

// startSampler takes the first sample; a process that cannot be read is an
// error now rather than a blank column later.
func startSampler(pid int) (*sampler, error) {
	cpu, err := procCPU(pid)
	if err != nil {
		return nil, fmt.Errorf("broker pid %d: %w", pid, err)
	}
	rss, err := procRSS(pid)
	if err != nil {
		return nil, fmt.Errorf("broker pid %d: %w", pid, err)
	}
	s := &sampler{pid: pid, start: time.Now(), cpu0: cpu, rss0: rss, peak: rss,
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

func (s *sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			rss, err := procRSS(s.pid)
			s.mu.Lock()
			if err != nil && s.err == nil {
				s.err = err
			}
			s.peak = max(s.peak, rss)
			s.mu.Unlock()
		}
	}
}

// rss samples the resident set size now.
func (s *sampler) rss() int64 {
	v, err := procRSS(s.pid)
	if err != nil {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	return v
}

// finish stops sampling and returns the usage since startSampler.
func (s *sampler) finish() *procUsage {
	close(s.stop)
	<-s.done
	wall := time.Since(s.start).Seconds()
	u := &procUsage{PID: s.pid, RSSStart: s.rss0, WallSecs: wall}
	cpu, err := procCPU(s.pid)
	rss := s.rss()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		u.CPUSeconds = cpu - s.cpu0
	} else if s.err == nil {
		s.err = err
	}
	u.RSSEnd = rss
	u.RSSPeak = max(s.peak, rss)
	if s.err != nil {
		u.SampleErr = s.err.Error()
	}
	u.fill()
	return u
}

func (u *procUsage) fill() {
	if u.WallSecs > 0 {
		u.Cores = u.CPUSeconds / u.WallSecs
		u.Share = u.Cores / float64(runtime.NumCPU())
	}
}

// selfClock measures the generator's own CPU over a run.
type selfClock struct {
	start time.Time
	cpu   float64
}

func startSelfClock() selfClock { return selfClock{start: time.Now(), cpu: selfCPU()} }

func (c selfClock) finish() *procUsage {
	u := &procUsage{PID: os.Getpid(), CPUSeconds: selfCPU() - c.cpu, WallSecs: time.Since(c.start).Seconds()}
	u.fill()
	return u
}

// machineTicks reads the busy and total CPU time of the whole machine
// from /proc/stat, to tell how much of it other processes took.
func machineTicks() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected format")
	}
	for i, x := range f[1:] {
		v, err := strconv.ParseUint(string(x), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		// guest and guest_nice (fields 9, 10) are already in user and nice.
		if i >= 8 {
			break
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// machineClock measures the whole machine's CPU use over a run.
type machineClock struct {
	busy, total uint64
	ok          bool
}

func startMachineClock() machineClock {
	b, t, err := machineTicks()
	return machineClock{busy: b, total: t, ok: err == nil}
}

// share returns the fraction of the machine's CPU time that was busy.
func (m machineClock) share() (float64, bool) {
	b, t, err := machineTicks()
	if err != nil || !m.ok || t <= m.total {
		return 0, false
	}
	return float64(b-m.busy) / float64(t-m.total), true
}
