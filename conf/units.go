package conf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a string with a unit: Go's
// duration syntax ("200ms", "1m30s", "2h") plus a leading day count ("30d",
// "1d12h"). A bare integer is rejected: "10" could mean seconds or
// nanoseconds, so the unit is always written.
type Duration struct{ time.Duration }

const day = 24 * time.Hour

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("invalid duration %v: write a string with a unit, e.g. \"10s\"", v)
	}
	x, err := parseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = x
	return nil
}

// MarshalText writes the duration in the form UnmarshalTOML reads, without
// trailing zero units ("1m", not "1m0s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(formatDuration(d.Duration)), nil }

func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q: use a number with a unit (ns, us, ms, s, m, h, d), e.g. \"10s\", \"1m30s\" or \"30d\"", s)
	t, neg := strings.TrimSpace(s), false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg, t = t[0] == '-', t[1:]
	}
	var d time.Duration
	if i := strings.IndexByte(t, 'd'); i >= 0 {
		n, err := strconv.ParseUint(t[:i], 10, 64)
		if err != nil || n > math.MaxInt64/uint64(day) {
			return 0, bad
		}
		d, t = time.Duration(n)*day, t[i+1:]
		if t == "" {
			return sign(d, neg), nil
		}
	}
	rest, err := time.ParseDuration(t)
	if err != nil || rest < 0 || d+rest < d {
		return 0, bad
	}
	return sign(d+rest, neg), nil
}

func sign(d time.Duration, neg bool) time.Duration {
	if neg {
		return -d
	}
	return d
}

func formatDuration(d time.Duration) string {
	if d == 0 || d == math.MinInt64 {
		return d.String()
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	if n := d / day; n > 0 {
		fmt.Fprintf(&b, "%dd", n)
		d -= n * day
	}
	if d > 0 {
		s := d.String() // "1h0m0s": drop the zero units after the largest
		if strings.HasSuffix(s, "m0s") {
			s = s[:len(s)-2]
		}
		if strings.HasSuffix(s, "h0m") {
			s = s[:len(s)-2]
		}
		b.WriteString(s)
	}
	return b.String()
}

// Size is a number of bytes, written in TOML as an integer or as a string
// with an optional unit: "512", "64KB", "1MB", "1GB". The units are powers
// of 1024, as in Mosquitto and most brokers: K, KB and KiB all mean 1024
// bytes; M, MB, MiB mean 1024²; G, GB, GiB 1024³; T, TB, TiB 1024⁴. Units
// are case-insensitive and may follow the number after a space.
type Size int64

var sizeUnits = []struct {
	names []string
	mult  int64
}{
	{[]string{"t", "tb", "tib"}, 1 << 40},
	{[]string{"g", "gb", "gib"}, 1 << 30},
	{[]string{"m", "mb", "mib"}, 1 << 20},
	{[]string{"k", "kb", "kib"}, 1 << 10},
	{[]string{"", "b"}, 1},
}

// UnmarshalTOML implements toml.Unmarshaler.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := parseSize(v)
		if err != nil {
			return err
		}
		*s = n
		return nil
	}
	return fmt.Errorf("invalid size %v: write a number of bytes or a string such as \"64KB\" or \"1MB\"", v)
}

// MarshalText writes the size with the largest unit that divides it exactly.
func (s Size) MarshalText() ([]byte, error) {
	for _, u := range sizeUnits {
		if s != 0 && int64(s)%u.mult == 0 {
			return fmt.Appendf(nil, "%d%s", int64(s)/u.mult, strings.ToUpper(u.names[1])), nil
		}
	}
	return []byte("0"), nil
}

func parseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err == nil {
		for _, u := range sizeUnits {
			for _, name := range u.names {
				if unit == name {
					if n > math.MaxInt64/u.mult {
						return 0, fmt.Errorf("invalid size %q: too large", s)
					}
					return Size(n * u.mult), nil
				}
			}
		}
	}
	return 0, fmt.Errorf("invalid size %q: use a whole number with an optional unit (B, KB, MB, GB, TB; powers of 1024), e.g. \"64KB\" or \"1MB\"", s)
}
