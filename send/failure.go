package send

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/queue"
)

// Stage is the protocol step at which an attempt ended. The zero value is
// the first step, the TCP connection.
type Stage int

const (
	StageConnect Stage = iota // TCP connection
	StageTLS                  // TLS handshake or STARTTLS (RFC 3207)
	StageHello                // greeting and EHLO (RFC 5321 section 4.1.1.1)
	StageAuth                 // AUTH (RFC 4954)
	StageReset                // RSET before reusing a connection
	StageMail                 // MAIL FROM
	StageRcpt                 // RCPT TO
	StageData                 // DATA and the message bytes
	StageDot                  // the reply to the final "." (RFC 5321 section 4.1.1.4)
	StageLocal                // a decision taken here (SIZE, SMTPUTF8, expiry)
)

var stageNames = [...]string{"connect", "tls", "ehlo", "auth", "rset", "mail", "rcpt", "data", "dot", "local"}

// String returns the stage's name as logged and stored in the state.
func (s Stage) String() string {
	if s < 0 || int(s) >= len(stageNames) {
		return "stage(" + strconv.Itoa(int(s)) + ")"
	}
	return stageNames[s]
}

// Failure is how an attempt went wrong for some recipients: the server's
// reply, or a network, TLS or local error. Errors are classified once, here
// (see classify); retry logic asks only Temporary, HostDown and Expires.
// Every Transport reports its failures as Failures.
type Failure struct {
	Stage Stage
	// Code is the reply code, 0 when there was no reply.
	Code int
	// Enhanced is the RFC 3463 code of the reply or the local one, "" if
	// none.
	Enhanced string
	// Text is the reply text on one line, or the error's text.
	Text string
	// Relay is the smarthost's address, "" if none was reached.
	Relay string
	// Err is the underlying error when there was no reply.
	Err error

	timeout bool // no reply in time, at any step
	setup   bool // the connection could not be made ready for MAIL
	dest    bool // a failure of the destination (MX delivery): it expires
}

// Error returns "stage: code enhanced text".
func (f *Failure) Error() string {
	var b strings.Builder
	b.WriteString(f.Stage.String())
	b.WriteString(": ")
	if f.Code != 0 {
		fmt.Fprintf(&b, "%d ", f.Code)
	}
	if f.Enhanced != "" {
		b.WriteString(f.Enhanced + " ")
	}
	b.WriteString(f.Text)
	return b.String()
}

// Unwrap returns the underlying error.
func (f *Failure) Unwrap() error { return f.Err }

// Temporary reports whether the recipients stay queued. Only a 5xx reply
// within a transaction (MAIL, RCPT, DATA, final dot) or a local permanent
// decision is permanent. A failure to connect, a TLS, greeting, EHLO or
// AUTH failure (even 5xx) is a problem of the smarthost or of our
// configuration: never a bounce.
func (f *Failure) Temporary() bool {
	switch {
	case f.Stage < StageMail || f.Stage == StageReset:
		return true
	case f.Stage == StageLocal:
		return !strings.HasPrefix(f.Enhanced, "5.")
	}
	return f.Code/100 != 5
}

// HostDown reports whether the smarthost that failed with f is to be
// skipped for the rest of the run (RFC 5321 section 4.5.4.1: a host that
// failed is not tried again at once; its messages go to the next host,
// or are deferred without further connection attempts). It is the one
// rule, asked wherever a host can fail; reused says whether the
// connection had carried a transaction before. A host is down when
//
//   - the connection could not be made ready for MAIL: TCP, TLS, the
//     greeting, EHLO or AUTH failed, or a check of ours refused it (TLS
//     not in effect), whatever the reply;
//   - it did not answer in time, at any step;
//   - it closed the connection or answered 421 (RFC 5321 section 3.8)
//     before the data was complete, on a new connection. On a reused one,
//     the server merely ended a connection it had kept idle: reconnect.
//
// A reply within a transaction, or a connection lost after the final dot
// (the server may have taken the message), leaves the host up.
func (f *Failure) HostDown(reused bool) bool {
	switch {
	case f.setup, f.timeout:
		return true
	case f.Stage == StageDot || !f.connLevel():
		return false
	}
	return !reused
}

// Expires reports whether this failure counts towards expiry: for the
// smarthost, only replies and errors within a transaction, which say the
// smarthost is reachable but the mail does not get through; a recipient
// whose last failure was a connection, TLS or AUTH problem of the
// smarthost is never expired. In MX delivery every failure is the
// destination's (DNS, its hosts down), so every one counts (RFC 5321
// section 4.5.4.1: give up after 4-5 days).
func (f *Failure) Expires() bool {
	return f.dest || f.Stage >= StageMail && f.Stage <= StageDot
}

// connLevel reports whether the failure ends the connection: no reply
// (EOF, reset, timeout) or 421 (RFC 5321 section 3.8).
func (f *Failure) connLevel() bool { return f.Code == 0 || f.Code == 421 }

// tooManyRcpts reports whether a RCPT reply means "too many recipients for
// this transaction" (RFC 5321 section 4.5.3.1.10: 452, and 552 from old
// servers, unless its enhanced code says something else).
func (f *Failure) tooManyRcpts() bool {
	switch f.Code {
	case 452:
		return f.Enhanced == "" || f.Enhanced == "4.5.3" || strings.HasPrefix(f.Enhanced, "4.3.")
	case 552:
		return f.Enhanced == "" || f.Enhanced == "5.5.3"
	}
	return false
}

// status returns the RFC 3463 status for a DSN: the enhanced code, else
// the reply's class with ".0.0", else 4.4.1 (no answer from host).
func (f *Failure) status() string {
	switch {
	case f.Enhanced != "":
		return f.Enhanced
	case f.Code >= 400:
		return strconv.Itoa(f.Code/100) + ".0.0"
	}
	return "4.4.1"
}

// classify turns an error from go-smtp or the network into a Failure.
func classify(stage Stage, relay string, err error) *Failure {
	f := &Failure{Stage: stage, Relay: relay}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		f.Code = se.Code
		if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
			f.Enhanced = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		}
		f.Text = oneLine(se.Message)
		return f
	}
	f.Err = err
	f.Text = oneLine(err.Error())
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		f.timeout = true
	}
	return f
}

// localFailure is a decision taken here, with its RFC 3463 code (a 5.x.x
// code makes it permanent); it carries no reply code.
func localFailure(relay, enhanced, text string) *Failure {
	return &Failure{Stage: StageLocal, Relay: relay, Enhanced: enhanced, Text: text}
}

// localWriteFailure is the deferral of a local delivery whose write into
// what (a maildir, an mbox) failed with err: 4.2.2 (mailbox full, RFC
// 3463) when the disk or quota is full, else 4.3.0.
func localWriteFailure(relay, what string, err error) *Failure {
	enh := "4.3.0"
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		enh = "4.2.2"
	}
	return localFailure(relay, enh, oneLine(what+": "+err.Error()))
}

// oneLine joins a multi-line reply and strips control characters, so a
// reply is one log field and one state line, and cuts it to
// queue.MaxText octets: a smarthost may answer with any number of lines,
// and what is kept of a reply, logged, stored per recipient and quoted
// in a notification, is a few hundred octets (as in Postfix).
func oneLine(s string) string {
	if len(s) > 4*queue.MaxText {
		// Only the start is kept; joining at most this much is enough.
		s = s[:4*queue.MaxText]
	}
	s = strings.ReplaceAll(s, "\r\n", " / ")
	s = strings.ReplaceAll(s, "\n", " / ")
	return queue.ClipText(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}
