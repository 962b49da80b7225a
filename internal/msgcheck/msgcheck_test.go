package msgcheck

import (
	"bufio"
	"bytes"
	"errors"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	// Test oracles only: the package itself must not import them
	// (see the package comment).
	"github.com/emersion/go-message/textproto"
)

// good is a header section that passes every mode.
const good = "From: Alice <alice@example.net>\r\n" +
	"To: Bob <bob@example.org>,\r\n\tCarol <carol@example.org>\r\n" +
	"Subject: a test\r\n" +
	"Date: Sat, 21 Nov 2026 11:18:25 +0000\r\n" +
	"Message-ID: <1@example.net>\r\n"

// without returns good without the field named name.
func without(name string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(good, "\r\n") {
		if !strings.HasPrefix(l, name+":") {
			b.WriteString(l)
		}
	}
	return b.String()
}

func TestCheck(t *testing.T) {
	long := func(n int) string { return "X-Long: " + strings.Repeat("x", n-len("X-Long: ")) + "\r\n" }
	// date returns good with v for the value of its Date: field.
	date := func(v string) string { return strings.Replace(good, " Sat, 21 Nov 2026 11:18:25 +0000", v, 1) }
	const (
		ok      = ""
		L, S, U = Lenient, Strict, true // U: with SMTPUTF8
		badDate = "Date: field is not a valid date-time (RFC 5322 section 3.3)"
	)
	tests := []struct {
		name   string
		header string
		mode   Mode
		utf8   bool
		add    bool   // AddMissing
		defect string // "" when accepted
	}{
		// What every mode accepts.
		{"good", good, L, false, false, ok},
		{"good strict", good, S, false, false, ok},
		{"empty section, lenient", "", L, false, false, ok},
		{"folded field", "Subject: a\r\n b\r\n\tc\r\n", L, false, false, ok},
		{"name with any ftext", "X-A(b)[c]{d}\"e\"/?=,;<>\\: v\r\n", L, false, false, ok},
		{"no body after colon", "X-Empty:\r\n", L, false, false, ok},
		{"last line without CRLF", "Subject: x", L, false, false, ok},

		// Lenient: a corrupt section.
		{"continuation first", " Subject: x\r\n", L, false, false, "Header line 1 starts with white space, a continuation of no field"},
		{"no colon", "Subject: x\r\nthis is body text\r\n", L, false, false, "Header line 2 has no colon (RFC 5322 section 2.2)"},
		{"mbox From line", "From alice@example.net Sat Nov 21 11:18:25 2026\r\n", L, false, false, "Header line 1 has a field name with characters other than printable US-ASCII (RFC 5322 section 2.2)"},
		{"empty name", "Subject: x\r\n: value\r\n", L, false, false, "Header line 2 has an empty field name (RFC 5322 section 2.2)"},
		{"space in name", "Sub ject: x\r\n", L, false, false, "Header line 1 has a field name with characters other than printable US-ASCII (RFC 5322 section 2.2)"},
		{"8-bit in name", "Sübject: x\r\n", L, false, false, "Header line 1 has a field name with characters other than printable US-ASCII (RFC 5322 section 2.2)"},
		{"control in name", "Sub\x00ject: x\r\n", L, false, false, "Header line 1 has a field name with characters other than printable US-ASCII (RFC 5322 section 2.2)"},
		{"bare LF", "Subject: x\nBcc: y\r\n", L, false, false, "Header line 1 holds a bare CR or LF (RFC 5322 section 2.2)"},
		{"bare CR", "Subject: x\rBcc: y\r\n", L, false, false, "Header line 1 holds a bare CR or LF (RFC 5322 section 2.2)"},
		{"line at the lenient limit", long(MaxLineLenient), L, false, false, ok},
		{"line over the lenient limit", long(MaxLineLenient + 1), L, false, false, "Header line 1 is longer than 16384 bytes"},

		// Lenient lets through what strict refuses.
		{"8-bit value, lenient", "Subject: caf\xc3\xa9 \xe9\r\n", L, false, false, ok},
		{"NUL in value, lenient", "Subject: a\x00b\r\n", L, false, false, ok},
		{"long line, lenient", long(MaxLineStrict + 1), L, false, false, ok},
		{"space before colon, lenient", "Subject : x\r\n", L, false, false, ok},
		{"no From or Date, lenient", "Subject: x\r\n", L, false, false, ok},
		{"two Subjects, lenient", "Subject: x\r\nSubject: y\r\n", L, false, false, ok},
		{"bad From, lenient", "From: not an address\r\n", L, false, false, ok},
		{"bad Date, lenient", date(" yesterday"), L, false, false, ok},

		// Strict: RFC 5322 section 3.6.
		{"no From", without("From"), S, false, false, "Message has no From: field (RFC 5322 section 3.6)"},
		{"no Date", without("Date"), S, false, false, "Message has no Date: field (RFC 5322 section 3.6)"},
		{"no Date, to be added", without("Date"), S, false, true, ok},
		{"no From, Date to be added", without("From"), S, false, true, "Message has no From: field (RFC 5322 section 3.6)"},
		{"no Message-ID", without("Message-ID"), S, false, false, ok},
		{"empty section, strict", "", S, false, false, "Message has no From: field (RFC 5322 section 3.6)"},
		{"two From", good + "FROM: eve@example.net\r\n", S, false, false, "Message has more than one From: field (RFC 5322 section 3.6)"},
		{"two Date", good + "date: Sat, 21 Nov 2026 11:18:26 +0000\r\n", S, false, false, "Message has more than one Date: field (RFC 5322 section 3.6)"},
		{"two Subject", good + "Subject: again\r\n", S, false, false, "Message has more than one Subject: field (RFC 5322 section 3.6)"},
		{"two Message-ID", good + "Message-Id: <2@example.net>\r\n", S, false, false, "Message has more than one Message-ID: field (RFC 5322 section 3.6)"},
		{"two To", good + "To: dave@example.org\r\n", S, false, false, "Message has more than one To: field (RFC 5322 section 3.6)"},
		{"two Cc", good + "Cc: a@b.example\r\nCc: c@d.example\r\n", S, false, false, "Message has more than one Cc: field (RFC 5322 section 3.6)"},
		{"two Sender", good + "Sender: a@b.example\r\nSender: c@d.example\r\n", S, false, false, "Message has more than one Sender: field (RFC 5322 section 3.6)"},
		{"two Received are fine", good + "Received: a\r\nReceived: b\r\n", S, false, false, ok},
		{"two Comments are fine", good + "Comments: a\r\nComments: b\r\n", S, false, false, ok},
		{"several From, with Sender", good + "Sender: alice@example.net\r\n", S, false, false, ok},
		{"several From, no Sender", strings.Replace(good, "From: Alice <alice@example.net>", "From: alice@example.net, dave@example.net", 1), S, false, false,
			"From: field has several mailboxes but there is no Sender: field (RFC 5322 section 3.6.2)"},
		{"several From, Sender", strings.Replace(good, "From: Alice <alice@example.net>", "From: alice@example.net, dave@example.net", 1) + "Sender: alice@example.net\r\n", S, false, false, ok},
		{"bad From", strings.Replace(good, "Alice <alice@example.net>", "Alice <alice>", 1), S, false, false,
			"From: field holds no well-formed list of mailboxes (RFC 5322 section 3.6.2)"},
		{"From group, no mailbox", strings.Replace(good, "Alice <alice@example.net>", "undisclosed:;", 1), S, false, false,
			"From: field holds no well-formed list of mailboxes (RFC 5322 section 3.6.2)"},
		{"From empty", strings.Replace(good, "Alice <alice@example.net>", "", 1), S, false, false,
			"From: field holds no well-formed list of mailboxes (RFC 5322 section 3.6.2)"},
		{"From folded", strings.Replace(good, "Alice <alice@example.net>", "Alice\r\n <alice@example.net>", 1), S, false, false, ok},
		{"From folded, several", strings.Replace(good, "Alice <alice@example.net>", "alice@example.net,\r\n dave@example.net", 1), S, false, false,
			"From: field has several mailboxes but there is no Sender: field (RFC 5322 section 3.6.2)"},
		{"From in a rare charset", strings.Replace(good, "Alice", "=?koi8-r?B?8MXU0g==?=", 1), S, false, false, ok},
		{"From with a comma in quotes", strings.Replace(good, "Alice <alice", "\"Smith, Alice\" <alice", 1), S, false, false, ok},
		{"bad Sender", good + "Sender: a@b.example, c@d.example\r\n", S, false, false,
			"Sender: field does not hold one mailbox (RFC 5322 section 3.6.2)"},

		// Strict: the Date: value is a date-time (RFC 5322 section 3.3,
		// with the obsolete syntax of section 4.3). TestParseDateTime
		// has more.
		{"Date standard", date(" Sat, 21 Nov 2026 11:18:25 +0000"), S, false, false, ok},
		{"Date without day-of-week", date(" 21 Nov 2026 11:18:25 -0500"), S, false, false, ok},
		{"Date with a 1-digit day", date(" Sat, 7 Nov 2026 11:18:25 +0100"), S, false, false, ok},
		{"Date without seconds", date(" Sat, 21 Nov 2026 11:18 +0000"), S, false, false, ok},
		{"Date with a 2-digit year", date(" Sat, 21 Nov 26 11:18:25 +0000"), S, false, false, ok},
		{"Date in GMT", date(" Sat, 21 Nov 2026 11:18:25 GMT"), S, false, false, ok},
		{"Date in EST", date(" Sat, 21 Nov 2026 06:18:25 EST"), S, false, false, ok},
		{"Date in a military zone", date(" Sat, 21 Nov 2026 11:18:25 Z"), S, false, false, ok},
		{"Date with a (UTC) comment", date(" Sat, 21 Nov 2026 11:18:25 +0000 (UTC)"), S, false, false, ok},
		{"Date with a (PST) comment", date(" Sat, 21 Nov 2026 03:18:25 -0800 (PST)"), S, false, false, ok},
		{"Date folded", date("\r\n Sat, 21 Nov 2026\r\n\t11:18:25 +0000 (Coordinated\r\n Universal Time)"), S, false, false, ok},
		{"Date with obsolete spacing", date("Sat ,21 Nov  2026 11 : 18 : 25\t+0000 "), S, false, false, ok},
		{"Date in UTF-8 comment", date(" Sat, 21 Nov 2026 11:18:25 +0100 (heure de Paris, caf\xc3\xa9)"), S, U, false, ok},
		{"Date yesterday", date(" yesterday"), S, false, false, badDate},
		{"Date empty", date(""), S, false, false, badDate},
		{"Date blank", date(" \r\n "), S, false, false, badDate},
		{"Date on the 32nd", date(" 32 Nov 2026 11:18:25 +0000"), S, false, false, badDate},
		{"Date on 31 Nov", date(" 31 Nov 2026 11:18:25 +0000"), S, false, false, badDate},
		{"Date at 25:00", date(" Sat, 21 Nov 2026 25:00:00 +0000"), S, false, false, badDate},
		{"Date without zone", date(" Sat, 21 Nov 2026 11:18:25"), S, false, false, badDate},
		{"Date with garbage after the zone", date(" Sat, 21 Nov 2026 11:18:25 +0000 garbage"), S, false, false, badDate},
		{"Date with the wrong day-of-week", date(" Sun, 21 Nov 2026 11:18:25 +0000"), S, false, false, badDate},
		{"Date in ISO 8601", date(" 2026-11-21T11:18:25Z"), S, false, false, badDate},
		{"Date with an unclosed comment", date(" Sat, 21 Nov 2026 11:18:25 +0000 (UTC"), S, false, false, badDate},
		{"Date malformed, to be added", date(" yesterday"), S, false, true, badDate},
		{"Date malformed, two of them", date(" yesterday") + "Date: today\r\n", S, false, false,
			"Message has more than one Date: field (RFC 5322 section 3.6)"},

		// Strict: bytes and lines.
		{"8-bit without SMTPUTF8", good + "Subject2: caf\xc3\xa9\r\n", S, false, false, "Header line 7 holds 8-bit bytes without SMTPUTF8 (RFC 6532)"},
		{"UTF-8 with SMTPUTF8", strings.Replace(good, "Alice <alice", "Alicé <alicé", 1), S, U, false, ok},
		{"Latin-1 with SMTPUTF8", good + "X-Note: caf\xe9\r\n", S, U, false, "Header line 7 holds bytes that are not UTF-8 (RFC 6532 section 3.2)"},
		{"NUL", good + "X-Note: a\x00b\r\n", S, false, false, "Header line 7 holds a control character (RFC 5322 section 2.2)"},
		{"DEL", good + "X-Note: a\x7fb\r\n", S, false, false, "Header line 7 holds a control character (RFC 5322 section 2.2)"},
		{"HTAB", good + "X-Note:\ta\tb\r\n", S, false, false, ok},
		{"line at 998", good + long(MaxLineStrict), S, false, false, ok},
		{"line over 998", good + long(MaxLineStrict+1), S, false, false, "Header line 7 is longer than 998 characters (RFC 5322 section 2.1.1)"},
		{"space before colon", good + "X-Note : a\r\n", S, false, false, "Header line 7 has white space before the colon (obsolete syntax, RFC 5322 section 4.5)"},

		// Off finds nothing.
		{"off: corrupt", " \r\nno colon\r\n\x00\r\n", Off, false, false, ok},
	}
	for _, tc := range tests {
		_, err := Check([]byte(tc.header), Options{Mode: tc.mode, SMTPUTF8: tc.utf8, AddMissing: tc.add})
		got := ""
		if err != nil {
			got = err.Error()
			if _, ok := errors.AsType[*Defect](err); !ok {
				t.Errorf("%s: error %T is not a *Defect", tc.name, err)
			}
		}
		if got != tc.defect {
			t.Errorf("%s (%s): got %q, want %q", tc.name, tc.mode, got, tc.defect)
		}
	}
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   Summary
	}{
		{good, Summary{Date: true, MessageID: true}},
		{without("Date"), Summary{MessageID: true}},
		{"date: x\r\nmessage-id: y\r\n", Summary{Date: true, MessageID: true}},
		{"X-Date: x\r\nMessage-IDs: y\r\n", Summary{}},
		{"Subject: x\r\n Date: folded, not a field\r\n", Summary{}},
		{"no colon\r\nDate: x\r\n", Summary{Date: true}}, // Off reads on past defects
	} {
		if got, _ := Check([]byte(tc.header), Options{Mode: Off}); got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.header, got, tc.want)
		}
	}
}

func TestMissing(t *testing.T) {
	now := time.Date(2026, 11, 21, 11, 18, 25, 0, time.FixedZone("", -5*3600))
	for _, tc := range []struct {
		s            Summary
		unique, host string
		want         string
	}{
		{Summary{Date: true, MessageID: true}, "u1", "mx.example.net", ""},
		{Summary{MessageID: true}, "u1", "mx.example.net", "Date: Sat, 21 Nov 2026 11:18:25 -0500\r\n"},
		{Summary{Date: true}, "20261121.a1b2", "mx.example.net", "Message-ID: <20261121.a1b2@mx.example.net>\r\n"},
		{Summary{}, "u1", "mx", "Date: Sat, 21 Nov 2026 11:18:25 -0500\r\nMessage-ID: <u1@mx>\r\n"},
		{Summary{Date: true}, "a b", "mx..example", "Message-ID: <invalid@localhost>\r\n"},
		{Summary{Date: true}, "u1", "[192.0.2.1]", "Message-ID: <u1@localhost>\r\n"},
	} {
		if got := string(Missing(tc.s, now, tc.unique, tc.host)); got != tc.want {
			t.Errorf("%+v %q %q: %q, want %q", tc.s, tc.unique, tc.host, got, tc.want)
		}
	}
	// What Missing adds passes strict mode.
	h := append([]byte("From: a@example.net\r\n"), Missing(Summary{}, now, "u1", "mx.example.net")...)
	if s, err := Check(h, Options{Mode: Strict}); err != nil || !s.Date || !s.MessageID {
		t.Errorf("added fields: %+v, %v", s, err)
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{Off, Lenient, Strict} {
		if got, err := ParseMode(strings.ToUpper(m.String())); got != m || err != nil {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	for _, bad := range []string{"paranoid", "\u017ftrict"} { // long s: Unicode folds it to s
		if _, err := ParseMode(bad); err == nil {
			t.Errorf("ParseMode(%q): no error", bad)
		}
	}
	if s := Mode(7).String(); s != "Mode(7)" {
		t.Errorf("Mode(7) is %q", s)
	}
}

// TestCheckAllocations: lenient mode, the default, costs no allocation,
// and strict mode a few (the From: value, unfolded); the Date: value is
// parsed where it stands, at no cost.
func TestCheckAllocations(t *testing.T) {
	h := []byte(realHeader)
	if n := testing.AllocsPerRun(100, func() { Check(h, Options{Mode: Lenient}) }); n != 0 {
		t.Errorf("lenient: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { Check(h, Options{Mode: Strict}) }); n > 4 {
		t.Errorf("strict: %v allocations", n)
	}
}

func TestMailboxes(t *testing.T) {
	for _, tc := range []struct {
		v  string
		n  int
		ok bool
	}{
		{"a@b.example", 1, true},
		{" Alice <a@b.example> ", 1, true},
		{"a@b.example, c@d.example", 2, true},
		{"\"Smith, Alice\" <a@b.example>, Bob <c@d.example>", 2, true},
		{"\"a,b\"@c.example", 1, true},
		{"\"a\\\",b\"@c.example", 1, true},
		{"a@b.example (Alice, (the first)), c@d.example", 2, true},
		{"a@[192.0.2.1], b@[IPv6:2001:db8::1]", 2, true},
		{"<@route.example:a@b.example>", 1, true},
		{"a@b.example,, ,c@d.example", 2, true},
		{"friends: a@b.example, c@d.example;, e@f.example", 3, true},
		{"undisclosed:;", 0, true},
		{"", 0, true},
		{"=?utf-8?q?Alic=C3=A9?= <a@b.example>", 1, true},
		{"Alice", 0, false},
		{"Alice <alice>", 0, false},
		{"<>", 0, false},
		{"<\"a@b\">", 0, false},
		{"Alice <a@b.example", 0, false},
		{"\"Alice <a@b.example>", 0, false},
		{"a@b.example (unclosed", 0, false},
		{"a@[192.0.2.1", 0, false},
		{"a@b.example, Bob", 0, false},
	} {
		n, ok := mailboxes(tc.v)
		if n != tc.n || ok != tc.ok {
			t.Errorf("mailboxes(%q) = %d, %v; want %d, %v", tc.v, n, ok, tc.n, tc.ok)
		}
	}
}

// FuzzMailboxes holds the lexer against net/mail: wherever net/mail
// parses a list without groups, the count agrees.
func FuzzMailboxes(f *testing.F) {
	for _, s := range []string{"a@b.example", "\"Smith, A\" <a@b.example>, c@d.example", "a@b (x, y), <c@d>", "g: a@b;", "a@[1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, ok := mailboxes(v)
		if n < 0 || !ok && n != 0 {
			t.Fatalf("mailboxes(%q) = %d, %v", v, n, ok)
		}
		if strings.ContainsAny(v, ":;") {
			return // groups: net/mail's handling differs in detail
		}
		list, err := mail.ParseAddressList(v)
		if err == nil && (!ok || n != len(list)) {
			t.Fatalf("mailboxes(%q) = %d, %v; net/mail finds %d", v, n, ok, len(list))
		}
	})
}

// realHeader is the header section of a real-looking 2 KiB message.
var realHeader = "Received: from mail.example.net (mail.example.net [192.0.2.25])\r\n\tby mx.example.org (Postfix) with ESMTPS id 4Xyz1234\r\n\tfor <bob@example.org>; Sat, 21 Nov 2026 11:18:24 +0000 (UTC)\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=s1;\r\n\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\tb=" + strings.Repeat("AbCdEfGh", 40) + "\r\n" +
	good +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"

func BenchmarkCheck(b *testing.B) {
	h := []byte(realHeader)
	for _, m := range []Mode{Lenient, Strict} {
		b.Run(m.String(), func(b *testing.B) {
			b.SetBytes(int64(len(h)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Check(h, Options{Mode: m}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzCheckHeader: Check never panics; its defects are printable ASCII
// that never quote the input; strict accepts only what lenient accepts;
// what lenient accepts, go-message's header parser reads; Off never
// finds a defect; and the summary is the same in every mode.
func FuzzCheckHeader(f *testing.F) {
	f.Add([]byte(good), false)
	f.Add([]byte(realHeader), true)
	f.Add([]byte(" x\r\nno colon\r\n: y\r\nA b: c\r\nFrom: a@b, c@d\r\nDate: x\r\nSubject: \xff\r\n"), false)
	f.Add([]byte("From: =?utf-8?q?caf=C3=A9?= <a@b>\r\nDate: Sat, 21 Nov 2026 11:18:25 +0000\r\nSender: x@y\r\nSubject : \x00\r\n"), true)
	f.Add([]byte("From: a@b\r\nDate: 21 Nov 26\r\n 11:18 (c\r\n d) EST\r\nX: y\r\n"), false)
	f.Add([]byte("From: a@b\r\nDate: Sun, 31 Nov 2026 24:00:61 +0060 (UTC\r\n"), false)
	f.Fuzz(func(t *testing.T, header []byte, utf8 bool) {
		var sums [3]Summary
		var errs [3]error
		for _, m := range []Mode{Off, Lenient, Strict} {
			sums[m], errs[m] = Check(header, Options{Mode: m, SMTPUTF8: utf8})
			if err := errs[m]; err != nil {
				d, ok := errors.AsType[*Defect](err)
				if !ok || d.Line < 0 {
					t.Fatalf("%s: error %#v", m, err)
				}
				for _, c := range []byte(d.Error()) {
					if c < ' ' || c > '~' {
						t.Fatalf("%s: defect %q is not printable ASCII", m, d.Error())
					}
				}
			}
		}
		if errs[Off] != nil {
			t.Fatalf("off found %v", errs[Off])
		}
		if errs[Lenient] != nil && errs[Strict] == nil {
			t.Fatalf("strict accepts what lenient refuses: %v", errs[Lenient])
		}
		if errs[Lenient] == nil {
			if sums[Lenient] != sums[Off] || errs[Strict] == nil && sums[Strict] != sums[Off] {
				t.Fatalf("summaries differ: %+v", sums)
			}
			in := append(append([]byte(nil), header...), "\r\n\r\n"...)
			if _, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(in))); err != nil {
				t.Fatalf("lenient accepts what go-message cannot read: %v", err)
			}
		}
	})
}

func TestParseDateTime(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	std := utc(2026, time.November, 21, 11, 18, 25)
	var refused time.Time
	for _, tc := range []struct {
		v    string
		want time.Time // zero: refused
	}{
		{"Sat, 21 Nov 2026 11:18:25 +0000", std},
		{" Sat, 21 Nov 2026 11:18:25 +0000 ", std},
		{"21 Nov 2026 11:18:25 +0000", std},
		{"Sat, 21 Nov 2026 13:48:25 +0230", std},
		{"Sat, 21 Nov 2026 01:18:25 -1000", std},
		{"Sat, 21 Nov 2026 11:18:25 -0000", std},
		{"Sat, 7 Nov 2026 11:18:25 +0000", utc(2026, time.November, 7, 11, 18, 25)},
		{"Sat, 07 Nov 2026 11:18:25 +0000", utc(2026, time.November, 7, 11, 18, 25)},
		{"Sat, 21 Nov 2026 11:18 +0000", utc(2026, time.November, 21, 11, 18, 0)},
		{"sat, 21 NOV 2026 11:18:25 gmt", std},
		{"Sat, 21 Nov 2026 11:18:25 UT", std},
		{"Sat, 21 Nov 2026 06:18:25 EST", std},
		{"Sat, 21 Nov 2026 07:18:25 EDT", std},
		{"Sat, 21 Nov 2026 05:18:25 CST", std},
		{"Sat, 21 Nov 2026 06:18:25 CDT", std},
		{"Sat, 21 Nov 2026 04:18:25 MST", std},
		{"Sat, 21 Nov 2026 05:18:25 MDT", std},
		{"Sat, 21 Nov 2026 03:18:25 PST", std},
		{"Sat, 21 Nov 2026 04:18:25 PDT", std},
		{"Sat, 21 Nov 2026 11:18:25 A", std}, // military zones count as -0000
		{"Sat, 21 Nov 2026 11:18:25 z", std},
		{"Sat, 21 Nov 2026 11:18:25 J", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000 (UTC)", std},
		{"Sat, 21 Nov 2026 11:18:25 +0000(UTC)", std},
		{"Sat, 21 Nov 2026 11:18:25 +0000 (a (nested) \\) comment) (another)", std},
		{"(c) Sat (c) , (c) 21 (c) Nov (c) 2026 (c) 11 (c) : (c) 18 (c) : (c) 25 (c) +0000 (c)", std},
		{"Sat,21Nov2026 11:18:25 +0000", std},
		{"21 Nov 2026 11:18:25GMT", std},
		{"Sat, 21 Nov\r\n 2026 11:18:25\r\n\t+0000\r\n (UTC)", std},
		{"Sat, 21 Nov 2026 11:18:25 +0000 (folded\r\n comment)", std},

		// Years: obs-year of 2 or 3 digits (RFC 5322 section 4.3).
		{"Sat, 21 Nov 26 11:18:25 +0000", std},
		{"Sat, 21 Nov 126 11:18:25 +0000", std},
		{"Fri, 21 Nov 97 11:18:25 +0000", utc(1997, time.November, 21, 11, 18, 25)},
		{"Sat, 1 Jan 00 00:00:00 +0000", utc(2000, time.January, 1, 0, 0, 0)},
		{"31 Dec 49 00:00 +0000", utc(2049, time.December, 31, 0, 0, 0)},
		{"Sun, 1 Jan 50 00:00 +0000", utc(1950, time.January, 1, 0, 0, 0)},
		{"1 Jan 1900 00:00 +0000", utc(1900, time.January, 1, 0, 0, 0)},
		{"31 Dec 9999 23:59 +0000", utc(9999, time.December, 31, 23, 59, 0)},
		{"31 Dec 1899 23:59 +0000", refused},
		{"21 Nov 0026 11:18:25 +0000", refused},
		{"21 Nov 6 11:18:25 +0000", refused},
		{"21 Nov 20260 11:18:25 +0000", refused},

		// Days and times.
		{"Tue, 29 Feb 2028 00:00 +0000", utc(2028, time.February, 29, 0, 0, 0)},
		{"29 Feb 2026 00:00 +0000", refused},
		{"30 Feb 2028 00:00 +0000", refused},
		{"0 Nov 2026 11:18:25 +0000", refused},
		{"021 Nov 2026 11:18:25 +0000", refused},
		{"32 Nov 2026 11:18:25 +0000", refused},
		{"31 Nov 2026 11:18:25 +0000", refused},
		{"Thu, 31 Dec 2026 23:59:60 +0000", utc(2027, time.January, 1, 0, 0, 0)}, // a leap second
		{"Sat, 21 Nov 2026 23:59:61 +0000", refused},
		{"Sat, 21 Nov 2026 24:00:00 +0000", refused},
		{"Sat, 21 Nov 2026 25:00:00 +0000", refused},
		{"Sat, 21 Nov 2026 11:60:00 +0000", refused},
		{"Sat, 21 Nov 2026 1:18:25 +0000", refused},
		{"Sat, 21 Nov 2026 11:8:25 +0000", refused},
		{"Sat, 21 Nov 2026 11:18:5 +0000", refused},
		{"Sat, 21 Nov 2026 11:18:25.5 +0000", refused},
		{"Sat, 21 Nov 2026 11 +0000", refused},
		{"Sat, 21 Nov 2026 11:18: +0000", refused},

		// Names.
		{"Sun, 21 Nov 2026 11:18:25 +0000", refused}, // 21 Nov 2026 is a Saturday
		{"Saturday, 21 Nov 2026 11:18:25 +0000", refused},
		{"Sat 21 Nov 2026 11:18:25 +0000", refused},
		{"Sat, 21 November 2026 11:18:25 +0000", refused},
		{"Sat, Nov 21 2026 11:18:25 +0000", refused},
		{"Sat, 21 11 2026 11:18:25 +0000", refused},
		{", 21 Nov 2026 11:18:25 +0000", refused},

		// Zones.
		{"Sat, 21 Nov 2026 11:18:25", refused},
		{"Sat, 21 Nov 2026 11:18:25 +9959", std.Add(-(99*time.Hour + 59*time.Minute))},
		{"Sat, 21 Nov 2026 11:18:25 +0060", refused},
		{"Sat, 21 Nov 2026 11:18:25 +000", refused},
		{"Sat, 21 Nov 2026 11:18:25 +00000", refused},
		{"Sat, 21 Nov 2026 11:18:25 + 0000", refused},
		{"Sat, 21 Nov 2026 11:18:25 0000", refused},
		{"Sat, 21 Nov 2026 11:18:25+0000", refused},
		{"Sat, 21 Nov 2026 11:18:25 (UTC)+0000", refused},
		{"Sat, 21 Nov 2026 11:18:25 (UTC) +0000", std},
		{"Sat, 21 Nov 2026 11:18:25 UTC", refused},
		{"Sat, 21 Nov 2026 11:18:25 CET", refused},
		{"Sat, 21 Nov 2026 11:18:25 GMT+1", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000 +0000", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000 garbage", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000 (UTC", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000 (UTC))", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000 (UTC\\", refused},

		// Not dates; CR and LF only as folding.
		{"", refused},
		{" ", refused},
		{"yesterday", refused},
		{"2026-11-21T11:18:25Z", refused},
		{"1795601905", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000\r\n", refused},
		{"Sat, 21 Nov 2026\r\n11:18:25 +0000", refused},
		{"Sat, 21 Nov 2026\n 11:18:25 +0000", refused},
		{"Sat, 21 Nov 2026\r 11:18:25 +0000", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000 (a\nb)", refused},
		{"Sat, 21 Nov 2026 11:18:25 +0000 (a\r\nb)", refused},
	} {
		got, ok := parseDateTime([]byte(tc.v))
		switch {
		case tc.want.IsZero() && ok:
			t.Errorf("%q: accepted as %v", tc.v, got)
		case !tc.want.IsZero() && !ok:
			t.Errorf("%q: refused", tc.v)
		case ok && !got.Equal(tc.want):
			t.Errorf("%q: %v, want %v", tc.v, got, tc.want)
		}
	}
}

// TestParseDateTimeLong: the parser's work is linear in the length of
// its input, whatever the input.
func TestParseDateTimeLong(t *testing.T) {
	const n = 1 << 20
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{strings.Repeat(" ", n), false},
		{strings.Repeat("(", n), false},
		{strings.Repeat("(", n/2) + strings.Repeat(")", n/2) + " 21 Nov 2026 11:18 +0000", true},
		{strings.Repeat("\\(", n/2), false},
		{"(" + strings.Repeat("\\(", n/2) + ")21 Nov 2026 11:18 +0000", true},
		{strings.Repeat("\r\n ", n/3), false},
		{strings.Repeat("9", n), false},
		{strings.Repeat("a", n), false},
		{"21 Nov 2026 11:18 +0000" + strings.Repeat(" (x)", n/4), true},
	} {
		start := time.Now()
		_, ok := parseDateTime([]byte(tc.v))
		if d := time.Since(start); d > time.Second {
			t.Errorf("%.20q...: %v", tc.v, d)
		}
		if ok != tc.ok {
			t.Errorf("%.20q...: %v, want %v", tc.v, ok, tc.ok)
		}
	}
}

// TestParseDateTimeNetMail sets the parser beside net/mail's ParseDate
// on the forms where the two disagree, on purpose. net/mail reads more
// than RFC 5322 allows in some ways and less in others:
//
//   - It ignores the day-of-week, which section 3.3 says MUST be the day
//     of the date; we refuse a wrong one.
//   - It reads a 2-digit year of 50 to 68 as 2050 to 2068 (package time's
//     rule); section 4.3 makes it 1950 to 1968, as we do.
//   - It accepts what section 3.3 does not: a 1-digit hour, fractional
//     seconds, a year before 1900, any three capitals as a zone (CET,
//     UTC), "GMT+1", zone minutes of 60, and anything after the zone and
//     a comment. We refuse them all.
//   - It refuses what section 3.3 or 4.3 allows: a 3-digit year, a leap
//     second, a zone offset past 24 hours, military and lower-case
//     zones, tabs, and comments or white space other than single spaces
//     between the parts. We accept them all.
//
// FuzzParseDateTime holds the rest: every date net/mail reads that is
// RFC 5322 (netMailRFC), we read, as the same instant.
func TestParseDateTimeNetMail(t *testing.T) {
	for _, tc := range []struct {
		v             string
		netMail, ours bool
	}{
		{"Sun, 21 Nov 2026 11:18:25 +0000", true, false},   // wrong day-of-week
		{"Sun, 21 Nov 55 11:18:25 +0000", true, false},     // 2055, not 1955, for net/mail
		{"Sat, 21 Nov 2026 1:18:25 +0000", true, false},    // 1-digit hour
		{"Sat, 21 Nov 2026 11:18:25.5 +0000", true, false}, // fractional seconds
		{"21 Nov 1899 11:18:25 +0000", true, false},        // before 1900
		{"21 Nov 2026 11:18:25 CET", true, false},          // not an obs-zone
		{"21 Nov 2026 11:18:25 UTC", true, false},          // not an obs-zone
		{"21 Nov 2026 11:18:25 GMT+1", true, false},        // not an obs-zone
		{"21 Nov 2026 11:18:25 +0060", true, false},        // 60 minutes
		{"21 Nov 2026 11:18:25 +0000 garbage", true, false},
		{"21 Nov 2026 11:18:25 +0000 (UTC) garbage", true, false},
		{"21 Nov 126 11:18:25 +0000", false, true}, // obs-year
		{"31 Dec 2026 23:59:60 +0000", false, true},
		{"21 Nov 2026 11:18:25 +2500", false, true},
		{"21 Nov 2026 11:18:25 Z", false, true},
		{"21 Nov 2026 11:18:25 gmt", false, true},
		{"21 Nov 2026 11:18:25\t+0000", false, true},
		{"Sat,21 Nov 2026 11:18:25 +0000", false, true},
		{"21 Nov 2026 (c) 11:18:25 +0000", false, true},
		{"21 Nov 2026 11 : 18 : 25 +0000", false, true},
	} {
		_, err := mail.ParseDate(tc.v)
		_, ok := parseDateTime([]byte(tc.v))
		if (err == nil) != tc.netMail || ok != tc.ours {
			t.Errorf("%q: net/mail %v, ours %v; want %v, %v", tc.v, err == nil, ok, tc.netMail, tc.ours)
		}
	}
	// The 2-digit year of 50 to 68.
	got, _ := parseDateTime([]byte("Mon, 21 Nov 55 11:18:25 +0000"))
	nm, _ := mail.ParseDate("Mon, 21 Nov 55 11:18:25 +0000")
	if got.Year() != 1955 || nm.Year() != 2055 {
		t.Errorf("year 55: ours %d, net/mail %d", got.Year(), nm.Year())
	}
}

// netMailRFC matches what net/mail's ParseDate reads that is an RFC 5322
// date-time in syntax, leaving aside what TestParseDateTimeNetMail lists:
// a 2-digit hour, an obs-zone, and nothing but white space and comments
// after the zone. The submatches are the day-of-week, the year, the zone
// and the comments.
var netMailRFC = regexp.MustCompile(`^[ \t]*(?:([A-Za-z]{3}), +)?\d{1,2} +[A-Za-z]{3} +(\d{4}|\d{2}) +\d{2}:\d{2}(?::\d{2})? +([+-]\d{4}|UT|GMT|[ECMP][SD]T)((?:[ \t]|\([^()\\]*\))*)$`)

// rfcZones are the obs-zones' offsets in hours (RFC 5322 section 4.3).
var rfcZones = map[string]int{"UT": 0, "GMT": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7}

// FuzzParseDateTime: the parser never panics, and every date that
// net/mail reads and that is an RFC 5322 date-time, it reads too, as the
// same instant (see TestParseDateTimeNetMail).
func FuzzParseDateTime(f *testing.F) {
	for _, s := range []string{
		"Sat, 21 Nov 2026 11:18:25 +0000",
		"21 Nov 26 11:18 -0830 (a comment)",
		"Thu, 1 Jan 70 00:00:00 GMT",
		"Tue, 29 Feb 2028 23:59 PDT (PDT)",
		"Mon, 21 Nov 55 11:18:25 EST",
		" sat, 07  nov  2026  11:18:25  UT ",
		"Sat, 21 Nov 2026 11:18:25 +0000 (a (b) \\) c)",
		"Sat, 21 Nov\r\n 2026 11:18:25 Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, ok := parseDateTime([]byte(v))
		if strings.ContainsAny(v, "\r\n") {
			return // ParseDate drops every CRLF; we take only folding
		}
		nm, err := mail.ParseDate(v)
		if err != nil {
			return
		}
		m := netMailRFC.FindStringSubmatch(v)
		if m == nil {
			return
		}
		// The instant RFC 5322 means: net/mail's wall clock, with the
		// year of section 4.3 and the zone of sections 3.3 and 4.3.
		year := nm.Year()
		switch y, _ := strconv.Atoi(m[2]); {
		case len(m[2]) == 2 && y < 50:
			year = 2000 + y
		case len(m[2]) == 2:
			year = 1900 + y
		case y < 1900:
			return // section 3.3: "1900 or later"
		}
		offset, known := rfcZones[m[3]]
		offset *= 60
		if !known {
			hhmm, _ := strconv.Atoi(m[3][1:])
			if hhmm%100 > 59 {
				return // minutes of an hour
			}
			if offset = hhmm/100*60 + hhmm%100; m[3][0] == '-' {
				offset = -offset
			}
		}
		h, mi, s := nm.Clock()
		want := time.Date(year, nm.Month(), nm.Day(), h, mi, s, 0, time.UTC).Add(-time.Duration(offset) * time.Minute)
		if m[1] != "" && !strings.EqualFold(m[1], time.Date(year, nm.Month(), nm.Day(), 0, 0, 0, 0, time.UTC).Weekday().String()[:3]) {
			return // a wrong day-of-week
		}
		if !ok || !got.Equal(want) {
			t.Fatalf("%q: ours %v, %v; net/mail reads %v, which is %v", v, got, ok, nm, want)
		}
	})
}
