// Package smtptest is the one fake smarthost of the tests: an SMTP
// server on 127.0.0.1 built on protocol.Session, so that every test that
// delivers to it also runs the library. It records each transaction it
// accepts (envelope and bytes, as the client sent them) and answers as a
// Script says: a test can refuse a sender, a recipient or a message with
// any reply, drop or hang up the connection, or stall it. The limits a
// strict server has (SIZE, recipients per message, line length) and the
// extensions it offers are Options.
//
// The same Script also runs without the network (Server.Connect), for an
// in-memory transport that must answer as the smarthost does.
//
// protocol/ does not do STARTTLS or AUTH (it answers 502), and it never
// sends a reply line that is not printable ASCII. For the tests that need
// those, the server runs go-smtp's server instead, behind the same Script
// and records: Options.StartTLS, Options.User and Options.GoSMTP choose
// it. Implicit TLS (Options.ImplicitTLS) needs no go-smtp: the session
// runs over the TLS connection.
package smtptest

import (
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// Options configure a Server. The zero value is a server that offers
// every extension protocol.Session has, with no limits, and accepts
// everything.
type Options struct {
	// Script decides the replies; Server.SetScript replaces it.
	Script Script
	// Hostname names the server in its greeting and EHLO reply;
	// "mx.test" for "".
	Hostname string
	// MaxMessageSize is advertised as SIZE (RFC 1870) and enforced; 0
	// advertises SIZE without a number.
	MaxMessageSize int64
	// MaxRecipients is the most RCPT accepted per transaction; the next
	// gets 452 4.5.3 (RFC 5321 section 4.5.3.1.10). 0 is no limit.
	MaxRecipients int
	// MaxLineLength is the longest line accepted, CRLF included, of
	// commands and of message text, for a strict server (RFC 5321
	// section 4.5.3.1.6 sets 1000 octets for a line of text). A message
	// with a longer line is refused with 500 5.5.2 at its end and not
	// recorded (go-smtp's server answers 500 5.4.0 at the line and
	// closes). 0 leaves protocol's limit for commands and none for text.
	MaxLineLength int
	// Withhold is the set of extensions that the EHLO reply leaves out
	// (protocol.Config.Withhold): a server without 8BITMIME or SMTPUTF8.
	// go-smtp's server can leave out SMTPUTF8 only.
	Withhold protocol.Extensions
	// ImplicitTLS, when not nil, makes the listener speak TLS from the
	// first byte (RFC 8314) with this configuration.
	ImplicitTLS *tls.Config
	// StartTLS, when not nil, offers STARTTLS (RFC 3207) with this
	// configuration: go-smtp's server.
	StartTLS *tls.Config
	// User and Password, when User is not "", offer AUTH PLAIN (RFC
	// 4954), and only these credentials pass: go-smtp's server. It offers
	// AUTH without TLS too, so that a client's refusal to send a password
	// in clear text is its own.
	User, Password string
	// GoSMTP serves with go-smtp's server even without StartTLS or User,
	// for what protocol.Session will not send: reply text that is not
	// printable ASCII.
	GoSMTP bool
}

// timeout bounds each command and each block of message text: a client
// that a test left hanging cannot hold a session for longer.
const timeout = 30 * time.Second

// hostname is the server's name.
func (o *Options) hostname() string {
	if o.Hostname == "" {
		return "mx.test"
	}
	return o.Hostname
}

// goSMTP reports whether the options need go-smtp's server.
func (o *Options) goSMTP() bool { return o.GoSMTP || o.StartTLS != nil || o.User != "" }

// Tx is one transaction that the server accepted: recorded when its
// final 250 was decided, before the client could read it, as a real
// server commits before it answers.
type Tx struct {
	// Conn is the number of the connection that carried it (Conn.N).
	Conn int
	// From is the reverse-path, "" for <>; To the accepted
	// forward-paths, in order.
	From string
	To   []string
	// Body, SMTPUTF8 and Size are the MAIL FROM parameters: BODY= (""
	// when absent, RFC 6152), SMTPUTF8 (RFC 6531) and SIZE= (0 when
	// absent, RFC 1870).
	Body     string
	SMTPUTF8 bool
	Size     int64
	// TLS is true when the transaction went over TLS.
	TLS bool
	// Ret and EnvID are MAIL FROM's RET= and ENVID= (RFC 3461), and
	// Notify and ORcpt each accepted recipient's NOTIFY= (as
	// protocol.Notify's String) and ORCPT=, "" where absent: what a
	// DSN-capable next hop was given.
	Ret, EnvID    string
	Notify, ORcpt []string
	// Data is the message as the client sent it, dot-unstuffed, without
	// the Received: header that the server adds.
	Data []byte
}

// Server is a fake smarthost. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the host:port it listens on; "" for a server made by New.
	Addr string

	opts   Options
	closed chan struct{} // closed by Close: Conn.Hang returns
	once   sync.Once
	ln     net.Listener
	gs     *smtp.Server   // go-smtp's server, when the options need it
	wg     sync.WaitGroup // the accept loop and protocol sessions
	mu     sync.Mutex     // guards what follows
	script Script
	wires  []*wire
	txs    []Tx
	conns  int
	datas  int
	auths  int
}

// New returns a server that does not listen: its Script runs through
// Connect, for an in-memory transport.
func New(opts Options) *Server {
	return &Server{opts: opts, script: opts.Script, closed: make(chan struct{})}
}

// Start starts a server on 127.0.0.1:0 for the duration of the test. When
// the test ends it closes the server (Close) and fails the test if a
// session is still running 10 seconds later: a script that blocks must
// be released by the test, or use Conn.Hang.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	if opts.goSMTP() && (opts.Script.Greet != nil || opts.Withhold&protocol.Ext8BITMIME != 0) {
		t.Fatal("smtptest: Script.Greet and withholding 8BITMIME need protocol.Session, not go-smtp's server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	s.ln = &listener{Listener: l, s: s}
	if opts.ImplicitTLS != nil {
		s.ln = tls.NewListener(s.ln, opts.ImplicitTLS)
	}
	if opts.goSMTP() {
		s.gs = s.newGoSMTP()
		go s.gs.Serve(s.ln)
	} else {
		s.wg.Add(1)
		go s.accept()
	}
	t.Cleanup(func() {
		if !s.close(10 * time.Second) {
			t.Errorf("smtptest: smarthost %s: a session still runs 10s after the test: a script blocks", s.Addr)
		}
	})
	return s
}

// Close stops the server: it stops listening, closes every connection and
// releases every Conn.Hang. It does not wait for the sessions.
func (s *Server) Close() { s.close(0) }

// close closes the server and waits up to wait for its sessions to end;
// it reports whether they did.
func (s *Server) close(wait time.Duration) bool {
	s.once.Do(func() {
		close(s.closed)
		if s.ln != nil {
			s.ln.Close()
		}
		if s.gs != nil {
			s.gs.Close()
		}
		s.mu.Lock()
		for _, w := range s.wires {
			w.Conn.Close()
		}
		s.mu.Unlock()
	})
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(wait):
		return false
	}
}

// SetScript replaces the script for the commands to come.
func (s *Server) SetScript(sc Script) {
	s.mu.Lock()
	s.script = sc
	s.mu.Unlock()
}

func (s *Server) current() Script {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.script
}

// Transactions returns a copy of the transactions accepted so far, in
// order.
func (s *Server) Transactions() []Tx {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Tx(nil), s.txs...)
}

// RcptCount counts the accepted deliveries to each recipient.
func (s *Server) RcptCount() map[string]int {
	return CountRcpts(s.Transactions())
}

// CountRcpts counts the deliveries to each recipient in txs.
func CountRcpts(txs []Tx) map[string]int {
	m := map[string]int{}
	for _, tx := range txs {
		for _, r := range tx.To {
			m[r]++
		}
	}
	return m
}

// Conns returns the number of connections so far (of Connect calls, for
// a server made by New).
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Datas returns the number of messages received to their end, accepted
// or refused by the script (a message cut short is not counted, nor one
// refused for a long line).
func (s *Server) Datas() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.datas
}

// AuthTries returns the number of AUTH attempts (Options.User).
func (s *Server) AuthTries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

// Reply is a reply for a Script: text may hold several lines, split at
// "\n" as go-smtp's server splits them.
func Reply(code int, enhanced, text string) *protocol.Reply {
	return &protocol.Reply{Code: code, Enhanced: enhanced, Lines: strings.Split(text, "\n")}
}

// listener registers each connection it accepts, as a wire, so that
// Close can close it and a Script can drop or hang it up.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &wire{Conn: c}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	select {
	case <-l.s.closed: // accepted as Close ran: it closed the others
		c.Close()
	default:
		l.s.wires = append(l.s.wires, w)
	}
	return w, nil
}
