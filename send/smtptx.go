package send

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// txResult is how a transaction ended for the connection.
type txResult struct {
	// conn is a connection-level failure (no reply, or 421) before the
	// data was complete: the server cannot have taken the message, so the
	// whole transaction is tried again on a new connection.
	conn *Failure
	// reused is true if the transaction ran on a reused connection.
	reused bool
	// dead is true if the connection is unusable afterwards.
	dead bool
}

// transaction sends the message to the recipients in batch over the
// session's connection: MAIL, one RCPT per recipient, DATA, the data, and
// the final dot (RFC 5321 section 3.3). Each refused recipient gets its
// own result; those accepted are recorded as delivered right after the
// final 250, before anything else is sent. It returns the recipients a
// "too many recipients" reply left for a new transaction, and an error
// that stops the delivery (reading the message, recording the 250).
func (ss *smtpSession) transaction(m *smtpMsg, batch []int) (carry []int, res txResult, abort error) {
	s, t, env := ss.c, ss.t, m.Envelope
	res.reused = s.txs > 0
	failAll := m.rec.Failed
	body, size, f, err := m.body(t, s)
	if err != nil {
		return nil, res, err
	}
	if f != nil {
		failAll(batch, f)
		return nil, res, nil
	}
	if s.max > 0 && size > s.max {
		failAll(batch, localFailure(s.relay, "5.3.4", fmt.Sprintf(
			"message of %d bytes exceeds the %s's SIZE limit of %d (RFC 1870)", size, t.what, s.max)))
		return nil, res, nil
	}
	send, utf8 := batch, env.SMTPUTF8 || !isASCII(env.From)
	if !s.utf8 {
		// RFC 6531 section 3.2: without SMTPUTF8 at the server, mail that
		// needs it cannot be relayed.
		need := localFailure(s.relay, "5.6.7", "the "+t.what+" does not offer SMTPUTF8 (RFC 6531), which this address needs")
		if !isASCII(env.From) || env.SMTPUTF8 && m.headers8bit() {
			need.Text = "the " + t.what + " does not offer SMTPUTF8 (RFC 6531), which this message needs"
			failAll(batch, need)
			return nil, res, nil
		}
		send, utf8 = nil, false
		for _, i := range batch {
			if isASCII(env.To[i]) {
				send = append(send, i)
			} else {
				failAll([]int{i}, need)
			}
		}
		if len(send) == 0 {
			return nil, res, nil
		}
	}
	for _, i := range send {
		utf8 = utf8 || !isASCII(env.To[i])
	}

	// RFC 5321 section 4.1.1.4: the final reply to the data ends the
	// transaction and clears the server's buffers, so the next MAIL
	// follows at once and doubles as the check that a reused connection
	// still works. A transaction left open (every RCPT refused, DATA
	// refused) is ended with RSET (section 4.1.1.5) first.
	if s.open {
		if err := s.c.Reset(); err != nil {
			res.conn = classify(StageReset, s.relay, err)
			return nil, res, nil
		}
		s.open = false
	}
	s.txs++
	s.open = true
	if err := s.c.Mail(env.From, mailOptions(env, size, utf8)); err != nil {
		s.open = false // MAIL refused: no transaction began
		if f := classify(StageMail, s.relay, err); f.connLevel() {
			res.conn = f
		} else if t.mx != nil && f.Code/100 == 4 {
			// An MX host that defers MAIL is passed over for the next
			// one (RFC 5321 section 5.1: try the other MX hosts).
			f.setup = true
			res.conn = f
		} else {
			failAll(send, f)
		}
		return nil, res, nil
	}
	var accepted []int
	for n, i := range send {
		err := s.c.Rcpt(env.To[i], rcptOptions(env, i))
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		f := classify(StageRcpt, s.relay, err)
		if f.connLevel() {
			res.conn = f
			return nil, res, nil
		}
		if f.tooManyRcpts() && len(accepted) > 0 {
			carry = send[n:]
			break
		}
		failAll([]int{i}, f)
	}
	if len(accepted) == 0 {
		return carry, res, nil // no body without a recipient; RSET comes next
	}
	wc, err := s.c.Data()
	if err != nil {
		if f := classify(StageData, s.relay, err); f.connLevel() {
			res.conn = f
			return nil, res, nil
		} else {
			failAll(accepted, f)
		}
		return carry, res, nil
	}
	// Lines longer than maxLine are broken on the way (see lineWriter); a
	// 7-bit version made by body was written that way already.
	var dst io.Writer = wc
	var lw *lineWriter
	if m.long {
		lw = newLineWriter(wc)
		dst = lw
	}
	src := &errReader{r: body()}
	_, err = io.Copy(dst, src)
	if err == nil && lw != nil {
		err = lw.Flush()
	}
	if err != nil {
		// Close the connection without the final dot: the server
		// discards what it got.
		res.dead = true
		if src.err != nil {
			return nil, res, fmt.Errorf("reading %s: %w", env.QueueID, src.err)
		}
		res.conn = classify(StageData, s.relay, err)
		return nil, res, nil
	}
	resp, err := wc.CloseWithResponse()
	var se *smtp.SMTPError
	if err == nil || errors.As(err, &se) {
		s.open = false // a final reply: the transaction is over
	}
	if err != nil {
		// No 250: the accepted recipients stay pending. If the server
		// took the message all the same, the next attempt sends it again:
		// the only duplicate window.
		f := classify(StageDot, s.relay, err)
		if f.connLevel() {
			res.dead = true
			t.failed(s.host, f, res.reused)
		}
		failAll(accepted, f)
		return carry, res, nil
	}
	enh, text := splitEnhanced(oneLine(resp.StatusText))
	rep := Reply{Stage: StageDot, Code: 250, Enhanced: enh, Text: text, Relay: s.relay}
	if dsn, _ := s.c.Extension("DSN"); !dsn {
		// RFC 3461 section 5.2.2: NOTIFY went nowhere, so a sender who
		// asked for SUCCESS hears "relayed" from us.
		rep.Action = actionRelayed
	}
	err = m.rec.Delivered(accepted, rep)
	return carry, res, err
}

// splitEnhanced splits "2.0.0 text" into the RFC 3463 code and the text.
func splitEnhanced(s string) (string, string) {
	code, rest, _ := strings.Cut(s, " ")
	parts := strings.Split(code, ".")
	if len(parts) != 3 || code[0] < '2' || code[0] > '5' {
		return "", s
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return "", s
		}
	}
	return code, rest
}

// errReader remembers the error of the message source, to tell a local
// read failure from a network failure in io.Copy.
type errReader struct {
	r   io.Reader
	err error
}

// Read implements io.Reader.
func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// mailOptions are the MAIL FROM parameters for env: SIZE and SMTPUTF8,
// and the DSN parameters the message came with (RFC 3461 section 4.3
// and 4.4, RET and ENVID), which go-smtp sends only to a next hop that
// offers DSN. A next hop without DSN gets none, and the notices that
// the sender asked for are then this MTA's to give.
func mailOptions(env *spool.Envelope, size int64, utf8 bool) *smtp.MailOptions {
	o := &smtp.MailOptions{Size: size, UTF8: utf8, EnvelopeID: env.EnvID}
	switch env.Ret {
	case "FULL":
		o.Return = smtp.DSNReturnFull
	case "HDRS":
		o.Return = smtp.DSNReturnHeaders
	}
	return o
}

// rcptOptions are the RCPT TO parameters of env.To[i]: its NOTIFY and
// ORCPT (RFC 3461 sections 4.1 and 4.2), passed on as given when the
// next hop offers DSN (go-smtp encodes them again: xtext for rfc822,
// RFC 6533's form for utf-8); an ORCPT of another address type is not
// passed on, as go-smtp has no way to write it. nil without any.
func rcptOptions(env *spool.Envelope, i int) *smtp.RcptOptions {
	d := env.RcptDSN(i)
	if d == (spool.RcptDSN{}) {
		return nil
	}
	o := &smtp.RcptOptions{}
	if d.Notify != "" {
		for _, n := range strings.Split(d.Notify, ",") {
			o.Notify = append(o.Notify, smtp.DSNNotify(n))
		}
	}
	if typ, addr, ok := strings.Cut(d.ORcpt, ";"); ok {
		switch typ {
		case "rfc822":
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
		case "utf-8":
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, addr
		}
	}
	return o
}
