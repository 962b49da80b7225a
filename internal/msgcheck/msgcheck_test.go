package msgcheck

import (
	"bufio"
	"bytes"
	"errors"
	"net/mail"
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
	const (
		ok      = ""
		L, S, U = Lenient, Strict, true // U: with SMTPUTF8
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
		{"Date syntax is not checked", strings.Replace(good, "Sat, 21 Nov 2026 11:18:25 +0000", "yesterday", 1), S, false, false, ok},

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
	if _, err := ParseMode("paranoid"); err == nil {
		t.Error("ParseMode(paranoid): no error")
	}
	if s := Mode(7).String(); s != "Mode(7)" {
		t.Errorf("Mode(7) is %q", s)
	}
}

// TestCheckAllocations: lenient mode, the default, costs no allocation,
// and strict mode a few (the From: value).
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
