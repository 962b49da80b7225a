package spool

import (
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary files to the reader. Invariants: no panic; an
// error is either ErrCorrupt or an I/O error; a file that opens and reads
// back without error yields exactly Size bytes whose CRC-32C is the one
// recorded, and an envelope that passes Validate.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	s, err := New(dir)
	if err != nil {
		f.Fatal(err)
	}
	id, _ := NewQueueID(time.Unix(1763723905, 0))
	w, _ := s.Create(&Envelope{QueueID: id, Received: time.Unix(1763723905, 0), Helo: "h", Protocol: "ESMTP",
		From: "a@b.example", To: []string{"c@d.example", "e@f.example"}})
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	if err := w.Commit(); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(filepath.Join(dir, QueueDir, id))
	f.Add(good)
	f.Add(good[:len(good)/2])
	id2, _ := NewQueueID(time.Unix(1763723906, 0))
	w, _ = s.Create(&Envelope{QueueID: id2, Received: time.Unix(1763723906, 0), Helo: "h", Protocol: "ESMTP",
		From: "a@b.example", To: []string{"c@d.example", "e@f.example"}, Ret: "HDRS", EnvID: "x y",
		DSN: []RcptDSN{{Notify: "SUCCESS,DELAY", ORcpt: "rfc822;C@d.example"}}})
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	if err := w.Commit(); err != nil {
		f.Fatal(err)
	}
	good2, _ := os.ReadFile(filepath.Join(dir, QueueDir, id2))
	f.Add(good2)
	f.Add([]byte("smtp-spool 1\n\n"))
	f.Add([]byte("smtp-spool 2\nqueue-id: x\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "m")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := Open(p)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("non-corrupt error for readable file: %v", err)
			}
			return
		}
		defer m.Close()
		b, err := io.ReadAll(m.Content())
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read error %v", err)
			}
			return
		}
		if int64(len(b)) != m.Size || crc32.Checksum(b, castagnoli()) != m.CRC32C {
			t.Fatalf("size/CRC mismatch accepted")
		}
	})
}
