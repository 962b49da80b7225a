package receiver

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// TLS for smtp-stdio: the settings' checks, the key pair read at each
// session, and the net.Conn that crypto/tls needs, made of the two
// descriptors a launcher hands over.

// checkTLS checks the TLS settings without reading the files: both of
// SMTP_TLS_CERT and SMTP_TLS_KEY or neither, a known SMTP_TLS_MODE,
// and no SMTP_REQUIRE_TLS or implicit mode without a key pair (no
// client could ever send mail).
func (c *Config) checkTLS() error {
	bad := func(name, why string) error {
		return fmt.Errorf("config: %s_%s %s", Prefix, name, why)
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return bad("TLS_KEY", "must be set with SMTP_TLS_CERT")
	case c.TLSKey != "" && c.TLSCert == "":
		return bad("TLS_CERT", "must be set with SMTP_TLS_KEY")
	case c.TLSMode != "starttls" && c.TLSMode != "implicit":
		return bad("TLS_MODE", "must be starttls or implicit")
	case c.TLSCert == "" && c.TLSMode == "implicit":
		return bad("TLS_MODE", "implicit needs SMTP_TLS_CERT and SMTP_TLS_KEY")
	case c.TLSCert == "" && c.RequireTLS:
		return bad("REQUIRE_TLS", "needs SMTP_TLS_CERT and SMTP_TLS_KEY")
	}
	return nil
}

// tlsConfig reads the key pair and returns the server's TLS
// configuration (TLS 1.2 at least; Go's cipher suites and curves), or
// nil when TLS is not configured. It runs at every session, so that a
// renewed certificate is used by the next connection without a
// restart. An unreadable file or a key that does not match the
// certificate is a configuration error naming the variable: the session
// is refused with 421, never served in plaintext instead.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	certPEM, err := os.ReadFile(c.TLSCert)
	if err != nil {
		return nil, fmt.Errorf("config: %s_TLS_CERT: %w", Prefix, err)
	}
	keyPEM, err := os.ReadFile(c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("config: %s_TLS_KEY: %w", Prefix, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("config: %s_TLS_CERT and %s_TLS_KEY (%s, %s): %w", Prefix, Prefix, c.TLSCert, c.TLSKey, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// Each session is a process with ticket keys of its own: a
		// ticket could never be used, so none is made or sent (until
		// keys are shared between processes, as Postfix's tlsmgr does).
		SessionTicketsDisabled: true,
	}, nil
}

// stdioConn is the net.Conn of a session on two descriptors: reads from
// standard input, writes to standard output (one socket twice under
// inetd, tcpserver and systemd; two pipes under socat or a test).
// Deadlines go to each file: they work on a socket and on a pipe in
// non-blocking mode (peer.PollableFile), and return an error otherwise,
// which the session ignores (the handshake then has only its context
// to stop it).
type stdioConn struct {
	in, out *os.File
}

// Read implements net.Conn: the client's bytes, from standard input.
func (c stdioConn) Read(p []byte) (int, error) { return c.in.Read(p) }

// Write implements net.Conn: replies, to standard output.
func (c stdioConn) Write(p []byte) (int, error) { return c.out.Write(p) }

// Close closes both files; crypto/tls calls it to interrupt a
// handshake that ran out of time.
func (c stdioConn) Close() error {
	err := c.in.Close()
	if err2 := c.out.Close(); err == nil {
		err = err2
	}
	return err
}

// CloseWrite shuts down the sending side of standard output when it is
// a socket, so that the client reads the last reply and then the end
// of the stream (lingerClose); on a pipe it does nothing.
func (c stdioConn) CloseWrite() error {
	// Through SyscallConn: Fd would put the descriptor in blocking mode
	// and end its deadlines.
	rc, err := c.out.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

// LocalAddr implements net.Conn with a stand-in (see stdioAddr).
func (c stdioConn) LocalAddr() net.Addr { return stdioAddr{} }

// RemoteAddr implements net.Conn with a stand-in (see stdioAddr).
func (c stdioConn) RemoteAddr() net.Addr { return stdioAddr{} }

// SetDeadline implements net.Conn: the read deadline on standard input
// and the write deadline on standard output; the first error is returned.
func (c stdioConn) SetDeadline(t time.Time) error {
	err := c.in.SetReadDeadline(t)
	if err2 := c.out.SetWriteDeadline(t); err == nil {
		err = err2
	}
	return err
}

// SetReadDeadline implements net.Conn on standard input.
func (c stdioConn) SetReadDeadline(t time.Time) error { return c.in.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn on standard output.
func (c stdioConn) SetWriteDeadline(t time.Time) error { return c.out.SetWriteDeadline(t) }

// stdioAddr stands for both ends' addresses: the peer is found from the
// socket or the launcher's variables (internal/peer), not from here.
type stdioAddr struct{}

// Network implements net.Addr: "stdio".
func (stdioAddr) Network() string { return "stdio" }

// String implements net.Addr: "stdio".
func (stdioAddr) String() string { return "stdio" }
