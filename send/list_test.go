package send

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

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
	f := newFixture(t)
	var rcpts []string
	for _, h := range hostileParts {
		rcpts = append(rcpts, `"a`+h+`b"@example.org`)
	}
	sender := "\"s\u202egro.elpmaxe\x1b]0;title\x07\"@example.net"
	f.queue(sender, rcpts, body("hostile"))
	f.queue("plain@example.net", []string{"\"\u2066x\u2069\"@example.org"}, body("one"))
	entries, err := List(f.sp, f.clk.Now(), false)
	if err != nil || len(entries) != 2 {
		t.Fatalf("%d entries, %v", len(entries), err)
	}

	var text bytes.Buffer
	if err := WriteList(&text, entries, f.clk.Now(), false); err != nil {
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
	if err := WriteList(&js, entries, f.clk.Now(), true); err != nil {
		t.Fatal(err)
	}
	checkTerminalSafe(t, js.String())
	lines := strings.Split(strings.TrimSuffix(js.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d JSON lines:\n%s", len(lines), js.String())
	}
	var e ListEntry
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
		e := ListEntry{ID: "id" + h, Status: ListDeferred + h, Age: "1s" + h, From: "f" + h, Error: "err" + h,
			Next: time.Unix(1e9, 0), Rcpts: []spool.Rcpt{{Addr: "r" + h, Stage: "rcpt" + h, Code: 451,
				Enhanced: "4.0.0" + h, Text: "text" + h, Relay: "relay" + h, DSN: "dsn" + h}}}
		var text, js bytes.Buffer
		WriteList(&text, []ListEntry{e}, time.Unix(1e9, 0), false)
		checkTerminalSafe(t, text.String())
		if n := strings.Count(text.String(), "\n"); n != 4 {
			t.Errorf("%q: %d lines:\n%s", h, n, text.String())
		}
		if strings.Count(text.String(), textsafe.Escape(h)) != 11 {
			t.Errorf("%q: not every field shows %s:\n%s", h, textsafe.Escape(h), text.String())
		}
		WriteList(&js, []ListEntry{e}, time.Unix(1e9, 0), true)
		checkTerminalSafe(t, js.String())
		if !json.Valid(js.Bytes()) {
			t.Errorf("%q: invalid JSON %s", h, js.String())
		}
	}
}
