package protocol

import "strconv"

// This file holds every reply the session sends, so that transcripts can
// compare them exactly and a wording change is made in one place. Replies
// carry an RFC 3463 enhanced status code because the EHLO reply advertises
// ENHANCEDSTATUSCODES (RFC 2034). RFC 2034 section 3 exempts the 220
// greeting and the replies to HELO and EHLO: those carry none, and neither
// does 354, an intermediate reply that clients match on the code alone.
//
// The *Reply values are shared: never modify one.

// Replies that take the server's name or another argument.

// replyGreeting is the 220 greeting (RFC 5321 section 4.3.1).
func replyGreeting(host, text string) *Reply {
	return &Reply{Code: 220, Lines: []string{host + " ESMTP " + text}}
}

// replyEHLO is the EHLO reply: the greeting line, then one line per
// extension (RFC 5321 section 4.1.1.1), less those withheld
// (Config.Withhold). Without a limit SIZE goes without a number, which
// RFC 1870 reads as "no information".
func replyEHLO(host, helo string, maxSize int64, withhold Extensions, starttls, auth bool) *Reply {
	size := "SIZE"
	if maxSize > 0 {
		size += " " + strconv.FormatInt(maxSize, 10)
	}
	lines := []string{host + " greets " + helo, "PIPELINING"} // RFC 2920
	if withhold&Ext8BITMIME == 0 {
		lines = append(lines, "8BITMIME") // RFC 6152
	}
	lines = append(lines, size, "ENHANCEDSTATUSCODES") // RFC 1870, RFC 2034
	if withhold&ExtDSN == 0 {
		lines = append(lines, "DSN") // RFC 3461
	}
	if withhold&ExtCHUNKING == 0 {
		lines = append(lines, "CHUNKING") // RFC 3030
	}
	if withhold&ExtSMTPUTF8 == 0 {
		lines = append(lines, "SMTPUTF8") // RFC 6531
	}
	if starttls {
		lines = append(lines, "STARTTLS") // RFC 3207, last: plain replies stay as they were
	}
	if auth {
		lines = append(lines, "AUTH "+authMechanisms) // RFC 4954 section 3
	}
	return &Reply{Code: 250, Lines: lines}
}

// replyChunkOK answers a BDAT chunk without LAST (RFC 3030 section 2).
func replyChunkOK(n int64) *Reply {
	return &Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{strconv.FormatInt(n, 10) + " octets received"}}
}

// replyHELO is the HELO reply (RFC 5321 section 4.1.1.1).
func replyHELO(host, helo string) *Reply {
	return &Reply{Code: 250, Lines: []string{host + " greets " + helo}}
}

// replyBye answers QUIT (RFC 5321 section 4.1.1.10).
func replyBye(host string) *Reply {
	return &Reply{Code: 221, Enhanced: "2.0.0", Lines: []string{host + " closing connection"}}
}

// replyHelp answers HELP (RFC 5321 section 4.1.1.8) with the verbs
// carried out, made from the command table (commands.go):
// "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY; see RFC 5321".
func replyHelp(verbs string) *Reply {
	return &Reply{Code: 214, Enhanced: "2.0.0", Lines: []string{"Commands: " + verbs + "; see RFC 5321"}}
}

// replyQueued answers the end of DATA once the message is committed.
func replyQueued(id string) *Reply {
	return &Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"OK queued as " + id}}
}

// replyTimeout ends a session whose client was silent too long (RFC 5321
// section 4.5.3.2: the server may close with 421).
func replyTimeout(host string) *Reply {
	return &Reply{Code: 421, Enhanced: "4.4.2", Lines: []string{host + " Timeout, closing connection"}}
}

// replyTooSlow ends a session whose client sends message text slower than
// Config.MinDataRate: a timeout like replyTimeout, told apart in the text.
func replyTooSlow(host string) *Reply {
	return &Reply{Code: 421, Enhanced: "4.4.2", Lines: []string{host + " Data arriving too slowly, closing connection"}}
}

// replyHeaderTooLong refuses a message whose header section is longer
// than Config.MaxHeaderSize (RFC 3463 X.6.0: other media error).
func replyHeaderTooLong(max int) *Reply {
	return &Reply{Code: 550, Enhanced: "5.6.0", Lines: []string{"Header section longer than " + strconv.Itoa(max) + " bytes"}}
}

// replyNonSMTP ends a session whose client sent an HTTP request or a
// header line as a command: 221, closing, with RFC 3463 X.7.0 (security
// or policy status), as Postfix answers.
func replyNonSMTP(host string) *Reply {
	return &Reply{Code: 221, Enhanced: "2.7.0", Lines: []string{host + " Error: non-SMTP command, closing connection"}}
}

// replyTooManyErrors ends a session that sent too many bad commands.
func replyTooManyErrors(host string) *Reply {
	return &Reply{Code: 421, Enhanced: "4.7.0", Lines: []string{host + " Too many errors, closing connection"}}
}

func reply(code int, enhanced, text string) *Reply {
	return &Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// Fixed replies.
var (
	// Positive completion (RFC 5321 section 4.2.1).
	replyOK     = reply(250, "2.0.0", "OK")
	replyMailOK = reply(250, "2.1.0", "Sender OK")
	replyRcptOK = reply(250, "2.1.5", "Recipient OK")
	// RFC 5321 section 3.5.3: 252 when the server will not verify.
	replyVRFY = reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
	// RFC 5321 section 4.3.2; no enhanced code, see above.
	replyStartData = &Reply{Code: 354, Lines: []string{"Start mail input; end with <CRLF>.<CRLF>"}}

	// Command syntax (RFC 5321 section 4.2.4, RFC 3463 X.5.x).
	replyLineTooLong  = reply(500, "5.5.2", "Line too long")
	replyBadCharacter = reply(500, "5.5.2", "Invalid character in command (NUL, CR or invalid UTF-8)")
	replyUnrecognized = reply(500, "5.5.2", "Command unrecognized")
	replyNotImpl      = reply(502, "5.5.1", "Command not implemented")
	replyNoArguments  = reply(501, "5.5.4", "Syntax error: no arguments allowed")
	replyHeloSyntax   = reply(501, "5.5.4", "Syntax: EHLO or HELO followed by your domain name")
	replyVRFYSyntax   = reply(501, "5.5.4", "Syntax: VRFY <address>")
	replyMailSyntax   = reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
	replyRcptSyntax   = reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
	replyParamSyntax  = reply(501, "5.5.4", "Bad parameter syntax")
	replyParamTwice   = reply(501, "5.5.4", "Parameter given twice")
	replySizeSyntax   = reply(501, "5.5.4", "Bad SIZE value")
	replyBodySyntax   = reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
	replyUTF8Syntax   = reply(501, "5.5.4", "SMTPUTF8 takes no value")
	replyParamUnknown = reply(555, "5.5.4", "Unsupported parameter")
	replyParamNoEHLO  = reply(555, "5.5.4", "Parameters need EHLO")
	// DSN parameters (RFC 3461 section 4), worded as Postfix's.
	replyNotifySyntax  = reply(501, "5.5.4", "Bad NOTIFY parameter syntax")
	replyORcptSyntax   = reply(501, "5.5.4", "Bad ORCPT parameter syntax")
	replyRetSyntax     = reply(501, "5.5.4", "Bad RET parameter syntax")
	replyEnvIDSyntax   = reply(501, "5.5.4", "Bad ENVID parameter syntax")
	replyBadSender     = reply(501, "5.1.7", "Bad sender address syntax")
	replyBadRecipient  = reply(501, "5.1.3", "Bad recipient address syntax")
	replySenderLong    = reply(501, "5.1.7", "Sender address too long (RFC 5321 section 4.5.3.1)")
	replyRecipientLong = reply(501, "5.1.3", "Recipient address too long (RFC 5321 section 4.5.3.1)")
	// BDAT (RFC 3030 section 2): a bad size loses the framing, so the
	// session ends after the reply (ErrChunkSize); with a good size the
	// chunk is read and dropped.
	replyBdatSize     = reply(501, "5.5.4", "Syntax: BDAT <size> [LAST]; the chunk size is unreadable, closing connection")
	replyBdatSyntax   = reply(501, "5.5.4", "Syntax: BDAT <size> [LAST]")
	replyBdatNeedEHLO = reply(503, "5.5.1", "BDAT needs EHLO (CHUNKING, RFC 3030)")
	// RFC 6531 section 3.4: a non-ASCII address without SMTPUTF8.
	replyNeedSMTPUTF8 = reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")

	// Bad sequence of commands, chosen by outOfSequence (state.go).
	replyNeedHelo         = reply(503, "5.5.1", "Send EHLO/HELO first")
	replyNestedMail       = reply(503, "5.5.1", "Nested MAIL command")
	replyNeedMailRcpt     = reply(503, "5.5.1", "Need MAIL before RCPT")
	replyNeedMailData     = reply(503, "5.5.1", "Need MAIL before DATA")
	replyNoRecipients     = reply(503, "5.5.1", "No valid recipients: need RCPT before DATA")
	replyNeedMailBdat     = reply(503, "5.5.1", "Need MAIL before BDAT")
	replyNoRecipientsBdat = reply(503, "5.5.1", "No valid recipients: need RCPT before BDAT")
	// RFC 3030 section 2: between chunks only BDAT goes on with the
	// message (DATA, MAIL, RCPT, STARTTLS and AUTH do not).
	replyInBdat = reply(503, "5.5.1", "Message in BDAT chunks under way: send BDAT, or RSET")
	// RFC 5321 section 3.1: after a 554 greeting, every command but QUIT.
	replyNeedQuit = reply(503, "5.5.1", "Session refused: only QUIT is accepted")

	// Limits and refusals of the transaction.
	// RFC 5321 section 4.5.3.1.10: 452 for too many recipients.
	replyTooManyRcpts = reply(452, "4.5.3", "Too many recipients")
	// RFC 1870: 552 for a message over the fixed maximum size.
	replyTooBig = reply(552, "5.3.4", "Message too big")
	// RFC 5321 section 2.3.8: CR and LF only as CRLF.
	replyBareLineEnding = reply(550, "5.5.2", "Message contains bare CR or LF, rejected (RFC 5321 section 2.3.8)")
	// RFC 5321 section 6.3: a message with too many trace headers loops.
	replyMailLoop = reply(554, "5.4.6", "Too many Received headers, mail loop")
	// RFC 2920 section 3.1: a command sent before the reply to one that
	// must end a group; RFC 3463 X.5.0: other protocol status. The
	// session ends after it, as Postfix's does.
	replyImproperPipelining = reply(554, "5.5.0", "Improper use of SMTP command pipelining")
	// TLS (RFC 3207 section 4 gives the text; Postfix's enhanced code).
	replyReadyTLS = &Reply{Code: 220, Enhanced: "2.0.0", Lines: []string{"Ready to start TLS"}}
	// RFC 3207 section 4: MAIL before STARTTLS when TLS is required.
	replyNeedTLS = reply(530, "5.7.0", "Must issue a STARTTLS command first")
	// STARTTLS in a mail transaction: RFC 3207 section 4.2 has TLS
	// discard the transaction, so the client ends it first.
	replyTLSInTransaction = reply(503, "5.5.1", "STARTTLS not allowed during a mail transaction; send RSET first")
	// Input pipelined after STARTTLS (CVE-2011-0411): it would be read
	// as if it came over TLS. The session ends after it.
	replyPipelinedTLS = reply(554, "5.5.0", "Improper use of SMTP command pipelining: nothing may follow STARTTLS")

	// AUTH (RFC 4954 sections 4 and 6; RFC 3463 as RFC 4954 updates it).
	replyAuthOK          = &Reply{Code: 235, Enhanced: "2.7.0", Lines: []string{"Authentication successful"}}
	replyAuthFailed      = reply(535, "5.7.8", "Authentication credentials invalid")
	replyAuthTempFail    = reply(454, "4.7.0", "Temporary authentication failure")
	replyAuthNeedTLS     = reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
	replyAuthTwice       = reply(503, "5.5.1", "Already authenticated")
	replyAuthNeedEHLO    = reply(503, "5.5.1", "Send EHLO first")
	replyAuthMechanism   = reply(504, "5.5.4", "Unrecognized authentication type")
	replyAuthSyntax      = reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
	replyAuthDecode      = reply(501, "5.5.2", "Cannot decode response")
	replyAuthCancelled   = reply(501, "5.0.0", "Authentication cancelled")
	replyAuthLineTooLong = reply(500, "5.5.6", "Authentication exchange line is too long")
	// RFC 4954 section 6: MAIL before AUTH where it is required.
	replyAuthRequired = reply(530, "5.7.0", "Authentication required")
	// AUTH= on MAIL FROM that is not xtext (RFC 4954 section 5).
	replyAuthParamSyntax = reply(501, "5.5.4", "Syntax error in AUTH parameter")

	// Begin, write or Commit failed without a reply of its own.
	replyLocalError = reply(451, "4.3.0", "Local error, try again later")
)
