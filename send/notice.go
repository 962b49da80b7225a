package send

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// maxReturnedHeaders bounds the original header section returned in a
// notification, in octets; a longer one is cut at a line end, and the
// notification says so.
const maxReturnedHeaders = 256 << 10

// WriteNotice writes to w the delivery status notification n, which host
// (our name: Reporting-MTA, From) reports. Its kind is its recipients'
// RFC 3464 Action (queue.Rcpt.NoticeAction of the first, the same for
// every recipient: one kind a notice): "failed"
// (a bounce), "delayed" (RFC 3461 section 4.1: still being retried,
// with Will-Retry-Until when n.RetryUntil is set) or "relayed",
// "delivered" and "expanded" (a success notice, sections 5.2.2 and
// 5.2.3; "expanded": an alias of several addresses took the message,
// RFC 3461 section 5.2.7.3 and RFC 3464 section 2.3.3); the Subject, the
// human-readable text and each recipient's Status class (5 or 4, 4, 2)
// follow it. It is multipart/report;
// report-type=delivery-status (RFC 6522, formerly RFC 3462) with
//
//  1. a human-readable text/plain part in UTF-8, quoted-printable (RFC
//     2045 section 6.7), whatever the reply texts and addresses hold,
//     with what could mislead a reader (controls, bidi overrides, invalid
//     UTF-8) escaped by textsafe.Escape;
//  2. a message/delivery-status part (RFC 3464) in 7 bits, as its
//     registration requires: a non-ASCII or control character of a
//     reply is written \x{HEX} (RFC 6533 section 3's EmbeddedUnicodeChar),
//     an address that is not printable ASCII goes as the RFC 6533 "utf-8"
//     address type in its xtext form, and long fields are folded;
//  3. the original's header section as text/rfc822-headers: as it is when
//     it is 7-bit with CRLF lines of at most maxLine octets, else
//     quoted-printable, which its registration allows for broken or
//     extended headers (RFC 6522 section 4), so that an 8-bit, NUL, bare
//     CR or over-long line is returned intact and the notice stays
//     deliverable. Header lines only: up to the blank line, the first line
//     that is not a header field, or maxReturnedHeaders. Omitted, with a
//     sentence saying so, when there is none. Or, in a failure notice for
//     RET=FULL (RFC 3461 section 4.3), the whole message as
//     message/rfc822 when it is at most n.ReturnFull octets and can be
//     returned in 7 bits (checkFull); else the header section, and the
//     text says why. Success and delay notices, and RET=HDRS or no RET,
//     return the header section (section 4.3 lets the MTA choose without
//     RET; Postfix, too, returns headers).
//
// So every line is at most maxLine octets (at most 78 but where a single
// word is longer) and ends in CRLF, and the body is 7-bit: only the To:
// field may be UTF-8, when the sender's address is (RFC 6532, and the
// notification then goes with SMTPUTF8).
//
// n.ID is its Message-ID and MIME boundary; n.Content is read a few times
// (to look at the header section, to check and convert the whole message
// for RET=FULL, then to return it), never held in memory.
// The notification depends on nothing but these inputs (golden files in
// testdata/notice hold examples). It returns the first error of reading
// n.Content or writing to w.
func WriteNotice(w io.Writer, host string, n *queue.Notice) error {
	kind := actionFailed
	if len(n.Rcpts) > 0 {
		kind = noticeAction(n.Rcpts[0])
	}
	boundary := "=_" + n.ID // "=_" is never in quoted-printable output
	full, err := checkFull(n, kind, boundary)
	if err != nil {
		return err
	}
	ret, err := scanReturned(n.Content(), boundary)
	if err != nil {
		return err
	}
	mta := host
	host = dsText(host)
	bw := &fieldWriter{w: w}
	bw.field("Date", n.Now.Format(time.RFC1123Z))
	bw.field("From", "Mail Delivery System <MAILER-DAEMON@"+host+">")
	if to := n.Envelope.From; headerSafe(to) {
		bw.field("To", "<"+to+">")
	}
	bw.field("Subject", noticeSubjects[kind])
	bw.field("Message-ID", "<"+dsText(n.ID)+"@"+host+">")
	bw.field("Auto-Submitted", "auto-replied")
	bw.field("MIME-Version", "1.0")
	bw.field("Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	bw.line("")
	bw.line("This is a MIME-encapsulated message.")
	bw.line("")

	bw.line("--" + boundary)
	bw.field("Content-Description", "Notification")
	bw.field("Content-Type", "text/plain; charset=utf-8")
	bw.field("Content-Transfer-Encoding", "quoted-printable")
	bw.line("")
	if bw.err != nil {
		return bw.err
	}
	q := &qpWriter{w: w}
	fmt.Fprintf(q, "This is the mail system at host %s.\r\n\r\n", textsafe.Escape(mta))
	switch kind {
	case actionFailed:
		fmt.Fprintf(q, "Your message could not be delivered to one or more recipients.\r\n")
	case actionDelayed:
		fmt.Fprintf(q, "Your message has not been delivered yet to the recipients below, %s after it arrived.\r\n",
			n.Now.Sub(n.Arrival).Round(time.Minute))
		if !n.RetryUntil.IsZero() {
			fmt.Fprintf(q, "Delivery will be tried again until %s; you need not send it again.\r\n", n.RetryUntil.Format(time.RFC1123Z))
		} else {
			fmt.Fprintf(q, "Delivery will be tried again; you need not send it again.\r\n")
		}
	case actionDelivered:
		fmt.Fprintf(q, "Your message was delivered to the mailboxes of the recipients below, as you asked to be told.\r\n")
	case actionExpanded:
		fmt.Fprintf(q, "Your message reached the recipients below, as you asked to be told.\r\n")
		fmt.Fprintf(q, "Each is an alias that passed it on to several addresses: you may still\r\n")
		fmt.Fprintf(q, "hear of a failure from one of them.\r\n")
	default:
		fmt.Fprintf(q, "Your message was passed on for the recipients below, as you asked to be told, to a mail\r\n")
		fmt.Fprintf(q, "system that will not report its delivery: you may still hear of a failure from further on.\r\n")
	}
	if full.why != "" {
		// RFC 3461 section 4.3 asks for the whole message: say why not.
		fmt.Fprintf(q, "You asked for your message to be returned (RET=FULL): %s.\r\n", full.why)
	}
	switch {
	case full.mode != fullNone:
		fmt.Fprintf(q, "The details are below; your message follows.\r\n\r\n")
	case ret.n == 0:
		fmt.Fprintf(q, "The details are below. The header section of your message could not be returned.\r\n\r\n")
	case ret.cut:
		fmt.Fprintf(q, "The details are below; the first %d bytes of the header section of your message follow.\r\n\r\n", ret.n)
	default:
		fmt.Fprintf(q, "The details are below; the headers of your message follow.\r\n\r\n")
	}
	for _, rc := range n.Rcpts {
		why := rc.Text
		if rc.Code != 0 {
			why = replyLine(rc)
		}
		switch action := kind; {
		case action == actionDelayed:
			why = fmt.Sprintf("still being retried (%d attempts); last error: %s", n.Attempts, why)
		case action != actionFailed && localRelay(rc.Relay):
			// A local delivery's words name files and commands of
			// this host: a success notice keeps them to itself.
			why = "delivered to the mailbox"
		case action == actionExpanded:
			// How many addresses, and their queue id, are the alias's
			// business (RFC 3461 section 5.2.7.4).
			why = "expanded by an alias"
		case action != actionFailed:
			why = action + ": " + why
		case rc.Expired:
			why = fmt.Sprintf("still undeliverable after %s (%d attempts); last error: %s",
				n.Now.Sub(n.Arrival).Round(time.Minute), n.Attempts, why)
		}
		fmt.Fprintf(q, "<%s>: %s\r\n", textsafe.Escape(rc.Addr), textsafe.Escape(why))
	}
	if err := q.Close(); err != nil {
		return err
	}
	bw.line("")

	bw.line("--" + boundary)
	bw.field("Content-Description", "Delivery report")
	bw.field("Content-Type", "message/delivery-status")
	bw.line("")
	if id := n.Envelope.EnvID; id != "" && printableASCII(id) {
		// RFC 3464 section 2.2.1: the sender's ENVID, first.
		bw.field("Original-Envelope-Id", dsText(id))
	}
	bw.field("Reporting-MTA", "dns; "+host)
	bw.field("X-Original-Queue-ID", dsText(n.Envelope.QueueID))
	bw.field("Arrival-Date", n.Arrival.Format(time.RFC1123Z))
	for _, rc := range n.Rcpts {
		bw.line("")
		if o := originalRecipient(n.Envelope, rc.Addr); o != "" {
			bw.field("Original-Recipient", o)
		}
		bw.field("Final-Recipient", finalRecipient(rc.Addr))
		action := kind
		bw.field("Action", action)
		bw.field("Status", actionStatus(rc, action))
		if relay := relayName(rc.Relay); relay != "" && !localRelay(rc.Relay) {
			bw.field("Remote-MTA", "dns; "+dsText(relay))
		}
		switch {
		case rc.Code != 0:
			bw.field("Diagnostic-Code", "smtp; "+dsText(replyLine(rc)))
		case localRelay(rc.Relay) && rc.Text != "" && (action == actionFailed || action == actionDelayed):
			// A local delivery's own words (a command's exit status
			// and output), typed as Postfix types them.
			bw.field("Diagnostic-Code", "x-unix; "+dsText(rc.Text))
		}
		if !rc.At.IsZero() {
			bw.field("Last-Attempt-Date", rc.At.Format(time.RFC1123Z))
		}
		if action == actionDelayed && !n.RetryUntil.IsZero() {
			bw.field("Will-Retry-Until", n.RetryUntil.Format(time.RFC1123Z))
		}
	}
	bw.line("")

	if full.mode != fullNone {
		bw.line("--" + boundary)
		bw.field("Content-Description", "Undelivered Message")
		bw.field("Content-Type", "message/rfc822")
		bw.line("")
		if bw.err != nil {
			return bw.err
		}
		if err := writeFull(w, n, full.mode); err != nil {
			return err
		}
		bw.line("")
	} else if ret.n > 0 {
		bw.line("--" + boundary)
		desc := "Message Headers"
		if kind == actionFailed {
			desc = "Undelivered Message Headers"
		}
		bw.field("Content-Description", desc)
		bw.field("Content-Type", "text/rfc822-headers")
		if !ret.plain {
			bw.field("Content-Transfer-Encoding", "quoted-printable")
		}
		bw.line("")
		if bw.err != nil {
			return bw.err
		}
		dst := w
		var q *qpWriter
		if !ret.plain {
			q = &qpWriter{w: w}
			dst = q
		}
		if _, err := io.CopyN(dst, n.Content(), ret.n); err != nil {
			return err
		}
		if q != nil {
			if err := q.Close(); err != nil {
				return err
			}
		}
		bw.line("")
	}
	bw.line("--" + boundary + "--")
	return bw.err
}

// The RFC 3464 actions (section 2.3.3) of the notices; actionRelayed and
// actionDelivered are in transport.go.
const (
	actionFailed  = "failed"
	actionDelayed = "delayed"
	// actionExpanded reports an alias recipient handed to its expansion
	// of several addresses (ExpandedStage, alias.go).
	actionExpanded = ExpandedStage
)

// noticeSubjects is the Subject of each kind of notice.
var noticeSubjects = map[string]string{
	actionFailed:    "Undelivered Mail Returned to Sender",
	actionDelayed:   "Delayed Mail (still being retried)",
	actionRelayed:   "Successful Mail Delivery Report",
	actionDelivered: "Successful Mail Delivery Report",
	actionExpanded:  "Successful Mail Delivery Report",
}

// noticeAction is the Action field of rc (queue.Rcpt.NoticeAction); a
// done recipient whose state names no action known here reads
// "relayed", which claims the least.
func noticeAction(rc queue.Rcpt) string {
	a := rc.NoticeAction()
	if _, ok := noticeSubjects[a]; !ok {
		return actionRelayed
	}
	return a
}

// actionStatus is the Status field of rc reported with action: its own
// RFC 3463 code (dsnStatus) when of the class the action requires (RFC
// 3464 section 2.3.4: 2 for relayed, delivered and expanded, 4 for
// delayed, 4 or 5 for failed, where 4 is an expired deferral), else the
// class's X.0.0.
func actionStatus(rc queue.Rcpt, action string) string {
	classes, other := "45", "5.0.0"
	switch action {
	case actionDelayed:
		classes, other = "4", "4.0.0"
	case actionRelayed, actionDelivered, actionExpanded:
		classes, other = "2", "2.0.0"
	}
	if s := dsnStatus(rc); strings.Contains(classes, s[:1]) {
		return s
	}
	return other
}

// replyLine is a recipient's last reply as one line: code, enhanced code,
// text.
func replyLine(rc queue.Rcpt) string {
	return strings.TrimSpace(fmt.Sprintf("%d %s %s", rc.Code, rc.Enhanced, rc.Text))
}

// dsnStatus is the Status field (RFC 3464 section 2.3.4): the recipient's
// RFC 3463 code, or 5.0.0 if the state holds something else.
func dsnStatus(rc queue.Rcpt) string {
	s := (&Failure{Code: rc.Code, Enhanced: rc.Enhanced}).status()
	parts := strings.Split(s, ".")
	ok := len(parts) == 3 && (parts[0] == "2" || parts[0] == "4" || parts[0] == "5")
	for _, p := range parts[1:] {
		ok = ok && len(p) >= 1 && len(p) <= 3 && strings.Trim(p, "0123456789") == ""
	}
	if !ok {
		return "5.0.0"
	}
	return s
}

// finalRecipient is the Final-Recipient value (RFC 3464 section 2.3.2):
// "rfc822; addr" for a printable ASCII address (that does not start or
// end with a space, which unfolding would lose), else the RFC 6533
// section 3 "utf-8" type in its 7-bit utf-8-addr-xtext form, every
// character but QCHAR written \x{HEX}.
func finalRecipient(addr string) string {
	printable := addr != "" && addr[0] != ' ' && addr[len(addr)-1] != ' '
	for i := 0; i < len(addr); i++ {
		printable = printable && addr[i] >= ' ' && addr[i] <= '~'
	}
	if printable {
		return "rfc822; " + addr
	}
	var b strings.Builder
	b.WriteString("utf-8; ")
	for _, r := range strings.ToValidUTF8(addr, "\uFFFD") {
		if r > ' ' && r <= '~' && r != '\\' && r != '+' && r != '=' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%X}`, r)
		}
	}
	return b.String()
}

// dsText makes s fit a delivery-status field (RFC 3464 section 2.1.2:
// US-ASCII text, no CR or LF): every character outside printable ASCII is
// written \x{HEX}, an invalid byte as \x{FFFD}.
func dsText(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r >= ' ' && r <= '~' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%X}`, r)
		}
	}
	return b.String()
}

// headerSafe reports whether addr can go in the notification's To: field
// as it is: valid UTF-8 with nothing textsafe escapes (controls, format
// characters), short enough for one line.
func headerSafe(addr string) bool {
	return addr != "" && len(addr) <= 900 && utf8.ValidString(addr) && textsafe.Escape(addr) == addr
}

// returned describes the original header section as a notification
// returns it.
type returned struct {
	n     int64 // octets returned: whole lines from the start
	cut   bool  // the header section is longer than maxReturnedHeaders
	plain bool  // 7-bit lines of at most maxLine octets ending CRLF, no NUL, bare CR, or line the boundary could be read in
}

// scanReturned reads the start of r to find the header section a
// notification returns: its header fields, up to the blank line or the
// first line that is neither a field nor a continuation line (a message
// without a blank line), whole lines, at most maxReturnedHeaders octets.
func scanReturned(r io.Reader, boundary string) (returned, error) {
	ret := returned{plain: true}
	lr := newLineReader(r)
	fields := false
	for lr.scan() {
		h := lr.head
		switch {
		case lr.blank(), lr.eol == 0:
			return ret, nil
		case h[0] == ' ' || h[0] == '\t':
			if !fields {
				return ret, nil
			}
		case fieldName(h) == "":
			return ret, nil
		}
		fields = true
		if ret.n+(lr.end-lr.off) > maxReturnedHeaders {
			ret.cut = true
			return ret, nil
		}
		ret.n = lr.end
		if lr.eol != 2 || lr.eight || lr.nul || lr.bareCR || lr.length() > maxLine ||
			strings.HasPrefix(string(h), "--"+boundary) {
			ret.plain = false
		}
	}
	return ret, lr.err
}

// fieldWriter writes the notification's own lines: header fields
// folded (RFC 5322 section 2.2.3) before a blank so that lines stay
// within 78 characters where a word allows, and within maxLine always:
// a longer word is broken with CRLF and a space.
type fieldWriter struct {
	w   io.Writer
	err error
}

func (f *fieldWriter) line(s string) {
	if f.err == nil {
		_, f.err = io.WriteString(f.w, s+"\r\n")
	}
}

func (f *fieldWriter) field(name, value string) {
	b := []byte(name + ": " + value)
	for len(b) > 78 {
		i := foldAt(b, 78)
		if i > 0 && i <= maxLine {
			f.line(string(b[:i]))
			b = b[i:]
			continue
		}
		if len(b) <= maxLine {
			break
		}
		f.line(string(b[:maxLine]))
		b = append([]byte{' '}, b[maxLine:]...)
	}
	f.line(string(b))
}

// localRelay reports whether a relay is a local delivery (a command, a
// maildir, an mbox file, an LMTP unix socket), which has no Remote-MTA.
func localRelay(relay string) bool {
	return strings.HasPrefix(relay, "pipe:") || strings.HasPrefix(relay, "unix:") || relay == maildirRelay || relay == mboxRelay
}

// relayName is the host part of a relay address, for Remote-MTA.
func relayName(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		addr = addr[:i]
	}
	return strings.Trim(addr, "[]")
}

// originalRecipient is the Original-Recipient field (RFC 3464 section
// 2.3.1) of the recipient addr of env: its ORCPT as the sender gave it
// (RFC 3461 section 4.2), "rfc822;" and the address; "" when it gave
// none, or one that cannot stand in a 7-bit report.
func originalRecipient(env *spool.Envelope, addr string) string {
	for i, to := range env.To {
		if to != addr {
			continue
		}
		typ, a, ok := strings.Cut(env.RcptDSN(i).ORcpt, ";")
		if !ok || typ != "rfc822" || !printableASCII(a) {
			return ""
		}
		return "rfc822;" + dsText(a)
	}
	return ""
}

// printableASCII reports whether s is printable ASCII, space included.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
}
