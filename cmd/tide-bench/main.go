// Command tide-bench is a load generator for MQTT brokers: it measures
// throughput, latency, memory per connection, and counts every message
// lost, duplicated or reordered, against Tide, Mosquitto or any other
// broker, and compares two brokers side by side. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/mattn/go-isatty"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tty := isatty.IsTerminal(os.Stderr.Fd())
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, tty))
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // a loss, a forbidden duplicate, a failed connection, a broken run
	exitUsage   = 2
	exitAborted = 3 // the run could not be set up (broker unreachable, limits)
)

// run is the whole program; tests call it with their own arguments.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	if len(args) > 0 && args[0] == "serve-mochi" {
		return serveMochi(ctx, args[1:], stdout, stderr)
	}
	c, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "tide-bench: %v\n(run tide-bench -h for usage)\n", err)
		return exitUsage
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "tide-bench: --cpuprofile: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "tide-bench: --cpuprofile: %v\n", err)
			return exitUsage
		}
		defer pprof.StopCPUProfile()
	}
	targets := []*target{{name: "A", label: c.label, host: c.host, pid: c.pid}}
	if c.compare != "" {
		targets = append(targets, &target{name: "B", label: c.compareLabel, host: c.compare, pid: c.comparePID})
	}
	prog := newProgress(stderr, tty, c.progressEvery, c.noProgress)
	var runs []*result
	ok := true
	for rep := 1; rep <= c.reps; rep++ {
		// A B, then B A: whichever broker runs first in a pair measured
		// 5-13% low against an identical binary on a 2-core machine, so
		// both take that place equally often.
		order := targets
		if rep%2 == 0 && len(targets) == 2 {
			order = []*target{targets[1], targets[0]}
		}
		for _, t := range order {
			var r *result
			var err error
			if c.scenario == scConns {
				r, err = runConns(ctx, c, t, rep, prog)
			} else {
				r, err = runMessages(ctx, c, t, rep, prog)
			}
			if err != nil {
				fmt.Fprintf(stderr, "tide-bench: %s against %s: %v\n", c.scenario, t.label, err)
				return exitAborted
			}
			runs = append(runs, r)
			if !r.OK {
				ok = false
				// Loud, on stderr too, so that --json users see it.
				fmt.Fprintf(stderr, "\n!!! %s against %s, run %d FAILED: %s\n\n", c.scenario, t.label, rep, strings.Join(r.Problems, "; "))
			}
			if c.json {
				// Human output shows them with the run.
				for _, w := range r.Warnings {
					fmt.Fprintf(stderr, "tide-bench: warning: %s against %s, run %d: %s\n", c.scenario, t.label, rep, w)
				}
			} else {
				writeRun(stdout, c, r)
			}
			if r.Interrupted {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	rows := summarize(c.scenario, runs, c.compare != "")
	var pairs []pairedRow
	if c.compare != "" {
		pairs = paired(c.scenario, runs)
	}
	if c.json {
		if err := writeJSON(stdout, &report{Scenario: c.scenario, Config: c.describe(), Runs: runs, Summary: rows, Paired: pairs, OK: ok}); err != nil {
			fmt.Fprintf(stderr, "tide-bench: %v\n", err)
			return exitFailed
		}
	} else if len(runs) > 1 {
		writeSummary(stdout, c, runs, rows, pairs)
	}
	if !ok {
		return exitFailed
	}
	return exitOK
}
