package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// dropStream returns the drop stream of env and body.
func dropStream(t *testing.T, env *Envelope, body string) []byte {
	t.Helper()
	var b bytes.Buffer
	d, err := NewDropWriter(&b, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(d, body); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDropStream: a stream copied by CopyDrop is a message file that Open
// reads back whole; a stream cut anywhere, or over the limit, is refused.
func TestDropStream(t *testing.T) {
	env := testEnvelope(t)
	body := "Subject: hi\r\n\r\nbody\r\n"
	stream := dropStream(t, env, body)
	dir := t.TempDir()
	copyTo := func(name string, in []byte, limit int64) error {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return CopyDrop(f, bytes.NewReader(in), limit)
	}
	if err := copyTo("whole", stream, 1<<20); err != nil {
		t.Fatal(err)
	}
	m, err := Open(filepath.Join(dir, "whole"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(m.Content())
	m.Close()
	if err != nil || string(got) != body || m.QueueID != env.QueueID {
		t.Fatalf("read back %q, %v", got, err)
	}
	for _, cut := range []int{0, 10, len(stream) - DropTrailerLen, len(stream) - 1} {
		if err := copyTo("cut", stream[:cut], 1<<20); !errors.Is(err, ErrDropTruncated) {
			t.Errorf("cut at %d: %v, want ErrDropTruncated", cut, err)
		}
		os.Remove(filepath.Join(dir, "cut"))
	}
	if err := copyTo("big", stream, int64(len(stream)-DropTrailerLen-1)); !errors.Is(err, ErrDropTooBig) {
		t.Errorf("over the limit: %v, want ErrDropTooBig", err)
	}
	if err := copyTo("exact", stream, int64(len(stream)-DropTrailerLen)); err != nil {
		t.Errorf("at the limit: %v", err)
	}
}
