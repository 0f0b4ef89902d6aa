package conf

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"10s", 10 * time.Second, true},
		{"200ms", 200 * time.Millisecond, true},
		{"1m30s", 90 * time.Second, true},
		{"0s", 0, true},
		{"0", 0, true},
		{"30d", 30 * day, true},
		{"1d12h", 36 * time.Hour, true},
		{"2d3h4m", 2*day + 3*time.Hour + 4*time.Minute, true},
		{" 5m ", 5 * time.Minute, true},
		{"-1s", -time.Second, true},
		{"-1d", -day, true},
		{"+1h", time.Hour, true},
		{"", 0, false},
		{"10", 0, false},
		{"d", 0, false},
		{"1.5d", 0, false},
		{"12h1d", 0, false},
		{"1d-5s", 0, false},
		{"10x", 0, false},
		{"99999999d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{200 * time.Millisecond, "200ms"},
		{time.Minute, "1m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{time.Hour + 30*time.Minute, "1h30m"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{30 * day, "30d"},
		{36 * time.Hour, "1d12h"},
		{-day - time.Second, "-1d1s"},
	}
	for _, tt := range tests {
		got := formatDuration(tt.in)
		if got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := parseDuration(got); err != nil || back != tt.in {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", got, back, err, tt.in)
		}
	}
}

func TestDurationUnmarshal(t *testing.T) {
	var d Duration
	err := d.UnmarshalTOML(int64(10))
	want := `invalid duration 10: write a string with a unit, e.g. "10s"`
	if err == nil || err.Error() != want {
		t.Errorf("UnmarshalTOML(10) = %v, want %s", err, want)
	}
	if err := d.UnmarshalTOML("1d"); err != nil || d.Duration != day {
		t.Errorf("UnmarshalTOML(\"1d\") = %v, %v; want %v", d, err, day)
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		in   any
		want Size
		ok   bool
	}{
		{int64(512), 512, true},
		{int64(0), 0, true},
		{"512", 512, true},
		{"512B", 512, true},
		{"64KB", 64 << 10, true},
		{"64kb", 64 << 10, true},
		{"64 KiB", 64 << 10, true},
		{"1K", 1 << 10, true},
		{"1MB", 1 << 20, true},
		{"1MiB", 1 << 20, true},
		{"1GB", 1 << 30, true},
		{"2TB", 2 << 40, true},
		{int64(-1), 0, false},
		{"-1MB", 0, false},
		{"1.5MB", 0, false},
		{"MB", 0, false},
		{"1PB", 0, false},
		{"", 0, false},
		{"99999999999TB", 0, false},
		{1.5, 0, false},
		{true, 0, false},
	}
	for _, tt := range tests {
		var got Size
		err := got.UnmarshalTOML(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("UnmarshalTOML(%#v) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestSizeMarshal(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0"},
		{1000, "1000B"},
		{1 << 10, "1KB"},
		{1536, "1536B"},
		{3 << 19, "1536KB"},
		{1 << 20, "1MB"},
		{1 << 30, "1GB"},
		{5 << 40, "5TB"},
	}
	for _, tt := range tests {
		b, _ := tt.in.MarshalText()
		if string(b) != tt.want {
			t.Errorf("Size(%d).MarshalText() = %q, want %q", tt.in, b, tt.want)
		}
		var back Size
		if err := back.UnmarshalTOML(string(b)); err != nil || back != tt.in {
			t.Errorf("UnmarshalTOML(%q) = %d, %v; want %d", b, back, err, tt.in)
		}
	}
}
