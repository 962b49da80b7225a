package send

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
)

// A connection lost after the dot, before the final reply, leaves the
// recipients pending: the one duplicate window. The next run sends again.
func TestDisconnectAfterDot(t *testing.T) {
	drop := true
	ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Data: func(c *smtptest.Conn, _ []byte) *protocol.Reply {
		if drop {
			drop = false
			c.Drop()
			return smtptest.Reply(451, "4.0.0", "never seen")
		}
		return nil
	}}})
	f := newFixture(t, ts.Addr)
	id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	st := f.run(false)
	if st.Deferred != 1 || st.Delivered != 0 || len(ts.Transactions()) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if s := f.state(id); s == nil || s.Rcpts[0].Status != queue.Pending || s.Rcpts[0].Stage != "dot" || s.Rcpts[0].Code != 0 {
		t.Fatalf("state %+v", s)
	}
	f.clk.Add(5 * time.Minute)
	if st := f.run(false); st.Delivered != 1 || len(ts.Transactions()) != 1 {
		t.Fatalf("second run %+v", st)
	}
}

// A 421, or the connection closed, on a reused connection means: reconnect
// and resend that transaction, not a failure of the message.
func TestReusedConnectionClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		mail func(c *smtptest.Conn, from string) *protocol.Reply
	}{
		{"421", func(c *smtptest.Conn, _ string) *protocol.Reply {
			if c.Tx == 2 {
				c.Hangup()
				return smtptest.Reply(421, "4.4.2", "idle too long, closing")
			}
			return nil
		}},
		{"eof", func(c *smtptest.Conn, _ string) *protocol.Reply {
			if c.Tx == 2 {
				c.Drop()
				return smtptest.Reply(451, "4.0.0", "unseen")
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Mail: tc.mail}})
			f := newFixture(t, ts.Addr)
			for range 3 {
				f.queue("s@example.org", []string{"a@x.test"}, body("x"))
			}
			st := f.run(false)
			if st.Delivered != 3 || st.Deferred != 0 {
				t.Errorf("stats %+v", st)
			}
			if conns := ts.Conns(); conns != 3 || len(ts.Transactions()) != 3 {
				t.Errorf("%d connections, %d transactions; want 3 and 3", conns, len(ts.Transactions()))
			}
		})
	}
}

// A server that stalls after the data times out (RFC 5321 section
// 4.5.3.2.6, shortened here): the message is deferred, the host is marked
// down, and the next message goes to the next smarthost.
func TestStallTimesOutAndFailsOver(t *testing.T) {
	stalled := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Data: func(c *smtptest.Conn, _ []byte) *protocol.Reply {
		c.Hang()
		return nil
	}}})
	good := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, stalled.Addr, good.Addr)
	f.s.Config.DataTimeout = 200 * time.Millisecond
	first := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	f.clk.Add(time.Second)
	f.queue("s@example.org", []string{"b@x.test"}, body("y"))
	st := f.run(false)
	if st.Deferred != 1 || st.Delivered != 1 {
		t.Errorf("stats %+v", st)
	}
	if s := f.state(first); s == nil || s.Rcpts[0].Stage != "dot" || !strings.Contains(s.Rcpts[0].Text, "timeout") {
		t.Errorf("state of the stalled message %+v", s)
	}
	if g := good.Transactions(); len(g) != 1 || g[0].To[0] != "b@x.test" {
		t.Errorf("good server got %+v", g)
	}
	if n := f.dialCount(stalled.Addr); n != 1 {
		t.Errorf("stalled host dialled %d times, want 1", n)
	}
}

// A host that refuses the connection is tried once per run; the next one
// in the list takes the mail.
func TestRefusedHostMarkedDown(t *testing.T) {
	bad := refusedAddr(t)
	good := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, bad, good.Addr)
	f.s.Config.NoReuse = true
	for range 3 {
		f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	}
	if st := f.run(false); st.Delivered != 3 {
		t.Errorf("stats %+v", st)
	}
	if n := f.dialCount(bad); n != 1 {
		t.Errorf("refusing host dialled %d times, want 1", n)
	}
}

// testCA makes a CA and a certificate for 127.0.0.1 and mx.test signed by
// it; it returns the server's config and a pool holding the CA.
func testCA(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"mx.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// STARTTLS and implicit TLS with a verified certificate; a certificate the
// client cannot verify, or a server without STARTTLS, is a failure, never
// a fallback to clear text, and the host is down for the run.
func TestTLS(t *testing.T) {
	srvConf, pool := testCA(t)
	for _, tc := range []struct {
		name     string
		implicit bool
		offer    bool // STARTTLS offered
		roots    *x509.CertPool
		server   string
		ok       bool
		stage    string
	}{
		{"starttls", false, true, pool, "", true, ""},
		{"implicit", true, false, pool, "", true, ""},
		{"starttls-by-name", false, true, pool, "mx.test", true, ""},
		{"unknown-ca", false, true, x509.NewCertPool(), "", false, "tls"},
		{"wrong-name", true, false, pool, "other.test", false, "tls"},
		{"not-offered", false, false, pool, "", false, "tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts smtptest.Options
			if tc.implicit {
				opts.ImplicitTLS = srvConf
			} else if tc.offer {
				opts.StartTLS = srvConf
			}
			ts := smtptest.Start(t, opts)
			f := newFixture(t, ts.Addr)
			f.s.Config.TLS = TLSStartTLS
			if tc.implicit {
				f.s.Config.TLS = TLSImplicit
			}
			f.s.Config.TLSConfig = &tls.Config{RootCAs: tc.roots, ServerName: tc.server}
			id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
			f.queue("s@example.org", []string{"b@x.test"}, body("y"))
			st := f.run(false)
			txs := ts.Transactions()
			if tc.ok {
				if st.Delivered != 2 || len(txs) != 2 || !txs[0].TLS {
					t.Errorf("stats %+v, transactions %+v", st, txs)
				}
				return
			}
			if st.Deferred != 2 || len(txs) != 0 || st.Failed != 0 {
				t.Errorf("stats %+v, transactions %+v", st, txs)
			}
			if s := f.state(id); s == nil || s.Rcpts[0].Stage != tc.stage {
				t.Errorf("state %+v", s)
			}
			if n := f.dialCount(ts.Addr); n != 1 {
				t.Errorf("dialled %d times, want 1 (host down)", n)
			}
		})
	}
}

// AUTH PLAIN over TLS; a wrong password is temporary (never a bounce) and
// marks the host down; a clear-text connection gets no AUTH at all unless
// explicitly allowed.
func TestAuth(t *testing.T) {
	srvConf, pool := testCA(t)
	for _, tc := range []struct {
		name      string
		tls       bool
		pass      string
		allow     bool
		delivered int
		tries     int
	}{
		{"ok", true, "secret", false, 2, 1},
		{"wrong-password", true, "wrong", false, 0, 1},
		{"no-tls-refused", false, "secret", false, 0, 0},
		{"no-tls-allowed", false, "secret", true, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := smtptest.Options{User: "user", Password: "secret"}
			if tc.tls {
				opts.StartTLS = srvConf
			}
			ts := smtptest.Start(t, opts)
			f := newFixture(t, ts.Addr)
			f.s.Config.Username, f.s.Config.Password, f.s.Config.AuthWithoutTLS = "user", tc.pass, tc.allow
			if tc.tls {
				f.s.Config.TLS = TLSStartTLS
				f.s.Config.TLSConfig = &tls.Config{RootCAs: pool}
			}
			id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
			f.queue("s@example.org", []string{"b@x.test"}, body("y"))
			st := f.run(false)
			if st.Delivered != tc.delivered || st.Failed != 0 || st.DSNs != 0 {
				t.Errorf("stats %+v", st)
			}
			if tries := ts.AuthTries(); tries != tc.tries {
				t.Errorf("%d AUTH attempts, want %d", tries, tc.tries)
			}
			if tc.delivered == 0 {
				if s := f.state(id); s == nil || s.Rcpts[0].Stage != "auth" || s.Rcpts[0].Status != queue.Pending {
					t.Errorf("state %+v", s)
				}
				if n := f.dialCount(ts.Addr); n != 1 {
					t.Errorf("dialled %d times, want 1", n)
				}
			}
		})
	}
}

// A DNS failure for the smarthost's name is temporary: the message is
// deferred, never bounced, and the host is down for the run.
func TestDNSFailureIsTemporary(t *testing.T) {
	f := newFixture(t, "smarthost.invalid:25")
	f.s.Dial = func(context.Context, string, string) (net.Conn, error) {
		f.mu.Lock()
		f.dials["smarthost.invalid:25"]++
		f.mu.Unlock()
		return nil, &net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "no such host", Name: "smarthost.invalid", IsNotFound: true}}
	}
	f.s.Config.MinAttempts = 1
	id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	f.queue("s@example.org", []string{"b@x.test"}, body("y"))
	f.clk.Add(10 * 24 * time.Hour)
	st := f.run(false)
	if st.Deferred != 2 || st.Failed != 0 || st.DSNs != 0 {
		t.Errorf("stats %+v", st)
	}
	if s := f.state(id); s == nil || s.Rcpts[0].Stage != "connect" || !strings.Contains(s.Rcpts[0].Text, "no such host") {
		t.Errorf("state %+v", s)
	}
	if n := f.dialCount("smarthost.invalid:25"); n != 1 {
		t.Errorf("resolved %d times, want 1", n)
	}
}

// Command timeouts hold from the first byte: a server that never greets
// (here before STARTTLS, where go-smtp would wait 5 minutes) or never
// answers RCPT fails after CommandTimeout.
func TestCommandTimeouts(t *testing.T) {
	t.Run("greeting", func(t *testing.T) {
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Greet: func(c *smtptest.Conn) *protocol.Reply {
			c.Hang() // accepted, never answered
			return nil
		}}})
		f := newFixture(t, ts.Addr)
		f.s.Config.TLS = TLSStartTLS
		f.s.Config.CommandTimeout = 200 * time.Millisecond
		id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
		start := time.Now()
		st := f.run(false)
		if st.Deferred != 1 || time.Since(start) > 3*time.Second {
			t.Errorf("stats %+v after %v", st, time.Since(start))
		}
		if s := f.state(id); s == nil || !strings.Contains(s.Rcpts[0].Text, "timeout") {
			t.Errorf("state %+v", s)
		}
	})
	t.Run("rcpt", func(t *testing.T) {
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(c *smtptest.Conn, _ string) *protocol.Reply {
			c.Hang()
			return nil
		}}})
		f := newFixture(t, ts.Addr)
		f.s.Config.CommandTimeout = 200 * time.Millisecond
		id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
		f.queue("s@example.org", []string{"b@x.test"}, body("y"))
		st := f.run(false)
		if st.Deferred != 2 || len(ts.Transactions()) != 0 {
			t.Errorf("stats %+v", st)
		}
		if s := f.state(id); s == nil || s.Rcpts[0].Stage != "rcpt" || !strings.Contains(s.Rcpts[0].Text, "timeout") {
			t.Errorf("state %+v", s)
		}
		if n := f.dialCount(ts.Addr); n != 1 {
			t.Errorf("dialled %d times after a timeout, want 1", n)
		}
	})
}
