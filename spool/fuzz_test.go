package spool

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
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

// FuzzPeek: Peek, the listing's reader (one pread when the envelope fits
// in PeekBufSize bytes), reads every file as Open does: the same message
// or the same error. The seeds include envelopes around the size of one
// read.
func FuzzPeek(f *testing.F) {
	dir := f.TempDir()
	s, err := New(dir)
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []int{1, 2, 170, 171, 172, 173, 500} {
		id, _ := NewQueueID(time.Unix(1763723905, 0))
		env := &Envelope{QueueID: id, Received: time.Unix(1763723905, 0), Helo: "h", Protocol: "ESMTP", From: "a@b.example"}
		for i := range n {
			env.To = append(env.To, fmt.Sprintf("r%07d@x.test", i))
		}
		w, _ := s.Create(env)
		io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
		if err := w.Commit(); err != nil {
			f.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, QueueDir, id))
		f.Add(b)
		f.Add(b[:len(b)/2])
		os.Remove(filepath.Join(dir, QueueDir, id))
	}
	f.Add([]byte("smtp-spool 1\n\n"))
	f.Add([]byte("\n\nsmtp-spool 1\n"))
	f.Add(bytes.Repeat([]byte("x"), PeekBufSize))
	f.Add(append(bytes.Repeat([]byte("x"), PeekBufSize), '\n', '\n'))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "m")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		locked := false
		got, gerr := Peek(int(d.Fd()), dir, "m", 0, make([]byte, PeekBufSize), func(int) { locked = true })
		want, werr := Open(p)
		if werr != nil {
			if gerr == nil || gerr.Error() != werr.Error() || locked {
				t.Fatalf("Peek: %v (locked %v), Open: %v", gerr, locked, werr)
			}
			return
		}
		defer want.Close()
		if gerr != nil || !locked {
			t.Fatalf("Peek: %v (locked %v), Open took the file", gerr, locked)
		}
		want.f = nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Peek: %+v\nOpen: %+v", got, want)
		}
	})
}
