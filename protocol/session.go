package protocol

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/domain"
)

var (
	// ErrTimeout is returned by Serve when the client sent nothing for
	// Config.CommandTimeout or Config.DataTimeout, sent message text
	// slower than Config.MinDataRate, or Config.Deadline passed; the
	// session replied 421 4.4.2 (RFC 5321 section 4.5.3.2).
	ErrTimeout = errors.New("protocol: client timed out")
	// ErrTooManyErrors is returned by Serve when the session had sent
	// more than Config.MaxErrors refusals (see countsAsError); it then
	// replied 421 4.7.0.
	ErrTooManyErrors = errors.New("protocol: too many errors")
	// ErrImproperPipelining is returned by Serve when the client
	// pipelined where RFC 2920 forbids it and
	// Config.ForbidImproperPipelining is set; the session replied 554
	// 5.5.0.
	ErrImproperPipelining = errors.New("protocol: improper pipelining")
	// ErrNonSMTP is returned by Serve when a command line was an HTTP
	// request or a header field, not SMTP; the session replied 221 2.7.0
	// and ended, as Postfix does.
	ErrNonSMTP = errors.New("protocol: non-SMTP command")
	// ErrRefused is returned by Serve when Config.Greet refused the
	// session with a reply other than 554; the session ended after it.
	ErrRefused = errors.New("protocol: session refused at the greeting")
	// ErrShutdown is returned by Serve when a Policy, Delivery or hook
	// answered a command with 421, or Session.Shutdown stopped the
	// session (421 4.3.2): the service is closing the transmission
	// channel, so the session ends after the reply (RFC 5321 section
	// 3.8).
	ErrShutdown = errors.New("protocol: 421, closing the transmission channel")
	// ErrChunkSize is returned by Serve when a BDAT command's chunk size
	// could not be read: where its chunk ends is unknown, so nothing
	// after it can be read as a command (RFC 3030 section 2). The
	// session replied 501 5.5.4.
	ErrChunkSize = errors.New("protocol: BDAT chunk size unreadable")

	errQuit        = errors.New("quit")
	errLineTooLong = errors.New("line too long")
	errTooSlow     = errors.New("data rate below the minimum")
)

// Session is the server side of one SMTP session (RFC 5321). It holds the
// dialog state and the envelope; Policy decides on recipients and Delivery
// takes messages. A Session serves once.
type Session struct {
	cfg      Config
	policy   Policy
	delivery Delivery
	log      *slog.Logger

	r *bufio.Reader
	w *bufio.Writer // replies, flushed before a read that may block
	d Deadliner
	// conn is the raw transport of ServeConn, nil for Serve: STARTTLS
	// hands it to crypto/tls and then reads and writes only the TLS
	// connection (tls.go).
	conn net.Conn
	// tlsConn is the TLS connection once TLS is up, for its close_notify
	// after QUIT.
	tlsConn *tls.Conn

	state    State
	env      Envelope        // Client, Helo, Protocol for the session; the rest per transaction
	rcpts    map[string]bool // rcptKey of each of env.To
	errors   int             // refusals sent so far (countsAsError)
	messages int             // messages committed
	line     []byte          // buffer for command lines
	header   []byte          // buffer for the header section, for CheckHeader
	chunked  *message        // the message of BDAT chunks under way (StateBdat), or nil
	slow     bool            // the read deadline set is MinDataRate's (dataDeadline)
	stopping atomic.Bool     // Shutdown was called (shutdown.go)
}

// NewSession returns a session with the client described by client. It
// fills in the defaults of cfg: MaxLineLength, MaxReceived, MaxHeaderSize,
// Now, a Hostname of "localhost", PostmasterDomain, Greeting and
// Software. A nil log discards; a nil policy refuses every
// recipient (550 5.7.1) and a nil delivery refuses every message (451
// 4.3.0), so a forgotten argument can neither panic nor make an open relay.
func NewSession(cfg Config, client Client, policy Policy, delivery Delivery, log *slog.Logger) *Session {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if policy == nil {
		policy = refuseAll{}
	}
	if delivery == nil {
		delivery = refuseAll{}
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.PostmasterDomain == "" {
		cfg.PostmasterDomain = cfg.Hostname
	}
	if c, err := domain.Canonical(cfg.PostmasterDomain); err == nil {
		cfg.PostmasterDomain = c
	}
	if cfg.Greeting == "" {
		cfg.Greeting = "ready"
	}
	if cfg.Software = commentText(cfg.Software); cfg.Software == "" {
		cfg.Software = DefaultSoftware
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = DefaultMaxLineLength
	}
	if cfg.MaxReceived <= 0 {
		cfg.MaxReceived = DefaultMaxReceived
	}
	if cfg.MaxHeaderSize <= 0 {
		cfg.MaxHeaderSize = DefaultMaxHeaderSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.TLS != nil && cfg.TLS.MinVersion < tls.VersionTLS12 {
		cfg.TLS = cfg.TLS.Clone()
		cfg.TLS.MinVersion = tls.VersionTLS12
	}
	return &Session{cfg: cfg, policy: policy, delivery: delivery, log: log, env: Envelope{Client: client}}
}

// Serve writes the 220 greeting, then reads commands from r and writes
// replies to w until the session ends. It returns nil after QUIT and 221;
// an error wrapping io.EOF or io.ErrUnexpectedEOF when r ends;
// ErrTimeout after 421 4.4.2 when a read times out or DATA or BDAT is
// too slow; ErrChunkSize after 501 5.5.4 for BDAT without a readable size;
// ErrTooManyErrors after 421 4.7.0; ErrImproperPipelining after 554
// 5.5.0; ErrNonSMTP after 221 2.7.0; ErrRefused after Config.Greet's
// refusal; ErrShutdown after any other 421 (RFC 5321 section 3.8); or
// the wrapped error of a failed read or write. d may be nil: then reads
// never time out. Serve writes nothing to w but replies, and
// every message it began is committed or aborted when it returns.
// Config.OnClose, if set, is told the same error.
func (s *Session) Serve(r *bufio.Reader, w io.Writer, d Deadliner) error {
	s.r, s.w, s.d = r, bufio.NewWriter(w), d
	err := s.serve()
	if s.chunked != nil { // the session ended between BDAT chunks
		s.abortMessage(s.chunked)
		s.chunked = nil
	}
	if ferr := s.w.Flush(); errors.Is(err, errQuit) {
		err = nil
		if ferr != nil {
			err = fmt.Errorf("protocol: writing reply: %w", ferr)
		} else if s.tlsConn != nil {
			// RFC 8446 section 6.1: end TLS with close_notify, so the
			// client can tell the end from a truncation.
			s.tlsConn.CloseWrite()
		}
	}
	s.log.Debug("session end", "messages", s.messages, "err", err)
	if s.cfg.OnClose != nil {
		s.cfg.OnClose(Summary{Client: s.env.Client, Err: err, Messages: s.messages, Errors: s.errors})
	}
	return err
}

func (s *Session) serve() error {
	if s.cfg.ImplicitTLS {
		// RFC 8314 section 3.3: TLS first, the greeting over it.
		if err := s.handshake(); err != nil {
			return err
		}
	}
	if err := s.answer(s.greet()); err != nil {
		return err
	}
	for {
		if err := s.answer(s.execute()); err != nil {
			return err
		}
		if s.cfg.MaxErrors > 0 && s.errors > s.cfg.MaxErrors {
			s.log.Info("too many errors", "errors", s.errors)
			return s.answer(replyTooManyErrors(s.cfg.Hostname), ErrTooManyErrors)
		}
	}
}

// greet returns the greeting (RFC 5321 section 4.3.1): 220, or what
// Config.Greet says. Its 554 leaves the session in StateRefused, any
// other refusal ends it.
func (s *Session) greet() (*Reply, error) {
	if s.cfg.Greet != nil {
		if r := s.cfg.Greet(s.env.Client); r != nil {
			if r.Code == 220 && len(r.Lines) > 0 && printableReply(r) {
				return r, nil
			}
			r = refusal(r)
			s.log.Info("session refused", "code", r.Code)
			if r.Code == 554 {
				s.state = StateRefused
				return r, nil
			}
			return r, ErrRefused
		}
	}
	return replyGreeting(s.cfg.Hostname, s.cfg.Greeting), nil
}

// execute reads one command line and carries it out: the checks every
// command passes, in order, then the handler from its row of the command
// table (commands.go). It returns the reply to write and, when the
// session ends with it, the error for Serve.
func (s *Session) execute() (*Reply, error) {
	// RFC 2920 section 3.2: send the replies before waiting for input.
	if !lineBuffered(s.r) {
		if err := s.flush(); err != nil {
			return nil, err
		}
	}
	s.setDeadline(s.cfg.CommandTimeout)
	line, err := readLine(s.r, s.line, s.cfg.MaxLineLength)
	s.line = line
	if errors.Is(err, errLineTooLong) {
		return s.refuse("", replyLineTooLong), nil
	} else if err != nil {
		return s.readError(err, "command")
	}
	if nonSMTP(line) {
		s.log.Warn("non-SMTP command", "line", truncate(line, 100), "state", s.state.String())
		return replyNonSMTP(s.cfg.Hostname), ErrNonSMTP
	}
	cmd, perr := ParseCommand(line)
	c := lookup(cmd.Verb)
	if s.improperPipelining(c, cmd) {
		s.log.Warn("improper pipelining", "verb", string(cmd.Verb), "state", s.state.String())
		return replyImproperPipelining, ErrImproperPipelining
	}
	var r *Reply
	switch {
	case c == nil || c.run == nil: // unknown, or known and not carried out
		r = replyFor(perr)
	case !c.isOffered(s): // carried out, but not in this session
		r = replyNotImpl
	case !c.after.has(s.state):
		r = outOfSequence(cmd.Verb, s.state)
	case perr != nil:
		r = replyFor(perr)
	default:
		return c.run(s, cmd)
	}
	r = s.refuse(cmd.Verb, r)
	if cmd.Verb == VerbBDAT { // its chunk follows, refused or not
		return s.skipChunk(cmd, r)
	}
	return r, nil
}

// answer is the one place where the reply to a command is written (send
// counts it): r, when not nil, then end is returned, the error that ends
// the session, or nil to go on. A failed write ends the session with the
// write error, except after a timeout: that client may well be gone, and
// ErrTimeout says more.
func (s *Session) answer(r *Reply, end error) error {
	if r == nil {
		return end
	}
	if err := s.send(r); err != nil && !errors.Is(end, ErrTimeout) {
		return err
	}
	if r.Code == 421 && end == nil {
		// A 421 from a Policy, a Delivery or a hook: whoever says the
		// service is not available closes the channel (RFC 5321
		// section 3.8), so the client does not go on into a session
		// the server has given up.
		s.log.Info("421 sent; closing", "enhanced", r.Enhanced)
		return ErrShutdown
	}
	return end
}

// hello carries out EHLO and HELO (RFC 5321 section 4.1.1.1): they end
// any transaction.
func (s *Session) hello(cmd Command) (*Reply, error) {
	if s.cfg.CheckHelo != nil {
		if r := s.cfg.CheckHelo(s.env.Client, cmd.Verb, cmd.Arg); r != nil {
			r = refusal(r)
			s.log.Info("helo refused", "helo", sanitizeHelo(cmd.Arg), "verb", string(cmd.Verb), "code", r.Code)
			return r, nil
		}
	}
	s.env.Helo = sanitizeHelo(cmd.Arg)
	s.env.Protocol = "SMTP"
	r := replyHELO(s.cfg.Hostname, s.env.Helo)
	if cmd.Verb == VerbEHLO {
		s.env.Protocol = "ESMTP"
		r = replyEHLO(s.cfg.Hostname, s.env.Helo, s.cfg.MaxMessageSize, s.cfg.Withhold, s.offersTLS(), s.advertisesAuth())
	}
	s.reset()
	s.log.Info("helo", "helo", s.env.Helo, "protocol", s.env.Protocol)
	return r, nil
}

// mail carries out MAIL FROM (RFC 5321 section 4.1.1.2).
func (s *Session) mail(cmd Command) (*Reply, error) {
	if s.cfg.RequireTLS && s.env.TLSVersion == "" {
		return s.refuse(cmd.Verb, replyNeedTLS), nil
	}
	if s.cfg.RequireAuth && s.env.AuthUser == "" {
		return s.refuse(cmd.Verb, replyAuthRequired), nil
	}
	if cmd.Params && s.env.Protocol != "ESMTP" {
		return s.refuse(cmd.Verb, replyParamNoEHLO), nil
	}
	if withheld(cmd, s.cfg.Withhold) || cmd.Auth != "" && !s.offersAuth() {
		return s.refuse(cmd.Verb, replyParamUnknown), nil
	}
	if s.cfg.MaxMessageSize > 0 && cmd.Size > s.cfg.MaxMessageSize {
		s.log.Info("mail", "from", cmd.Path, "size", cmd.Size, "code", replyTooBig.Code)
		return replyTooBig, nil
	}
	env := s.env
	env.From, env.Body, env.SMTPUTF8, env.Size, env.To = cmd.Path, cmd.Body, cmd.SMTPUTF8, cmd.Size, nil
	env.Ret, env.EnvID, env.DSN = cmd.Ret, cmd.EnvID, nil
	if s.cfg.CheckSender != nil {
		check := env
		if r := s.cfg.CheckSender(&check); r != nil {
			r = refusal(r)
			s.log.Info("mail", "from", cmd.Path, "size", cmd.Size, "code", r.Code)
			return r, nil
		}
	}
	s.env = env
	clear(s.rcpts)
	s.state = StateMail
	s.log.Info("mail", "from", cmd.Path, "size", cmd.Size, "code", replyMailOK.Code)
	return replyMailOK, nil
}

// withheld reports whether MAIL FROM or RCPT TO cmd carries a parameter
// of an extension the EHLO reply did not offer (Config.Withhold): BODY=
// of 8BITMIME (RFC 6152 section 2), SMTPUTF8 of SMTPUTF8 (RFC 6531
// section 3.4), RET=, ENVID=, NOTIFY= or ORCPT= of DSN (RFC 3461 section
// 4). RFC 5321 section 4.1.1.11 answers such a parameter with 555.
func withheld(cmd Command, w Extensions) bool {
	dsn := cmd.Ret != "" || cmd.EnvID != "" || cmd.Notify != 0 || cmd.ORcpt != ""
	return cmd.Body != "" && w&Ext8BITMIME != 0 || cmd.SMTPUTF8 && w&ExtSMTPUTF8 != 0 || dsn && w&ExtDSN != 0
}

// rcpt carries out RCPT TO (RFC 5321 section 4.1.1.3).
func (s *Session) rcpt(cmd Command) (*Reply, error) {
	if !s.env.SMTPUTF8 && !isASCII(cmd.Path) { // RFC 6531 section 3.4
		return s.refuse(cmd.Verb, replyNeedSMTPUTF8), nil
	}
	if cmd.Params && s.env.Protocol != "ESMTP" {
		return s.refuse(cmd.Verb, replyParamNoEHLO), nil
	}
	if withheld(cmd, s.cfg.Withhold) {
		return s.refuse(cmd.Verb, replyParamUnknown), nil
	}
	path := cmd.Path
	if path == "postmaster" { // the parser's name for <postmaster> in any case
		path = "postmaster@" + s.cfg.PostmasterDomain
	}
	key := rcptKey(path)
	r := replyRcptOK
	switch {
	case s.rcpts[key]:
		// Accepted before: say yes again, keep one copy.
	case s.cfg.MaxRecipients > 0 && len(s.env.To) >= s.cfg.MaxRecipients:
		r = replyTooManyRcpts
	default:
		if pr := s.policy.CheckRecipient(&s.env, cmd.Path); pr != nil {
			r = refusal(pr)
		} else {
			s.env.To = append(s.env.To, path)
			s.env.DSN = append(s.env.DSN, RcptDSN{Notify: cmd.Notify, ORcpt: cmd.ORcpt})
			if s.rcpts == nil {
				s.rcpts = map[string]bool{}
			}
			s.rcpts[key] = true
			s.state = StateRcpt
		}
	}
	if r == replyRcptOK {
		s.log.Info("rcpt accepted", "rcpt", path, "code", r.Code)
	} else {
		s.log.Info("rcpt rejected", "rcpt", path, "code", r.Code)
	}
	return r, nil
}

// rcptKey is the form in which two forward-paths are the same recipient:
// the local part exactly (RFC 5321 section 2.4: it may be case-sensitive)
// and the domain in its canonical form (domain.Canonical), so that
// "u@B\u00fccher.example" and "u@xn--bcher-kva.example" are one
// recipient. A domain without a canonical form keeps its bytes, ASCII
// letters folded.
func rcptKey(path string) string {
	d, ok := domain.Of(path)
	if !ok {
		return path
	}
	c, err := domain.Canonical(d)
	if err != nil {
		c = ascii.Lower(d)
	}
	return path[:len(path)-len(d)] + c
}

// reset ends the mail transaction (RFC 5321 section 4.1.1.5), keeping
// what EHLO or HELO said. A message of BDAT chunks under way is aborted
// (RFC 3030 section 2: RSET abandons it).
func (s *Session) reset() {
	if s.chunked != nil {
		s.abortMessage(s.chunked)
		s.chunked = nil
	}
	s.env = Envelope{Client: s.env.Client, Helo: s.env.Helo, Protocol: s.env.Protocol,
		TLSVersion: s.env.TLSVersion, TLSCipher: s.env.TLSCipher, AuthUser: s.env.AuthUser}
	clear(s.rcpts)
	s.state = StateInit
	if s.env.Protocol != "" {
		s.state = StateHelo
	}
}

// refuse logs r, the reply to a bad command, and returns it.
func (s *Session) refuse(v Verb, r *Reply) *Reply {
	s.log.Info("protocol error", "verb", string(v), "code", r.Code, "state", s.state.String())
	return r
}

// send buffers r for the client, counting it toward Config.MaxErrors
// when countsAsError says so. Every reply goes through here, so no
// refusal escapes the count: each command's from Session.answer, and the
// one intermediate reply, DATA's 354, from Session.data.
func (s *Session) send(r *Reply) error {
	if countsAsError(r) {
		s.errors++
	}
	if err := WriteReply(s.w, r); err != nil {
		return fmt.Errorf("protocol: writing reply: %w", err)
	}
	return nil
}

// flush writes the buffered replies.
func (s *Session) flush() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("protocol: writing reply: %w", err)
	}
	return nil
}

// countsAsError reports whether sending r counts toward Config.MaxErrors:
// every 4yz and 5yz reply does (RFC 5321 section 4.2.1), whatever it
// refuses, as chasquid counts every reply of 400 and over. A syntax
// error, a command out of sequence, a refused recipient (550 5.7.1
// relaying denied, the probe of address harvesting and relay testing),
// a refused message and a local failure all count, so that no kind of
// refusal can be asked for without limit.
//
// The one exception is 452 4.5.3 for a recipient past
// Config.MaxRecipients (replyTooManyRcpts). It is sent before any check
// of the address, so it tells a prober nothing, and RFC 5321 section
// 4.5.3.1.10 expects a client to send the rest in a later transaction:
// a pipelining client with more than MaxRecipients+MaxErrors recipients
// would otherwise lose its session, and its message, every time it
// tried. Postfix spares these replies too, up to
// smtpd_recipient_overshoot_limit (1,000); here they cost no more than
// a NOOP, which counts for nothing either. Refusals that end the session
// (421, 554 5.5.0) are counted but end it anyway.
func countsAsError(r *Reply) bool {
	return r.Code >= 400 && r != replyTooManyRcpts
}

// replyFor returns the *Reply that err wraps, or 451 4.3.0.
func replyFor(err error) *Reply {
	if r, ok := errors.AsType[*Reply](err); ok {
		return refusal(r)
	}
	return replyLocalError
}

// refusal vets a reply that refuses something, such as one from a Policy
// or a Delivery: it must be a 4yz or 5yz reply (RFC 5321 section 4.2.1)
// in printable ASCII, or the client could take a refusal for a success or
// read a line break as a reply of its own. Anything else is 451 4.3.0.
func refusal(r *Reply) *Reply {
	if r.Code < 400 || r.Code > 599 || !printableReply(r) {
		return replyLocalError
	}
	return r
}

// printableReply reports whether the enhanced code and every line of r
// are printable ASCII: no line break the client could read as a reply
// of its own.
func printableReply(r *Reply) bool {
	if !printable(r.Enhanced) {
		return false
	}
	for _, l := range r.Lines {
		if !printable(l) {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// truncate returns at most n bytes of line as a string for a log
// attribute; slog quotes what is not printable.
func truncate(line []byte, n int) string {
	if len(line) > n {
		line = line[:n]
	}
	return string(line)
}

// Messages returns the number of messages committed so far.
func (s *Session) Messages() int { return s.messages }

// refuseAll stands in for a nil Policy or Delivery.
type refuseAll struct{}

// CheckRecipient implements Policy: 550 5.7.1 for every recipient.
func (refuseAll) CheckRecipient(*Envelope, string) *Reply {
	return &Reply{Code: 550, Enhanced: "5.7.1", Lines: []string{"Recipient refused"}}
}

// Begin implements Delivery: 451 4.3.0 for every message.
func (refuseAll) Begin(*Envelope) (MessageWriter, error) {
	return nil, &Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"Requested action aborted: local error in processing"}}
}
