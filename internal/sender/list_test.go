package sender

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/send"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// testQueue returns a new spool and its queue.
func testQueue(t *testing.T) (*spool.Spool, *queue.Queue) {
	t.Helper()
	sp, err := spool.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	return sp, q
}

// spoolMessage spools a small message from from to rcpts, received at
// now, and returns its queue id.
func spoolMessage(t *testing.T, sp *spool.Spool, now time.Time, from string, rcpts []string) string {
	t.Helper()
	id, err := spool.NewQueueID(now)
	if err != nil {
		t.Fatal(err)
	}
	w, err := sp.Create(&spool.Envelope{QueueID: id, Received: now, Helo: "client.test", Protocol: "ESMTP",
		From: from, To: rcpts})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: list\r\n\r\nHello.\r\n")
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return id
}

// relay is the smarthost that deferB reports.
const relay = "smtp.example.org:587"

// deferB is a send.Transport that takes every recipient but b@x.test,
// which it defers with 451 4.3.0.
type deferB struct{}

func (deferB) NewSession() send.Session { return deferB{} }
func (deferB) Close() error             { return nil }

func (deferB) Deliver(_ context.Context, d *send.Delivery, rec send.Recorder) error {
	var ok []int
	for _, i := range d.Rcpts {
		if d.Envelope.To[i] == "b@x.test" {
			rec.Failed([]int{i}, &send.Failure{Stage: send.StageRcpt, Code: 451, Enhanced: "4.3.0", Text: "try later", Relay: relay})
		} else {
			ok = append(ok, i)
		}
	}
	return rec.Delivered(ok, send.Reply{Stage: send.StageDot, Code: 250, Enhanced: "2.0.0", Text: "OK: queued", Relay: relay})
}

// --list shows id, age, size, sender, each recipient's status with the
// last reply, attempts and next try; --json the same as JSON lines.
func TestList(t *testing.T) {
	sp, q := testQueue(t)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	id := spoolMessage(t, sp, now, "s@example.org", []string{"a@x.test", "b@x.test"})
	s := &send.Sender{Spool: sp, Config: send.Config{Hostname: "client.test", Connections: 1},
		Now: func() time.Time { return now }, Transport: deferB{}}
	if _, err := s.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	fresh := spoolMessage(t, sp, now, "t@example.org", []string{"c@x.test"})
	entries, err := q.List(now, false)
	if err != nil || len(entries) != 2 {
		t.Fatalf("%+v %v", entries, err)
	}
	var text bytes.Buffer
	writeList(&text, entries, now, false)
	for _, want := range []string{
		id + "  deferred  age 2m0s  ", "from <s@example.org>  attempts 1  next 2026-11-21T10:05:00Z (in 3m0s)",
		"    done     <a@x.test>  dot: 250 2.0.0 OK: queued  (relay " + relay + ")",
		"    pending  <b@x.test>  rcpt: 451 4.3.0 try later  (relay " + relay + ")",
		fresh + "  new  age 0s  ", "from <t@example.org>  attempts 0  next now",
		"-- 2 messages: 1 new, 1 deferred",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("list lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	writeList(&js, entries, now, true)
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("json lines:\n%s", js.String())
	}
	var e queue.ListEntry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e.ID != id || e.Status != queue.ListDeferred || e.Attempts != 1 || e.From != "s@example.org" ||
		len(e.Rcpts) != 2 || e.Rcpts[1].Code != 451 || e.Rcpts[1].Status != queue.Pending || e.Size == 0 {
		t.Errorf("json entry %+v", e)
	}
}

// hostileParts are what a client can put in a quoted local part (any byte
// but CR, LF and NUL) to drive or fool an administrator's terminal.
var hostileParts = []string{
	"\x1b[2J\x1b[31m", "\x07\x08", "\x7f", "\u009b2J", "\x9b2J", "\u0085",
	"\u202e", "\u202a\u202b\u202c\u202d", "\u2066\u2067\u2068\u2069", "\u200e\u200f",
	"\u200b\ufeff", "\u2028\u2029", "\U000e0041", "\xff\xfe", "\xc2", "\xed\xa0\x80", "\t",
}

// checkTerminalSafe fails on any character in out, other than a newline,
// that a terminal would not print as itself, and on invalid UTF-8.
func checkTerminalSafe(t *testing.T, out string) {
	t.Helper()
	for i, r := range out {
		if r == '\n' {
			continue
		}
		if r == 0xfffd && !strings.HasPrefix(out[i:], "\ufffd") || !strconv.IsPrint(r) {
			t.Fatalf("output holds %U at %d:\n%s", r, i, out)
		}
	}
}

// TestListEscapesHostileAddresses spools messages whose sender and
// recipients carry control characters, bidi controls, invisible
// characters and invalid UTF-8 in quoted local parts, and lists them:
// the text form shows each as an escape and nothing else raw, one line
// per recipient; the JSON form is valid JSON that is just as safe and
// decodes to the addresses (invalid UTF-8 as U+FFFD).
func TestListEscapesHostileAddresses(t *testing.T) {
	sp, q := testQueue(t)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	var rcpts []string
	for _, h := range hostileParts {
		rcpts = append(rcpts, `"a`+h+`b"@example.org`)
	}
	sender := "\"s\u202egro.elpmaxe\x1b]0;title\x07\"@example.net"
	spoolMessage(t, sp, now, sender, rcpts)
	spoolMessage(t, sp, now, "plain@example.net", []string{"\"\u2066x\u2069\"@example.org"})
	entries, err := q.List(now, false)
	if err != nil || len(entries) != 2 {
		t.Fatalf("%d entries, %v", len(entries), err)
	}

	var text bytes.Buffer
	if err := writeList(&text, entries, now, false); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	checkTerminalSafe(t, out)
	// Two headers, len(rcpts)+1 recipient lines and the summary.
	if n := strings.Count(out, "\n"); n != 2+len(rcpts)+1+1 {
		t.Errorf("%d lines, want %d:\n%s", n, 2+len(rcpts)+2, out)
	}
	for _, want := range []string{
		`from <"s\u202egro.elpmaxe\x1b]0;title\x07"@example.net>`,
		`<"a\x1b[2J\x1b[31mb"@example.org>`, `<"a\u009b2Jb"@example.org>`, `<"a\x9b2Jb"@example.org>`,
		`<"a\u202eb"@example.org>`, `<"a\u2066\u2067\u2068\u2069b"@example.org>`,
		`<"a\u2028\u2029b"@example.org>`, `<"a\xff\xfeb"@example.org>`, `<"a\tb"@example.org>`,
		`<"\u2066x\u2069"@example.org>`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %s:\n%s", want, out)
		}
	}

	var js bytes.Buffer
	if err := writeList(&js, entries, now, true); err != nil {
		t.Fatal(err)
	}
	checkTerminalSafe(t, js.String())
	lines := strings.Split(strings.TrimSuffix(js.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d JSON lines:\n%s", len(lines), js.String())
	}
	var e queue.ListEntry
	for _, l := range lines {
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if e.From == sender {
			break
		}
	}
	if e.From != sender || len(e.Rcpts) != len(rcpts) {
		t.Fatalf("decoded %+v", e)
	}
	for i, rc := range e.Rcpts {
		if want := perByteFFFD(rcpts[i]); rc.Addr != want {
			t.Errorf("recipient %d decodes as %q, want %q", i, rc.Addr, want)
		}
	}
}

// perByteFFFD is s with each byte of invalid UTF-8 replaced by U+FFFD,
// as encoding/json writes it.
func perByteFFFD(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r == utf8.RuneError && !strings.HasPrefix(s[i:], "\ufffd") {
			b.WriteRune(utf8.RuneError)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestListEscapesEveryField: reply texts, stages, relays, errors and
// file names reach the list too; each field goes through the escaping.
func TestListEscapesEveryField(t *testing.T) {
	for _, h := range hostileParts {
		e := queue.ListEntry{ID: "id" + h, Status: queue.ListDeferred + h, Age: "1s" + h, From: "f" + h, Error: "err" + h,
			Next: time.Unix(1e9, 0), Rcpts: []queue.Rcpt{{Addr: "r" + h, Stage: "rcpt" + h, Code: 451,
				Enhanced: "4.0.0" + h, Text: "text" + h, Relay: "relay" + h, DSN: "dsn" + h}}}
		var text, js bytes.Buffer
		writeList(&text, []queue.ListEntry{e}, time.Unix(1e9, 0), false)
		checkTerminalSafe(t, text.String())
		if n := strings.Count(text.String(), "\n"); n != 4 {
			t.Errorf("%q: %d lines:\n%s", h, n, text.String())
		}
		if strings.Count(text.String(), textsafe.Escape(h)) != 11 {
			t.Errorf("%q: not every field shows %s:\n%s", h, textsafe.Escape(h), text.String())
		}
		writeList(&js, []queue.ListEntry{e}, time.Unix(1e9, 0), true)
		checkTerminalSafe(t, js.String())
		if !json.Valid(js.Bytes()) {
			t.Errorf("%q: invalid JSON %s", h, js.String())
		}
	}
}

// writeListOld is writeList as it was before the listing streamed: the
// whole text built in memory, then written. listQueue must print the
// same bytes.
func writeListOld(w io.Writer, entries []queue.ListEntry, now time.Time, asJSON bool) error {
	if asJSON {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		for i := range entries {
			if err := enc.Encode(&entries[i]); err != nil {
				return err
			}
		}
		_, err := w.Write(textsafe.EscapeJSON(b.Bytes()))
		return err
	}
	q := textsafe.Escape
	var b strings.Builder
	counts := map[string]int{}
	for _, e := range entries {
		counts[e.Status]++
		next := "-"
		if !e.Next.IsZero() {
			next = e.Next.UTC().Format(time.RFC3339) + " (in " + e.Next.Sub(now).Truncate(time.Second).String() + ")"
		} else if e.Status == queue.ListNew {
			next = "now"
		}
		fmt.Fprintf(&b, "%s  %s  age %s  %d bytes  from <%s>  attempts %d  next %s\n",
			q(e.ID), q(e.Status), q(cmp.Or(e.Age, "?")), e.Size, q(e.From), e.Attempts, next)
		if e.Error != "" {
			fmt.Fprintf(&b, "    error: %s\n", q(e.Error))
		}
		for _, rc := range e.Rcpts {
			fmt.Fprintf(&b, "    %-8s <%s>", q(rc.Status.String()), q(rc.Addr))
			if rc.Stage != "" {
				fmt.Fprintf(&b, "  %s:", q(rc.Stage))
				if rc.Code != 0 {
					fmt.Fprintf(&b, " %d", rc.Code)
				}
				if rc.Enhanced != "" {
					fmt.Fprintf(&b, " %s", q(rc.Enhanced))
				}
				fmt.Fprintf(&b, " %s", q(rc.Text))
			}
			if rc.Relay != "" {
				fmt.Fprintf(&b, "  (relay %s)", q(rc.Relay))
			}
			if rc.DSN != "" {
				fmt.Fprintf(&b, "  (dsn %s)", q(rc.DSN))
			}
			b.WriteByte('\n')
		}
	}
	var parts []string
	for _, s := range []string{queue.ListNew, queue.ListDeferred, queue.ListActive, queue.ListUnreadable, queue.ListCorrupt, queue.ListFailed} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if len(parts) == 0 {
		parts = []string{"empty"}
	}
	fmt.Fprintf(&b, "-- %d messages: %s\n", len(entries), strings.Join(parts, ", "))
	_, err := io.WriteString(w, b.String())
	return err
}

// TestListStreamsAsBefore: on a small queue (deferred and new messages,
// several in one second, failed/), the streamed listing prints what the
// old one printed, in text and in JSON.
func TestListStreamsAsBefore(t *testing.T) {
	sp, q := testQueue(t)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	spoolMessage(t, sp, now, "s@example.org", []string{"a@x.test", "b@x.test"})
	s := &send.Sender{Spool: sp, Config: send.Config{Hostname: "client.test", Connections: 1},
		Now: func() time.Time { return now }, Transport: deferB{}}
	if _, err := s.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		spoolMessage(t, sp, now.Add(time.Minute+time.Duration(900-100*i)*time.Millisecond), "t@example.org", []string{"c@x.test"})
	}
	now = now.Add(2 * time.Minute)
	for _, all := range []bool{false, true} {
		entries, err := q.List(now, all)
		if err != nil || len(entries) != 6 {
			t.Fatalf("%d entries, %v", len(entries), err)
		}
		for _, asJSON := range []bool{false, true} {
			var got, want bytes.Buffer
			if err := listQueue(&got, q, now, all, asJSON, queue.ListFilter{}); err != nil {
				t.Fatal(err)
			}
			if err := writeListOld(&want, entries, now, asJSON); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("all=%v json=%v: the streamed listing differs:\n%s\nwant:\n%s", all, asJSON, got.String(), want.String())
			}
		}
	}
}

// failWriter fails every write after the first n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, fmt.Errorf("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

// TestListRunFlags runs smtp-send --list with filters: JSON lines that
// parse, one per selected message; the text form's summary says
// "matching"; a filter without --list, or a bad duration, is a usage
// error; a failed write of the listing is exit 74.
func TestListRunFlags(t *testing.T) {
	sp, _ := testQueue(t)
	t.Setenv("SMTP_SPOOL_DIR", sp.Root())
	old := time.Now().Add(-2 * time.Hour)
	a := spoolMessage(t, sp, old, "alice@example.org", []string{"x@one.test"})
	b := spoolMessage(t, sp, time.Now(), "Bob@Example.net", []string{"y@two.test", "z@one.test"})
	c := spoolMessage(t, sp, time.Now(), "", []string{"alice@example.org"})
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Run(append([]string{"smtp-send"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	for _, c := range []struct {
		args []string
		ids  []string
	}{
		{[]string{"--list", "--json"}, []string{a, b, c}},
		{[]string{"--list", "--json", "--from", "example"}, []string{a, b}},
		{[]string{"--list", "--json", "--from", "bob@EXAMPLE.NET"}, []string{b}},
		{[]string{"--list", "--json", "--from", "<>"}, []string{c}},
		{[]string{"--list", "--json", "--to", "one.test"}, []string{a, b}},
		{[]string{"--list", "--json", "--to", "alice"}, []string{c}},
		{[]string{"--list", "--json", "--older-than", "1h"}, []string{a}},
		{[]string{"--list", "--json", "--older-than", "3h"}, nil},
		{[]string{"--list", "--json", "--to", "one.test", "--older-than=1h30m"}, []string{a}},
	} {
		code, out, stderr := run(c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, stderr)
		}
		var ids []string
		for line := range strings.Lines(out) {
			var e queue.ListEntry
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%v: %v in %q", c.args, err, line)
			}
			ids = append(ids, e.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(c.ids) {
			t.Errorf("%v: listed %v, want %v", c.args, ids, c.ids)
		}
	}
	if code, out, _ := run("--list", "--to", "one.test"); code != 0 || !strings.HasSuffix(out, "-- 2 messages matching: 2 new\n") {
		t.Errorf("text listing with a filter: exit %d\n%s", code, out)
	}
	if code, out, _ := run("--list"); code != 0 || !strings.HasSuffix(out, "-- 3 messages: 3 new\n") {
		t.Errorf("text listing: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--from", "x"}, {"--older-than", "1h"}, {"--list", "--older-than", "soon"}} {
		if code, _, _ := run(args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	var errb bytes.Buffer
	if code := Run([]string{"smtp-send", "--list"}, &failWriter{n: 10}, &errb); code != exitIOErr {
		t.Errorf("--list to a failing writer: exit %d, want %d: %s", code, exitIOErr, errb.String())
	}
}
