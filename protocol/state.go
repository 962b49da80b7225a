package protocol

import "strconv"

// State is where a session stands in the SMTP dialog (RFC 5321 section
// 4.1.4, "Order of Commands"). The zero value is the start.
type State uint8

const (
	// StateInit is after the 220 greeting, before EHLO or HELO.
	StateInit State = iota
	// StateHelo is after EHLO or HELO, outside a mail transaction.
	StateHelo
	// StateMail is after an accepted MAIL FROM, before any accepted RCPT.
	StateMail
	// StateRcpt is after at least one accepted RCPT TO.
	StateRcpt
	// StateBdat is inside a message sent in BDAT chunks (RFC 3030):
	// after a chunk without LAST. Only more BDAT ends the message; RSET,
	// EHLO, HELO and QUIT abandon it.
	StateBdat
	// StateRefused is after a 554 greeting from Config.Greet: the
	// server refuses the session and waits for QUIT (RFC 5321 section
	// 3.1).
	StateRefused
	numStates
)

var stateNames = [numStates]string{"Init", "Helo", "Mail", "Rcpt", "Bdat", "Refused"}

// String returns the state's name, e.g. "Mail".
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Verb is an SMTP command verb, in upper case.
type Verb string

// The verbs the session carries out (RFC 5321 section 4.1.1).
const (
	VerbHELO Verb = "HELO"
	VerbEHLO Verb = "EHLO"
	VerbMAIL Verb = "MAIL"
	VerbRCPT Verb = "RCPT"
	VerbDATA Verb = "DATA"
	VerbRSET Verb = "RSET"
	VerbNOOP Verb = "NOOP"
	VerbQUIT Verb = "QUIT"
	VerbHELP Verb = "HELP"
	VerbVRFY Verb = "VRFY"
	// VerbSTARTTLS starts TLS (RFC 3207).
	VerbSTARTTLS Verb = "STARTTLS"
	// VerbAUTH authenticates the client (RFC 4954).
	VerbAUTH Verb = "AUTH"
	// VerbBDAT sends a chunk of the message (RFC 3030).
	VerbBDAT Verb = "BDAT"
)

// stateSet is a set of States, one bit each.
type stateSet uint8

func states(ss ...State) stateSet {
	var set stateSet
	for _, s := range ss {
		set |= 1 << s
	}
	return set
}

func (set stateSet) has(s State) bool { return set&(1<<s) != 0 }

// anyState is every state of a session that was greeted with 220: the
// column of the commands that may come at any time. Only QUIT may follow
// a refusal (always).
var (
	anyState = states(StateInit, StateHelo, StateMail, StateRcpt, StateBdat)
	always   = anyState | states(StateRefused)
)

// outOfSequence is the 503 reply (RFC 5321 section 4.3.2) for a v that
// may not follow s: it says what the client has to send first. It only
// picks the wording; the after column of the command table (commands.go)
// decides.
func outOfSequence(v Verb, s State) *Reply {
	switch {
	case s == StateRefused:
		return replyNeedQuit
	case s == StateInit:
		return replyNeedHelo
	case s == StateBdat:
		return replyInBdat
	case v == VerbSTARTTLS:
		return replyTLSInTransaction
	case v == VerbMAIL:
		return replyNestedMail
	case v == VerbRCPT:
		return replyNeedMailRcpt
	case v == VerbBDAT && s == StateHelo:
		return replyNeedMailBdat
	case v == VerbBDAT:
		return replyNoRecipientsBdat
	case s == StateHelo:
		return replyNeedMailData
	default:
		// DATA in StateMail: no RCPT sent, or every one refused.
		return replyNoRecipients
	}
}
