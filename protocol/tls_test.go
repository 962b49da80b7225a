package protocol

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// testCert makes a throwaway self-signed certificate for mx.example.net
// and returns the server's TLS configuration and a client's that trusts
// it.
func testCert(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.example.net"},
		DNSNames: []string{"mx.example.net"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "mx.example.net"}
}

// tlsDialog is the client end of a session served by ServeConn over
// net.Pipe.
type tlsDialog struct {
	t    *testing.T
	raw  net.Conn
	conn net.Conn // raw, then the TLS client
	r    *bufio.Reader
	done chan error
	d    *fakeDelivery
	mail int // CheckSender calls: MAIL commands carried out
	// session is the server's session, for Shutdown.
	session *Session
}

func startTLSDialog(t *testing.T, cfg Config) *tlsDialog {
	t.Helper()
	srv, cli := net.Pipe()
	t.Cleanup(func() { cli.Close(); srv.Close() })
	td := &tlsDialog{t: t, raw: cli, conn: cli, r: bufio.NewReader(cli), done: make(chan error, 1), d: &fakeDelivery{}}
	cfg.CheckSender = func(*Envelope) *Reply { td.mail++; return nil }
	// Read deadlines are real ones: testNow is in the past.
	cfg.Now = time.Now
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	sess := NewSession(cfg, testClient, &relayPolicy{}, td.d, discardLogger())
	td.session = sess
	go func() { td.done <- sess.ServeConn(srv) }()
	return td
}

func (td *tlsDialog) send(s string) {
	td.t.Helper()
	if _, err := io.WriteString(td.conn, s); err != nil {
		td.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one reply, all its lines, joined by "\n".
func (td *tlsDialog) reply() string {
	td.t.Helper()
	var lines []string
	for {
		l, err := td.r.ReadString('\n')
		if err != nil {
			td.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

func (td *tlsDialog) expect(cmd, prefix string) string {
	td.t.Helper()
	if cmd != "" {
		td.send(cmd + "\r\n")
	}
	r := td.reply()
	if !strings.HasPrefix(r, prefix) {
		td.t.Fatalf("%q: got %q, want %q...", cmd, r, prefix)
	}
	return r
}

// upgrade runs the client's handshake.
func (td *tlsDialog) upgrade(client *tls.Config) {
	td.t.Helper()
	tc := tls.Client(td.raw, client)
	if err := tc.Handshake(); err != nil {
		td.t.Fatalf("handshake: %v", err)
	}
	td.conn, td.r = tc, bufio.NewReader(tc)
}

// end waits for Serve to return, reading what the server still sends
// (its close_notify after QUIT).
func (td *tlsDialog) end() error {
	go io.Copy(io.Discard, td.r)
	select {
	case err := <-td.done:
		return err
	case <-time.After(5 * time.Second):
		td.t.Fatal("session did not end")
		return nil
	}
}

func TestSTARTTLS(t *testing.T) {
	server, client := testCert(t)
	cfg := testConfig()
	cfg.TLS = server
	td := startTLSDialog(t, cfg)
	td.expect("", "220 mx.example.net ESMTP")
	td.expect("STARTTLS", "503 5.5.1 Send EHLO/HELO first")
	if r := td.expect("EHLO c.example", "250-"); !strings.HasSuffix(r, "\n250 STARTTLS") {
		t.Errorf("EHLO before TLS does not offer STARTTLS last: %q", r)
	}
	td.expect("HELP", "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS;")
	td.expect("MAIL FROM:<x@c.example>", "250 ")
	td.expect("STARTTLS", "503 5.5.1 STARTTLS not allowed during a mail transaction")
	td.expect("RCPT TO:<b@d.example>", "250 ")
	td.expect("STARTTLS", "503 5.5.1 STARTTLS not allowed during a mail transaction")
	td.expect("RSET", "250 ")
	td.expect("STARTTLS extra", "501 5.5.4")
	td.expect("STARTTLS", "220 2.0.0 Ready to start TLS")
	td.upgrade(client)
	// RFC 3207 section 4.2: the session starts again; EHLO first.
	td.expect("MAIL FROM:<a@c.example>", "503 5.5.1 Send EHLO/HELO first")
	if r := td.expect("EHLO c.example", "250-"); strings.Contains(r, "STARTTLS") {
		t.Errorf("EHLO over TLS offers STARTTLS: %q", r)
	}
	td.expect("HELP", "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY;")
	td.expect("STARTTLS", "502 5.5.1")
	td.expect("MAIL FROM:<a@c.example>", "250 ")
	td.expect("RCPT TO:<b@d.example>", "250 ")
	td.expect("DATA", "354")
	td.expect("Subject: x\r\n\r\nhi\r\n.", "250 2.0.0 OK queued as Q1")
	td.expect("QUIT", "221")
	if err := td.end(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c := td.d.committed()
	if len(c) != 1 {
		t.Fatalf("%d messages committed, want 1", len(c))
	}
	if c[0].env.TLSVersion != "TLSv1.3" || c[0].env.TLSCipher == "" {
		t.Errorf("envelope TLS %q %q", c[0].env.TLSVersion, c[0].env.TLSCipher)
	}
	want := "Received: from c.example ([192.0.2.1])\r\n\t(using TLSv1.3 with cipher " + c[0].env.TLSCipher + " ("
	if got := c[0].buf.String(); !strings.HasPrefix(got, want) || !strings.Contains(got, "bits))\r\n\tby mx.example.net (smtp-stdio) with ESMTPS id Q1;") {
		t.Errorf("trace header:\n%s", got)
	}
}

// TestSTARTTLSInjection is CVE-2011-0411: a command sent with STARTTLS
// in one write is never carried out, before or after TLS.
func TestSTARTTLSInjection(t *testing.T) {
	for _, forbid := range []bool{false, true} {
		server, _ := testCert(t)
		cfg := testConfig()
		cfg.TLS, cfg.ForbidImproperPipelining = server, forbid
		td := startTLSDialog(t, cfg)
		td.expect("", "220 ")
		td.expect("EHLO c.example", "250-")
		td.send("STARTTLS\r\nMAIL FROM:<a@c.example>\r\n")
		td.expect("", "554 5.5.0")
		err := td.end()
		if !errors.Is(err, ErrPipelinedSTARTTLS) && !errors.Is(err, ErrImproperPipelining) {
			t.Errorf("forbid %v: Serve = %v", forbid, err)
		}
		if td.mail != 0 {
			t.Errorf("forbid %v: the injected MAIL was carried out", forbid)
		}
	}
}

func TestRequireTLS(t *testing.T) {
	server, client := testCert(t)
	cfg := testConfig()
	cfg.TLS, cfg.RequireTLS = server, true
	td := startTLSDialog(t, cfg)
	td.expect("", "220 ")
	td.expect("EHLO c.example", "250-")
	td.expect("MAIL FROM:<a@c.example>", "530 5.7.0 Must issue a STARTTLS command first")
	td.expect("STARTTLS", "220 ")
	td.upgrade(client)
	td.expect("EHLO c.example", "250-")
	td.expect("MAIL FROM:<a@c.example>", "250 ")
	td.expect("QUIT", "221")
	if err := td.end(); err != nil || td.mail != 1 {
		t.Errorf("Serve = %v, %d MAIL carried out", err, td.mail)
	}
}

// TestTLSNotOffered: no STARTTLS without a configuration, or through
// Serve, which has no connection for crypto/tls.
func TestTLSNotOffered(t *testing.T) {
	server, _ := testCert(t)
	cfg := testConfig()
	cfg.TLS = server
	out := runSession(t, cfg, "EHLO c.example\r\nSTARTTLS\r\nQUIT\r\n")
	if strings.Contains(out, "STARTTLS") || !strings.Contains(out, "502 5.5.1") {
		t.Errorf("Serve offered STARTTLS:\n%s", out)
	}
}

func runSession(t *testing.T, cfg Config, in string) string {
	var out strings.Builder
	NewSession(cfg, testClient, &relayPolicy{}, &fakeDelivery{}, discardLogger()).
		Serve(bufio.NewReader(strings.NewReader(in)), &out, nil)
	return out.String()
}

func TestHandshakeFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		hs   func(td *tlsDialog)
	}{
		{"garbage", func(td *tlsDialog) { td.send("MAIL FROM:<a@c.example>\r\n") }},
		{"timeout", func(td *tlsDialog) {}},
	} {
		server, _ := testCert(t)
		cfg := testConfig()
		cfg.TLS, cfg.HandshakeTimeout = server, 200*time.Millisecond
		td := startTLSDialog(t, cfg)
		td.expect("", "220 ")
		td.expect("EHLO c.example", "250-")
		td.expect("STARTTLS", "220 ")
		go io.Copy(io.Discard, td.raw) // the server's alert, if any
		td.r = bufio.NewReader(strings.NewReader(""))
		tc.hs(td)
		if err := td.end(); !errors.Is(err, ErrTLS) {
			t.Errorf("%s: Serve = %v, want ErrTLS", tc.name, err)
		}
		if td.mail != 0 || len(td.d.writers) != 0 {
			t.Errorf("%s: a command was carried out", tc.name)
		}
	}
}

// TestTLSCloseMidData: close_notify in the middle of DATA, then
// plaintext on the connection: the session ends, nothing is committed,
// the plaintext is never read as SMTP.
func TestTLSCloseMidData(t *testing.T) {
	server, client := testCert(t)
	cfg := testConfig()
	cfg.TLS = server
	td := startTLSDialog(t, cfg)
	td.expect("", "220 ")
	td.expect("EHLO c.example", "250-")
	td.expect("STARTTLS", "220 ")
	td.upgrade(client)
	td.expect("EHLO c.example", "250-")
	td.expect("MAIL FROM:<a@c.example>", "250 ")
	td.expect("RCPT TO:<b@d.example>", "250 ")
	td.expect("DATA", "354")
	td.send("Subject: x\r\n\r\nhalf a message\r\n")
	if err := td.conn.(*tls.Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	go io.WriteString(td.raw, "\r\n.\r\nMAIL FROM:<p@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n\r\n.\r\n")
	err := td.end()
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("Serve = %v, want an end of input", err)
	}
	if len(td.d.committed()) != 0 || td.mail != 1 {
		t.Errorf("%d committed, %d MAIL carried out: plaintext was read", len(td.d.committed()), td.mail)
	}
	if err := td.d.checkFinished(); err != nil {
		t.Error(err)
	}
}

// TestImplicitTLS: RFC 8314, the handshake before the greeting.
func TestImplicitTLS(t *testing.T) {
	server, client := testCert(t)
	cfg := testConfig()
	cfg.TLS, cfg.ImplicitTLS = server, true
	td := startTLSDialog(t, cfg)
	td.upgrade(client)
	td.expect("", "220 mx.example.net ESMTP")
	if r := td.expect("EHLO c.example", "250-"); strings.Contains(r, "STARTTLS") {
		t.Errorf("implicit TLS offers STARTTLS: %q", r)
	}
	td.expect("QUIT", "221")
	if err := td.end(); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestCipherBits(t *testing.T) {
	for name, want := range map[string]int{
		"TLS_AES_128_GCM_SHA256": 128, "TLS_AES_256_GCM_SHA384": 256,
		"TLS_CHACHA20_POLY1305_SHA256": 256, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 128, "X": 0,
	} {
		if got := cipherBits(name); got != want {
			t.Errorf("cipherBits(%s) = %d, want %d", name, got, want)
		}
	}
}
