package protocol

import (
	"crypto/tls"
	"io"
	"net/netip"
	"time"
)

// BareLineEndings chooses what the DATA reader does with a CR or LF that is
// not part of a CRLF pair (the SMTP smuggling vector, December 2023).
type BareLineEndings int

const (
	// RejectBare reads the message to the real CRLF.CRLF end and then
	// rejects it with 550 5.5.2 (as chasquid does). The zero value.
	RejectBare BareLineEndings = iota
	// NormalizeBare turns every bare CR or LF into CRLF (Postfix's
	// smtpd_forbid_bare_newline = normalize). It never ends the message:
	// only CRLF.CRLF does.
	NormalizeBare
)

// Extensions is a set of the ESMTP extensions that the EHLO reply can
// leave out (Config.Withhold). PIPELINING, SIZE and ENHANCEDSTATUSCODES
// are always offered; the zero set leaves out nothing.
type Extensions uint8

const (
	// Ext8BITMIME is 8BITMIME (RFC 6152): withheld, MAIL FROM with a
	// BODY= parameter, 7BIT or 8BITMIME, gets 555 5.5.4.
	Ext8BITMIME Extensions = 1 << iota
	// ExtSMTPUTF8 is SMTPUTF8 (RFC 6531): withheld, MAIL FROM with the
	// SMTPUTF8 parameter gets 555 5.5.4, and so a non-ASCII address
	// gets 553 5.6.7 (RFC 6531 section 3.4).
	ExtSMTPUTF8
	// ExtDSN is DSN (RFC 3461): withheld, MAIL FROM with RET= or ENVID=
	// and RCPT TO with NOTIFY= or ORCPT= get 555 5.5.4.
	ExtDSN
	// ExtCHUNKING is CHUNKING (RFC 3030): withheld, BDAT gets 502 5.5.1
	// in every state (its chunk is still read when its size is
	// readable, so that no chunk is taken for commands).
	ExtCHUNKING
)

// Config holds the limits, names and hooks of a session. Zero durations
// and limits mean "no limit" except where noted, and a nil hook keeps the
// behaviour its comment describes; DefaultConfig returns the RFC 5321
// section 4.5.3 limits and timeouts that a server on the Internet wants.
type Config struct {
	// Hostname is the server's name in the 220 greeting, EHLO reply and
	// Received: header (RFC 5321 sections 4.2, 4.4).
	Hostname string
	// Greeting, when not empty, replaces the text after the hostname in
	// the 220 greeting; NewSession sets "ready" for "". Config.Greet
	// replaces the whole greeting.
	Greeting string
	// Software names the server software in the comment of the by
	// clause of the Received: header, "by mx.example (Software)" (RFC
	// 5321 section 4.4; RFC 5322 section 3.2.2). NewSession sets
	// DefaultSoftware for "", and drops the bytes that cannot stand in a
	// comment: those outside printable ASCII, "(", ")" and "\".
	Software string
	// PostmasterDomain qualifies the recipient "postmaster" given without
	// a domain (RFC 5321 section 4.5.1). The Policy is asked about the
	// bare "postmaster", which it must accept from any client, and
	// Envelope.To records "postmaster@" and this domain in its canonical
	// form (domain.Canonical: lower case, an A-label), so that the next
	// hop cannot take it for its own postmaster. NewSession sets Hostname
	// for "". A domain without a canonical form is used as given: the
	// caller checks it.
	PostmasterDomain string
	// MaxMessageSize is the largest message accepted, in bytes, counted
	// after dot-unstuffing; it is advertised as SIZE (RFC 1870).
	MaxMessageSize int64
	// MaxRecipients is the most RCPT TO accepted per transaction; the next
	// gets 452 4.5.3 (RFC 5321 section 4.5.3.1.8 requires at least 100).
	MaxRecipients int
	// MaxLineLength is the longest command line accepted, in bytes,
	// including CRLF (RFC 5321 section 4.5.3.1.4 sets a floor of 512 plus
	// what extensions add). Longer lines get 500 5.5.2 and are discarded.
	MaxLineLength int
	// MaxErrors is the number of refusals (4yz and 5yz replies, except
	// 452 4.5.3 for too many recipients; see countsAsError) after which
	// the session replies 421 4.7.0 and ends: the next refusal is
	// followed by the 421. 0 means no limit.
	MaxErrors int
	// MaxReceived is the number of Received: headers a message may
	// already carry; one more is a mail loop, 554 5.4.6 (RFC 5321
	// section 6.3).
	MaxReceived int
	// BareLineEndings chooses reject or normalize for bare CR/LF in DATA.
	BareLineEndings BareLineEndings
	// Withhold is the set of extensions that the EHLO reply does not
	// offer, for a server whose next hop cannot take what they allow, or
	// a test of a client against a server without them. MAIL FROM with a
	// parameter of a withheld extension gets 555 5.5.4 (RFC 5321 section
	// 4.1.1.11). The zero value offers every extension.
	Withhold Extensions
	// CommandTimeout is the longest wait for a command line (RFC 5321
	// section 4.5.3.2.7: 5 minutes).
	CommandTimeout time.Duration
	// DataTimeout is the longest wait for each block of DATA (RFC 5321
	// section 4.5.3.2.6: 3 minutes).
	DataTimeout time.Duration
	// MinDataRate is the slowest a client may send message text, in
	// bytes per second averaged over the DATA phase: the phase may last
	// DataTimeout plus one second per MinDataRate bytes received, so that
	// a client trickling a byte a minute cannot hold the session for
	// hours (as Postfix's smtpd_min_data_rate). Past that the session
	// replies 421 4.4.2 and ends. 0 is no minimum, and so is a zero
	// DataTimeout.
	MinDataRate int64
	// Deadline ends the whole session, whatever the client does; zero is
	// none.
	Deadline time.Time

	// TLS, when not nil, is the server's TLS configuration (certificate
	// and all): a session served by ServeConn then offers STARTTLS (RFC
	// 3207), or with ImplicitTLS starts TLS before the greeting (RFC
	// 8314). NewSession raises its MinVersion to TLS 1.2. Serve, which
	// has no connection to hand to crypto/tls, never offers it.
	TLS *tls.Config
	// ImplicitTLS runs the TLS handshake before the 220 greeting (RFC
	// 8314 section 3.3, port 465) instead of offering STARTTLS; it needs
	// TLS and ServeConn.
	ImplicitTLS bool
	// RequireTLS refuses MAIL before TLS is up with 530 5.7.0 (RFC 3207
	// section 4: "Must issue a STARTTLS command first").
	RequireTLS bool
	// Auth, when not nil, checks the credentials of AUTH (RFC 4954,
	// mechanisms PLAIN and LOGIN): the session then carries out AUTH,
	// and the EHLO reply offers it where a password may pass (over TLS,
	// on a local pipe session, or with AllowPlaintextAuth). Nil answers
	// AUTH with 502 5.5.1.
	Auth Authenticator
	// AllowPlaintextAuth offers AUTH on a network session without TLS;
	// without it AUTH there gets 538 5.7.11 (RFC 4954 section 4: a
	// password may not cross an unprotected channel). For a client on a
	// network the administrator trusts to carry passwords in the clear.
	AllowPlaintextAuth bool
	// RequireAuth refuses MAIL before a successful AUTH with 530 5.7.0
	// (RFC 4954 section 6), as a submission service does (RFC 6409).
	RequireAuth bool
	// AuthFailureDelay is the wait before 535 5.7.8 for credentials that
	// do not match (Postfix's smtpd_error_sleep_time): a password guesser
	// gets one guess per delay and per session, and a reply to an unknown
	// user comes no sooner than one to a wrong password. 0 is no wait;
	// DefaultConfig sets DefaultAuthFailureDelay.
	AuthFailureDelay time.Duration

	// HandshakeTimeout bounds the TLS handshake, its own timeout apart
	// from CommandTimeout; past it the session ends without a reply.
	// NewSession sets DefaultHandshakeTimeout for 0.
	HandshakeTimeout time.Duration

	// ForbidImproperPipelining ends the session with 554 5.5.0 when the
	// client sends a command before the reply to one that RFC 2920
	// section 3.1 says must end a group (EHLO, HELO, DATA, NOOP, VRFY,
	// EXPN, TURN), or pipelines at all without EHLO having offered
	// PIPELINING (Postfix's smtpd_forbid_unauth_pipelining). Spammers'
	// software does this; real clients do not. A Local client is exempt:
	// a user's pipe carries the whole session in one piece.
	ForbidImproperPipelining bool
	// InputPending, when not nil, reports whether the client has sent
	// bytes that the reader has not taken in yet (a socket's receive
	// queue), so that the pipelining check also sees input that arrived
	// after the command line in a separate packet. Without it the check
	// sees only what the reader holds.
	InputPending func() bool

	// CheckHeader, when not nil, is given the header section of each
	// message before any of it is written to the MessageWriter: every
	// header line with its CRLF, up to but not including the empty line
	// that ends the section (RFC 5322 section 2.1), or the whole message
	// when it has no empty line. It returns header lines to add at the end
	// of the section (each ended by CRLF; nil for none), or a 4yz or 5yz
	// reply that refuses the message. The session reads the message to
	// its end either way. The header slice is valid only during the
	// call. Nil passes every message through unchanged.
	CheckHeader func(env *Envelope, header []byte) (add []byte, reject *Reply)
	// MaxHeaderSize bounds the header section CheckHeader sees, in
	// bytes; a longer one is refused with 550 5.6.0 (sendmail refuses
	// past its MaxHeadersLength, 32 KiB). NewSession sets
	// DefaultMaxHeaderSize for 0. Memory for it is taken only with
	// CheckHeader.
	MaxHeaderSize int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	// Hooks, in the order of a session (POE::Component::Server::SMTP's
	// events, Net::SMTP::Server's hooks). Each is optional. A hook runs
	// on the session's goroutine, so a slow one holds the session (and
	// its timeouts do not run meanwhile); hooks of different sessions
	// run concurrently. Every reply a hook returns is vetted as a
	// refusal: it must be a 4yz or 5yz reply in printable ASCII (RFC
	// 5321 section 4.2.1), or the client gets 451 4.3.0 instead, so that
	// no hook can make a refusal look like a success or inject a reply
	// line. The other hooks are Policy.CheckRecipient for recipients,
	// CheckHeader for the header section, and the Delivery, whose
	// MessageWriter.Commit decides the reply to the end of DATA.

	// Greet, when not nil, is asked about the client before the greeting
	// (RFC 5321 sections 3.1 and 4.3.1). Nil lets the session greet with
	// 220, Hostname and Greeting. A 220 reply replaces that greeting (it
	// should start with the server's name, RFC 5321 section 4.2, and
	// carry no enhanced code, RFC 2034 section 3). A 554 reply refuses
	// the session as RFC 5321 section 3.1 prescribes: the server then
	// waits for QUIT, answering every other command with 503 5.5.1
	// (StateRefused). Any other refusal, such as 421 (RFC 5321 section
	// 3.8) or 521 (RFC 7504), ends the session at once: Serve returns
	// ErrRefused.
	Greet func(c Client) *Reply
	// CheckHelo, when not nil, is asked about each EHLO and HELO before
	// it is carried out (RFC 5321 section 4.1.1.1): verb is VerbEHLO or
	// VerbHELO and name the argument as sent, a domain or an address
	// literal. Nil accepts; a reply refuses the command, which then
	// changes nothing: the state and any mail transaction stay as they
	// were. RFC 5321 section 4.1.4 allows checking the name against the
	// client's address, but not refusing mail only because they differ.
	CheckHelo func(c Client, verb Verb, name string) *Reply
	// CheckSender, when not nil, is asked about each MAIL FROM that
	// passed the syntax and SIZE checks (RFC 5321 section 4.1.1.2): env
	// is the envelope the command would start, with From (the
	// reverse-path, "" for <>), Body, SMTPUTF8 and Size set and no
	// recipients; it is a copy. Nil accepts; a reply, such as 550 5.7.1,
	// refuses the sender and no transaction starts. The null
	// reverse-path is the sender of delivery status notifications (RFC
	// 5321 section 4.5.5): refusing it refuses bounces.
	CheckSender func(env *Envelope) *Reply
	// OnClose, when not nil, is called once when Serve returns, after the
	// last reply was flushed, with how the session ended
	// (POE::Component::Server::SMTP's on_disconnect): for logs and
	// counters. It cannot change what Serve returns.
	OnClose func(Summary)
}

// Summary is what Config.OnClose is told about a session that ended.
type Summary struct {
	// Client is the session's peer.
	Client Client
	// Err is what Serve returns: nil after QUIT, an error wrapping
	// io.EOF when the client went away, ErrTimeout, and so on.
	Err error
	// Messages is the number of messages committed.
	Messages int
	// Errors is the number of refusals sent that count toward
	// Config.MaxErrors (every 4yz and 5yz reply but 452 4.5.3).
	Errors int
}

// Defaults that NewSession applies to a zero Config field.
const (
	// DefaultMaxLineLength is the command line limit in bytes, CRLF
	// included: 512 (RFC 5321 section 4.5.3.1.4) plus room for
	// extension parameters and UTF-8 addresses.
	DefaultMaxLineLength = 2048
	// DefaultMaxReceived is the Received: header count beyond which a
	// message is a loop: Postfix's hopcount_limit. RFC 5321 section 6.3
	// asks for a threshold of "normally at least 100"; no real mail
	// passes 50 hops.
	DefaultMaxReceived = 50
	// DefaultMaxHeaderSize bounds the header section captured for
	// Config.CheckHeader: twice sendmail's MaxHeadersLength, and far
	// more than real mail carries (RFC 5322 section 2.1.1 sets no total).
	DefaultMaxHeaderSize = 64 << 10
)

// Defaults of DefaultConfig, which are smtp-stdio's. NewSession applies
// only DefaultMaxLineLength, DefaultMaxReceived, DefaultMaxHeaderSize
// and DefaultSoftware by itself.
const (
	// DefaultCommandTimeout is RFC 5321 section 4.5.3.2.7's server
	// timeout for a command: 5 minutes.
	DefaultCommandTimeout = 5 * time.Minute
	// DefaultDataTimeout is the wait for each block of message text:
	// RFC 5321 section 4.5.3.2.6 gives the client 3 minutes per block.
	DefaultDataTimeout = 3 * time.Minute
	// DefaultMinDataRate is the slowest average DATA rate, in bytes per
	// second, after the first DefaultDataTimeout (see
	// Config.MinDataRate).
	DefaultMinDataRate = 500
	// DefaultMaxMessageSize is the largest message accepted, in bytes:
	// 25 MiB, advertised as SIZE (RFC 1870).
	DefaultMaxMessageSize = 25 << 20
	// DefaultMaxRecipients is RFC 5321 section 4.5.3.1.8's minimum
	// number of recipients a server must accept per message: 100.
	DefaultMaxRecipients = 100
	// DefaultMaxErrors is the number of refusals after which the session
	// replies 421 4.7.0 and ends.
	DefaultMaxErrors = 20
	// DefaultSoftware names this package in the Received: header.
	DefaultSoftware = "smtp-stdio"
	// DefaultHandshakeTimeout bounds a TLS handshake: 1 minute, as
	// Postfix's smtpd_starttls_timeout at its usual data rates.
	DefaultHandshakeTimeout = time.Minute
	// DefaultAuthFailureDelay is the wait before each 535 5.7.8:
	// 1 second, Postfix's smtpd_error_sleep_time.
	DefaultAuthFailureDelay = time.Second
)

// DefaultConfig returns a Config with the limits and timeouts of a
// server on the Internet: RFC 5321 section 4.5.3.2's timeouts
// (DefaultCommandTimeout, DefaultDataTimeout), DefaultMinDataRate,
// DefaultMaxMessageSize, DefaultMaxRecipients, DefaultMaxErrors and the
// defaults NewSession would apply. Set Hostname; Deadline, the end of
// the whole session, is left for each session to set.
func DefaultConfig() Config {
	return Config{
		MaxMessageSize: DefaultMaxMessageSize,
		MaxRecipients:  DefaultMaxRecipients,
		MaxLineLength:  DefaultMaxLineLength,
		MaxErrors:      DefaultMaxErrors,
		MaxReceived:    DefaultMaxReceived,
		MaxHeaderSize:  DefaultMaxHeaderSize,
		CommandTimeout: DefaultCommandTimeout,
		DataTimeout:    DefaultDataTimeout,
		MinDataRate:    DefaultMinDataRate,
		Software:       DefaultSoftware,

		AuthFailureDelay: DefaultAuthFailureDelay,
	}
}

// Client describes the peer of the session.
type Client struct {
	// Addr is the client's IP address and port; the zero value for a
	// local session.
	Addr netip.AddrPort
	// Local is true for a session on a pipe (no network peer): a local
	// user submitting mail.
	Local bool
}

// Envelope is the envelope built by MAIL FROM and RCPT TO (RFC 5321
// section 2.3.1), plus the session facts the spool records.
type Envelope struct {
	// Client is the session's peer.
	Client Client
	// Helo is the EHLO/HELO argument, sanitised for use in a header.
	Helo string
	// Protocol is "ESMTP" after EHLO, "SMTP" after HELO.
	Protocol string
	// From is the reverse-path without angle brackets; "" for <>.
	From string
	// To holds the accepted forward-paths without angle brackets, each
	// once (rcptKey), a bare postmaster qualified with
	// Config.PostmasterDomain.
	To []string
	// Body is the BODY= parameter: "", "7BIT" or "8BITMIME" (RFC 6152).
	Body string
	// SMTPUTF8 is true when MAIL FROM carried SMTPUTF8 (RFC 6531).
	SMTPUTF8 bool
	// Size is the SIZE= parameter in bytes, 0 when absent (RFC 1870).
	Size int64
	// TLSVersion names the TLS version of the session as Postfix does,
	// "TLSv1.2" or "TLSv1.3"; "" when the session is not encrypted.
	TLSVersion string
	// TLSCipher is the IANA name of the TLS cipher suite, such as
	// "TLS_AES_128_GCM_SHA256"; "" without TLS.
	TLSCipher string
	// AuthUser is the user name the client authenticated as with AUTH
	// (RFC 4954), "" when it did not. It lasts for the session (STARTTLS
	// clears it) and grants what the Policy says it grants.
	AuthUser string
	// Ret is MAIL FROM's RET= (RFC 3461 section 4.3): "FULL", "HDRS",
	// or "" when absent (the reporting MTA chooses).
	Ret string
	// EnvID is MAIL FROM's ENVID= decoded from xtext (RFC 3461 section
	// 4.4), "" when absent: it goes into every notice about the message
	// as Original-Envelope-Id (RFC 3464 section 2.2.1).
	EnvID string
	// DSN holds the DSN parameters of the recipients (RFC 3461 sections
	// 4.1 and 4.2): DSN[i] is those of To[i]. The session keeps it as
	// long as To; an Envelope built elsewhere may have it shorter or
	// nil, so read it through RcptDSN.
	DSN []RcptDSN
}

// RcptDSN returns the DSN parameters of To[i]: the zero RcptDSN (none
// given) when DSN does not reach that far.
func (e *Envelope) RcptDSN(i int) RcptDSN {
	if i >= 0 && i < len(e.DSN) {
		return e.DSN[i]
	}
	return RcptDSN{}
}

// Policy decides which recipients a session may use: the relay check.
type Policy interface {
	// CheckRecipient returns nil to accept the forward-path rcpt (without
	// angle brackets) for env, or the reply to refuse it with, such as
	// 550 5.7.1 for relaying denied.
	CheckRecipient(env *Envelope, rcpt string) *Reply
}

// Delivery takes accepted messages: in smtp-stdio, the spool.
type Delivery interface {
	// Begin starts a message for env when DATA is accepted. A returned
	// error that wraps a *Reply is sent as is; any other error is
	// answered 451 4.3.0.
	Begin(env *Envelope) (MessageWriter, error)
}

// MessageWriter receives the bytes of one message: the Received: header
// first, then the message, dot-unstuffed, with CRLF line endings.
type MessageWriter interface {
	io.Writer
	// QueueID names the message in the spool and in the trace header.
	QueueID() string
	// Commit makes the message durable. The session replies 250 only
	// after Commit returns nil; an error is answered as for Begin.
	Commit() error
	// Abort discards the message. It is called for every MessageWriter
	// that is not committed, and may be called after Commit.
	Abort() error
}

// Deadliner is implemented by stdin when it can time out a read (a socket,
// or a pipe in non-blocking mode). A nil Deadliner means no timeouts.
type Deadliner interface {
	SetReadDeadline(t time.Time) error
}
