package protocol

import "strings"

// command is one row of the command table: all that the session knows of
// one verb. Session.execute runs the checks every command passes, in
// this order: the verb is known and carried out, it may follow the
// current state, its arguments parse; only then does the handler run.
type command struct {
	verb Verb
	// after is the set of states the command may follow (RFC 5321
	// section 4.1.4); a command outside it gets 503 5.5.1, worded by
	// outOfSequence. It is the only sequence check.
	after stateSet
	// group is what RFC 2920 section 3.1 says of the command in a
	// pipelined group, for Config.ForbidImproperPipelining.
	group grouping
	// args checks the text after the verb; cmd.Verb and cmd.Arg are set.
	// It returns the command completed, or a *Reply for bad arguments.
	args func(cmd Command) (Command, error)
	// run carries out the command and returns its reply, which
	// Session.answer writes; an error ends the session after the reply
	// (QUIT, a timeout in DATA). Nil for a verb that this server knows
	// but does not carry out: it gets 502 5.5.1 in every state.
	run func(s *Session, cmd Command) (*Reply, error)
	// offered, when not nil, says whether this session carries the
	// command out at all: where it says no, the verb is answered as one
	// without a handler (502 5.5.1 in every state), and HELP does not
	// list it. Nil is always. STARTTLS is offered only with a TLS
	// configuration and before TLS is up.
	offered func(s *Session) bool
}

// isOffered reports whether c is carried out in s (command.offered).
func (c *command) isOffered(s *Session) bool { return c.offered == nil || c.offered(s) }

// grouping is what RFC 2920 section 3.1 says of a command in a pipelined
// group.
type grouping uint8

const (
	// inGroup: more commands may follow in the same group.
	inGroup grouping = iota
	// endsGroup: "can only appear as the last command in a group",
	// because the client has to see the reply before it goes on.
	endsGroup
	// endsSession: QUIT, the last command of all. The RFC lists it with
	// the group enders, but nothing after it is ever read, so it is
	// never checked.
	endsSession
)

// commands is the command table, one row per verb, in the order HELP
// lists them (qmail's smtpcommands[]). The verbs with a handler are RFC
// 5321 section 4.5.1's minimum implementation, plus HELP. HELO ends a
// group as EHLO does, as Postfix treats it.
var commands = [...]command{
	// verb, may follow (after), pipelining (group), arguments, handler[, offered]
	{VerbEHLO, anyState, endsGroup, needArg(replyHeloSyntax), (*Session).hello, nil},
	{VerbHELO, anyState, endsGroup, needArg(replyHeloSyntax), (*Session).hello, nil},
	{VerbMAIL, states(StateHelo), inGroup, parseMail, (*Session).mail, nil},
	{VerbRCPT, states(StateMail, StateRcpt), inGroup, parseRcpt, (*Session).rcpt, nil},
	{VerbDATA, states(StateRcpt), endsGroup, noArgs, (*Session).data, nil},
	// RFC 3030 section 2: the first chunk after RCPT, the others after
	// it (StateBdat); its chunk is read whatever the reply (bdat.go).
	// BDAT may be pipelined, LAST included (RFC 3030 section 4.2).
	{VerbBDAT, states(StateRcpt, StateBdat), inGroup, parseBdat, (*Session).bdat, (*Session).offersChunking},
	{VerbRSET, anyState, inGroup, noArgs, (*Session).rset, nil},
	{VerbNOOP, anyState, endsGroup, anyArgs, (*Session).noop, nil},
	{VerbQUIT, always, endsSession, noArgs, (*Session).quit, nil},
	{VerbHELP, anyState, inGroup, anyArgs, (*Session).help, nil},
	{VerbVRFY, anyState, endsGroup, needArg(replyVRFYSyntax), (*Session).vrfy, nil},
	// RFC 3207 section 4: after EHLO, outside a transaction; the client
	// waits for the 220 before its handshake, so it ends a group (and
	// Session.starttls refuses anything pipelined after it).
	{VerbSTARTTLS, states(StateHelo), endsGroup, noArgs, (*Session).starttls, (*Session).offersTLS},
	// RFC 4954 section 4: outside a transaction (503 5.5.1 in one).
	// AUTH may stay in a pipelined group: RFC 4954 allows that for PLAIN
	// with an initial response, the one mechanism clients pipeline.
	{VerbAUTH, states(StateInit, StateHelo), inGroup, parseAuth, (*Session).auth, (*Session).offersAuth},

	// Verbs with a meaning in SMTP that this server does not carry out:
	// 502 5.5.1, where anything else unknown gets 500 5.5.2 (RFC 5321
	// section 4.2.4). The parser keeps their verb, so that EXPN and TURN
	// still end a pipelined group.
	{"EXPN", states(), endsGroup, nil, nil, nil}, // RFC 5321 section 3.5: we expand no lists
	{"TURN", states(), endsGroup, nil, nil, nil}, // RFC 821, insecure
	{"ETRN", states(), inGroup, nil, nil, nil},   // RFC 1985
	{"ATRN", states(), inGroup, nil, nil, nil},   // RFC 2645
	{"SEND", states(), inGroup, nil, nil, nil},   // RFC 821, removed by RFC 5321
	{"SOML", states(), inGroup, nil, nil, nil},
	{"SAML", states(), inGroup, nil, nil, nil},
}

// lookup returns the row of verb v, or nil for a verb the table does not
// hold. A scan of a score of short strings is as quick as a map.
func lookup(v Verb) *command {
	for i := range commands {
		if commands[i].verb == v {
			return &commands[i]
		}
	}
	return nil
}

// allowed reports whether v is carried out and may follow state s.
func allowed(v Verb, s State) bool {
	c := lookup(v)
	return c != nil && c.run != nil && c.after.has(s)
}

// helpRows are the rows of the verbs that HELP may list: those with a
// handler, in table order. They are set in init, because the table's
// HELP handler cannot refer to the table in the table's own initializer.
var helpRows []*command

func init() {
	for i := range commands {
		if commands[i].run != nil {
			helpRows = append(helpRows, &commands[i])
		}
	}
}

// Argument checks for the table (RFC 5321 section 4.1.1); MAIL and RCPT
// have their own parsers in parse.go.

// noArgs refuses any argument: DATA, RSET and QUIT take none.
func noArgs(cmd Command) (Command, error) {
	if cmd.Arg != "" {
		return cmd, replyNoArguments
	}
	return cmd, nil
}

// anyArgs accepts whatever follows the verb: NOOP and HELP ignore it.
func anyArgs(cmd Command) (Command, error) { return cmd, nil }

// needArg returns a check that refuses a missing argument with r: EHLO
// and HELO need a domain, VRFY a string.
func needArg(r *Reply) func(Command) (Command, error) {
	return func(cmd Command) (Command, error) {
		if cmd.Arg == "" {
			return cmd, r
		}
		return cmd, nil
	}
}

// The handlers of the small commands; EHLO, HELO, MAIL and RCPT are in
// session.go, DATA in data.go, BDAT in bdat.go.

// rset ends the mail transaction (RFC 5321 section 4.1.1.5).
func (s *Session) rset(Command) (*Reply, error) {
	s.reset()
	return replyOK, nil
}

// noop does nothing (RFC 5321 section 4.1.1.9).
func (s *Session) noop(Command) (*Reply, error) { return replyOK, nil }

// help lists the commands (RFC 5321 section 4.1.1.8), whatever the
// argument: those carried out in this session (STARTTLS before TLS
// with a certificate, AUTH with an Authenticator).
func (s *Session) help(Command) (*Reply, error) {
	verbs := make([]string, 0, len(helpRows))
	for _, c := range helpRows {
		if c.isOffered(s) {
			verbs = append(verbs, string(c.verb))
		}
	}
	return replyHelp(strings.Join(verbs, " ")), nil
}

// vrfy verifies nothing (RFC 5321 section 3.5.3): 252.
func (s *Session) vrfy(Command) (*Reply, error) { return replyVRFY, nil }

// quit ends the session with 221 (RFC 5321 section 4.1.1.10).
func (s *Session) quit(Command) (*Reply, error) {
	return replyBye(s.cfg.Hostname), errQuit
}
