package persist

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemq/tide/core/packet"
)

func testMessage(topic string) *Message {
	return &Message{
		ID: "id-" + topic, Topic: topic, Payload: []byte("payload " + topic), QoS: 2, Retain: true,
		ClientID: "c1", Username: "u", Received: time.Unix(1700000000, 5), Expiry: time.Unix(1700003600, 0), TTL: 3 * time.Second,
		Props: &packet.Properties{PayloadFormat: packet.Ptr[byte](1), ContentType: "text/plain", ResponseTopic: "r/t",
			CorrelationData: []byte{}, User: []packet.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	m := testMessage("a/b")
	if got, err := decodeMessage(encodeMessage(m)); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("message: %v\n got %+v\nwant %+v", err, got, m)
	}
	plain := &Message{Topic: "t", Payload: []byte{}}
	if got, err := decodeMessage(encodeMessage(plain)); err != nil || got.Props != nil || got.Topic != "t" {
		t.Fatalf("plain message: %+v %v", got, err)
	}
	s := &Session{ID: "s", Expiry: 0xFFFFFFFF, Disconnected: time.Unix(5, 0), Will: m, WillDelay: 30, Username: "alice"}
	if got, err := decodeSession(encodeSession(s)); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("session: %+v %v", got, err)
	}
	// A record written before Username was added ends after WillDelay.
	old := *s
	old.Username = ""
	rec := encodeSession(&old)
	if got, err := decodeSession(rec[:len(rec)-1]); err != nil || !reflect.DeepEqual(got, &old) {
		t.Fatalf("session record without a user name: %+v %v", got, err)
	}
	sub := &Subscription{Raw: "$share/g/a/+", Filter: "a/+", Group: "g", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 77}
	if got, err := decodeSub(encodeSub(sub)); err != nil || !reflect.DeepEqual(got, sub) {
		t.Fatalf("sub: %+v %v", got, err)
	}
	e := &Entry{Seq: 1 << 40, Msg: m, QoS: 1, Retain: true, SubIDs: []uint32{1, 268435455}, PID: 65535, State: WaitAck}
	if got, err := decodeEntry(encodeEntry(e)); err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("entry: %+v %v", got, err)
	}
	// Every truncation is an error, never a panic.
	b := encodeEntry(e)
	for i := 0; i < len(b); i++ {
		if _, err := decodeEntry(b[:i]); err == nil {
			t.Fatalf("truncated at %d decoded without error", i)
		}
	}
}

func TestBoltApplyLoadQueue(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	ops := []Op{
		{Kind: PutSession, Session: "s1", Sess: &Session{ID: "s1", Expiry: 60}},
		{Kind: PutSub, Session: "s1", Sub: &Subscription{Raw: "a/#", Filter: "a/#", QoS: 1}},
		{Kind: PutSub, Session: "s1", Sub: &Subscription{Raw: "b", Filter: "b"}},
		{Kind: DelSub, Session: "s1", Raw: "b"},
		{Kind: PutInbound, Session: "s1", PID: 9},
		{Kind: PutRetained, Topic: "r/1", Retained: testMessage("r/1")},
		{Kind: PutRetained, Topic: "r/2", Retained: testMessage("r/2")},
		{Kind: DelRetained, Topic: "r/2"},
		{Kind: PutSession, Session: "gone", Sess: &Session{ID: "gone", Expiry: 5}},
		{Kind: PutEntry, Session: "gone", Entry: &Entry{Seq: 1, Msg: testMessage("x"), QoS: 1}},
		{Kind: DelSession, Session: "gone"},
	}
	for i := uint64(1); i <= 10; i++ {
		ops = append(ops, Op{Kind: PutEntry, Session: "s1", Entry: &Entry{Seq: i, Msg: testMessage("q"), QoS: 1}})
	}
	ops = append(ops, Op{Kind: DelEntry, Session: "s1", Seq: 1})
	if err := b.Apply(ops, true); err != nil {
		t.Fatal(err)
	}
	b.Close()

	b, err = OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sessions) != 1 || st.Sessions[0].ID != "s1" {
		t.Fatalf("sessions %+v", st.Sessions)
	}
	if subs := st.Subs["s1"]; len(subs) != 1 || subs[0].Raw != "a/#" {
		t.Fatalf("subs %+v", subs)
	}
	if len(st.Subs["gone"]) != 0 {
		t.Fatal("deleted session left subscriptions")
	}
	if _, ok := st.Queues["gone"]; ok {
		t.Fatal("deleted session left its queue")
	}
	if got := st.Inbound["s1"]; len(got) != 1 || got[0] != 9 {
		t.Fatalf("inbound %v", got)
	}
	if len(st.Retained) != 1 || st.Retained[0].Topic != "r/1" {
		t.Fatalf("retained %+v", st.Retained)
	}
	if qi := st.Queues["s1"]; qi.Len != 9 || qi.FirstSeq != 2 || qi.NextSeq != 11 {
		t.Fatalf("queue info %+v", qi)
	}
	page, err := b.Queue("s1", 5, 3)
	if err != nil || len(page) != 3 || page[0].Seq != 5 || page[2].Seq != 7 {
		t.Fatalf("queue page %+v %v", page, err)
	}
	var buf bytes.Buffer
	if n, err := b.Backup(&buf); err != nil || n == 0 {
		t.Fatalf("backup: %d %v", n, err)
	}
	// The backup is a store that opens and holds the same state.
	bdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(bdir, FileName), buf.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	bb, err := OpenBolt(bdir)
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	if st2, err := bb.Load(); err != nil || len(st2.Sessions) != 1 || st2.Queues["s1"].Len != 9 {
		t.Fatalf("backup state %+v %v", st2, err)
	}
}

func TestCorruptStoreIsAClearError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 2000), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := OpenBolt(dir)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want an error naming %s", err, path)
	}
	// The file is left as it was: never a silent reset.
	if b, _ := os.ReadFile(path); !bytes.HasPrefix(b, []byte("not a database")) {
		t.Fatal("corrupt file was modified")
	}
}

func TestStoreInUseIsAClearError(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := OpenBolt(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v", err)
	}
}

// countingBackend records what reaches the store.
type countingBackend struct {
	mu      sync.Mutex
	batches [][]Op
	Backend
}

func (c *countingBackend) Apply(ops []Op, sync bool) error {
	c.mu.Lock()
	c.batches = append(c.batches, append([]Op(nil), ops...))
	c.mu.Unlock()
	return c.Backend.Apply(ops, sync)
}

func TestJournalCoalescesAndKeepsGroupsWhole(t *testing.T) {
	b, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cb := &countingBackend{Backend: b}
	j := NewJournal(cb, SyncAlways, time.Second, nil)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				seq := uint64(w*1000 + i)
				// A group: the entry and the inbound id belong together.
				j.Submit(Op{Kind: PutEntry, Session: "s", Entry: &Entry{Seq: seq, Msg: testMessage("t"), QoS: 1}},
					Op{Kind: PutInbound, Session: "s", PID: uint16(seq)})
				if i%2 == 0 {
					j.Submit(Op{Kind: DelEntry, Session: "s", Seq: seq})
				}
			}
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	j.AfterCommit(func() { close(done) })
	<-done
	cb.mu.Lock()
	for _, batch := range cb.batches {
		inGroup := map[uint64]bool{}
		for _, op := range batch {
			if op.Kind == PutInbound {
				inGroup[uint64(op.PID)] = true
			}
		}
		for _, op := range batch {
			if op.Kind == PutEntry && !inGroup[op.Entry.Seq&0xFFFF] {
				t.Fatalf("entry %d written without its group's inbound id", op.Entry.Seq)
			}
		}
	}
	cb.mu.Unlock()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := OpenBolt(filepath.Dir(b.Path()))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	st, err := b2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Queues["s"].Len; got != 800 {
		t.Fatalf("%d entries stored, want 800", got)
	}
}
