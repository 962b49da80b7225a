package protocol

// endsGroup holds the commands that RFC 2920 section 3.1 says "can only
// appear as the last command in a group", because the client has to see
// their reply before it goes on: EHLO, DATA, VRFY, EXPN, TURN and NOOP,
// plus HELO, which Postfix treats like EHLO. QUIT is on the RFC's list too,
// but nothing after it is ever read, so it is never checked. Verbs this
// server does not carry out (EXPN, TURN) still count: ParseCommand keeps
// their verb.
var endsGroup = map[Verb]bool{
	VerbEHLO: true,
	VerbHELO: true,
	VerbDATA: true,
	VerbNOOP: true,
	VerbVRFY: true,
	"EXPN":   true,
	"TURN":   true,
}

// improperPipelining reports whether the client sent more input after the
// command v before seeing its reply where that is not allowed: after a
// command that must end a group, or after any command when EHLO has not
// offered PIPELINING (no EHLO yet, or HELO). The reply to v has not been
// written yet, so any input now is the client's mistake, never a race.
// Message text after DATA counts: the client must wait for 354 (RFC 5321
// section 4.1.1.4); what follows the end of data may be pipelined.
func (s *Session) improperPipelining(v Verb) bool {
	if !s.cfg.ForbidImproperPipelining || s.env.Client.Local || v == VerbQUIT {
		return false
	}
	if !endsGroup[v] && s.env.Protocol == "ESMTP" {
		return false
	}
	return s.r.Buffered() > 0 || s.cfg.InputPending != nil && s.cfg.InputPending()
}
