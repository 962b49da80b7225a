package sendmail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// unsent is what a failed Submission still holds of the message, for
// the error mailed back by -oem and -oee (ReturnError): the header
// fields as read, and, when the failure came before any of the body was
// read, the body's first line and the reader of the rest.
type unsent struct {
	fields []field
	first  []byte
	rest   *lineReader
}

// reader returns the unsent message as a stream of CRLF lines: the
// fields, the empty line, and the body when it was not read; the second
// value reports whether the body is there.
func (u *unsent) reader() (io.Reader, bool) {
	var b bytes.Buffer
	for _, f := range u.fields {
		b.Write(f.raw)
	}
	if u.rest == nil {
		return &b, false
	}
	if u.first == nil {
		b.WriteString("\r\n")
	} else {
		b.Write(u.first)
	}
	return io.MultiReader(&b, &linesReader{lr: u.rest}), true
}

// linesReader is an io.Reader over the rest of a lineReader.
type linesReader struct {
	lr  *lineReader
	buf []byte
}

// Read implements io.Reader.
func (r *linesReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		piece, _, err := r.lr.next()
		if err != nil {
			return 0, err
		}
		r.buf = append(r.buf[:0], piece...)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Returned is how much of the failed message went back with its error.
type Returned uint8

const (
	// ReturnedNothing: the header could not be read (too large, or
	// standard input failed).
	ReturnedNothing Returned = iota
	// ReturnedHeader: the body was already streaming when it failed.
	ReturnedHeader
	// ReturnedWhole: it failed before its body was read.
	ReturnedWhole
)

// String says it as the line on standard error does.
func (r Returned) String() string {
	switch r {
	case ReturnedHeader:
		return "with the message's header"
	case ReturnedWhole:
		return "with the message"
	}
	return "without the message"
}

// ReturnError mails the failure of s back to the user who ran sendmail,
// as sendmail's -oem (ErrorMode m, and e, which sendmail 8 treats
// alike) does: a message from the null sender (so that it can itself
// cause no bounce), to the user's own address (login@SMTP_SENDMAIL_DOMAIN:
// never the -f address, which the user chose and which may be anyone's),
// with the error and the message as far as sendmail still holds it. The
// message goes through queue, the way the failed one would have gone
// (directly, or through the drop helper). It returns the address it was
// mailed to and how much of the message went with it, or the error that
// kept it from being queued.
func (s *Submission) ReturnError(failure error, queue func(*Submission, io.Reader) (string, error)) (to string, kept Returned, err error) {
	to = s.User.localName() + "@" + s.Cfg.SendmailDomain
	var text bytes.Buffer
	fmt.Fprintf(&text, "From: Mail Delivery Subsystem <MAILER-DAEMON@%s>\r\n", s.Cfg.SendmailDomain)
	fmt.Fprintf(&text, "To: <%s>\r\n", to)
	text.WriteString("Subject: Returned mail: see transcript for details\r\n")
	text.WriteString("Auto-Submitted: auto-replied\r\n") // RFC 3834 section 5
	text.WriteString("\r\n")
	fmt.Fprintf(&text, "The message you gave to sendmail (uid %d) was not queued:\r\n\r\n", s.User.Uid)
	fmt.Fprintf(&text, "    %s\r\n\r\n", oneLine(failure.Error()))
	body := io.Reader(bytes.NewReader(nil))
	switch {
	case s.unsent == nil:
		text.WriteString("sendmail read too little of it to return any.\r\n")
	default:
		r, whole := s.unsent.reader()
		kept = ReturnedHeader
		if whole {
			kept = ReturnedWhole
			text.WriteString("It follows, as sendmail read it.\r\n")
		} else {
			text.WriteString("Its header follows; the body was not kept.\r\n")
		}
		text.WriteString("\r\n------ The unsent message follows ------\r\n")
		body = r
	}
	e := &Submission{
		Opts: &Options{Recipients: []string{to}, From: "", FromSet: true, IgnoreDots: true},
		Cfg:  s.Cfg, User: s.User, Trusted: s.Trusted, Now: s.Now,
	}
	if _, err := queue(e, io.MultiReader(&text, body)); err != nil {
		return "", ReturnedNothing, fmt.Errorf("returning the error to %s: %w", to, err)
	}
	return to, kept, nil
}

// oneLine keeps an error's text on one line in the message.
func oneLine(s string) string {
	return string(bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, []byte(s)))
}

// errorStatus is the exit status of a failed Submission.
func errorStatus(err error) int {
	var f *Failure
	if errors.As(err, &f) {
		return f.Status
	}
	return exitTempFail
}
