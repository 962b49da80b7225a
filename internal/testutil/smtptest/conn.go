package smtptest

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync/atomic"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// Script decides a server's replies. Each function is optional: nil
// accepts. A function returns nil to accept, or the refusal, a 4yz or 5yz
// reply (see Reply); it may also drop the connection, hang it up or
// block (Conn.Drop, Conn.Hangup, Conn.Hang). The functions run on the
// connection's goroutine: one that blocks stalls that connection alone.
type Script struct {
	// Greet is asked before the greeting (RFC 5321 section 4.3.1): nil
	// greets with 220; a 554 or 421 refuses the session (see
	// protocol.Config.Greet). A Greet that hangs is a server that
	// accepts connections and never greets. protocol.Session only.
	Greet func(c *Conn) *protocol.Reply
	// Mail is asked about each MAIL FROM; from is "" for <>.
	Mail func(c *Conn, from string) *protocol.Reply
	// Rcpt is asked about each RCPT TO.
	Rcpt func(c *Conn, to string) *protocol.Reply
	// Data is asked about each message received to its end: nil records
	// the transaction and answers 250.
	Data func(c *Conn, data []byte) *protocol.Reply
}

// Conn is one connection to the server as a Script sees it. Without the
// network (Server.Connect) it is what an in-memory transport drives: its
// Mail, Rcpt and Data run the Script as a session would.
type Conn struct {
	// N numbers the connections of a server, from 1.
	N int
	// Tx counts the MAIL commands on this connection that reached the
	// script, the current one included: 2 in the second transaction.
	Tx int

	srv  *Server
	wire *wire // nil without the network
}

// Connect opens a connection without the network, counted as a
// connection of the server.
func (s *Server) Connect() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns++
	return &Conn{N: s.conns, srv: s}
}

// Drop closes the connection at once: the client never reads the reply
// the script returns. Without the network it does nothing.
func (c *Conn) Drop() {
	if c.wire != nil {
		c.wire.Conn.Close()
	}
}

// Hangup closes the connection once the reply the script returns has
// been sent: when the server next reads from the client, as a server does
// after 421 (RFC 5321 section 3.8). Commands that the client pipelined
// behind are still answered. Without the network it does nothing.
func (c *Conn) Hangup() {
	if c.wire != nil {
		c.wire.hangup.Store(true)
	}
}

// Hang blocks until the server is closed: a server that stops answering,
// for the client's timeouts.
func (c *Conn) Hang() { <-c.srv.closed }

// Mail runs the script for MAIL FROM:<from>, a new transaction.
func (c *Conn) Mail(from string) *protocol.Reply {
	c.Tx++
	if f := c.srv.current().Mail; f != nil {
		return f(c, from)
	}
	return nil
}

// Rcpt runs the script for RCPT TO:<to>.
func (c *Conn) Rcpt(to string) *protocol.Reply {
	if f := c.srv.current().Rcpt; f != nil {
		return f(c, to)
	}
	return nil
}

// Data runs the script for the message of tx, received to its end, and
// records tx when it is accepted. A message with a line longer than
// Options.MaxLineLength is refused first, as a strict server refuses it
// while reading.
func (c *Conn) Data(tx Tx) *protocol.Reply {
	if n := c.srv.opts.MaxLineLength; n > 0 && longestLine(tx.Data) > n {
		return Reply(500, "5.5.2", "Line longer than "+strconv.Itoa(n)+" octets (RFC 5321 section 4.5.3.1.6)")
	}
	c.srv.mu.Lock()
	c.srv.datas++
	c.srv.mu.Unlock()
	if f := c.srv.current().Data; f != nil {
		if r := f(c, tx.Data); r != nil {
			return r
		}
	}
	tx.Conn = c.N
	c.srv.mu.Lock()
	c.srv.txs = append(c.srv.txs, tx)
	c.srv.mu.Unlock()
	return nil
}

// greet runs the script before the greeting.
func (c *Conn) greet() *protocol.Reply {
	if f := c.srv.current().Greet; f != nil {
		return f(c)
	}
	return nil
}

// longestLine returns the length of the longest line of b, its line end
// (LF or CRLF) included.
func longestLine(b []byte) int {
	n := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n') + 1
		if i == 0 {
			i = len(b)
		}
		n = max(n, i)
		b = b[i:]
	}
	return n
}

// wire is an accepted connection. After Conn.Hangup, its next read
// closes it and returns io.EOF: by then the session has sent every reply
// it had (protocol.Session flushes before a read that may block, go-smtp
// writes each reply as it goes).
type wire struct {
	net.Conn
	hangup atomic.Bool
}

func (w *wire) Read(p []byte) (int, error) {
	if w.hangup.Load() {
		w.Conn.Close()
		return 0, io.EOF
	}
	return w.Conn.Read(p)
}
