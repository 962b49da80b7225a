package main

// TLS (issue 10) with real clients through real launchers on 127.0.0.1:
// Python's smtplib (starttls(), SMTP_SSL), swaks (--tls, --tlsc),
// openssl s_client (-starttls smtp, implicit), Go's crypto/tls for the
// hostile cases, each under tcpserver and systemd-socket-activate, with
// a throwaway CA made for each test.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// testPKI is a throwaway CA and a server certificate it signed for
// mx.test.example and 127.0.0.1, written as PEM files.
type testPKI struct {
	ca, cert, key string // file paths: CA certificate, leaf+chain, leaf key (0600)
	pool          *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA " + t.Name()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// 90 days and a CRL address, as a certificate from a public CA:
	// testssl.sh rates a shorter life or no revocation source HIGH.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mx.test.example"},
		DNSNames: []string{"mx.test.example"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		CRLDistributionPoints: []string{"http://127.0.0.1:9/ca.crl"},
		KeyUsage:              x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kDER, _ := x509.MarshalPKCS8PrivateKey(key)
	p := &testPKI{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "privkey.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(p.ca, block("CERTIFICATE", caDER), 0o644))
	must(os.WriteFile(p.cert, append(block("CERTIFICATE", der), block("CERTIFICATE", caDER)...), 0o644))
	must(os.WriteFile(p.key, block("PRIVATE KEY", kDER), 0o600))
	return p
}

func (p *testPKI) env(extra ...string) []string {
	return append([]string{"SMTP_TLS_CERT=" + p.cert, "SMTP_TLS_KEY=" + p.key}, extra...)
}

func (p *testPKI) client() *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "mx.test.example"}
}

// tlsLaunchers serve the binary on a loopback port, each as its
// launcher does, with the spool and the extra settings given.
var tlsLaunchers = map[string]func(t *testing.T, spoolDir string, env ...string) string{
	"tcpserver": startTCPServer,
	"systemd": func(t *testing.T, spoolDir string, env ...string) string {
		ssa := testutil.Need(t, "systemd-socket-activate")
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args := []string{"--listen=" + addr, "--inetd", "--accept"}
		for _, kv := range baseEnv(spoolDir, env...) {
			args = append(args, "-E", kv)
		}
		cmd := exec.Command(ssa, append(args, binary(t))...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		startDaemon(t, addr, cmd)
		return addr
	},
}

// forLaunchers runs f under each launcher.
func forLaunchers(t *testing.T, f func(t *testing.T, start func(spoolDir string, env ...string) string)) {
	for name, launch := range tlsLaunchers {
		t.Run(name, func(t *testing.T) {
			f(t, func(sd string, env ...string) string { return launch(t, sd, env...) })
		})
	}
}

// checkTLSMessage checks that the one message in the spool came over
// TLS: its envelope and its Received: header say so.
func checkTLSMessage(t *testing.T, spoolDir string) {
	t.Helper()
	ms := spooled(t, spoolDir)
	if len(ms) != 1 {
		t.Fatalf("%d messages spooled, want 1", len(ms))
	}
	m := ms[0]
	if !strings.HasPrefix(m.TLSVersion, "TLSv1.") || m.TLSCipher == "" {
		t.Errorf("envelope TLS %q %q", m.TLSVersion, m.TLSCipher)
	}
	received, _ := content(t, m)
	if !strings.Contains(received, "\r\n\t(using "+m.TLSVersion+" with cipher "+m.TLSCipher+" (") ||
		!strings.Contains(received, " with ESMTPS id ") {
		t.Errorf("Received: header %q", received)
	}
}

const pyTLS = `
import smtplib, ssl, sys
mode, host, port, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
msg = b"From: py@example.net\r\nTo: r@example.org\r\nSubject: tls\r\n\r\nover TLS\r\n"
if mode == "implicit":
    s = smtplib.SMTP_SSL(host, port, local_hostname="py.example", context=ctx, timeout=20)
else:
    s = smtplib.SMTP(host, port, local_hostname="py.example", timeout=20)
    s.ehlo()
    assert s.has_extn("starttls")
    s.starttls(context=ctx)
s.ehlo()
assert not s.has_extn("starttls")
s.sendmail("py@example.net", ["r@example.org"], msg)
s.quit()
print("OK")
`

func TestTLSPython(t *testing.T) {
	py := testutil.Need(t, "python3")
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for _, mode := range []string{"starttls", "implicit"} {
			t.Run(mode, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				addr := start(sd, pki.env("SMTP_TLS_MODE="+mode)...)
				host, port, _ := net.SplitHostPort(addr)
				// The certificate names 127.0.0.1 too: smtplib checks it.
				out, err := exec.Command(py, "-c", pyTLS, mode, host, port, pki.ca).CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "OK" {
					t.Fatalf("python: %v\n%s", err, out)
				}
				checkTLSMessage(t, sd)
			})
		}
	})
}

func TestTLSSwaks(t *testing.T) {
	swaks := testutil.Need(t, "swaks")
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for mode, flag := range map[string]string{"starttls": "--tls", "implicit": "--tlsc"} {
			t.Run(mode, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				addr := start(sd, pki.env("SMTP_TLS_MODE="+mode)...)
				host, port, _ := net.SplitHostPort(addr)
				out, err := exec.Command(swaks, flag, "--server", host, "--port", port, "--from", "s@example.net",
					"--to", "r@example.org", "--helo", "swaks.example", "--timeout", "20").CombinedOutput()
				if err != nil {
					t.Fatalf("swaks: %v\n%s", err, out)
				}
				checkTLSMessage(t, sd)
			})
		}
	})
}

func TestTLSOpenSSL(t *testing.T) {
	openssl := testutil.Need(t, "openssl")
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for _, mode := range []string{"starttls", "implicit"} {
			t.Run(mode, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				// s_client writes each line as it reads it: pipelined.
				addr := start(sd, pki.env("SMTP_TLS_MODE="+mode, "SMTP_FORBID_IMPROPER_PIPELINING=false")...)
				args := []string{"s_client", "-connect", addr, "-CAfile", pki.ca, "-verify_return_error",
					"-verify_hostname", "mx.test.example", "-crlf", "-quiet"}
				if mode == "starttls" {
					args = append(args, "-starttls", "smtp")
				}
				cmd := exec.Command(openssl, args...)
				cmd.Stdin = strings.NewReader("EHLO openssl.example\nMAIL FROM:<o@example.net>\nRCPT TO:<r@example.org>\nDATA\nSubject: s_client\n\nhi\n.\nQUIT\n")
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "250 2.0.0 OK queued as ") {
					t.Fatalf("openssl: %v\n%s", err, out)
				}
				checkTLSMessage(t, sd)
			})
		}
	})
}

// rawSession is a client on a plain TCP connection that can start TLS
// by hand.
type rawSession struct {
	t    *testing.T
	raw  net.Conn
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, src, addr string) *rawSession {
	c := dialFrom(t, src, addr)
	return &rawSession{t: t, raw: c, conn: c, r: bufio.NewReader(c)}
}

// cmd sends line (none for "") and returns the reply's last line.
func (s *rawSession) cmd(line string) string {
	s.t.Helper()
	if line != "" {
		if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
			s.t.Fatalf("%q: %v", line, err)
		}
	}
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reply to %q: %v", line, err)
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

func (s *rawSession) expect(line, prefix string) {
	s.t.Helper()
	if r := s.cmd(line); !strings.HasPrefix(r, prefix) {
		s.t.Fatalf("%q: got %q, want %s", line, r, prefix)
	}
}

func (s *rawSession) starttls(cfg *tls.Config) {
	s.t.Helper()
	s.expect("STARTTLS", "220 2.0.0")
	tc := tls.Client(s.raw, cfg)
	if err := tc.Handshake(); err != nil {
		s.t.Fatal(err)
	}
	s.conn, s.r = tc, bufio.NewReader(tc)
}

// TestTLSInjection: STARTTLS with a MAIL in the same write (CVE-2011-0411)
// gets 554 5.5.0 and the end of the connection; MAIL is never carried
// out, in plaintext or over TLS.
func TestTLSInjection(t *testing.T) {
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for _, forbid := range []string{"true", "false"} {
			t.Run("forbid_pipelining_"+forbid, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				s := dialRaw(t, "127.0.0.1", start(sd, pki.env("SMTP_FORBID_IMPROPER_PIPELINING="+forbid)...))
				s.expect("", "220 ")
				s.expect("EHLO c.example", "250 STARTTLS")
				io.WriteString(s.raw, "STARTTLS\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<r@example.org>\r\n")
				rest, _ := io.ReadAll(s.r)
				if !strings.HasPrefix(string(rest), "554 5.5.0 ") || strings.Count(string(rest), "\r\n") != 1 {
					t.Errorf("after the injection: %q", rest)
				}
				noTempFiles(t, sd)
				if ms := spooled(t, sd); len(ms) != 0 {
					t.Errorf("%d spooled", len(ms))
				}
			})
		}
	})
}

// TestTLSCloseMidData: close_notify in the middle of DATA, then
// plaintext on the same socket that would end the message and send
// another: the session ends, nothing is spooled, no plaintext is
// answered.
func TestTLSCloseMidData(t *testing.T) {
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		pki, sd := newPKI(t), newSpool(t)
		s := dialRaw(t, "127.0.0.1", start(sd, pki.env()...))
		s.expect("", "220 ")
		s.expect("EHLO c.example", "250 STARTTLS")
		s.starttls(pki.client())
		s.expect("EHLO c.example", "250 SMTPUTF8")
		s.expect("MAIL FROM:<a@example.net>", "250 ")
		s.expect("RCPT TO:<r@example.org>", "250 ")
		s.expect("DATA", "354")
		io.WriteString(s.conn, "Subject: cut\r\n\r\nhalf\r\n")
		if err := s.conn.(*tls.Conn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		io.WriteString(s.raw, "\r\n.\r\nMAIL FROM:<p@example.net>\r\nRCPT TO:<r@example.org>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
		rest, _ := io.ReadAll(s.raw)
		if strings.Contains(string(rest), "250 ") || strings.Contains(string(rest), "354") {
			t.Errorf("plaintext answered: %q", rest)
		}
		noTempFiles(t, sd)
		if ms := spooled(t, sd); len(ms) != 0 {
			t.Errorf("%d spooled", len(ms))
		}
	})
}

// TestTLSRequired: SMTP_REQUIRE_TLS refuses MAIL in plaintext with 530
// 5.7.0 and takes it over TLS.
func TestTLSRequired(t *testing.T) {
	pki, sd := newPKI(t), newSpool(t)
	s := dialRaw(t, "127.0.0.1", startTCPServer(t, sd, pki.env("SMTP_REQUIRE_TLS=true")...))
	s.expect("", "220 ")
	s.expect("EHLO c.example", "250 STARTTLS")
	s.expect("MAIL FROM:<a@example.net>", "530 5.7.0 Must issue a STARTTLS command first")
	s.starttls(pki.client())
	s.expect("EHLO c.example", "250 ")
	s.expect("MAIL FROM:<a@example.net>", "250 ")
	s.expect("QUIT", "221 ")
}

// TestTLSStrangerCannotRelay: TLS grants nothing; a client outside
// SMTP_RELAY_CLIENTS still gets 550 5.7.1 for another domain.
func TestTLSStrangerCannotRelay(t *testing.T) {
	pki, sd := newPKI(t), newSpool(t)
	addr := startTCPServer(t, sd, pki.env("SMTP_RELAY_CLIENTS=127.0.0.1/32")...)
	c, err := smtp.NewClient(dialFrom(t, "127.0.0.2", addr), "mx.test.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("stranger.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(pki.client()); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("s@example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("victim@elsewhere.example"); err == nil || !strings.HasPrefix(err.Error(), "550") || !strings.Contains(err.Error(), "5.7.1") {
		t.Errorf("relay over TLS: %v", err)
	}
	if err := c.Rcpt("r@example.org"); err != nil {
		t.Errorf("local recipient over TLS: %v", err)
	}
	c.Quit()
}

// TestTLSBadKeyPair: an unreadable key or a key that does not match
// the certificate refuses the session with 421 and a log line naming the
// variable; the session is never served in plaintext.
func TestTLSBadKeyPair(t *testing.T) {
	pki, other := newPKI(t), newPKI(t)
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"missing key": {[]string{"SMTP_TLS_CERT=" + pki.cert, "SMTP_TLS_KEY=" + pki.key + ".none"}, "SMTP_TLS_KEY"},
		"mismatch":    {[]string{"SMTP_TLS_CERT=" + pki.cert, "SMTP_TLS_KEY=" + other.key}, "SMTP_TLS_CERT and SMTP_TLS_KEY"},
		"cert only":   {[]string{"SMTP_TLS_CERT=" + pki.cert}, "SMTP_TLS_KEY"},
	} {
		t.Run(name, func(t *testing.T) {
			sd := newSpool(t)
			cmd := exec.Command(binary(t))
			cmd.Env = baseEnv(sd, tc.env...)
			cmd.Stdin = strings.NewReader("EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nQUIT\r\n")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, _ := cmd.Output()
			if string(out) != "421 4.3.0 Service not available, closing transmission channel\r\n" {
				t.Errorf("stdout %q", out)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("log does not name %s:\n%s", tc.want, stderr.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != 78 {
				t.Errorf("exit %d, want 78", code)
			}
		})
	}
}

// TestTLSPipes: STARTTLS over two pipes (swaks --pipe runs the binary
// itself), the descriptor layout of socat's pipes and of tests: stdin
// and stdout are two files, joined for crypto/tls.
func TestTLSPipes(t *testing.T) {
	swaks := testutil.Need(t, "swaks")
	pki, sd := newPKI(t), newSpool(t)
	pipe := "env -i " + strings.Join(baseEnv(sd, pki.env()...), " ") + " " + binary(t)
	out, err := exec.Command(swaks, "--pipe", pipe, "--tls", "--from", "s@example.net", "--to", "r@example.org",
		"--helo", "swaks.example", "--timeout", "20").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	checkTLSMessage(t, sd)
}

// TestTLSVersionAndRenewal: TLS 1.2 is the least a client may use (a
// TLS 1.1 client fails the handshake), and the key pair is read at each
// session: files replaced under a running launcher serve the next
// connection, with no restart.
func TestTLSVersionAndRenewal(t *testing.T) {
	pki, sd := newPKI(t), newSpool(t)
	addr := startTCPServer(t, sd, pki.env("SMTP_TLS_MODE=implicit")...)
	dial := func(cfg *tls.Config) (*tls.Conn, error) {
		c := dialFrom(t, "127.0.0.1", addr)
		tc := tls.Client(c, cfg)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
	old := pki.client()
	old.MaxVersion = tls.VersionTLS11
	if c, err := dial(old); err == nil {
		c.Close()
		t.Errorf("a TLS 1.1 client shook hands")
	}
	old.MaxVersion = tls.VersionTLS12
	c, err := dial(old)
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS12 {
		t.Errorf("version %x", v)
	}
	c.Close()

	// Renewal: a new key pair from another CA, moved into place.
	renewed := newPKI(t)
	for src, dst := range map[string]string{renewed.cert: pki.cert, renewed.key: pki.key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dst+".new", dst); err != nil {
			t.Fatal(err)
		}
	}
	c, err = dial(renewed.client())
	if err != nil {
		t.Fatalf("after renewal, the next session does not present the new certificate: %v", err)
	}
	c.Close()
	if c, err := dial(pki.client()); err == nil {
		c.Close()
		t.Errorf("after renewal the old certificate is still served")
	}
}
