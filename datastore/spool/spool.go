// Package spool is a bounded, append-only queue of byte records on disk. A
// datastore Runner moves records here while its sink is down and replays
// them, in order, when the sink is back.
//
// # Format
//
// The spool is a directory of segment files named by a 16-digit hex
// sequence number ("0000000000000001.seg"), read in that order, and a cursor
// file. A segment starts with the 8-byte magic "TIDESPL1" and holds frames:
//
//	length  uint32, little endian: the length of data
//	crc     uint32, little endian: CRC-32C (Castagnoli) of data
//	data    length bytes
//
// Appends go to the last segment; when it reaches the segment size it is
// fsynced and a new one is started. The cursor file ("cursor") holds the
// position after the last record a reader committed (segment, offset) and a
// CRC; it is replaced atomically (write, rename) at each Commit. Segments
// before the cursor are deleted, and so is the last one once it has been
// read to its end: an empty spool has no segment files.
//
// # Crashes
//
// A crash can leave only the last segment torn (earlier ones were synced
// before the next one started): Open scans it and truncates it after its last
// whole, checksummed frame, with a log line. A missing or damaged cursor
// restarts at the oldest segment: records are replayed again rather than
// lost (delivery is at least once). A damaged frame found by Read in an older
// segment (the disk's fault, not a crash) skips the rest of that segment and
// is reported as a *CorruptError.
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	magic      = "TIDESPL1"
	headerLen  = int64(len(magic))
	frameHead  = 8
	cursorName = "cursor"
	segSuffix  = ".seg"
	// maxFrame bounds a frame's length so that garbage read as a length is
	// recognised as a torn record instead of an allocation of gigabytes.
	maxFrame = 1 << 30
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrFull is returned by Append when the records do not fit in MaxBytes.
var ErrFull = errors.New("spool full")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("spool closed")

// CorruptError reports a damaged frame in a segment that was not the last
// one at Open: the rest of that segment was skipped.
type CorruptError struct {
	File    string
	Offset  int64
	Skipped int64 // bytes skipped
}

// Error describes the damage and what was skipped.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("spool: damaged record in %s at offset %d: skipped %d bytes", e.File, e.Offset, e.Skipped)
}

// Options configure a spool.
type Options struct {
	// Dir holds the segment files; it is created if missing.
	Dir string
	// MaxBytes bounds the size of the segment files together.
	MaxBytes int64
	// SegmentBytes is the size at which a segment is closed and the next
	// one started (default MaxBytes/8, at least 64 KiB, at most 64 MiB), so
	// that DropOldest gives up a part of the spool, not all of it.
	SegmentBytes int64
	// SyncInterval is how often appended data is fsynced (default 1s;
	// negative: only when a segment is full and at Close).
	SyncInterval time.Duration
	Log          *slog.Logger
}

// Pos is a position in the spool: the point after a record.
type Pos struct {
	Seg uint64
	Off int64
}

func (p Pos) before(q Pos) bool { return p.Seg < q.Seg || p.Seg == q.Seg && p.Off < q.Off }

type segment struct {
	seq  uint64
	size int64
	// sealed segments receive no more appends.
	sealed bool
}

// Spool is safe for concurrent use. It expects one reader: Read hands out
// records in order and Commit acknowledges them.
type Spool struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	segs   []segment // ascending; the last one receives appends
	total  int64     // sum of segment sizes
	w      *os.File  // the last segment, open for appending; nil until needed
	dirty  bool
	next   uint64 // sequence of the next segment to create
	read   Pos    // where the next Read starts
	rf     *os.File
	rbuf   *bufio.Reader
	rfSeq  uint64
	cur    Pos // committed
	closed bool
	buf    []byte

	stop chan struct{}
	done chan struct{}
}

// Open opens or creates the spool in opts.Dir, repairing a torn last segment.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if opts.MaxBytes <= 0 {
		return nil, fmt.Errorf("spool %s: maximum size must be positive, got %d", opts.Dir, opts.MaxBytes)
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = min(max(opts.MaxBytes/8, 64<<10), 64<<20)
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{opts: opts, log: opts.Log.With("spool", opts.Dir), next: 1}
	if err := s.load(); err != nil {
		return nil, err
	}
	if opts.SyncInterval > 0 {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

func (s *Spool) path(seq uint64) string {
	return filepath.Join(s.opts.Dir, fmt.Sprintf("%016x%s", seq, segSuffix))
}

func (s *Spool) load() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 64)
		if err != nil {
			s.log.Warn("spool: ignoring a file that is not a segment", "file", name)
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	cur, cerr := s.loadCursor()
	if cerr != nil && !errors.Is(cerr, os.ErrNotExist) {
		s.log.Warn("spool: cursor unreadable, replaying from the oldest segment", "err", cerr)
	}
	for _, seq := range seqs {
		p := s.path(seq)
		if seq < cur.Seg {
			// Fully read before a crash that came before the deletion.
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if err := checkMagic(p); err != nil {
			// Not ours or damaged from the first byte: keep it for a human.
			s.log.Error("spool: segment has no valid header, set aside", "file", p, "err", err)
			if err := os.Rename(p, p+".bad"); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			continue
		}
		s.segs = append(s.segs, segment{seq: seq, size: fi.Size()})
		s.total += fi.Size()
	}
	if n := len(s.segs); n > 0 {
		if err := s.repairLast(); err != nil {
			return err
		}
		s.next = s.segs[len(s.segs)-1].seq + 1
	}
	s.next = max(s.next, cur.Seg+1)
	// Start reading at the cursor when it points into a live segment.
	switch {
	case len(s.segs) == 0:
		s.read = Pos{Seg: s.next, Off: headerLen}
	case cur.Seg == s.segs[0].seq && cur.Off >= headerLen && cur.Off <= s.segs[0].size:
		s.read = cur
	default:
		s.read = Pos{Seg: s.segs[0].seq, Off: headerLen}
	}
	s.cur = s.read
	return nil
}

func checkMagic(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [len(magic)]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return errors.New("shorter than the header")
	}
	if string(b[:]) != magic {
		return fmt.Errorf("header %q, want %q", b[:], magic)
	}
	return nil
}

// repairLast truncates the last segment after its last whole frame.
func (s *Spool) repairLast() error {
	last := &s.segs[len(s.segs)-1]
	p := s.path(last.seq)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(headerLen, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	r := bufio.NewReaderSize(f, 256<<10)
	good := headerLen
	for {
		n, err := readFrame(r, nil)
		if err != nil {
			break
		}
		good += n
	}
	if good == last.size {
		return nil
	}
	if err := f.Truncate(good); err != nil {
		return fmt.Errorf("spool: truncating torn record in %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.log.Warn("spool: torn record after a crash, truncated", "file", p, "offset", good, "bytes_dropped", last.size-good)
	s.total -= last.size - good
	last.size = good
	return nil
}

// readFrame reads one frame; data, if non-nil, receives its payload.
// It returns the frame's size on disk.
func readFrame(r *bufio.Reader, data *[]byte) (int64, error) {
	var h [frameHead]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, errTorn
		}
		return 0, err
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	sum := binary.LittleEndian.Uint32(h[4:8])
	if n > maxFrame {
		return 0, errTorn
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, errTorn
	}
	if crc32.Checksum(b, crcTable) != sum {
		return 0, errTorn
	}
	if data != nil {
		*data = b
	}
	return frameHead + int64(n), nil
}

var errTorn = errors.New("torn or damaged frame")

func (s *Spool) loadCursor() (Pos, error) {
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, cursorName))
	if err != nil {
		return Pos{}, err
	}
	if len(b) != 20 || crc32.Checksum(b[:16], crcTable) != binary.LittleEndian.Uint32(b[16:]) {
		return Pos{}, errors.New("bad length or checksum")
	}
	return Pos{Seg: binary.LittleEndian.Uint64(b[0:8]), Off: int64(binary.LittleEndian.Uint64(b[8:16]))}, nil
}

func (s *Spool) saveCursor(p Pos) error {
	var b [20]byte
	binary.LittleEndian.PutUint64(b[0:8], p.Seg)
	binary.LittleEndian.PutUint64(b[8:16], uint64(p.Off))
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[:16], crcTable))
	tmp := filepath.Join(s.opts.Dir, cursorName+".tmp")
	if err := os.WriteFile(tmp, b[:], 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.opts.Dir, cursorName))
}

// Append adds records at the end, all or none: it returns ErrFull when they
// would take the spool beyond MaxBytes.
func (s *Spool) Append(recs ...[]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	size := int64(0)
	for _, r := range recs {
		if len(r) > maxFrame {
			return fmt.Errorf("spool: record of %d bytes is larger than the %d byte limit", len(r), maxFrame)
		}
		size += frameHead + int64(len(r))
	}
	if size == 0 {
		return nil
	}
	extra := int64(0)
	if n := len(s.segs); n == 0 || s.segs[n-1].sealed || s.segs[n-1].size >= s.opts.SegmentBytes {
		extra = headerLen
	}
	if s.total+size+extra > s.opts.MaxBytes {
		return ErrFull
	}
	if extra > 0 || s.w == nil {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	b := s.buf[:0]
	for _, r := range recs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r)))
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(r, crcTable))
		b = append(b, r...)
	}
	if cap(b) <= 4<<20 {
		s.buf = b
	}
	last := &s.segs[len(s.segs)-1]
	if _, err := s.w.Write(b); err != nil {
		// Leave no partial frame behind for the reader.
		_ = s.w.Truncate(last.size)
		return fmt.Errorf("spool: append to %s: %w", s.w.Name(), err)
	}
	last.size += int64(len(b))
	s.total += int64(len(b))
	s.dirty = true
	return nil
}

// rotate opens the last segment for appending or, when it is full or
// sealed, seals it and starts a new one.
func (s *Spool) rotate() error {
	n := len(s.segs)
	if s.w != nil && n > 0 && !s.segs[n-1].sealed && s.segs[n-1].size < s.opts.SegmentBytes {
		return nil
	}
	if s.w != nil {
		s.sealLocked()
	}
	if n > 0 && !s.segs[n-1].sealed && s.segs[n-1].size < s.opts.SegmentBytes {
		// After Open: continue the last segment rather than start one.
		f, err := os.OpenFile(s.path(s.segs[n-1].seq), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.w = f
		return nil
	}
	seq := s.next
	f, err := os.OpenFile(s.path(seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("spool: %w", err)
	}
	s.next++
	s.w = f
	s.segs = append(s.segs, segment{seq: seq, size: headerLen})
	s.total += headerLen
	if len(s.segs) == 1 {
		s.read = Pos{Seg: seq, Off: headerLen}
	}
	return nil
}

// Read returns up to max records after the previous Read (or the committed
// position after Open), and the position to Commit once they are handled.
// It returns no records when everything has been read. A *CorruptError comes
// with the records read before the damage; the next Read continues after it.
func (s *Spool) Read(max int) ([][]byte, Pos, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, s.read, ErrClosed
	}
	var out [][]byte
	for len(out) < max {
		i := s.segIndex(s.read.Seg)
		if i < 0 {
			break
		}
		seg := s.segs[i]
		if s.read.Off >= seg.size {
			if i == len(s.segs)-1 {
				break // at the end of the last segment
			}
			s.read = Pos{Seg: s.segs[i+1].seq, Off: headerLen}
			continue
		}
		if err := s.openReader(seg.seq, s.read.Off); err != nil {
			return out, s.read, err
		}
		var data []byte
		n, err := readFrame(s.rbuf, &data)
		if err != nil {
			// Appends are whole and Open repaired the tail, so this is damage.
			cerr := &CorruptError{File: s.path(seg.seq), Offset: s.read.Off, Skipped: seg.size - s.read.Off}
			s.log.Error("spool: damaged record, skipping the rest of the segment", "file", cerr.File, "offset", cerr.Offset, "bytes", cerr.Skipped)
			s.closeReader()
			if i == len(s.segs)-1 {
				// Nothing may follow a damaged frame in the segment being
				// appended to: seal it so new records go to a fresh one.
				s.sealLocked()
			}
			s.read.Off = s.segs[i].size
			return out, s.read, cerr
		}
		s.read.Off += n
		out = append(out, data)
	}
	return out, s.read, nil
}

func (s *Spool) segIndex(seq uint64) int {
	for i, sg := range s.segs {
		if sg.seq == seq {
			return i
		}
	}
	return -1
}

func (s *Spool) openReader(seq uint64, off int64) error {
	if s.rf != nil && s.rfSeq == seq {
		return nil
	}
	s.closeReader()
	f, err := os.Open(s.path(seq))
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	s.rf, s.rfSeq = f, seq
	if s.rbuf == nil {
		s.rbuf = bufio.NewReaderSize(f, 256<<10)
	} else {
		s.rbuf.Reset(f)
	}
	return nil
}

func (s *Spool) closeReader() {
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
}

// sealLocked stops appending to the last segment: it is synced, so that
// after a crash only the segment after it can be torn.
func (s *Spool) sealLocked() {
	if s.w != nil {
		if err := s.w.Sync(); err != nil {
			s.log.Error("spool: sync failed", "file", s.w.Name(), "err", err)
		}
		s.w.Close()
		s.w = nil
		s.dirty = false
	}
	if n := len(s.segs); n > 0 {
		s.segs[n-1].sealed = true
	}
}

// Commit records that everything before p was handled: the cursor is saved
// and segments wholly before it are deleted. Older positions are ignored.
func (s *Spool) Commit(p Pos) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.cur.before(p) {
		return nil
	}
	s.cur = p
	for len(s.segs) > 0 {
		sg := s.segs[0]
		last := len(s.segs) == 1
		done := sg.seq < p.Seg || sg.seq == p.Seg && p.Off >= sg.size && last && s.read == p
		if !done {
			break
		}
		if err := s.removeFirst(); err != nil {
			return err
		}
	}
	if len(s.segs) == 0 {
		s.cur = Pos{Seg: s.next, Off: headerLen}
		s.read = s.cur
	}
	if err := s.saveCursor(s.cur); err != nil {
		return fmt.Errorf("spool: saving cursor: %w", err)
	}
	return nil
}

func (s *Spool) removeFirst() error {
	sg := s.segs[0]
	if s.rf != nil && s.rfSeq == sg.seq {
		s.closeReader()
	}
	if len(s.segs) == 1 && s.w != nil {
		s.w.Close()
		s.w = nil
	}
	if err := os.Remove(s.path(sg.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	s.total -= sg.size
	s.segs = s.segs[1:]
	return nil
}

// DropOldest deletes the oldest segment to make room, and returns how many
// records in it had not been read yet (they are lost) and the bytes freed.
// Records already returned by Read are not counted: their reader has them.
func (s *Spool) DropOldest() (records int, bytes int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, ErrClosed
	}
	if len(s.segs) == 0 {
		return 0, 0, nil
	}
	sg := s.segs[0]
	from := int64(headerLen)
	if s.read.Seg == sg.seq {
		from = s.read.Off
	} else if s.read.Seg > sg.seq {
		from = sg.size
	}
	records = s.countFrames(sg.seq, from)
	if len(s.segs) == 1 {
		s.sealLocked()
	}
	if err := s.removeFirst(); err != nil {
		return 0, 0, err
	}
	nextPos := Pos{Seg: s.next, Off: headerLen}
	if len(s.segs) > 0 {
		nextPos = Pos{Seg: s.segs[0].seq, Off: headerLen}
	}
	if s.read.Seg <= sg.seq {
		s.read = nextPos
	}
	if s.cur.Seg <= sg.seq {
		s.cur = nextPos
		if err := s.saveCursor(s.cur); err != nil {
			return records, sg.size, fmt.Errorf("spool: saving cursor: %w", err)
		}
	}
	return records, sg.size, nil
}

func (s *Spool) countFrames(seq uint64, from int64) int {
	f, err := os.Open(s.path(seq))
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0
	}
	r := bufio.NewReaderSize(f, 64<<10)
	n := 0
	var h [frameHead]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return n
		}
		if _, err := r.Discard(int(binary.LittleEndian.Uint32(h[0:4]))); err != nil {
			return n
		}
		n++
	}
}

// Unread reports whether records remain after the last Read.
func (s *Spool) Unread() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return false
	}
	last := s.segs[len(s.segs)-1]
	return s.read.Seg < last.seq || s.read.Off < last.size
}

// Size returns the bytes the segment files take on disk.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Max returns the size limit.
func (s *Spool) Max() int64 { return s.opts.MaxBytes }

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.opts.Dir }

// Sync flushes appended records to stable storage.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncLocked()
}

func (s *Spool) syncLocked() error {
	if s.w == nil || !s.dirty {
		return nil
	}
	s.dirty = false
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Sync(); err != nil {
				s.log.Error("spool: sync failed", "err", err)
			}
		}
	}
}

// Close syncs and closes the files. Records not committed are read again
// after the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.syncLocked()
	if s.w != nil {
		if cerr := s.w.Close(); err == nil && cerr != nil {
			err = cerr
		}
		s.w = nil
	}
	s.closeReader()
	s.mu.Unlock()
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	return err
}
