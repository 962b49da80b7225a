package send

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// noticeParts is a notification as a MIME reader sees it.
type noticeParts struct {
	text     string              // the human-readable part, decoded
	perMsg   textproto.Header    // the per-message fields of message/delivery-status
	perRcpt  []textproto.Header  // the per-recipient fields
	headers  string              // the returned header section, decoded; "" if none
	full     string              // the returned message (RET=FULL); "" if none
	headerCT string              // its Content-Transfer-Encoding
	parts    []map[string]string // each part's Content-Type and Content-Transfer-Encoding
}

var statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// actionClasses are the Status classes each Action allows (RFC 3464
// section 2.3.4): an expired deferral fails with its 4.x.x.
var actionClasses = map[string]string{"failed": "45", "delayed": "4", "relayed": "2", "delivered": "2", "expanded": "2"}

// checkNotice checks that out is a valid notification, whatever went into
// it, and returns its parts. The properties: every line at most maxLine
// octets and ending CRLF; no NUL; 7-bit but for the To: field when the
// sender's address is not ASCII; multipart/report;
// report-type=delivery-status (RFC 6522) as go-message parses it, with a
// text/plain UTF-8 part that decodes to valid UTF-8, a 7-bit
// message/delivery-status part (RFC 3464) whose per-message and
// per-recipient field groups parse, one group per recipient with
// Final-Recipient, an Action (one for the whole notice, named by its
// Subject) and a valid Status of the class that Action allows, and
// Will-Retry-Until only in a delay notice, and optionally a
// text/rfc822-headers part, 7bit or quoted-printable, that decodes to a
// prefix of the original made of whole lines, or a 7bit message/rfc822
// part that is the original, or a 7-bit version that go-message reads of
// an original that was not 7-bit; every part with a transfer encoding
// valid for its type.
func checkNotice(t *testing.T, out, orig, sender string, rcpts int) noticeParts {
	t.Helper()
	var np noticeParts
	fail := func(format string, a ...any) noticeParts {
		t.Helper()
		if len(out) > 4000 {
			t.Fatalf(format+"\nnotification (start):\n%s", append(a, out[:4000])...)
		}
		t.Fatalf(format+"\nnotification:\n%s", append(a, out)...)
		return np
	}
	if !strings.HasSuffix(out, "\r\n") {
		return fail("does not end with CRLF")
	}
	hdrEnd := strings.Index(out, "\r\n\r\n")
	if hdrEnd < 0 {
		return fail("no header/body separator")
	}
	headerLines := strings.Count(out[:hdrEnd], "\r\n") + 1
	for i, line := range strings.Split(out[:len(out)-2], "\r\n") {
		switch {
		case len(line) > maxLine:
			return fail("line %d has %d octets", i+1, len(line))
		case strings.ContainsAny(line, "\r\n\x00"):
			return fail("line %d has a bare CR or LF, or a NUL: %q", i+1, line)
		case !isASCII(line) && (i >= headerLines || !strings.HasPrefix(line, "To: ") || isASCII(sender)):
			return fail("line %d is not 7-bit: %q", i+1, line)
		}
	}
	e, err := message.Read(strings.NewReader(out))
	if err != nil {
		return fail("go-message: %v", err)
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		return fail("Content-Type %q %v (%v)", mt, params, err)
	}
	if cte := e.Header.Get("Content-Transfer-Encoding"); !identityEncoding(cte) {
		return fail("multipart/report with Content-Transfer-Encoding %q", cte)
	}
	mr := e.MultipartReader()
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail("part %d: %v", i+1, err)
		}
		pt, pp, _ := p.Header.ContentType()
		cte := strings.ToLower(p.Header.Get("Content-Transfer-Encoding"))
		np.parts = append(np.parts, map[string]string{"type": pt, "cte": cte})
		body, err := io.ReadAll(p.Body)
		if err != nil {
			return fail("part %d: %v", i+1, err)
		}
		switch i {
		case 0:
			if pt != "text/plain" || !strings.EqualFold(pp["charset"], "utf-8") || cte != "quoted-printable" {
				return fail("first part %s %v %s", pt, pp, cte)
			}
			if !utf8.Valid(body) {
				return fail("human-readable part is not UTF-8: %q", body)
			}
			np.text = string(body)
		case 1:
			if pt != "message/delivery-status" || cte != "" && cte != "7bit" {
				return fail("second part %s %s", pt, cte)
			}
			blocks := strings.Split(strings.TrimSuffix(string(body), "\r\n"), "\r\n\r\n")
			for j, b := range blocks {
				h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(b + "\r\n\r\n")))
				if err != nil {
					return fail("delivery-status group %d: %v", j+1, err)
				}
				if j == 0 {
					np.perMsg = h
				} else {
					np.perRcpt = append(np.perRcpt, h)
				}
			}
			if !strings.HasPrefix(np.perMsg.Get("Reporting-MTA"), "dns; ") {
				return fail("Reporting-MTA %q", np.perMsg.Get("Reporting-MTA"))
			}
			if len(np.perRcpt) != rcpts {
				return fail("%d per-recipient groups, want %d", len(np.perRcpt), rcpts)
			}
			for _, h := range np.perRcpt {
				fr := h.Get("Final-Recipient")
				action, status := h.Get("Action"), h.Get("Status")
				if !strings.HasPrefix(fr, "rfc822; ") && !strings.HasPrefix(fr, "utf-8;") ||
					!statusRE.MatchString(status) || !strings.Contains(actionClasses[action], status[:1]) {
					return fail("per-recipient group %v", h)
				}
				if action != np.perRcpt[0].Get("Action") || e.Header.Get("Subject") != noticeSubjects[action] {
					return fail("one notice, two kinds: %q and %q, Subject %q", action, np.perRcpt[0].Get("Action"), e.Header.Get("Subject"))
				}
				if h.Get("Will-Retry-Until") != "" && action != "delayed" {
					return fail("Will-Retry-Until in a %s notice", action)
				}
			}
		case 2:
			if pt == "message/rfc822" {
				// RET=FULL: the whole message, as it is or in its 7-bit
				// version (a composite type: no other encoding).
				if cte != "" && cte != "7bit" {
					return fail("message/rfc822 with Content-Transfer-Encoding %q", cte)
				}
				np.full = string(body)
				if np.full != orig {
					if _, err := message.Read(strings.NewReader(np.full)); err != nil || plainText(orig) {
						return fail("returned message differs from the original (%v):\n%q", err, np.full)
					}
				}
				break
			}
			if pt != "text/rfc822-headers" || cte != "" && cte != "7bit" && cte != "quoted-printable" {
				return fail("third part %s %s", pt, cte)
			}
			np.headers, np.headerCT = string(body), cte
			if norm := crlfOnly(orig); !strings.HasPrefix(norm, np.headers) || !strings.HasSuffix(np.headers, "\n") {
				return fail("returned headers are not whole lines from the start of the original:\n%q", np.headers)
			}
		default:
			return fail("part %d: %s", i+1, pt)
		}
	}
	if len(np.parts) < 2 {
		return fail("%d parts", len(np.parts))
	}
	return np
}

// plainText reports whether s can be returned as it is in a 7-bit part:
// ASCII without NUL, every line at most maxLine octets and ending CRLF,
// no bare CR or LF.
func plainText(s string) bool {
	if !isASCII(s) || strings.Contains(s, "\x00") || !strings.HasSuffix(s, "\r\n") {
		return false
	}
	for _, l := range strings.Split(s[:len(s)-2], "\r\n") {
		if len(l) > maxLine || strings.ContainsAny(l, "\r\n") {
			return false
		}
	}
	return true
}

// identityEncoding reports whether a Content-Transfer-Encoding value is
// one a composite entity may have (RFC 2045 section 6.4).
func identityEncoding(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// crlfOnly turns every bare LF of s into CRLF, as the DATA writer sends
// it.
func crlfOnly(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && (i == 0 || s[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// testNotice builds a notification for one failed recipient of a message
// from sender with content orig.
func testNotice(t *testing.T, orig, sender string, rcpts ...queue.Rcpt) string {
	return testNoticeRet(t, orig, sender, "", 0, rcpts...)
}

// testNoticeRet is testNotice for a message sent with RET=ret, a notice
// returning up to full octets whole.
func testNoticeRet(t *testing.T, orig, sender, ret string, full int64, rcpts ...queue.Rcpt) string {
	t.Helper()
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	n := &queue.Notice{ID: "20261121T100000.0123456789abcdef", Now: at.Add(time.Hour),
		Envelope: &spool.Envelope{QueueID: "20261121T090000.fedcba9876543210", From: sender, Ret: ret},
		Size:     int64(len(orig)), ReturnFull: full,
		Content: func() io.Reader { return strings.NewReader(orig) },
		Arrival: at, Attempts: 3, Rcpts: rcpts, RetryUntil: at.Add(5 * 24 * time.Hour)}
	var b bytes.Buffer
	if err := WriteNotice(&b, "mx.example.org", n); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// FuzzNotice: whatever the original message (long header lines, 8-bit
// bytes, bare CR or LF, NUL, no blank line, huge header sections) and the
// reply texts and addresses (UTF-8, controls, huge multi-line replies),
// the notification is valid MIME that every hop takes (checkNotice).
func FuzzNotice(f *testing.F) {
	hdr := "Received: from x by y; Sat, 21 Nov 2026 10:00:00 +0000\r\nSubject: hi\r\n\r\nbody\r\n"
	f.Add(hdr, "no such user", "b@example.net", "s@example.org", false, uint8(0))
	f.Add("X-Long: "+strings.Repeat("w ", 800)+strings.Repeat("x", 1500)+"\r\n\r\nb\r\n", "d\u00e9j\u00e0 vu \u202e", "d\u00e9j\u00e0@x.test", "s\u00e9@example.org", false, uint8(1))
	f.Add("Subject: \xe9t\xe9\x00\r\nX: a\rb\nY: c\r\n\r\n", "a\r\nb\x00\x1b[31m\xff", "a\x01b@x", "s@x", true, uint8(2))
	f.Add("no header at all\r\n", "", "\"a b\"@x", "", false, uint8(3))
	f.Add("Subject: x\r\n\r\n", "0", " ", "0", false, uint8(4))
	f.Add(hdr, "alias expanded", "staff@example.org", "s@example.org", false, uint8(5))
	f.Add(hdr, "no such user", "b@example.net", "s@example.org", false, uint8(0x80))
	f.Add("Subject: \xe9t\xe9\r\n\r\nb\xc3\xa9\r\n", "no", "b@x", "s@x", false, uint8(0x80))
	f.Add("Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nd\xc3\xa9j\xc3\xa0\r\n--=_20261121T100000.0123456789abcdef\r\n", "no", "b@x", "s@x", false, uint8(0x80))
	f.Add(hdr, "no such user", "b@example.net", "s@example.org", false, uint8(0xc0))
	f.Add(strings.Repeat("X-H: "+strings.Repeat("y", 100)+"\r\n", 30), strings.Repeat("451-4.3.0 line of a long reply\r\n", 60), "c@x", "s@x", false, uint8(1))
	f.Add("--=_20261121T100000.0123456789abcdef\r\nSubject: x\r\n\r\n", "--=_20261121T100000.0123456789abcdef--", "d@x", "s@x", false, uint8(2))
	f.Fuzz(checkHostileNotice)
}

// hostileKinds are the notice kinds checkHostileNotice builds, by kind %
// len: the recipients' status and, for success, the transport's action.
// Bit 0x80 of kind adds RET=FULL, bit 0x40 a return limit of 64 octets
// rather than 1 MiB.
var hostileKinds = []struct {
	status queue.RcptStatus
	action string
}{{queue.Failed, ""}, {queue.Pending, ""}, {queue.Done, "relayed"}, {queue.Done, "delivered"}, {queue.Done, "expanded"}, {queue.Done, "bogus"}}

// checkHostileNotice checks the notification of kind (hostileKinds) for
// a message with content orig from sender, refused (or deferred, or
// taken) for rcpt with text (or failed here and expired, if local), and
// for a second recipient with an invalid enhanced code.
func checkHostileNotice(t *testing.T, orig, text, rcpt, sender string, local bool, kind uint8) {
	k := hostileKinds[int(kind&0x3f)%len(hostileKinds)]
	rc := queue.Rcpt{Addr: rcpt, Status: k.status, Code: 550, Enhanced: "5.1.1", Text: text,
		Relay: "[192.0.2.1]:25", At: time.Date(2026, 11, 21, 10, 30, 0, 0, time.UTC), Action: k.action}
	if local {
		rc.Code, rc.Enhanced, rc.Expired = 0, "5.6.3", true
	}
	ret, full := "", int64(1<<20)
	if kind&0x80 != 0 {
		ret = "FULL"
	}
	if kind&0x40 != 0 {
		full = 64
	}
	out := testNoticeRet(t, orig, sender, ret, full, rc, queue.Rcpt{Addr: "other@example.net", Status: k.status, Code: 552, Enhanced: "x.y", Text: "?", Action: k.action})
	np := checkNotice(t, out, orig, sender, 2)
	if !strings.Contains(np.text, textsafe.Escape(rcpt)) {
		t.Errorf("human-readable part lacks the recipient %q:\n%s", textsafe.Escape(rcpt), np.text)
	}
}

// The hostile inputs too large for FuzzNotice's corpus (each execution
// would take long): a header section of 320 kB, longer than what is
// returned, and a 200 kB multi-line reply with controls.
func TestNoticeHuge(t *testing.T) {
	checkHostileNotice(t, strings.Repeat("X-H: "+strings.Repeat("y", 100)+"\r\n", 3000),
		strings.Repeat("451-4.3.0 line of a long reply\r\n\x1b[2J\u202e", 6000), "c@x", "s@x", false, 0)
	checkHostileNotice(t, "X-Long: "+strings.Repeat("z", 300<<10)+"\r\n\r\n",
		strings.Repeat("\u00e9", 100<<10), "d\u00e9@x", "s\u00e9@x", true, 1)
}

// A notification's lines stay within 998 octets and it stays 7-bit,
// whatever the original and the reply: an original with a header line of
// 3,000 octets, 8-bit bytes and a NUL, and a smarthost's UTF-8 reply. The
// header section comes back intact (quoted-printable); the UTF-8 reply is
// readable in the human-readable part and escaped in Diagnostic-Code. The
// notification then goes through a smarthost that refuses lines over 998
// octets.
func TestNoticeAlwaysDeliverable(t *testing.T) {
	long := "X-Long: " + strings.Repeat("0123456789", 300) + "\r\n"
	orig := "Received: from client.test (127.0.0.1) by mx.local with ESMTP id x;\r\n" +
		"\tSat, 21 Nov 2026 10:00:00 +0000\r\n" + long +
		"Subject: d\xc3\xa9j\xc3\xa0 vu\x00\r\n\r\nHello.\r\n"
	// go-smtp's server: protocol.Session sends no reply text beyond
	// printable ASCII.
	ts := smtptest.Start(t, smtptest.Options{GoSMTP: true, MaxLineLength: maxLine + 2,
		Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
			if to == "b@example.net" {
				return smtptest.Reply(550, "5.1.1", "bo\u00eete inconnue \u2014 no such mailbox")
			}
			return nil
		}}})
	f := newFixture(t, ts.Addr)
	f.queue("sender@example.org", []string{"b@example.net"}, orig, func(e *spool.Envelope) { e.Body = "8BITMIME" })
	if st := f.run(false); st.DSNs != 1 {
		t.Fatalf("stats %+v", st)
	}
	d := f.queuedFrom("")[0]
	out := content(t, d)
	np := checkNotice(t, out, orig, d.To[0], 1)
	if np.headerCT != "quoted-printable" || np.headers != orig[:strings.Index(orig, "\r\n\r\n")+2] {
		t.Errorf("returned headers (%s):\n%q", np.headerCT, np.headers)
	}
	if want := "<b@example.net>: 550 5.1.1 bo\u00eete inconnue \u2014 no such mailbox"; !strings.Contains(np.text, want) {
		t.Errorf("human-readable part lacks %q:\n%s", want, np.text)
	}
	if got := np.perRcpt[0].Get("Diagnostic-Code"); got != `smtp; 550 5.1.1 bo\x{EE}te inconnue \x{2014} no such mailbox` {
		t.Errorf("Diagnostic-Code %q", got)
	}
	if d.Body != "" || d.SMTPUTF8 {
		t.Errorf("notification spooled with BODY=%s SMTPUTF8=%v; it is 7-bit", d.Body, d.SMTPUTF8)
	}
	if st := f.run(false); st.Delivered != 1 {
		t.Fatalf("the notification was not delivered: %+v", st)
	}
	txs := ts.Transactions()
	if got := txs[len(txs)-1]; got.From != "" || string(got.Data) != out {
		t.Errorf("delivered notification from <%s> differs from the spooled one", got.From)
	}
}

// A header section that cannot be returned (none, or a first line longer
// than the bound) is left out, and the notification says so; one longer
// than the bound is cut at a line end, and it says so too.
func TestNoticeReturnedHeaders(t *testing.T) {
	rc := queue.Rcpt{Addr: "b@example.net", Status: queue.Failed, Code: 550, Enhanced: "5.1.1", Text: "no"}
	for _, tc := range []struct {
		name, orig, say string
		parts           int
	}{
		{"none", "just a body line\r\n", "could not be returned", 2},
		{"huge line", "X: " + strings.Repeat("y", maxReturnedHeaders) + "\r\n\r\n", "could not be returned", 2},
		{"cut", strings.Repeat("X: "+strings.Repeat("y", 1000)+"\r\n", 300) + "\r\n",
			fmt.Sprintf("the first %d bytes", maxReturnedHeaders/1005*1005), 3},
		{"no blank line", "Subject: s\r\nnot a field\r\n", "the headers of your message follow", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := testNotice(t, tc.orig, "s@example.org", rc)
			np := checkNotice(t, out, tc.orig, "s@example.org", 1)
			if len(np.parts) != tc.parts || !strings.Contains(np.text, tc.say) {
				t.Errorf("%d parts, text:\n%s", len(np.parts), np.text)
			}
		})
	}
}

// TestNoticeRetFull: RET=FULL returns the whole message as message/rfc822
// (RFC 3461 section 4.3) when it is within the limit and can go in 7
// bits, as it is or in its 7-bit version; else the header section, and
// the text says why. RET=HDRS and no RET return the header section.
func TestNoticeRetFull(t *testing.T) {
	rc := queue.Rcpt{Addr: "b@example.net", Status: queue.Failed, Code: 550, Enhanced: "5.1.1", Text: "no"}
	plain := "Subject: s\r\n\r\nline\r\n.\r\n"
	eightBody := "Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nd\xc3\xa9j\xc3\xa0\r\n"
	for _, tc := range []struct {
		name, orig, ret string
		limit           int64
		part, say       string
	}{
		{"plain", plain, "FULL", 1 << 20, "message/rfc822", "your message follows"},
		{"at the limit", plain, "FULL", int64(len(plain)), "message/rfc822", "your message follows"},
		{"over the limit", plain, "FULL", int64(len(plain)) - 1, "text/rfc822-headers", fmt.Sprintf("is larger than the %d returned whole", len(plain)-1)},
		{"limit 0", plain, "FULL", 0, "text/rfc822-headers", "returns the header section only"},
		{"8-bit body, converted", eightBody, "FULL", 1 << 20, "message/rfc822", "your message follows"},
		{"long line, broken", "Subject: s\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n", "FULL", 1 << 20, "message/rfc822", "your message follows"},
		{"8-bit header", "Subject: d\xc3\xa9j\xc3\xa0\r\n\r\nx\r\n", "FULL", 1 << 20, "text/rfc822-headers", "could not be returned in 7 bits"},
		{"boundary line", "Subject: s\r\n\r\n--=_20261121T100000.0123456789abcdef--\r\n", "FULL", 1 << 20, "text/rfc822-headers", "could not be returned in 7 bits"},
		{"bare CR", "Subject: s\r\n\r\na\rb\r\n", "FULL", 1 << 20, "text/rfc822-headers", "could not be returned in 7 bits"},
		{"hdrs", plain, "HDRS", 1 << 20, "text/rfc822-headers", "the headers of your message follow"},
		{"no ret", plain, "", 1 << 20, "text/rfc822-headers", "the headers of your message follow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := testNoticeRet(t, tc.orig, "s@example.org", tc.ret, tc.limit, rc)
			np := checkNotice(t, out, tc.orig, "s@example.org", 1)
			if len(np.parts) != 3 || np.parts[2]["type"] != tc.part || !strings.Contains(strings.ReplaceAll(np.text, "\r\n", " "), tc.say) {
				t.Errorf("parts %v, text:\n%s", np.parts, np.text)
			}
			if tc.part == "message/rfc822" && tc.orig == plain && np.full != plain {
				t.Errorf("returned %q", np.full)
			}
			if strings.HasPrefix(tc.name, "8-bit body") && !strings.Contains(np.full, "d=C3=A9j=C3=A0") {
				t.Errorf("not the 7-bit version: %q", np.full)
			}
		})
	}
}
