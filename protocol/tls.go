package protocol

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
)

// TLS on the session's own connection (RFC 3207 STARTTLS, RFC 8314
// implicit TLS). The design: ServeConn is given the raw transport as a
// net.Conn (smtp-stdio joins stdin and stdout into one); the session
// reads it through a bufio.Reader until STARTTLS, then runs crypto/tls
// on the raw conn and from then on reads and writes only the TLS
// connection, through new buffers. The old reader is dropped, never read
// again: nothing the client sent in plaintext can be taken for a command
// sent over TLS, and once TLS is up its end (an alert, close_notify, an
// error) is the end of the session, never a way back to plaintext.

var (
	// ErrTLS is returned by Serve when the TLS handshake failed or took
	// longer than Config.HandshakeTimeout. The session ended without a
	// reply: a reply in plaintext after a failed handshake would be read
	// by no one honest.
	ErrTLS = errors.New("protocol: TLS handshake failed")
	// ErrPipelinedSTARTTLS is returned by Serve when the client sent
	// more input after STARTTLS before its reply (CVE-2011-0411, command
	// injection); the session replied 554 5.5.0 in plaintext and ended
	// without starting TLS.
	ErrPipelinedSTARTTLS = errors.New("protocol: input pipelined after STARTTLS")
)

// connBuffer is the size of ServeConn's read buffers, in bytes: room for
// a large pipelined group or a block of message text in one read.
const connBuffer = 64 << 10

// ServeConn serves the session on c, as Serve does on a reader and a
// writer of c with c as the Deadliner, and with Config.TLS offers
// STARTTLS or, with Config.ImplicitTLS, starts TLS before the greeting.
// It returns what Serve returns, or ErrTLS or ErrPipelinedSTARTTLS.
// ServeConn sets c's read deadlines but never closes it, except when the
// handshake times out on a conn that ignores deadlines (crypto/tls
// closes it then, to interrupt the read).
func (s *Session) ServeConn(c net.Conn) error {
	s.conn = c
	r := connReaders.Get().(*bufio.Reader)
	r.Reset(c)
	defer func() {
		r.Reset(nil)
		connReaders.Put(r)
	}()
	return s.Serve(r, c, c)
}

// connReaders are ServeConn's read buffers, kept for the next session: a
// server of many sessions then neither allocates nor clears 64 KiB for
// each connection.
var connReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, connBuffer) }}

// offersTLS reports whether the session can start TLS now: it has a TLS
// configuration and a connection (ServeConn), and TLS is not up yet.
func (s *Session) offersTLS() bool {
	return s.cfg.TLS != nil && s.conn != nil && s.env.TLSVersion == ""
}

// starttls carries out STARTTLS (RFC 3207 section 4): 220, then the
// handshake on the raw connection. Any input already read past the
// command line is refused first (554 5.5.0 and the end of the session),
// since it was sent in plaintext (CVE-2011-0411; Momentum's "reject"
// policy; Postfix discards it). After the handshake the session is back
// at its start, as RFC 3207 section 4.2 requires: no EHLO, no
// transaction; the client must send EHLO again, and STARTTLS is no
// longer offered.
func (s *Session) starttls(cmd Command) (*Reply, error) {
	if s.r.Buffered() > 0 {
		s.log.Warn("input pipelined after STARTTLS; closing", "bytes", s.r.Buffered())
		return replyPipelinedTLS, ErrPipelinedSTARTTLS
	}
	if err := s.send(replyReadyTLS); err != nil {
		return nil, err
	}
	if err := s.flush(); err != nil {
		return nil, err
	}
	if err := s.handshake(); err != nil {
		return nil, err
	}
	s.env = Envelope{Client: s.env.Client, TLSVersion: s.env.TLSVersion, TLSCipher: s.env.TLSCipher}
	s.reset()
	return nil, nil
}

// handshake runs the server side of a TLS handshake on the raw
// connection within Config.HandshakeTimeout (and Config.Deadline), and
// on success puts the session's reader, writer and deadlines on the TLS
// connection and records the version and cipher. It returns an error
// wrapping ErrTLS otherwise.
func (s *Session) handshake() error {
	if s.cfg.TLS == nil || s.conn == nil {
		return fmt.Errorf("%w: no TLS configuration or connection (ServeConn)", ErrTLS)
	}
	tc := tls.Server(s.conn, s.cfg.TLS)
	s.setDeadline(s.cfg.HandshakeTimeout)
	// The context stops a handshake on a conn that ignores deadlines.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.log.Info("TLS handshake failed", "err", err)
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	st := tc.ConnectionState()
	s.env.TLSVersion, s.env.TLSCipher = tlsVersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
	s.r, s.w, s.d, s.tlsConn = bufio.NewReaderSize(tc, connBuffer), bufio.NewWriter(tc), tc, tc
	s.log.Info("TLS established", "tls_version", s.env.TLSVersion, "tls_cipher", s.env.TLSCipher, "sni", st.ServerName)
	return nil
}

// tlsVersionName names a TLS version as Postfix's Received: header and
// logs do: "TLSv1.3".
func tlsVersionName(v uint16) string {
	return strings.Replace(tls.VersionName(v), "TLS 1", "TLSv1", 1)
}

// cipherBits is the symmetric key size of a cipher suite named by its
// IANA name, for the Received: header's "(128/128 bits)"; 0 when
// unknown.
func cipherBits(name string) int {
	switch {
	case strings.Contains(name, "AES_128"):
		return 128
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	case strings.Contains(name, "3DES"):
		return 168
	}
	return 0
}
