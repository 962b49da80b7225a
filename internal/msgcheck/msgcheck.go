// Package msgcheck checks the header section of a message (RFC 5322)
// before smtp-stdio accepts it: in lenient mode only that it is not
// corrupt, in strict mode also the rules of RFC 5322 section 3.6 on which
// fields a message must have, and that its Date: field holds a date-time
// (section 3.3). It also makes the Date: and Message-ID: fields a
// submission agent adds when they are missing (RFC 6409 section 8). It
// knows nothing of SMTP, files or the environment.
//
// It imports neither net/mail nor go-message: both import package net,
// which would make smtp-stdio dynamically linked with cgo (see
// internal/syslog), and a session pays for the dynamic loader whether or
// not a check runs. The header lines are classified here, which costs no
// allocation; strict mode counts the mailboxes of From: and Sender:
// with a small lexer (mailbox.go) and reads the Date: value with a small
// parser (date.go). The tests hold all three against those libraries:
// what lenient mode accepts, go-message's header parser reads, the count
// agrees with net/mail's wherever net/mail parses, and the date parser
// accepts the RFC 5322 dates that net/mail's ParseDate accepts.
package msgcheck

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// Mode is how strictly Check judges a header section. The zero value
// checks nothing.
type Mode uint8

const (
	// Off finds no defect; Check only reports which fields are present.
	Off Mode = iota
	// Lenient rejects only a corrupt header section: a line that is
	// neither a field nor a continuation, a bad field name, a bare CR or
	// LF, an absurdly long line. Raw 8-bit bytes pass: they are common
	// in real mail.
	Lenient
	// Strict also applies RFC 5322 section 3.6 (From: and Date:
	// required, fields that may occur once, Sender: with several From:
	// mailboxes), requires the Date: value to be a date-time (section
	// 3.3, with the obsolete forms of section 4.3), applies the
	// 998-character line limit, and allows 8-bit bytes only as UTF-8
	// with SMTPUTF8 (RFC 6532).
	Strict
)

var modeNames = [...]string{Off: "off", Lenient: "lenient", Strict: "strict"}

// String returns the mode's name: off, lenient or strict.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses a mode's name, in any case of its ASCII letters (not
// Unicode's: "\u017ftrict", with a long s, is no mode).
func ParseMode(s string) (Mode, error) {
	for m, name := range modeNames {
		if ascii.EqualFold(s, name) {
			return Mode(m), nil
		}
	}
	return Off, fmt.Errorf("msgcheck: mode %q is not off, lenient or strict", s)
}

// Line limits, in bytes without the CRLF.
const (
	// MaxLineLenient is where lenient mode calls a line absurdly long:
	// sixteen times the limit of RFC 5322 section 2.1.1. Longer lines
	// than 998 are common enough in real mail (unfolded To: and
	// References: fields) that lenient mode lets them pass.
	MaxLineLenient = 16 << 10
	// MaxLineStrict is RFC 5322 section 2.1.1's limit: "Each line of
	// characters MUST be no more than 998 characters".
	MaxLineStrict = 998
)

// Options say how to check a header section.
type Options struct {
	Mode Mode
	// SMTPUTF8 is true when the envelope carried SMTPUTF8 (RFC 6531):
	// strict mode then allows UTF-8 in the header section (RFC 6532).
	SMTPUTF8 bool
	// AddMissing is true when the caller adds Date: and Message-ID:
	// where they are missing, as a submission agent does (RFC 6409
	// section 8): strict mode then does not require Date:, but a Date:
	// that is present must still be a date-time.
	AddMissing bool
}

// Summary tells which fields a header section has, for Missing.
type Summary struct {
	Date      bool
	MessageID bool
}

// Defect is what is wrong with a header section. Its text is printable
// US-ASCII and never quotes the message, so that it can go into an SMTP
// reply and a log line as it is.
type Defect struct {
	// Line is the number of the header line at fault, from 1; 0 when the
	// defect is the section's as a whole.
	Line int
	// What names the defect.
	What string
}

// Error returns the defect as a sentence, e.g. "Header line 3 has no
// colon (RFC 5322 section 2.2)".
func (d *Defect) Error() string {
	if d.Line > 0 {
		return "Header line " + strconv.Itoa(d.Line) + " " + d.What
	}
	return d.What
}

// The fields of RFC 5322 section 3.6 that a message may carry at most
// once.
const (
	fieldDate = iota
	fieldFrom
	fieldSender
	fieldReplyTo
	fieldTo
	fieldCc
	fieldBcc
	fieldMessageID
	fieldInReplyTo
	fieldReferences
	fieldSubject
	numOnceOnly
)

// onceOnly names them, in the form used in defects.
var onceOnly = [numOnceOnly]string{
	fieldDate: "Date", fieldFrom: "From", fieldSender: "Sender", fieldReplyTo: "Reply-To",
	fieldTo: "To", fieldCc: "Cc", fieldBcc: "Bcc", fieldMessageID: "Message-ID",
	fieldInReplyTo: "In-Reply-To", fieldReferences: "References", fieldSubject: "Subject",
}

var crlf = []byte("\r\n")

// Check checks the header section header: header lines each ended by
// CRLF, without the empty line that ends the section. It returns which
// fields are present, and a *Defect for the first defect found, or nil.
// Off finds none.
func Check(header []byte, opt Options) (Summary, error) {
	var counts [numOnceOnly]int
	for n, rest := 1, header; len(rest) > 0; n++ {
		line := rest
		if i := bytes.Index(rest, crlf); i >= 0 {
			line, rest = rest[:i], rest[i+2:]
		} else {
			rest = nil
		}
		if d := checkLine(line, n, opt, &counts); d != nil && opt.Mode != Off {
			return Summary{}, d
		}
	}
	sum := Summary{Date: counts[fieldDate] > 0, MessageID: counts[fieldMessageID] > 0}
	if opt.Mode != Strict {
		return sum, nil
	}
	return sum, checkFields(header, opt, &counts)
}

// Line defects.
const (
	whatBare         = "holds a bare CR or LF (RFC 5322 section 2.2)"
	whatContinuation = "starts with white space, a continuation of no field"
	whatNoColon      = "has no colon (RFC 5322 section 2.2)"
	whatEmptyName    = "has an empty field name (RFC 5322 section 2.2)"
	whatBadName      = "has a field name with characters other than printable US-ASCII (RFC 5322 section 2.2)"
	whatSpaceName    = "has white space before the colon (obsolete syntax, RFC 5322 section 4.5)"
	whatControl      = "holds a control character (RFC 5322 section 2.2)"
	whatEightBit     = "holds 8-bit bytes without SMTPUTF8 (RFC 6532)"
	whatBadUTF8      = "holds bytes that are not UTF-8 (RFC 6532 section 3.2)"
)

// checkLine checks line n of a header section, without its CRLF, and
// counts the once-only fields it starts.
func checkLine(line []byte, n int, opt Options, counts *[numOnceOnly]int) *Defect {
	defect := func(what string) *Defect { return &Defect{Line: n, What: what} }
	if bytes.IndexByte(line, '\r') >= 0 || bytes.IndexByte(line, '\n') >= 0 {
		return defect(whatBare)
	}
	if opt.Mode == Strict && len(line) > MaxLineStrict {
		return defect("is longer than " + strconv.Itoa(MaxLineStrict) + " characters (RFC 5322 section 2.1.1)")
	}
	if len(line) > MaxLineLenient {
		return defect("is longer than " + strconv.Itoa(MaxLineLenient) + " bytes")
	}
	if opt.Mode == Strict {
		if what := checkBytes(line, opt.SMTPUTF8); what != "" {
			return defect(what)
		}
	}
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		if n == 1 {
			return defect(whatContinuation)
		}
		return nil // folded (RFC 5322 section 2.2.3)
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return defect(whatNoColon)
	}
	name := bytes.TrimRight(line[:colon], " \t")
	switch {
	case len(name) == 0:
		return defect(whatEmptyName)
	case !validName(name):
		return defect(whatBadName)
	case opt.Mode == Strict && len(name) != colon:
		return defect(whatSpaceName)
	}
	for i, f := range onceOnly {
		if ascii.EqualFold(name, f) {
			counts[i]++
			break
		}
	}
	return nil
}

// validName reports whether name is a field name: printable US-ASCII
// except the colon (RFC 5322 section 2.2, ftext).
func validName(name []byte) bool {
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// checkBytes is strict mode's check of the bytes of a line: no control
// characters but HTAB (they occur only in obsolete syntax, RFC 5322
// section 4), and 8-bit bytes only as UTF-8 with SMTPUTF8 (RFC 6532).
func checkBytes(line []byte, smtputf8 bool) string {
	eight := false
	for _, c := range line {
		switch {
		case c >= 0x80:
			eight = true
		case c < ' ' && c != '\t', c == 0x7f:
			return whatControl
		}
	}
	switch {
	case eight && !smtputf8:
		return whatEightBit
	case eight && !utf8.Valid(line):
		return whatBadUTF8
	}
	return ""
}

// checkFields applies RFC 5322 section 3.6 to a header section whose
// lines passed checkLine in strict mode.
func checkFields(header []byte, opt Options, counts *[numOnceOnly]int) error {
	defect := func(what string) error { return &Defect{What: what} }
	switch {
	case counts[fieldFrom] == 0:
		return defect("Message has no From: field (RFC 5322 section 3.6)")
	case counts[fieldDate] == 0 && !opt.AddMissing:
		return defect("Message has no Date: field (RFC 5322 section 3.6)")
	}
	for i, c := range counts {
		if c > 1 {
			return defect("Message has more than one " + onceOnly[i] + ": field (RFC 5322 section 3.6)")
		}
	}
	from, ok := mailboxes(fieldValue(header, onceOnly[fieldFrom]))
	switch {
	case !ok || from == 0:
		return defect("From: field holds no well-formed list of mailboxes (RFC 5322 section 3.6.2)")
	case from > 1 && counts[fieldSender] == 0:
		return defect("From: field has several mailboxes but there is no Sender: field (RFC 5322 section 3.6.2)")
	}
	if counts[fieldSender] > 0 {
		if n, ok := mailboxes(fieldValue(header, onceOnly[fieldSender])); !ok || n != 1 {
			return defect("Sender: field does not hold one mailbox (RFC 5322 section 3.6.2)")
		}
	}
	if counts[fieldDate] > 0 {
		if _, ok := parseDateTime(rawFieldValue(header, onceOnly[fieldDate])); !ok {
			return defect("Date: field is not a valid date-time (RFC 5322 section 3.3)")
		}
	}
	return nil
}

// fieldValue returns the value of the first field named name in header,
// unfolded: the CRLFs of folding removed (RFC 5322 section 2.2.3).
func fieldValue(header []byte, name string) string {
	return string(bytes.ReplaceAll(rawFieldValue(header, name), crlf, nil))
}

// rawFieldValue returns the value of the first field named name in
// header as it stands, without copying: from after the colon to the end
// of the field's last line, with the CRLFs of folding. It is nil when
// there is no such field.
func rawFieldValue(header []byte, name string) []byte {
	start, stop := -1, -1
	for off := 0; off < len(header); {
		end, next := len(header), len(header)
		if i := bytes.Index(header[off:], crlf); i >= 0 {
			end, next = off+i, off+i+2
		}
		line := header[off:end]
		folded := len(line) > 0 && (line[0] == ' ' || line[0] == '\t')
		switch {
		case start >= 0 && folded:
			stop = end
		case start >= 0:
			return header[start:stop]
		case !folded:
			if colon := bytes.IndexByte(line, ':'); colon > 0 && ascii.EqualFold(bytes.TrimRight(line[:colon], " \t"), name) {
				start, stop = off+colon+1, end
			}
		}
		off = next
	}
	if start < 0 {
		return nil
	}
	return header[start:stop]
}
