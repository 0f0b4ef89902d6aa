package persist

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// The benchmark that chose the store: the broker's write pattern is queue
// entries put when a message is routed and deleted when it is acknowledged,
// committed in groups. Each op below is one transaction holding 64 puts of
// a 64-byte message and the 64 deletes of the previous group, with and
// without fsync.
//
//	go test -run x -bench Store -benchtime 2000x ./core/persist/

// sqliteStore is the same pattern on SQLite (modernc.org/sqlite, WAL).
type sqliteStore struct{ db *sql.DB }

func openSQLite(b *testing.B, sync bool) *sqliteStore {
	mode := "NORMAL"
	if sync {
		mode = "FULL"
	}
	dsn := fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(%s)", filepath.Join(b.TempDir(), "q.db"), mode)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE queue (session TEXT, seq INTEGER, entry BLOB, PRIMARY KEY (session, seq))`); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return &sqliteStore{db: db}
}

func (s *sqliteStore) apply(ops []Op) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	put, _ := tx.Prepare(`INSERT OR REPLACE INTO queue (session, seq, entry) VALUES (?, ?, ?)`)
	del, _ := tx.Prepare(`DELETE FROM queue WHERE session = ? AND seq = ?`)
	for _, op := range ops {
		switch op.Kind {
		case PutEntry:
			_, err = put.Exec(op.Session, op.Entry.Seq, encodeEntry(op.Entry))
		case DelEntry:
			_, err = del.Exec(op.Session, op.Seq)
		}
		if err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func groups(i int) []Op {
	const n = 64
	ops := make([]Op, 0, 2*n)
	for k := 0; k < n; k++ {
		seq := uint64(i*n + k + 1)
		ops = append(ops, Op{Kind: PutEntry, Session: fmt.Sprintf("client-%d", k%16), Entry: &Entry{Seq: seq, QoS: 1,
			Msg: &Message{ID: "id", Topic: "sensors/room/temperature", Payload: make([]byte, 64), QoS: 1, Received: time.Unix(1, 0)}}})
		if i > 0 {
			ops = append(ops, Op{Kind: DelEntry, Session: fmt.Sprintf("client-%d", k%16), Seq: seq - n})
		}
	}
	return ops
}

func BenchmarkStore(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("bbolt/sync=%v", sync), func(b *testing.B) {
			be, err := OpenBolt(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := be.Apply(groups(i), sync); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(fmt.Sprintf("sqlite/sync=%v", sync), func(b *testing.B) {
			s := openSQLite(b, sync)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.apply(groups(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
