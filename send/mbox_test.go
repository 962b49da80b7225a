package send

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/route"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// mboxDelivery is a message for rcpts whose data is data.
func mboxDelivery(data string, rcpts ...string) *Delivery {
	d := testDelivery(rcpts...)
	d.Content = func() io.Reader { return strings.NewReader(data) }
	return d
}

// An mbox delivery appends a From_ line, Return-Path: and Delivered-To:,
// the message with LF ends and ">From " quoting (mboxrd: "From " and
// ">From " at a line's start get one more ">"), and a blank line; the
// file is mode 0600 and the dot-lock is gone afterwards.
func TestMboxDelivery(t *testing.T) {
	root := t.TempDir()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	s := &mboxSession{cfg: &Config{}, route: route.Route{Kind: route.Mbox, Path: root + "/mail/%u"}, now: func() time.Time { return now }}
	rec := newTestRecorder()
	if err := s.Deliver(context.Background(), mboxDelivery("Subject: one\r\n\r\nFrom here\r\n>From there\r\nno end", "Bob@x.test"), rec); err != nil {
		t.Fatal(err)
	}
	d := mboxDelivery("Subject: two\r\n\r\nFromage\r\n", "bob@x.test")
	d.Envelope.From = ""
	if err := s.Deliver(context.Background(), d, rec); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "mail", "bob"))
	if err != nil {
		t.Fatal(err)
	}
	want := "From s@example.org Sat Nov 21 10:00:00 2026\nReturn-Path: <s@example.org>\nDelivered-To: Bob@x.test\n" +
		"Subject: one\n\n>From here\n>>From there\nno end\n\n" +
		"From MAILER-DAEMON Sat Nov 21 10:00:00 2026\nReturn-Path: <>\nDelivered-To: bob@x.test\nSubject: two\n\nFromage\n\n"
	if string(b) != want {
		t.Errorf("mbox:\n%q\nwant\n%q", b, want)
	}
	if fi, _ := os.Stat(filepath.Join(root, "mail", "bob")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(root, "mail", "bob.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dot-lock left: %v", err)
	}
	if len(rec.delivered) != 1 || rec.delivered[0].Relay != "mbox" {
		t.Errorf("recorded %+v %+v", rec.delivered, rec.failed)
	}
}

// failingReader returns data, then an error.
type failingReader struct{ data io.Reader }

func (r *failingReader) Read(p []byte) (int, error) {
	n, err := r.data.Read(p)
	if err == io.EOF {
		return n, spool.ErrCorrupt
	}
	return n, err
}

// A message that cannot be read to its end leaves the mbox at its old
// length (truncated back) and stays queued; a stale dot-lock (older than
// 500 s) is taken over; a path that is a directory defers.
func TestMboxFailures(t *testing.T) {
	root := t.TempDir()
	box := filepath.Join(root, "bob")
	if err := os.WriteFile(box, []byte("From a Sat Nov 21 10:00:00 2026\n\nold\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lock := box + ".lock"
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(lock, old, old)
	s := &mboxSession{cfg: &Config{}, route: route.Route{Kind: route.Mbox, Path: root + "/%u"}, now: time.Now}
	d := testDelivery("bob@x.test")
	d.Content = func() io.Reader {
		return &failingReader{strings.NewReader("Subject: x\r\n\r\n" + strings.Repeat("a line\r\n", 20000))}
	}
	if err := s.Deliver(context.Background(), d, newTestRecorder()); !errors.Is(err, spool.ErrCorrupt) {
		t.Fatalf("Deliver = %v, want the read error", err)
	}
	if b, _ := os.ReadFile(box); string(b) != "From a Sat Nov 21 10:00:00 2026\n\nold\n\n" {
		t.Errorf("mbox after a failed delivery: %d bytes", len(b))
	}
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dot-lock left: %v", err)
	}

	if err := os.Mkdir(filepath.Join(root, "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	rec := newTestRecorder()
	if err := s.Deliver(context.Background(), testDelivery("dir@x.test"), rec); err != nil {
		t.Fatal(err)
	}
	if f := rec.failed[0]; f == nil || !f.Temporary() || f.Enhanced != "4.3.0" {
		t.Errorf("a directory: %+v", f)
	}
}
