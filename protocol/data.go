package protocol

import "io"

// data carries out DATA (RFC 5321 section 4.1.1.4): Begin, 354, the
// Received: header, the message, then Commit and 250, or Abort and the
// reason. The transaction ends either way. The 354 is written here,
// before the message is read; the final reply is returned. The message
// takes the one body path (message.go, body.go) that BDAT's chunks take
// too; only the framing, dot-stuffing and the end of data, is DATA's.
func (s *Session) data(Command) (*Reply, error) {
	m, r := s.openMessage()
	if r != nil {
		return r, nil
	}
	if err := s.send(replyStartData); err != nil {
		s.abortMessage(m)
		return nil, err
	}
	if err := s.flush(); err != nil {
		s.abortMessage(m)
		return nil, err
	}
	start := s.cfg.Now()
	err := readDotted(s.r, m.body, func(read int64) error { return s.dataDeadline(start, read) })
	if err != nil {
		s.abortMessage(m)
		return s.readError(err, "data")
	}
	return s.closeMessage(m), nil
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
