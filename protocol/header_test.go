package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// headerThrough writes msg through a headerWriter in the given pieces and
// returns what reached the MessageWriter, the refusal and the header
// sections the check saw.
func headerThrough(t *testing.T, msg string, pieces []int, max int) (string, *Reply, []string) {
	t.Helper()
	var out bytes.Buffer
	var seen []string
	h := &headerWriter{w: &out, max: max, check: func(header []byte) ([]byte, *Reply) {
		seen = append(seen, string(header))
		if bytes.Contains(header, []byte("X-Reject:")) {
			return nil, replyLocalError
		}
		return []byte("X-Added: 1\r\n"), nil
	}}
	p := []byte(msg)
	for _, n := range pieces {
		if n > len(p) {
			n = len(p)
		}
		if k, err := h.Write(p[:n]); k != n || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p[:n], k, err)
		}
		p = p[n:]
	}
	if k, err := h.Write(p); k != len(p) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", p, k, err)
	}
	if err := h.finish(); err != nil {
		t.Fatal(err)
	}
	return out.String(), h.reject, seen
}

func TestHeaderWriter(t *testing.T) {
	tests := []struct {
		name, in, out string
		max           int
		refused       bool
	}{
		{name: "header and body", in: "A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nC: 3\r\n",
			out: "A: 1\r\nB: 2\r\nX-Added: 1\r\n\r\nbody\r\n\r\nC: 3\r\n"},
		{name: "no body", in: "A: 1\r\n", out: "A: 1\r\nX-Added: 1\r\n"},
		{name: "empty line only", in: "A: 1\r\n\r\n", out: "A: 1\r\nX-Added: 1\r\n\r\n"},
		{name: "no header", in: "\r\nbody\r\n", out: "X-Added: 1\r\n\r\nbody\r\n"},
		{name: "empty", in: "", out: "X-Added: 1\r\n"},
		{name: "refused", in: "A: 1\r\nX-Reject: y\r\n\r\nbody\r\n", refused: true},
		{name: "refused, no body", in: "X-Reject: y\r\n", refused: true},
		{name: "refusal in the body ignored", in: "A: 1\r\n\r\nX-Reject: y\r\n", out: "A: 1\r\nX-Added: 1\r\n\r\nX-Reject: y\r\n"},
		{name: "at the limit", in: "A: 12\r\n\r\nb\r\n", max: 7, out: "A: 12\r\nX-Added: 1\r\n\r\nb\r\n"},
		{name: "over the limit", in: "A: 123\r\n\r\nb\r\n", max: 7, refused: true},
		{name: "no empty line, at the limit", in: "A: 12\r\n", max: 7, out: "A: 12\r\nX-Added: 1\r\n"},
		{name: "no empty line, over the limit", in: "A: 123\r\n", max: 7, refused: true},
		{name: "long body", in: "A: 1\r\n\r\n" + strings.Repeat("x", 100) + "\r\n", max: 7,
			out: "A: 1\r\nX-Added: 1\r\n\r\n" + strings.Repeat("x", 100) + "\r\n"},
	}
	for _, tc := range tests {
		max := tc.max
		if max == 0 {
			max = 1 << 10
		}
		// In one piece, in two at every split point, and byte by byte:
		// the same output and the same header section seen, once.
		splits := [][]int{nil}
		for i := 1; i < len(tc.in); i++ {
			splits = append(splits, []int{i})
		}
		splits = append(splits, slices.Repeat([]int{1}, len(tc.in)))
		for _, pieces := range splits {
			out, r, seen := headerThrough(t, tc.in, pieces, max)
			if (r != nil) != tc.refused || out != tc.out {
				t.Errorf("%s, pieces %v: output %q, refusal %v; want %q, refused %v", tc.name, pieces, out, r, tc.out, tc.refused)
			}
			if len(seen) > 1 {
				t.Errorf("%s, pieces %v: checked %d times", tc.name, pieces, len(seen))
			}
		}
	}
}

// TestHeaderWriterWriteError: a MessageWriter failure reaches ReadData.
func TestHeaderWriterWriteError(t *testing.T) {
	h := &headerWriter{w: &errWriter{}, max: 100, check: func([]byte) ([]byte, *Reply) { return nil, nil }}
	if _, err := h.Write([]byte("A: 1\r\n\r\nbody")); !errors.Is(err, errWriteFailed) {
		t.Errorf("Write: %v", err)
	}
}

func TestValidAdded(t *testing.T) {
	for add, want := range map[string]bool{
		"":                        true,
		"Date: x\r\n":             true,
		"Date: x\r\nA: b\r\n":     true,
		"Date: x":                 false,
		"Date: x\n":               false,
		"Date: x\r\n\r\n":         false, // an empty line would end the header section
		"\r\n":                    false,
		"Date: x\rA: b\r\n":       false,
		"Date: x\r\nA: b\r\nC: d": false,
	} {
		if got := validAdded([]byte(add)); got != want {
			t.Errorf("validAdded(%q) = %v, want %v", add, got, want)
		}
	}
}

// TestCheckHeaderVetted: what CheckHeader returns is vetted like a
// Policy's reply: a refusal that is not one, or malformed added fields,
// become 451 4.3.0, and nothing is committed.
func TestCheckHeaderVetted(t *testing.T) {
	for _, c := range []struct {
		add []byte
		r   *Reply
	}{
		{nil, &Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"fake OK"}}},
		{nil, &Reply{Code: 550, Enhanced: "5.6.0", Lines: []string{"bad\r\n250 injected"}}},
		{[]byte("X-Bare: lf\n"), nil},
		{[]byte("X-Early: end\r\n\r\n"), nil},
	} {
		cfg := testConfig()
		cfg.CheckHeader = func(*Envelope, []byte) ([]byte, *Reply) { return c.add, c.r }
		d := &fakeDelivery{}
		out, err := serveString(cfg, d, oneMessage+"QUIT\r\n")
		if err != nil || !strings.Contains(out, "\r\n354 ") || !strings.Contains(out, "\r\n451 4.3.0 Local error, try again later\r\n221 ") {
			t.Errorf("check returns %q, %v: Serve %v, output %q", c.add, c.r, err, out)
		}
		if err := d.checkFinished(); err != nil || len(d.committed()) != 0 {
			t.Errorf("check returns %q, %v: %v, %d committed", c.add, c.r, err, len(d.committed()))
		}
	}
}

// TestCheckHeaderPrecedence: a message refused for other reasons is not
// refused for its header, and the hop count still counts the Received:
// fields of the held-back section.
func TestCheckHeaderPrecedence(t *testing.T) {
	cfg := testConfig()
	cfg.MaxReceived = 1
	cfg.MaxMessageSize = 100
	cfg.CheckHeader = checkHeaderForTests
	tx := "MAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n"
	in := "EHLO c\r\n" +
		tx + "Received: 1\r\nReceived: 2\r\nX-Reject: y\r\n\r\nb\r\n.\r\n" + // a loop first
		tx + "X-Reject: y\r\n\r\n" + strings.Repeat("b", 200) + "\r\n.\r\n" + // too big first
		tx + "X-Reject: y\r\nbare\nLF\r\n.\r\n" + // bare LF first
		tx + "Received: 1\r\nX-Reject: y\r\n\r\nb\r\n.\r\n" + // the header
		"QUIT\r\n"
	out, err := serveString(cfg, &fakeDelivery{}, in)
	for _, want := range []string{"554 5.4.6 ", "552 5.3.4 ", "550 5.5.2 ", "550 5.6.0 Header refused"} {
		if i := strings.Index(out, "\r\n"+want); i < 0 {
			t.Errorf("no %q in %q", want, out)
		} else {
			out = out[i+2:]
		}
	}
	if err != nil {
		t.Error(err)
	}
}

// TestCheckHeaderMemory: with a header check, a 100 MiB message still
// streams: only the header section is held.
func TestCheckHeaderMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB")
	}
	const size = 100 << 20
	cfg := testConfig()
	cfg.MaxMessageSize = 200 << 20
	calls := 0
	cfg.CheckHeader = func(_ *Envelope, h []byte) ([]byte, *Reply) {
		calls++
		return []byte("X-Checked: yes\r\n"), nil
	}
	d := &countingDelivery{}
	in := io.MultiReader(strings.NewReader("EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n"+
		"From: a@c.example\r\nSubject: big\r\n\r\n"), newLineSource(size), strings.NewReader("QUIT\r\n"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var out bytes.Buffer
	err := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger()).Serve(bufio.NewReader(in), &out, nil)
	runtime.ReadMemStats(&after)
	if err != nil || !strings.Contains(out.String(), "250 2.0.0 OK queued as C1") || d.n < size || calls != 1 {
		t.Fatalf("Serve: %v, %d bytes, %d checks, output %q", err, d.n, calls, out.String())
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Errorf("a 100 MiB message allocated %d bytes", alloc)
	}
}

// BenchmarkSession runs a whole session with one 2 KiB message, without
// and with a header check that does as much as msgcheck's lenient mode
// (a pass over the lines): the check must not slow it noticeably.
func BenchmarkSession(b *testing.B) {
	var msg strings.Builder
	msg.WriteString("From: a@c.example\r\nTo: b@d.example\r\nSubject: bench\r\nDate: Sat, 21 Nov 2026 11:18:25 +0000\r\n\r\n")
	for msg.Len() < 2<<10 {
		msg.WriteString("The quick brown fox jumps over the lazy dog, again and again.\r\n")
	}
	in := "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n" + msg.String() + ".\r\nQUIT\r\n"
	lines := func(_ *Envelope, h []byte) ([]byte, *Reply) {
		if bytes.Count(h, []byte("\r\n")) < 0 {
			return nil, replyLocalError
		}
		return nil, nil
	}
	for _, bc := range []struct {
		name  string
		check func(*Envelope, []byte) ([]byte, *Reply)
	}{{"plain", nil}, {"header-check", lines}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.CheckHeader = bc.check
			b.ReportAllocs()
			for b.Loop() {
				d := &countingDelivery{}
				err := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger()).
					Serve(bufio.NewReader(strings.NewReader(in)), io.Discard, nil)
				if err != nil || d.n == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}
