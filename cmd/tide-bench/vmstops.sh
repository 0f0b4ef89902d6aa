#!/bin/sh
# vmstops.sh FILE: from a `perf sched record -a -o FILE -- tide-bench latency ...`
# trace, the moments the whole VM stood still: no scheduler event on any CPU
# for over 0.5 ms, while the generator wakes every 0.5 ms (at --rate 2000).
# The first 0.2 s (perf starting) are left out.
#
#   perf sched record -a -o sched.data -- tide-bench latency --host H --qos 1 --rate 2000 --count 10000
#   cmd/tide-bench/vmstops.sh sched.data
set -eu
perf sched timehist -i "$1" 2>/dev/null |
	awk 'NR > 3 { printf "%.6f\n", $1 }' | sort -n |
	awk -v f="$1" '
		NR == 1 { first = $1 }
		$1 < first + 0.2 { prev = $1; next }
		{
			g = ($1 - prev) * 1000
			if (g > 0.5) { n++; tot += g; if (g > 1) n1++; if (g > 2) n2++ }
			prev = $1
		}
		END {
			span = prev - first - 0.2
			printf "%s: %.1f s, stops over 0.5 ms: %d (%.1f/s), over 1 ms: %d, over 2 ms: %d, %.1f ms in all (%.2f%% of the time)\n",
				f, span, n, n / span, n1, n2, tot, tot / span / 10
		}'
