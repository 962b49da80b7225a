package protocol

// improperPipelining reports whether the client sent more input after
// the command c (nil for an unknown verb) before seeing its reply where
// that is not allowed: after a command that must end a group (the
// pipelining column of the command table: EHLO, HELO, DATA, NOOP, VRFY,
// EXPN and TURN), or after any command when EHLO has not offered
// PIPELINING (no EHLO yet, or HELO). The reply to c has not been written
// yet, so any input now is the client's mistake, never a race. Message
// text after DATA counts: the client must wait for 354 (RFC 5321 section
// 4.1.1.4); what follows the end of data may be pipelined. The chunk
// that follows BDAT (cmd) is not input after it: only bytes beyond the
// chunk count, and input pending on the socket, which may be the
// chunk's, does not.
func (s *Session) improperPipelining(c *command, cmd Command) bool {
	if !s.cfg.ForbidImproperPipelining || s.env.Client.Local {
		return false
	}
	group := inGroup // a verb the table does not hold
	if c != nil {
		group = c.group
	}
	switch {
	case group == endsSession:
		return false
	case group == inGroup && s.env.Protocol == "ESMTP":
		return false
	}
	if cmd.Chunk {
		return int64(s.r.Buffered()) > cmd.ChunkSize
	}
	return s.r.Buffered() > 0 || s.cfg.InputPending != nil && s.cfg.InputPending()
}
