package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func open(t *testing.T, dir string, max, seg int64) *Spool {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxBytes: max, SegmentBytes: seg, SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rec(i int) []byte { return []byte(fmt.Sprintf("record-%04d", i)) }

func appendN(t *testing.T, s *Spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// readAll reads and commits everything, checking the records are want..want+n-1 in order.
func readAll(t *testing.T, s *Spool, batch int) []string {
	t.Helper()
	var got []string
	for {
		recs, pos, err := s.Read(batch)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(recs) == 0 {
			return got
		}
		for _, r := range recs {
			got = append(got, string(r))
		}
		if err := s.Commit(pos); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
}

func wantSeq(t *testing.T, got []string, from, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d records, want %d", len(got), n)
	}
	for i, g := range got {
		if want := string(rec(from + i)); g != want {
			t.Fatalf("record %d: got %q, want %q", i, g, want)
		}
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 200) // about 10 records per segment
	appendN(t, s, 0, 100)
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("got %d segments, want several", n)
	}
	wantSeq(t, readAll(t, s, 7), 0, 100)
	if s.Unread() {
		t.Fatalf("Unread after reading everything")
	}
	if n := len(segFiles(t, dir)); n != 0 {
		t.Fatalf("got %d segment files after everything was committed, want 0", n)
	}
	if got := s.Size(); got != 0 {
		t.Fatalf("Size = %d, want 0", got)
	}
	// Appending after the spool emptied starts over.
	appendN(t, s, 100, 3)
	wantSeq(t, readAll(t, s, 10), 100, 3)
}

func TestReopenResumesAtCursor(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 300)
	appendN(t, s, 0, 50)
	recs, pos, err := s.Read(20)
	if err != nil || len(recs) != 20 {
		t.Fatalf("read: %d records, %v", len(recs), err)
	}
	if err := s.Commit(pos); err != nil {
		t.Fatal(err)
	}
	// Read but not committed: must come back after a restart.
	if recs, _, _ := s.Read(5); len(recs) != 5 {
		t.Fatalf("second read: %d records", len(recs))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir, 1<<20, 300)
	wantSeq(t, readAll(t, s2, 8), 20, 30)
}

func TestTornRecordTruncated(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, path string)
	}{
		{"partial frame", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			// A header announcing 100 bytes, followed by only 3.
			f.Write([]byte{100, 0, 0, 0, 1, 2, 3, 4, 'a', 'b', 'c'})
			f.Close()
		}},
		{"bad checksum", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 0xff // last byte of the last record
			os.WriteFile(path, b, 0o644)
		}},
		{"half header", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte{5, 0})
			f.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, 1<<20, 1<<20)
			appendN(t, s, 0, 5)
			s.Close()
			segs := segFiles(t, dir)
			if len(segs) != 1 {
				t.Fatalf("got %d segments, want 1", len(segs))
			}
			tc.tear(t, segs[0])

			s2 := open(t, dir, 1<<20, 1<<20)
			appendN(t, s2, 5, 2) // appends after the repaired tail are readable
			got := readAll(t, s2, 100)
			want := []string{}
			n := 5
			if tc.name == "bad checksum" {
				n = 4 // the damaged last record is dropped
			}
			for i := 0; i < n; i++ {
				want = append(want, string(rec(i)))
			}
			want = append(want, string(rec(5)), string(rec(6)))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
		})
	}
}

func TestFullAndDropOldest(t *testing.T) {
	dir := t.TempDir()
	// Frames are 8+11 bytes; segments of about 5 records; room for about 20.
	s := open(t, dir, 8+20*19+4*8, 8+5*19)
	n := 0
	for ; ; n++ {
		err := s.Append(rec(n))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 15 {
		t.Fatalf("spool took only %d records", n)
	}
	if s.Size() > s.Max() {
		t.Fatalf("Size %d > Max %d", s.Size(), s.Max())
	}
	// One record read (in the reader's hands) is not counted as dropped.
	if recs, _, _ := s.Read(1); len(recs) != 1 {
		t.Fatalf("read %d", len(recs))
	}
	dropped, freed, err := s.DropOldest()
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 4 || freed != 8+5*19 {
		t.Fatalf("DropOldest = %d records, %d bytes; want 4, %d", dropped, freed, 8+5*19)
	}
	if err := s.Append(rec(n)); err != nil {
		t.Fatalf("append after drop: %v", err)
	}
	got := readAll(t, s, 100)
	wantSeq(t, got, 5, n-5+1)
}

func TestDropOldestSingleSegment(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 1<<20)
	appendN(t, s, 0, 3)
	dropped, _, err := s.DropOldest()
	if err != nil || dropped != 3 {
		t.Fatalf("DropOldest = %d, %v; want 3", dropped, err)
	}
	appendN(t, s, 3, 2)
	wantSeq(t, readAll(t, s, 10), 3, 2)
}

func TestCorruptSealedSegmentSkipped(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 8+5*19)
	appendN(t, s, 0, 15) // three segments of five
	s.Close()
	segs := segFiles(t, dir)
	if len(segs) != 3 {
		t.Fatalf("got %d segments, want 3", len(segs))
	}
	b, _ := os.ReadFile(segs[0])
	b[8+2*19+10] ^= 0xff // inside the third record of the first segment
	os.WriteFile(segs[0], b, 0o644)

	s2 := open(t, dir, 1<<20, 8+5*19)
	recs, pos, err := s2.Read(100)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != segs[0] {
		t.Fatalf("Read error = %v, want a CorruptError for %s", err, segs[0])
	}
	if len(recs) != 2 {
		t.Fatalf("got %d records before the damage, want 2", len(recs))
	}
	s2.Commit(pos)
	wantSeq(t, readAll(t, s2, 100), 5, 10)
}

func TestBadCursorReplaysFromOldest(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 1<<20)
	appendN(t, s, 0, 10)
	_, pos, _ := s.Read(4)
	s.Commit(pos)
	s.Close()
	os.WriteFile(filepath.Join(dir, "cursor"), []byte("garbage"), 0o644)
	s2 := open(t, dir, 1<<20, 1<<20)
	wantSeq(t, readAll(t, s2, 100), 0, 10)
}

func TestNotASegment(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), []byte("hello world"), 0o644)
	s := open(t, dir, 1<<20, 1<<20)
	if s.Unread() {
		t.Fatalf("a foreign file was taken as a segment")
	}
	if _, err := os.Stat(filepath.Join(dir, "0000000000000001.seg.bad")); err != nil {
		t.Fatalf("foreign file not set aside: %v", err)
	}
	appendN(t, s, 0, 2)
	wantSeq(t, readAll(t, s, 10), 0, 2)
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(Options{Dir: t.TempDir()}); err == nil {
		t.Fatalf("Open with MaxBytes 0: no error")
	}
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	if _, err := Open(Options{Dir: filepath.Join(file, "sub"), MaxBytes: 1 << 20}); err == nil {
		t.Fatalf("Open under a regular file: no error")
	}
}
