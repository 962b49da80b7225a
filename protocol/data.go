package protocol

import (
	"errors"
	"io"
	"slices"
)

// data carries out DATA (RFC 5321 section 4.1.1.4): Begin, 354, the
// Received: header, the message, then Commit and 250, or Abort and the
// reason. The transaction ends either way. The 354 is written here,
// before the message is read; the final reply is returned.
func (s *Session) data(Command) (*Reply, error) {
	env := s.env
	env.To = slices.Clone(s.env.To)
	s.reset()
	mw, err := s.delivery.Begin(&env)
	if err == nil && mw == nil {
		err = errors.New("protocol: Begin returned no MessageWriter")
	}
	if err != nil {
		r := replyFor(err)
		s.log.Warn("message rejected", "reason", "begin: "+err.Error(), "code", r.Code)
		return r, nil
	}
	id, committed := mw.QueueID(), false
	defer func() {
		if !committed {
			if err := mw.Abort(); err != nil {
				s.log.Warn("abort failed", "queue_id", id, "err", err)
			}
		}
	}()
	if err := s.send(replyStartData); err != nil {
		return nil, err
	}
	if err := s.flush(); err != nil {
		return nil, err
	}
	start := s.cfg.Now()
	var dst io.Writer = mw
	var hw *headerWriter
	hdrErr := writeReceived(mw, &env, s.cfg.Hostname, s.cfg.Software, id, start)
	switch {
	case hdrErr != nil:
		dst = io.Discard // read on to the end all the same
	case s.cfg.CheckHeader != nil:
		hw = s.headerWriter(mw, &env)
		dst = hw
	}
	res, err := ReadData(s.r, dst, DataOptions{
		BareLineEndings: s.cfg.BareLineEndings,
		MaxSize:         s.cfg.MaxMessageSize,
		BeforeRead:      func(read int64) error { return s.dataDeadline(start, read) },
	})
	if hw != nil {
		s.header = hw.buf[:0] // keep the capacity for the next message
	}
	if err != nil {
		return s.readError(err, "data")
	}
	if res.WriteErr == nil {
		res.WriteErr = hdrErr
	}
	rejectBare := res.Bare && s.cfg.BareLineEndings == RejectBare
	if hw != nil && res.WriteErr == nil && !rejectBare && !res.TooBig {
		res.WriteErr = hw.finish()
	}
	var r *Reply
	reason := ""
	switch {
	case rejectBare:
		r, reason = replyBareLineEnding, "bare CR or LF"
	case res.TooBig:
		r, reason = replyTooBig, "too big"
	case res.Received > s.cfg.MaxReceived:
		r, reason = replyMailLoop, "mail loop"
	case hw != nil && hw.reject != nil:
		r, reason = hw.reject, "header: "+hw.reject.Error()
	case res.WriteErr != nil:
		r, reason = replyFor(res.WriteErr), "write: "+res.WriteErr.Error()
	default:
		if err := mw.Commit(); err != nil {
			r, reason = replyFor(err), "commit: "+err.Error()
		} else {
			committed = true
			s.messages++
			attrs := []any{"queue_id", id, "size", res.Size, "from", env.From, "nrcpt", len(env.To), "bare", res.Bare}
			if env.TLSVersion != "" {
				attrs = append(attrs, "tls_version", env.TLSVersion, "tls_cipher", env.TLSCipher)
			}
			if env.AuthUser != "" {
				attrs = append(attrs, "auth_user", env.AuthUser)
			}
			s.log.Info("message accepted", attrs...)
			return replyQueued(id), nil
		}
	}
	s.log.Warn("message rejected", "queue_id", id, "reason", reason, "code", r.Code,
		"size", res.Size, "received", res.Received)
	return r, nil
}

// headerWriter returns the writer that holds back the header section of
// the message for env until Config.CheckHeader has passed it. The check's
// answer is vetted like any foreign one: a refusal must be a refusal,
// and added fields must be well-formed lines, or the message gets 451.
func (s *Session) headerWriter(mw io.Writer, env *Envelope) *headerWriter {
	check := func(header []byte) ([]byte, *Reply) {
		add, r := s.cfg.CheckHeader(env, header)
		if r != nil {
			return nil, refusal(r)
		}
		if !validAdded(add) {
			s.log.Warn("header check added malformed fields", "len", len(add))
			return nil, replyLocalError
		}
		return add, nil
	}
	return &headerWriter{w: mw, check: check, buf: s.header[:0], max: s.cfg.MaxHeaderSize}
}
