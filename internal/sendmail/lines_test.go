package sendmail

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// readAll returns what a lineReader gives for in.
func readAll(t *testing.T, in string, ignoreDots bool, size int) string {
	t.Helper()
	l := newLineReader(strings.NewReader(in), ignoreDots)
	if size > 0 {
		l.r = bufio.NewReaderSize(strings.NewReader(in), size)
	}
	var b bytes.Buffer
	for {
		p, _, err := l.next()
		if errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		b.Write(p)
	}
}

// TestLineReader: LF and CRLF become CRLF, a CR elsewhere stays, the last
// line gets an ending, a lone dot ends the input only without -i, and a
// line longer than the buffer comes in pieces with its CRLF intact even
// when the buffer splits CR from LF.
func TestLineReader(t *testing.T) {
	for _, c := range []struct {
		in, dots, nodots string
	}{
		{"a\nb\r\nc", "a\r\nb\r\nc\r\n", ""},
		{"a\rb\n", "a\rb\r\n", ""},
		{"a\n.\nb\n", "a\r\n.\r\nb\r\n", "a\r\n"},
		{"a\n.\r\nb\n", "a\r\n.\r\nb\r\n", "a\r\n"},
		{"a\n.", "a\r\n.\r\n", "a\r\n"},
		{"a\n..\n", "a\r\n..\r\n", "a\r\n..\r\n"},
		{"a\n .\n", "a\r\n .\r\n", "a\r\n .\r\n"},
		{"", "", ""},
		{"\n", "\r\n", ""},
	} {
		if c.nodots == "" && !strings.Contains(c.in, ".") {
			c.nodots = c.dots
		}
		if got := readAll(t, c.in, true, 0); got != c.dots {
			t.Errorf("%q with -i: %q, want %q", c.in, got, c.dots)
		}
		if got := readAll(t, c.in, false, 0); got != c.nodots {
			t.Errorf("%q: %q, want %q", c.in, got, c.nodots)
		}
	}
	// A 16-byte buffer: every split of CR and LF, and a "." that is the
	// tail of a long line, which ends nothing.
	in := strings.Repeat("x", 15) + "\r\n" + strings.Repeat("y", 31) + "\n" + strings.Repeat("z", 16) + "\n.\nw\n"
	want := strings.Repeat("x", 15) + "\r\n" + strings.Repeat("y", 31) + "\r\n" + strings.Repeat("z", 16) + "\r\n"
	if got := readAll(t, in, false, 16); got != want {
		t.Errorf("small buffer: %q, want %q", got, want)
	}
	in = strings.Repeat("x", 16) + ".\n" + strings.Repeat("q", 14) + "\r\r\n"
	if got := readAll(t, in, false, 16); got != strings.Repeat("x", 16)+".\r\n"+strings.Repeat("q", 14)+"\r\r\n" {
		t.Errorf("small buffer: %q", got)
	}
}

// lfLines is an endless message body of LF-ended lines of 99 bytes.
type lfLines struct{ n int64 }

func (r *lfLines) Read(p []byte) (int, error) {
	for i := range p {
		if r.n%100 == 99 {
			p[i] = '\n'
		} else {
			p[i] = 'a' + byte(r.n%26)
		}
		r.n++
	}
	return len(p), nil
}

// TestBodyStreams: a 64 MiB message goes into the spool, CRLF-ended,
// while the process allocates a small fraction of it: the body streams.
func TestBodyStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB through the spool")
	}
	const size = 64 << 20
	in := io.MultiReader(strings.NewReader("Subject: big\n\n"), io.LimitReader(&lfLines{}, size))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	o := parse(t, "-i", "bob@x.test")
	dir := t.TempDir()
	cfg := &Config{SpoolDir: dir, Hostname: "h.test", SendmailDomain: "d.test"}
	sub := &Submission{Opts: o, Cfg: cfg, User: User{Uid: 1000, Login: "alice"}, Now: time.Now}
	id, err := queue(sub, cfg, in, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if a := after.TotalAlloc - before.TotalAlloc; a > 8<<20 {
		t.Errorf("allocated %d bytes for a %d-byte message", a, size)
	}
	m, err := spool.Open(filepath.Join(dir, spool.QueueDir, id))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	n, err := io.Copy(io.Discard, m.Content()) // checks the CRC
	if err != nil {
		t.Fatal(err)
	}
	if body := int64(size + size/100); n < body || m.Size != n {
		t.Errorf("%d bytes queued, want over %d (CRLF)", n, body)
	}
}
