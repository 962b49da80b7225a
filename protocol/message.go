package protocol

import (
	"errors"
	"io"
	"slices"
	"time"
)

// message is one message on its way in, whichever the framing: the
// MessageWriter of the Delivery, the Received: header already written to
// it, the header check and the bodyWriter in front of it. DATA (data.go)
// opens one, feeds it the whole message and closes it; BDAT (bdat.go)
// opens one at the first chunk, feeds it chunk by chunk, and closes it
// at LAST. Everything after the framing is here and in body.go, once.
type message struct {
	mw     MessageWriter
	id     string
	env    Envelope
	start  time.Time
	hw     *headerWriter // nil without Config.CheckHeader
	body   *bodyWriter
	hdrErr error // writing the Received: header failed
	chunks int   // BDAT chunks read so far; 0 for DATA
}

// openMessage ends the transaction in s, keeping its envelope for the
// message, and begins the message: Delivery.Begin, then the Received:
// header. A refusal of Begin is returned as the reply to send; the
// message is then nil.
func (s *Session) openMessage() (*message, *Reply) {
	env := s.env
	env.To = slices.Clone(s.env.To)
	env.DSN = slices.Clone(s.env.DSN)
	s.reset()
	mw, err := s.delivery.Begin(&env)
	if err == nil && mw == nil {
		err = errors.New("protocol: Begin returned no MessageWriter")
	}
	if err != nil {
		r := replyFor(err)
		s.log.Warn("message rejected", "reason", "begin: "+err.Error(), "code", r.Code)
		return nil, r
	}
	m := &message{mw: mw, id: mw.QueueID(), env: env, start: s.cfg.Now()}
	var dst io.Writer = mw
	m.hdrErr = writeReceived(mw, &m.env, s.cfg.Hostname, s.cfg.Software, m.id, m.start)
	switch {
	case m.hdrErr != nil:
		dst = io.Discard // read on to the end all the same
	case s.cfg.CheckHeader != nil:
		m.hw = s.headerWriter(mw, &m.env)
		dst = m.hw
	}
	m.body = newBodyWriter(dst, DataOptions{BareLineEndings: s.cfg.BareLineEndings, MaxSize: s.cfg.MaxMessageSize})
	return m, nil
}

// abortMessage discards m after its input broke off (a failed read, or the
// session ending in the middle of BDAT chunks).
func (s *Session) abortMessage(m *message) {
	m.body.stop()
	s.releaseHeader(m)
	if err := m.mw.Abort(); err != nil {
		s.log.Warn("abort failed", "queue_id", m.id, "err", err)
	}
}

// releaseHeader keeps the header check's buffer for the next message.
func (s *Session) releaseHeader(m *message) {
	if m.hw != nil {
		s.header = m.hw.buf[:0]
	}
}

// closeMessage judges m once its input has ended, in the same order
// whatever the framing: too big (first, because BDAT can say so at the
// chunk that went over, whatever comes after), a bare CR or LF under
// RejectBare, a mail loop, the header check, a failed write; else Commit,
// and 250 only once Commit has returned nil. m is committed or aborted.
func (s *Session) closeMessage(m *message) *Reply {
	res := m.body.finish()
	s.releaseHeader(m)
	if res.WriteErr == nil {
		res.WriteErr = m.hdrErr
	}
	rejectBare := res.Bare && s.cfg.BareLineEndings == RejectBare
	if m.hw != nil && res.WriteErr == nil && !rejectBare && !res.TooBig {
		res.WriteErr = m.hw.finish()
	}
	var r *Reply
	reason := ""
	switch {
	case res.TooBig:
		r, reason = replyTooBig, "too big"
	case rejectBare:
		r, reason = replyBareLineEnding, "bare CR or LF"
	case res.Received > s.cfg.MaxReceived:
		r, reason = replyMailLoop, "mail loop"
	case m.hw != nil && m.hw.reject != nil:
		r, reason = m.hw.reject, "header: "+m.hw.reject.Error()
	case res.WriteErr != nil:
		r, reason = replyFor(res.WriteErr), "write: "+res.WriteErr.Error()
	default:
		err := m.mw.Commit()
		if err == nil {
			s.accepted(m, res)
			return replyQueued(m.id)
		}
		r, reason = replyFor(err), "commit: "+err.Error()
	}
	s.rejected(m, res, r, reason)
	return r
}

// refuseTooBig ends m, which went over Config.MaxMessageSize in a BDAT
// chunk before its LAST: 552 at once (RFC 1870; RFC 3030 section 2 has
// the client send no more chunks of the message).
func (s *Session) refuseTooBig(m *message) *Reply {
	res := m.body.stop()
	s.releaseHeader(m)
	s.rejected(m, res, replyTooBig, "too big")
	return replyTooBig
}

// accepted counts and logs a committed message.
func (s *Session) accepted(m *message, res DataResult) {
	s.messages++
	env := &m.env
	attrs := []any{"queue_id", m.id, "size", res.Size, "from", env.From, "nrcpt", len(env.To), "bare", res.Bare}
	if env.TLSVersion != "" {
		attrs = append(attrs, "tls_version", env.TLSVersion, "tls_cipher", env.TLSCipher)
	}
	if env.AuthUser != "" {
		attrs = append(attrs, "auth_user", env.AuthUser)
	}
	if m.chunks > 0 {
		attrs = append(attrs, "bdat_chunks", m.chunks)
	}
	s.log.Info("message accepted", attrs...)
}

// rejected aborts and logs a refused message.
func (s *Session) rejected(m *message, res DataResult, r *Reply, reason string) {
	if err := m.mw.Abort(); err != nil {
		s.log.Warn("abort failed", "queue_id", m.id, "err", err)
	}
	s.log.Warn("message rejected", "queue_id", m.id, "reason", reason, "code", r.Code,
		"size", res.Size, "received", res.Received)
}
