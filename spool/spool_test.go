package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testEnvelope(t *testing.T) *Envelope {
	t.Helper()
	now := time.Date(2026, 11, 21, 11, 18, 25, 123, time.UTC)
	id, err := NewQueueID(now)
	if err != nil {
		t.Fatal(err)
	}
	return &Envelope{
		QueueID: id, Received: now, Client: "127.0.0.1:4242", Helo: "client.example",
		Protocol: "ESMTP", Body: "8BITMIME", SMTPUTF8: true,
		From: "a@example.org", To: []string{"b@example.net", "c@example.com"},
	}
}

func TestRoundTrip(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := testEnvelope(t)
	w, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: hi\r\n\r\n.leading dot kept\r\n\xc3\xa9t\xc3\xa9\r\n"
	if _, err := io.WriteString(w, body); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(s.Path(QueueDir)); len(ents) != 0 {
		t.Fatalf("visible before commit: %v", ents)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(s.Path(TmpDir)); len(ents) != 0 {
		t.Fatalf("temp file left: %v", ents)
	}
	p := s.Path(QueueDir, env.QueueID)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	m, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.QueueID != env.QueueID || !m.Received.Equal(env.Received) || m.Client != env.Client ||
		m.Helo != env.Helo || m.Protocol != env.Protocol || m.Body != env.Body || !m.SMTPUTF8 ||
		m.From != env.From || strings.Join(m.To, ",") != strings.Join(env.To, ",") {
		t.Errorf("envelope mismatch: %+v vs %+v", m.Envelope, *env)
	}
	got, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != body {
		t.Errorf("body %q, want %q", got, body)
	}
	if m.Size != int64(len(body)) {
		t.Errorf("size %d", m.Size)
	}
}

func TestNullSenderAndLocal(t *testing.T) {
	s, _ := New(t.TempDir())
	env := testEnvelope(t)
	env.From, env.Client = "", ""
	w, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x\r\n"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	m, err := Open(s.Path(QueueDir, env.QueueID))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.From != "" || m.Client != "" {
		t.Errorf("got from %q client %q", m.From, m.Client)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	s, _ := New(t.TempDir())
	w, err := s.Create(testEnvelope(t))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("a"), 100000))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{QueueDir, TmpDir} {
		if ents, _ := os.ReadDir(s.Path(d)); len(ents) != 0 {
			t.Errorf("%s not empty: %v", d, ents)
		}
	}
}

func TestCorruption(t *testing.T) {
	s, _ := New(t.TempDir())
	env := testEnvelope(t)
	w, _ := s.Create(env)
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	p := s.Path(QueueDir, env.QueueID)
	orig, _ := os.ReadFile(p)
	cases := map[string][]byte{
		"truncated body":     orig[:len(orig)-2],
		"extended body":      append(append([]byte{}, orig...), 'x'),
		"truncated envelope": orig[:40],
		"unknown version":    bytes.Replace(orig, []byte("smtp-spool 1"), []byte("smtp-spool 9"), 1),
		"no magic":           append([]byte("hello\n"), orig...),
		"flipped byte":       bytes.Replace(orig, []byte("body\r\n"), []byte("bodY\r\n"), 1),
	}
	for name, data := range cases {
		q := filepath.Join(t.TempDir(), "m")
		os.WriteFile(q, data, 0o600)
		m, err := Open(q)
		if err == nil {
			_, err = io.ReadAll(m.Content())
			m.Close()
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil || errors.Is(err, ErrCorrupt) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	env := testEnvelope(t)
	env.Helo = "evil\r\nX-Injected: 1"
	if err := env.Validate(); err == nil {
		t.Error("CRLF in helo accepted")
	}
	env = testEnvelope(t)
	env.To = nil
	if err := env.Validate(); err == nil {
		t.Error("no recipients accepted")
	}
	env = testEnvelope(t)
	env.QueueID = "../etc"
	if err := env.Validate(); err == nil {
		t.Error("path in queue id accepted")
	}
}

func commit(t *testing.T, s *Spool, env *Envelope, body string) {
	t.Helper()
	w, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// The message file's writer and reader agree on the envelope's limits:
// MaxRecipients recipients of MaxAddrLen octets go through Create and
// Open; one recipient more, or one octet more, is refused by Validate,
// and a file holding it by Open (as corrupt).
func TestEnvelopeLimits(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := testEnvelope(t)
	env.From = strings.Repeat("f", MaxAddrLen-4) + "@x.y"
	env.To = nil
	for i := range MaxRecipients {
		env.To = append(env.To, fmt.Sprintf("%s%06d@x.y", strings.Repeat("t", MaxAddrLen-10), i))
	}
	commit(t, s, env, "Subject: x\r\n\r\nbody\r\n")
	m, err := s.OpenMessage(env.QueueID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.To) != MaxRecipients || m.From != env.From {
		t.Errorf("read back %d recipients", len(m.To))
	}
	m.Close()
	b, err := os.ReadFile(s.Path(QueueDir, env.QueueID))
	if err != nil {
		t.Fatal(err)
	}

	more := *env
	more.To = append(env.To[:MaxRecipients:MaxRecipients], "x@y")
	longer := *env
	longer.To = []string{strings.Repeat("t", MaxAddrLen) + "x"}
	for name, e := range map[string]*Envelope{"more recipients": &more, "longer address": &longer} {
		if err := e.Validate(); err == nil {
			t.Errorf("%s: Validate accepted", name)
		}
	}
	// The same file with one recipient more, or one longer address (the
	// message bytes and their CRC unchanged).
	extra := strings.Replace(string(b), "rcpt-to: ", "rcpt-to: <x@y>\nrcpt-to: ", 1)
	long := strings.Replace(string(b), "rcpt-to: <", "rcpt-to: <x", 1)
	for name, data := range map[string]string{"more recipients": extra, "longer address": long} {
		p := s.Path(QueueDir, name)
		if err := os.WriteFile(p, []byte(data), FileMode); err != nil {
			t.Fatal(err)
		}
		if m, err := Open(p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Open: %v", name, err)
			if err == nil {
				io.Copy(io.Discard, m.Content())
				m.Close()
			}
		}
	}
}
