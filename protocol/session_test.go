package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// serveString runs a session over input and returns its output and error.
func serveString(cfg Config, d *fakeDelivery, input string) (string, error) {
	return serveReader(cfg, d, strings.NewReader(input))
}

func serveReader(cfg Config, d *fakeDelivery, in io.Reader) (string, error) {
	var out bytes.Buffer
	s := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger())
	err := s.Serve(bufio.NewReaderSize(in, 16), &out, nil)
	return out.String(), err
}

const oneMessage = "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\nSubject: secret subject\r\n\r\nsecret body\r\n.\r\n"

// TestWriteError: when the client stops reading, Serve stops with the
// write error and aborts the message it was reading.
func TestWriteError(t *testing.T) {
	full, _ := serveString(testConfig(), &fakeDelivery{}, oneMessage+"QUIT\r\n")
	for n := 0; n < len(full); n++ {
		d := &fakeDelivery{}
		s := NewSession(testConfig(), testClient, &relayPolicy{}, d, discardLogger())
		var out bytes.Buffer
		err := s.Serve(bufio.NewReader(strings.NewReader(oneMessage+"QUIT\r\n")), &failWriter{w: &out, n: n}, nil)
		if !errors.Is(err, errWriteFailed) {
			t.Fatalf("write fails after %d bytes: Serve returned %v", n, err)
		}
		if !strings.HasPrefix(full, out.String()) {
			t.Fatalf("write fails after %d bytes: wrote %q", n, out.String())
		}
		if err := d.checkFinished(); err != nil {
			t.Fatalf("write fails after %d bytes: %v", n, err)
		}
		// The message is committed before its 250 is written: a failure
		// then loses the reply, not the message.
		queued := strings.Index(full, "250 2.0.0 OK queued")
		if n >= queued && len(d.committed()) != 1 {
			t.Fatalf("write fails after %d bytes (250 at %d): %d messages committed", n, queued, len(d.committed()))
		}
	}
}

// TestAbortOnEOF: a message cut short is aborted.
func TestAbortOnEOF(t *testing.T) {
	d := &fakeDelivery{}
	_, err := serveString(testConfig(), d, strings.TrimSuffix(oneMessage, ".\r\n"))
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(d.writers) != 1 || d.writers[0].aborts != 1 {
		t.Errorf("Serve returned %v; writers %+v", err, d.writers)
	}
}

// TestWriterWriteError: a failing MessageWriter gets the message aborted
// and 451, and the session stays in step.
func TestWriterWriteError(t *testing.T) {
	d := &fakeDelivery{writeErr: errors.New("disk full")}
	out, err := serveString(testConfig(), d, oneMessage+"NOOP\r\nQUIT\r\n")
	if err != nil || !strings.Contains(out, "\r\n451 4.3.0 Local error, try again later\r\n250 2.0.0 OK\r\n221 ") {
		t.Errorf("Serve returned %v, output %q", err, out)
	}
	if err := d.checkFinished(); err != nil || len(d.committed()) != 0 {
		t.Errorf("%v, %d committed", err, len(d.committed()))
	}
}

// TestLog checks the events logged and that no message content is.
func TestLog(t *testing.T) {
	var logs bytes.Buffer
	s := NewSession(testConfig(), testClient, &relayPolicy{}, &fakeDelivery{},
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime, Level: slog.LevelDebug})))
	s.Serve(bufio.NewReader(strings.NewReader(oneMessage+"FOO\r\nQUIT\r\n")), io.Discard, nil)
	got := logs.String()
	for _, want := range []string{
		`msg=helo helo=c.example protocol=ESMTP`,
		`msg=mail from=a@c.example size=0 code=250`,
		`msg="rcpt accepted" rcpt=b@d.example code=250`,
		`msg="message accepted" queue_id=Q1 size=40 from=a@c.example nrcpt=1`,
		`msg="protocol error" verb="" code=500`,
		`level=DEBUG msg="session end" messages=1 err=<nil>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "secret") {
		t.Errorf("log holds message content:\n%s", got)
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestDeadline: Config.Deadline caps the command timeout, here on an
// os.Pipe, which supports read deadlines as a socket does.
func TestDeadline(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	cfg := testConfig()
	cfg.Now = time.Now
	cfg.CommandTimeout = time.Hour
	cfg.Deadline = time.Now().Add(50 * time.Millisecond)
	var out bytes.Buffer
	start := time.Now()
	s := NewSession(cfg, testClient, &relayPolicy{}, &fakeDelivery{}, discardLogger())
	err = s.Serve(bufio.NewReader(pr), &out, pr)
	if !errors.Is(err, ErrTimeout) || time.Since(start) > 5*time.Second {
		t.Errorf("Serve returned %v after %v", err, time.Since(start))
	}
	if want := "220 mx.example.net ESMTP ready\r\n421 4.4.2 mx.example.net Timeout, closing connection\r\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

// TestSessionMemory sends a 100 MiB message through a session: memory
// stays small, and the message is counted, not held.
func TestSessionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB")
	}
	const size = 100 << 20
	d := &countingDelivery{}
	out, alloc, err := serveBig(d, size)
	if err != nil || !strings.Contains(out, "250 2.0.0 OK queued as C1") || d.n < size {
		t.Fatalf("Serve: %v, %d bytes, output %q", err, d.n, out)
	}
	if alloc > 2<<20 {
		t.Errorf("a 100 MiB message allocated %d bytes", alloc)
	}
}

// serveBig sends one message of size bytes through a session with
// delivery d, and returns the replies, the bytes allocated meanwhile and
// Serve's error.
func serveBig(d Delivery, size int64) (string, uint64, error) {
	cfg := testConfig()
	cfg.MaxMessageSize = 2 * size
	in := io.MultiReader(strings.NewReader("EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n"),
		newLineSource(size), strings.NewReader("QUIT\r\n"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var out bytes.Buffer
	err := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger()).Serve(bufio.NewReader(in), &out, nil)
	runtime.ReadMemStats(&after)
	return out.String(), after.TotalAlloc - before.TotalAlloc, err
}

// countingDelivery counts the bytes of its messages and keeps none.
type countingDelivery struct{ n int64 }

func (d *countingDelivery) Begin(*Envelope) (MessageWriter, error) { return d, nil }
func (d *countingDelivery) Write(p []byte) (int, error)            { d.n += int64(len(p)); return len(p), nil }
func (d *countingDelivery) QueueID() string                        { return "C1" }
func (d *countingDelivery) Commit() error                          { return nil }
func (d *countingDelivery) Abort() error                           { return nil }

func TestReceivedHeader(t *testing.T) {
	tests := []struct {
		client Client
		helo   string
		proto  string
		utf8   bool
		want   string
	}{
		{Client{Addr: netip.MustParseAddrPort("192.0.2.1:25")}, "c.example", "ESMTP", false,
			"Received: from c.example ([192.0.2.1])\r\n\tby mx.example.net (smtp-stdio) with ESMTP id Q9;\r\n\tSat, 21 Nov 2026 11:18:25 +0000\r\n"},
		{Client{Addr: netip.MustParseAddrPort("[::ffff:192.0.2.1]:25")}, "c.example", "SMTP", true,
			"Received: from c.example ([192.0.2.1])\r\n\tby mx.example.net (smtp-stdio) with SMTP id Q9;\r\n\tSat, 21 Nov 2026 11:18:25 +0000\r\n"},
		{Client{Addr: netip.MustParseAddrPort("[2001:db8::1%eth0]:25")}, "c.example", "ESMTP", true,
			"Received: from c.example ([IPv6:2001:db8::1])\r\n\tby mx.example.net (smtp-stdio) with UTF8SMTP id Q9;\r\n\tSat, 21 Nov 2026 11:18:25 +0000\r\n"},
		{Client{Local: true}, "me", "ESMTP", false,
			"Received: from me\r\n\tby mx.example.net (smtp-stdio, local) with ESMTP id Q9;\r\n\tSat, 21 Nov 2026 11:18:25 +0000\r\n"},
		{Client{}, "x", "ESMTP", false,
			"Received: from x ([unknown])\r\n\tby mx.example.net (smtp-stdio) with ESMTP id Q9;\r\n\tSat, 21 Nov 2026 11:18:25 +0000\r\n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		env := &Envelope{Client: tc.client, Helo: tc.helo, Protocol: tc.proto, SMTPUTF8: tc.utf8}
		writeReceived(&b, env, "mx.example.net", DefaultSoftware, "Q9", testNow)
		if b.String() != tc.want {
			t.Errorf("got  %q\nwant %q", b.String(), tc.want)
		}
	}
}

func TestNewSessionDefaults(t *testing.T) {
	s := NewSession(Config{}, Client{Local: true}, &relayPolicy{}, &fakeDelivery{}, discardLogger())
	if s.cfg.Hostname != "localhost" || s.cfg.MaxLineLength != DefaultMaxLineLength ||
		s.cfg.MaxReceived != DefaultMaxReceived || s.cfg.Now == nil || s.state != StateInit {
		t.Errorf("defaults: %+v", s.cfg)
	}
	out, err := serveString(Config{Hostname: "h"}, &fakeDelivery{}, "EHLO c\r\nQUIT\r\n")
	if err != nil || !strings.Contains(out, "250-SIZE\r\n") {
		t.Errorf("no size limit: %q, %v", out, err)
	}
}

// TestWithhold: a withheld extension is left out of the EHLO reply, and
// MAIL FROM with its parameter gets 555 5.5.4 (RFC 5321 section
// 4.1.1.11); the other extensions stay offered and usable.
func TestWithhold(t *testing.T) {
	in := "EHLO c.example\r\nMAIL FROM:<a@c.example> BODY=8BITMIME\r\nMAIL FROM:<a@c.example> BODY=7BIT\r\n" +
		"MAIL FROM:<\u00e9@c.example> SMTPUTF8\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<\u00e9@d.example>\r\nQUIT\r\n"
	const (
		ehlo     = "250-mx.example.net greets c.example\r\n250-PIPELINING\r\n"
		rest     = "250-SIZE 10485760\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-CHUNKING\r\n"
		unsupp   = "555 5.5.4 Unsupported parameter\r\n"
		senderOK = "250 2.1.0 Sender OK\r\n"
		needUTF8 = "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n"
	)
	for _, tc := range []struct {
		name string
		w    Extensions
		want string
	}{
		{"none", 0, ehlo + "250-8BITMIME\r\n" + rest + "250 SMTPUTF8\r\n" + senderOK + "503 5.5.1 Nested MAIL command\r\n"},
		{"8BITMIME", Ext8BITMIME, ehlo + rest + "250 SMTPUTF8\r\n" + unsupp + unsupp + senderOK + "503 5.5.1 Nested MAIL command\r\n"},
		{"SMTPUTF8", ExtSMTPUTF8, ehlo + "250-8BITMIME\r\n" + "250-SIZE 10485760\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250 CHUNKING\r\n" + senderOK + "503 5.5.1 Nested MAIL command\r\n"},
		{"both", Ext8BITMIME | ExtSMTPUTF8, ehlo + "250-SIZE 10485760\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250 CHUNKING\r\n" + unsupp + unsupp + unsupp + senderOK + needUTF8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Withhold = tc.w
			out, err := serveString(cfg, &fakeDelivery{}, in)
			out = strings.TrimPrefix(out, "220 mx.example.net ESMTP ready\r\n")
			if err != nil || !strings.HasPrefix(out, tc.want) {
				t.Errorf("Serve: %v, output\n%s\nwant it to start with\n%s", err, out, tc.want)
			}
		})
	}
}

// replyLine is one well-formed reply line (RFC 5321 section 4.2).
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -][\x20-\x7e]*$`)

// FuzzSession feeds arbitrary input to a session: it must not panic, must
// write only well-formed replies, and must finish every message it began.
func FuzzSession(f *testing.F) {
	f.Add([]byte(oneMessage+"QUIT\r\n"), false)
	f.Add([]byte("HELO x\r\nMAIL FROM:<> SIZE=1\r\nRSET\r\nVRFY\r\nEXPN x\r\n\x00\r\nQUIT\r\n"), false)
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b> SMTPUTF8\r\nRCPT TO:<ü@b>\r\nRCPT TO:<postmaster>\r\nDATA\r\nReceived: x\r\n\r\n..\r\n.\r\n"), true)
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nA: 1\r\nX-Reject: y\r\n\r\nb\r\n.\r\nNOOP\r\nHELO y\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n\r\nb\r\n.\r\nQUIT\r\n"), false)
	f.Add([]byte("EHLO x\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), false)
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nDATA\r\nSubject: x\r\n\r\nb\r\n.\r\n"), false)
	f.Add([]byte("EHLO x\r\nAUTH LOGIN\r\nYWxpY2U=\r\n*\r\nAUTH PLAIN AGFsaWNlAHMzY3JldCBwYXNz\r\nMAIL FROM:<a@b> AUTH=<>\r\nQUIT\r\n"), false)
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 7\r\nA: 1\r\n\rBDAT 3\r\n\nb\nDATA\r\nBDAT 1x\r\nBDAT 2 LAST\r\n\r\nBDAT 0 LAST\r\nQUIT\r\n"), false)
	f.Add([]byte("EHLO x\r\nBDAT 6\r\nQUIT\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5000\r\nRSET\r\n"), true)
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b> RET=HDRS ENVID=x+2By\r\nRCPT TO:<c@d> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c@d\r\nRCPT TO:<e@d> NOTIFY=NEVER,SUCCESS\r\nDATA\r\n\r\nb\r\n.\r\nQUIT\r\n"), false)
	for _, v := range smugglingVectors {
		in := []byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello" + v + smuggled + "\r\n.\r\nQUIT\r\n")
		f.Add(in, false)
		f.Add(in, true)
	}
	f.Fuzz(func(t *testing.T, in []byte, norm bool) {
		cfg := testConfig()
		cfg.MaxErrors, cfg.MaxRecipients, cfg.MaxMessageSize, cfg.MaxLineLength, cfg.MaxReceived = 20, 3, 2000, 100, 2
		cfg.Auth, cfg.AllowPlaintextAuth = newFakeAuth(), true
		if norm {
			cfg.BareLineEndings = NormalizeBare
		}
		d := &fakeDelivery{}
		if len(in) > 0 && in[0]%5 == 0 {
			d.commitErr = &Reply{Code: 452, Enhanced: "4.3.1", Lines: []string{"full"}}
		}
		out, err := serveString(cfg, d, string(in))
		if err == nil && !strings.Contains(out, "\r\n221 ") {
			t.Fatalf("Serve returned nil without 221")
		}
		if !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("output %q does not end in CRLF", out)
		}
		if errors.Is(err, ErrNonSMTP) != strings.HasSuffix(out, "\r\n221 2.7.0 mx.example.net Error: non-SMTP command, closing connection\r\n") {
			t.Fatalf("Serve returned %v after %q", err, out)
		}
		multi := ""
		for _, l := range replyLines(out) {
			if !replyLine.MatchString(l) {
				t.Fatalf("bad reply line %q", l)
			}
			if multi != "" && l[:3] != multi {
				t.Fatalf("reply line %q inside a %s reply", l, multi)
			}
			multi = ""
			if l[3] == '-' {
				multi = l[:3]
			}
		}
		if multi != "" {
			t.Fatalf("unfinished multi-line reply")
		}
		if err := d.checkFinished(); err != nil {
			t.Fatal(err)
		}
		// Read byte by byte, the session must answer the same.
		d1 := &fakeDelivery{commitErr: d.commitErr}
		out1, err1 := serveReader(cfg, d1, iotest.OneByteReader(bytes.NewReader(in)))
		if out1 != out || (err1 == nil) != (err == nil) || len(d1.committed()) != len(d.committed()) {
			t.Fatalf("byte by byte: %q, %v; in one piece: %q, %v", out1, err1, out, err)
		}
		for _, w := range d.committed() {
			msg := strings.ReplaceAll(w.buf.String(), "\r\n", "")
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("message %q holds a bare CR or LF", w.buf.String())
			}
		}
		fuzzErrorLimit(t, cfg, out, err)
		fuzzPipelining(t, cfg, in, d, out, err)
		fuzzCheckHeader(t, cfg, in, d, out, err)
	})
}

// fuzzErrorLimit: every 4yz and 5yz reply but 452 4.5.3 counts toward
// MaxErrors, and the session ends with 421 4.7.0 right after the one
// that passes it, never earlier.
func fuzzErrorLimit(t *testing.T, cfg Config, out string, err error) {
	n := 0
	lines := replyLines(out)
	for i, l := range lines {
		if l[3] != ' ' {
			continue // not the last line of a reply
		}
		if l == replyTooManyErrorsLine {
			if n != cfg.MaxErrors+1 || i != len(lines)-1 || !errors.Is(err, ErrTooManyErrors) {
				t.Fatalf("421 after %d refusals at reply line %d of %d, Serve returned %v: %q", n, i, len(lines), err, out)
			}
			return
		}
		if l[0] >= '4' && !strings.HasPrefix(l, "452 4.5.3 ") {
			n++
		}
	}
	if n > cfg.MaxErrors || errors.Is(err, ErrTooManyErrors) {
		t.Fatalf("%d refusals without 421, Serve returned %v: %q", n, err, out)
	}
}

// fuzzPipelining: with ForbidImproperPipelining the session answers as
// without it until it finds improper pipelining; then it answers 554
// 5.5.0 in place of the next reply and ends.
func fuzzPipelining(t *testing.T, cfg Config, in []byte, d *fakeDelivery, out string, err error) {
	cfg.ForbidImproperPipelining = true
	dp := &fakeDelivery{commitErr: d.commitErr}
	outp, errp := serveString(cfg, dp, string(in))
	if errors.Is(errp, ErrImproperPipelining) {
		prefix, ok := strings.CutSuffix(outp, "554 5.5.0 Improper use of SMTP command pipelining\r\n")
		if !ok || !strings.HasPrefix(out, prefix) || len(dp.committed()) > len(d.committed()) {
			t.Fatalf("forbidding pipelining: %q, %v; allowing it: %q, %v", outp, errp, out, err)
		}
	} else if outp != out || (errp == nil) != (err == nil) || len(dp.committed()) != len(d.committed()) {
		t.Fatalf("forbidding pipelining, none found: %q, %v; allowing it: %q, %v", outp, errp, out, err)
	}
	if err := dp.checkFinished(); err != nil {
		t.Fatal(err)
	}
}

// fuzzCheckHeader: with CheckHeader the dialog keeps its shape, and each
// message committed is the one committed without the check, with the
// test check's field added at the end of its header section; a message
// refused only with the check has "X-Reject:" in its header section or
// one longer than MaxHeaderSize.
func fuzzCheckHeader(t *testing.T, cfg Config, in []byte, d *fakeDelivery, out string, err error) {
	cfg.CheckHeader, cfg.MaxHeaderSize = checkHeaderForTests, 64
	dh := &fakeDelivery{commitErr: d.commitErr}
	outh, errh := serveString(cfg, dh, string(in))
	if len(replyLines(outh)) != len(replyLines(out)) || (errh == nil) != (err == nil) || len(dh.writers) != len(d.writers) {
		t.Fatalf("with header check: %q, %v; without: %q, %v", outh, errh, out, err)
	}
	if err := dh.checkFinished(); err != nil {
		t.Fatal(err)
	}
	for i, w := range d.writers {
		wh := dh.writers[i]
		if !w.committed {
			if wh.committed {
				t.Fatalf("message %s committed only with the header check", w.id)
			}
			continue
		}
		// After the three lines of the Received: header, the message.
		all := w.buf.String()
		rcv := 0
		for range 3 {
			rcv += strings.Index(all[rcv:], "\r\n") + 2
		}
		msg := all[rcv:]
		end := len(msg)
		if strings.HasPrefix(msg, "\r\n") {
			end = 0
		} else if i := strings.Index(msg, "\r\n\r\n"); i >= 0 {
			end = i + 2
		}
		if !wh.committed {
			if !strings.Contains(msg[:end], "X-Reject:") && end <= cfg.MaxHeaderSize {
				t.Fatalf("message %s refused by the header check: %q", w.id, msg)
			}
			continue
		}
		want := all[:rcv] + msg[:end] + fmt.Sprintf("X-Checked: %d bytes, smtputf8=%v\r\n", end, w.env.SMTPUTF8) + msg[end:]
		if wh.buf.String() != want {
			t.Fatalf("message %s with header check:\n%q\nwant\n%q", w.id, wh.buf.String(), want)
		}
	}
}

// badPolicy refuses with a reply that is not a refusal.
type badPolicy struct{ r *Reply }

func (p badPolicy) CheckRecipient(*Envelope, string) *Reply { return p.r }

// TestForeignReplies: a reply from a Policy or a Delivery that is no
// refusal, or that would break the reply format, becomes 451 4.3.0.
func TestForeignReplies(t *testing.T) {
	for _, r := range []*Reply{
		{Code: 250, Enhanced: "2.1.5", Lines: []string{"fake OK"}},
		{Code: 550, Enhanced: "5.7.1", Lines: []string{"denied\r\n250 injected"}},
		{Code: 550, Enhanced: "5.7.1\n", Lines: []string{"denied"}},
	} {
		var out bytes.Buffer
		s := NewSession(testConfig(), testClient, badPolicy{r}, &fakeDelivery{}, discardLogger())
		s.Serve(bufio.NewReader(strings.NewReader("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\n")), &out, nil)
		if !strings.HasSuffix(out.String(), "\r\n250 2.1.0 Sender OK\r\n451 4.3.0 Local error, try again later\r\n") || s.state != StateMail {
			t.Errorf("policy reply %+v: output %q, state %s", r, out.String(), s.state)
		}
		d := &fakeDelivery{beginErr: fmt.Errorf("wrapped: %w", r)}
		got, _ := serveString(testConfig(), d, oneMessage)
		if !strings.Contains(got, "\r\n250 2.1.5 Recipient OK\r\n451 4.3.0 Local error, try again later\r\n") {
			t.Errorf("Begin error %+v: output %q", r, got)
		}
	}
}

// TestNilArgumentsAreSafe: a session built without a policy, delivery or
// logger neither panics nor relays nor accepts mail.
func TestNilArgumentsAreSafe(t *testing.T) {
	var out bytes.Buffer
	in := "EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nQUIT\r\n"
	err := NewSession(testConfig(), testClient, nil, nil, nil).Serve(bufio.NewReader(strings.NewReader(in)), &out, nil)
	if err != nil || !strings.Contains(out.String(), "\r\n550 5.7.1 ") {
		t.Fatalf("Serve: %v, output %q", err, out.String())
	}
	out.Reset()
	pol := &relayPolicy{}
	in = "EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\nQUIT\r\n"
	err = NewSession(testConfig(), testClient, pol, nil, nil).Serve(bufio.NewReader(strings.NewReader(in)), &out, nil)
	if err != nil || !strings.Contains(out.String(), "\r\n451 4.3.0 ") {
		t.Fatalf("Serve: %v, output %q", err, out.String())
	}
}
