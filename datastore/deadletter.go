package datastore

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// deadItem is a record the sink rejected for good, with the sink's reason.
type deadItem struct {
	rec    Record
	reason string
}

// DeadLetter is one line of a dead-letter file (NDJSON): a record a sink
// rejected for good, why, and when. Payloads are base64, as in Record's JSON.
type DeadLetter struct {
	Time   time.Time `json:"time"`
	Sink   string    `json:"sink"`
	Reason string    `json:"reason"`
	Record Record    `json:"record"`
}

// deadLetter appends to the dead-letter file, opened on first use so that
// a sink that never rejects anything leaves no empty file behind.
type deadLetter struct {
	path string
	sink string
	mu   sync.Mutex
	f    *os.File
}

func (d *deadLetter) write(items []deadItem) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("dead-letter file: %w", err)
		}
		d.f = f
	}
	var b []byte
	now := time.Now().UTC()
	for _, it := range items {
		line, err := json.Marshal(DeadLetter{Time: now, Sink: d.sink, Reason: it.reason, Record: it.rec})
		if err != nil {
			// Extra that cannot be encoded: keep the rest of the record.
			rec := it.rec
			rec.Extra = nil
			line, err = json.Marshal(DeadLetter{Time: now, Sink: d.sink, Reason: it.reason + " (extra fields not encodable: " + err.Error() + ")", Record: rec})
			if err != nil {
				return fmt.Errorf("dead-letter file: %w", err)
			}
		}
		b = append(append(b, line...), '\n')
	}
	if _, err := d.f.Write(b); err != nil {
		return fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	return nil
}

func (d *deadLetter) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}
