package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/postfixtest"
)

// privatePostfix is a Postfix instance of the test's own
// (postfixtest): no listening smtpd, and a relayhost that is smtp-stdio,
// reached over TLS (smtp_tls_security_level = encrypt, the CA of the
// test) with SASL (PLAIN or LOGIN through Cyrus SASL's client plugins).
// It needs root, as Postfix's master does; the system's Postfix is
// never touched.
type privatePostfix struct {
	dir, conf, log string
}

// startPostfix starts the instance relaying to addr with mechanism mech
// ("plain" or "login"), trusting caFile, wrapped in TLS from the first
// byte when implicit.
func startPostfix(t *testing.T, addr, caFile, user, pass, mech string, implicit bool) *privatePostfix {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	next := fmt.Sprintf("[%s]:%s", host, port)
	wrapper := "no"
	if implicit {
		wrapper = "yes"
	}
	return startPostfixWith(t, addr, func(conf string) []string {
		if err := os.WriteFile(filepath.Join(conf, "sasl_passwd"), []byte(next+" "+user+":"+pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{
			"smtp_tls_security_level = encrypt",
			"smtp_tls_CAfile = " + caFile,
			"smtp_tls_wrappermode = " + wrapper,
			"smtp_sasl_auth_enable = yes",
			"smtp_sasl_password_maps = texthash:" + filepath.Join(conf, "sasl_passwd"),
			"smtp_sasl_security_options = noanonymous",
			"smtp_sasl_tls_security_options = noanonymous",
			"smtp_sasl_mechanism_filter = " + mech,
			"smtp_tls_note_starttls_offer = yes",
		}
	})
}

// startPostfixWith starts a private Postfix instance whose relayhost is
// addr (postfixtest.Start): no smtpd, the main.cf lines every relay
// client of these tests needs and those extra returns for its
// configuration directory (TLS, SASL). It is stopped, and its log shown
// if the test failed, at the test's end.
func startPostfixWith(t *testing.T, addr string, extra func(conf string) []string) *privatePostfix {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p := postfixtest.Start(t, func(conf string) []string {
		return append([]string{
			"myhostname = postfix.test.example",
			"mydomain = test.example",
			"myorigin = $myhostname",
			"mydestination =",
			"inet_interfaces = loopback-only",
			fmt.Sprintf("relayhost = [%s]:%s", host, port),
		}, extra(conf)...)
	}, "")
	return &privatePostfix{dir: p.Dir, conf: p.Conf, log: p.Log}
}

// submit hands a message to the instance through its sendmail.
func (p *privatePostfix) submit(t *testing.T, from, to, msg string) {
	t.Helper()
	cmd := exec.Command("/usr/sbin/sendmail", "-C", p.conf, "-f", from, "-i", "--", to)
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postfix sendmail: %v\n%s", err, out)
	}
	// Postfix's pickup would wait up to a minute otherwise.
	exec.Command("/usr/sbin/postqueue", "-c", p.conf, "-f").Run()
}

// waitSpooled waits up to 30 seconds for n messages in the spool.
func waitSpooled(t *testing.T, spoolDir string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(filepath.Join(spoolDir, "queue"))
		if len(ents) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("fewer than %d messages spooled after 30s", n)
}

// TestAuthPostfixClient: a private Postfix relays a message through
// smtp-stdio as its relayhost, with TLS required and SASL, under each
// launcher: STARTTLS with PLAIN and with LOGIN, and implicit TLS
// (smtp_tls_wrappermode). The client is a stranger, so the message to
// another domain is accepted only because Postfix authenticated.
func TestAuthPostfixClient(t *testing.T) {
	pw := passwordFile(t)
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for _, tc := range []struct {
			mode, mech string
		}{{"starttls", "plain"}, {"starttls", "login"}, {"implicit", "plain"}} {
			t.Run(tc.mode+"_"+tc.mech, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				addr := start(sd, authEnv(pki, pw, "SMTP_TLS_MODE="+tc.mode)...)
				pf := startPostfix(t, addr, pki.ca, authUser, authPass, tc.mech, tc.mode == "implicit")
				pf.submit(t, authUser, "far@elsewhere.example", "From: "+authUser+"\nTo: far@elsewhere.example\nSubject: via Postfix\n\nrelayed by a private Postfix\n")
				waitSpooled(t, sd, 1)
				checkAuthMessage(t, sd, "far@elsewhere.example")
				_, rest := content(t, spooled(t, sd)[0])
				if !strings.Contains(rest, "by postfix.test.example (Postfix") || !strings.Contains(rest, "relayed by a private Postfix") {
					t.Errorf("message:\n%s", rest)
				}
			})
		}
	})
}
