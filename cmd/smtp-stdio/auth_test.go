package main

// AUTH (issue 10, RFC 4954) with real clients through real launchers on
// 127.0.0.1: swaks, Python's smtplib, curl and msmtp, over STARTTLS and
// implicit TLS, with the password file and a checkpassword program. The
// client is made a stranger (SMTP_RELAY_CLIENTS names no loopback
// address), so that each accepted message to another domain is one that
// AUTH, and only AUTH, let through.

import (
	"encoding/base64"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

const (
	authUser = "alice@example.org"
	authPass = "correct horse battery staple"
	// stranger makes every loopback client one that may not relay.
	stranger = "SMTP_RELAY_CLIENTS=192.0.2.0/24"
)

// passwordFile writes a password file for authUser, its hash made by
// the binary's own --hash-password from standard input, mode 0600.
func passwordFile(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(binary(t), "--hash-password")
	cmd.Stdin = strings.NewReader(authPass + "\n")
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "$argon2id$v=19$") {
		t.Fatalf("--hash-password: %v %q", err, out)
	}
	p := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(p, []byte("# test users\n"+authUser+":"+string(out)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// authEnv is the environment of a submission service: TLS, the password
// file, AUTH required, a stranger client, no wait after a failure.
func authEnv(pki *testPKI, pw string, extra ...string) []string {
	return pki.env(append([]string{"SMTP_AUTH_PASSWORD_FILE=" + pw, "SMTP_AUTH_REQUIRED=true",
		"SMTP_AUTH_FAILURE_DELAY=0s", stranger}, extra...)...)
}

// checkAuthMessage checks that the one message spooled came over TLS
// after AUTH as authUser, to the outside recipient.
func checkAuthMessage(t *testing.T, spoolDir, rcpt string) {
	t.Helper()
	ms := spooled(t, spoolDir)
	if len(ms) != 1 {
		t.Fatalf("%d messages spooled, want 1", len(ms))
	}
	m := ms[0]
	if m.AuthUser != authUser || m.TLSVersion == "" || len(m.To) != 1 || m.To[0] != rcpt {
		t.Errorf("envelope: user %q TLS %q to %q", m.AuthUser, m.TLSVersion, m.To)
	}
	received, _ := content(t, m)
	if !strings.Contains(received, " with ESMTPSA id ") {
		t.Errorf("Received: header %q", received)
	}
}

func TestAuthSwaks(t *testing.T) {
	swaks := testutil.Need(t, "swaks")
	pw := passwordFile(t)
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for _, tc := range []struct{ mode, flag, mech string }{
			{"starttls", "--tls", "PLAIN"}, {"starttls", "--tls", "LOGIN"}, {"implicit", "--tlsc", "PLAIN"},
		} {
			t.Run(tc.mode+"_"+tc.mech, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				addr := start(sd, authEnv(pki, pw, "SMTP_TLS_MODE="+tc.mode)...)
				host, port, _ := net.SplitHostPort(addr)
				args := []string{tc.flag, "--server", host, "--port", port, "--from", authUser, "--to", "friend@elsewhere.example",
					"--helo", "swaks.example", "--timeout", "20", "--auth", tc.mech, "--auth-user", authUser}
				out, err := exec.Command(swaks, append(args, "--auth-password", authPass)...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "235 2.7.0") {
					t.Fatalf("swaks: %v\n%s", err, out)
				}
				checkAuthMessage(t, sd, "friend@elsewhere.example")
				// A wrong password: 535, and nothing more is spooled.
				out, err = exec.Command(swaks, append(args, "--auth-password", "wrong")...).CombinedOutput()
				if err == nil || !strings.Contains(string(out), "535 5.7.8") {
					t.Errorf("wrong password: %v\n%s", err, out)
				}
				if n := len(spooled(t, sd)); n != 1 {
					t.Errorf("%d spooled after a wrong password", n)
				}
			})
		}
	})
}

const pyAuth = `
import smtplib, ssl, sys
mode, host, port, ca, user, pw = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context(cafile=ca)
msg = b"From: " + user.encode() + b"\r\nTo: f@elsewhere.example\r\nSubject: auth\r\n\r\nsubmitted\r\n"
def connect():
    if mode == "implicit":
        return smtplib.SMTP_SSL(host, port, local_hostname="py.example", context=ctx, timeout=20)
    s = smtplib.SMTP(host, port, local_hostname="py.example", timeout=20)
    s.ehlo()
    assert not s.has_extn("auth"), "AUTH offered before TLS"
    s.starttls(context=ctx)
    return s
s = connect()
s.ehlo()
assert s.has_extn("auth") and "PLAIN" in s.esmtp_features["auth"]
try:
    s.login(user, "wrong")
    print("wrong password accepted")
    sys.exit(1)
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535, e
s.login(user, pw)
s.sendmail(user, ["f@elsewhere.example"], msg)
s.quit()
print("OK")
`

func TestAuthPython(t *testing.T) {
	py := testutil.Need(t, "python3")
	pw := passwordFile(t)
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for _, mode := range []string{"starttls", "implicit"} {
			t.Run(mode, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				addr := start(sd, authEnv(pki, pw, "SMTP_TLS_MODE="+mode)...)
				host, port, _ := net.SplitHostPort(addr)
				out, err := exec.Command(py, "-c", pyAuth, mode, host, port, pki.ca, authUser, authPass).CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "OK" {
					t.Fatalf("python: %v\n%s", err, out)
				}
				checkAuthMessage(t, sd, "f@elsewhere.example")
			})
		}
	})
}

func TestAuthCurl(t *testing.T) {
	curl := testutil.Need(t, "curl")
	pw := passwordFile(t)
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for mode, scheme := range map[string]string{"starttls": "smtp", "implicit": "smtps"} {
			t.Run(mode, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				addr := start(sd, authEnv(pki, pw, "SMTP_TLS_MODE="+mode)...)
				msg := filepath.Join(t.TempDir(), "msg")
				os.WriteFile(msg, []byte("From: "+authUser+"\r\nTo: c@elsewhere.example\r\nSubject: curl\r\n\r\nfrom curl\r\n"), 0o644)
				args := []string{"-sS", "--max-time", "20", "--ssl-reqd", "--cacert", pki.ca, scheme + "://" + addr,
					"--mail-from", authUser, "--mail-rcpt", "c@elsewhere.example", "-T", msg, "--user"}
				out, err := exec.Command(curl, append(args, authUser+":"+authPass)...).CombinedOutput()
				if err != nil {
					t.Fatalf("curl: %v\n%s", err, out)
				}
				checkAuthMessage(t, sd, "c@elsewhere.example")
				// curl's exit status 67: "the user name, password, or
				// similar was not accepted".
				cmd := exec.Command(curl, append(args, authUser+":wrong")...)
				if out, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 67 {
					t.Errorf("curl with a wrong password: exit %d, want 67\n%s", cmd.ProcessState.ExitCode(), out)
				}
				if n := len(spooled(t, sd)); n != 1 {
					t.Errorf("%d spooled after a wrong password", n)
				}
			})
		}
	})
}

func TestAuthMsmtp(t *testing.T) {
	msmtp := testutil.Need(t, "msmtp")
	pw := passwordFile(t)
	forLaunchers(t, func(t *testing.T, start func(string, ...string) string) {
		for mode, starttls := range map[string]string{"starttls": "on", "implicit": "off"} {
			t.Run(mode, func(t *testing.T) {
				pki, sd := newPKI(t), newSpool(t)
				addr := start(sd, authEnv(pki, pw, "SMTP_TLS_MODE="+mode)...)
				host, port, _ := net.SplitHostPort(addr)
				conf := filepath.Join(t.TempDir(), "msmtprc")
				os.WriteFile(conf, []byte("account default\nhost "+host+"\nport "+port+"\ndomain msmtp.example\n"+
					"tls on\ntls_starttls "+starttls+"\ntls_trust_file "+pki.ca+"\ntls_host_override mx.test.example\n"+
					"auth on\nuser "+authUser+"\npassword "+authPass+"\nfrom "+authUser+"\ntimeout 20\n"), 0o600)
				cmd := exec.Command(msmtp, "-C", conf, "m@elsewhere.example")
				cmd.Stdin = strings.NewReader("From: " + authUser + "\nTo: m@elsewhere.example\nSubject: msmtp\n\nfrom msmtp\n")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("msmtp: %v\n%s", err, out)
				}
				checkAuthMessage(t, sd, "m@elsewhere.example")
			})
		}
	})
}

// b64 is the base64 of s, for a hand-made SASL exchange.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestAuthRefusals: each refusal of AUTH through the binary over real
// TLS: not before TLS (538 5.7.11, not advertised), MAIL before AUTH
// when required (530 5.7.0), twice (503 5.5.1), a stranger that failed
// AUTH cannot relay, and the log names the user but not the password.
func TestAuthRefusals(t *testing.T) {
	pki, sd, pw := newPKI(t), newSpool(t), passwordFile(t)
	addr := startTCPServer(t, sd, authEnv(pki, pw)...)
	s := dialRaw(t, "127.0.0.1", addr)
	s.expect("", "220 ")
	s.expect("EHLO c.example", "250 STARTTLS")
	s.expect("AUTH PLAIN "+b64("\x00"+authUser+"\x00"+authPass), "538 5.7.11 ")
	s.expect("MAIL FROM:<a@example.net>", "530 5.7.0 Authentication required")
	s.starttls(pki.client())
	s.expect("EHLO c.example", "250 AUTH PLAIN LOGIN")
	s.expect("MAIL FROM:<a@example.net>", "530 5.7.0 Authentication required")
	s.expect("AUTH PLAIN "+b64("\x00"+authUser+"\x00wrong"), "535 5.7.8 ")
	s.expect("AUTH LOGIN", "334 VXNlcm5hbWU6")
	s.expect(b64(authUser), "334 UGFzc3dvcmQ6")
	s.expect(b64(authPass), "235 2.7.0 ")
	s.expect("AUTH PLAIN "+b64("\x00"+authUser+"\x00"+authPass), "503 5.5.1 ")
	s.expect("QUIT", "221 ")

	// Without AUTH required, a stranger over TLS whose AUTH failed is
	// still a stranger: local recipients only.
	sd2 := newSpool(t)
	s = dialRaw(t, "127.0.0.1", startTCPServer(t, sd2, pki.env("SMTP_AUTH_PASSWORD_FILE="+pw, "SMTP_AUTH_FAILURE_DELAY=0s", stranger)...))
	s.expect("", "220 ")
	s.expect("EHLO c.example", "250 STARTTLS")
	s.starttls(pki.client())
	s.expect("EHLO c.example", "250 AUTH PLAIN LOGIN")
	s.expect("AUTH PLAIN "+b64("\x00"+authUser+"\x00wrong"), "535 5.7.8 ")
	s.expect("MAIL FROM:<a@example.net>", "250 ")
	s.expect("RCPT TO:<victim@elsewhere.example>", "550 5.7.1 ")
	s.expect("RCPT TO:<r@example.org>", "250 ")
	s.expect("QUIT", "221 ")
}

// TestAuthLog: a failed AUTH is logged with the client and the user
// name, never the password; a good one with the user, and the
// session's spooled message carries it.
func TestAuthLog(t *testing.T) {
	pw, sd := passwordFile(t), newSpool(t)
	in := "EHLO c.example\r\nAUTH PLAIN " + b64("\x00"+authUser+"\x00guess-me") + "\r\n" +
		"AUTH PLAIN " + b64("\x00"+authUser+"\x00"+authPass) + "\r\n" +
		"MAIL FROM:<" + authUser + ">\r\nRCPT TO:<f@elsewhere.example>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
	// A local pipe session may use AUTH without TLS.
	cmd := exec.Command(binary(t))
	cmd.Env = baseEnv(sd, "SMTP_AUTH_PASSWORD_FILE="+pw, "SMTP_AUTH_FAILURE_DELAY=0s")
	cmd.Stdin = strings.NewReader(in)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "535 5.7.8") || !strings.Contains(string(out), "235 2.7.0") {
		t.Fatalf("%v\n%s", err, out)
	}
	log := stderr.String()
	if strings.Contains(log, "guess-me") || strings.Contains(log, "battery") {
		t.Errorf("the log holds a password:\n%s", log)
	}
	if !strings.Contains(log, `msg="auth failed"`) || !strings.Contains(log, "user="+authUser) || !strings.Contains(log, "client=local") {
		t.Errorf("the log does not name the failure, its user and client:\n%s", log)
	}
	if !strings.Contains(log, "auth_user="+authUser) {
		t.Errorf("the message accepted line does not name the user:\n%s", log)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 || ms[0].AuthUser != authUser {
		t.Errorf("spooled %d; want one from %s", len(ms), authUser)
	}
}

// TestAuthBruteForce: failures count toward SMTP_MAX_ERRORS (421 after
// them), each waits SMTP_AUTH_FAILURE_DELAY whether the user exists or
// not, and each counts as a session toward SMTP_RATE_MAX_PER_CLIENT, so
// the guesser's next connection is refused at the greeting.
func TestAuthBruteForce(t *testing.T) {
	pki, sd, pw := newPKI(t), newSpool(t), passwordFile(t)
	addr := startTCPServer(t, sd, authEnv(pki, pw, "SMTP_AUTH_FAILURE_DELAY=300ms", "SMTP_MAX_ERRORS=3",
		"SMTP_RATE_MAX_PER_CLIENT=5")...)
	s := dialRaw(t, "127.0.0.1", addr)
	s.expect("", "220 ")
	s.expect("EHLO c.example", "250 STARTTLS")
	s.starttls(pki.client())
	s.expect("EHLO c.example", "250 AUTH PLAIN LOGIN")
	for i, user := range []string{authUser, "nobody@example.org", authUser, "root"} {
		start := time.Now()
		s.expect("AUTH PLAIN "+b64("\x00"+user+"\x00guess"), "535 5.7.8 ")
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Errorf("failure %d (%s) answered after %v, want at least 300ms", i, user, took)
		}
	}
	if r := s.cmd(""); !strings.HasPrefix(r, "421 4.7.0") {
		t.Errorf("after 4 failures with SMTP_MAX_ERRORS=3: %q", r)
	}
	// One session and four failures count five: the sixth is refused.
	s = dialRaw(t, "127.0.0.1", addr)
	if r := s.cmd(""); !strings.HasPrefix(r, "421 4.7.0") {
		t.Errorf("the guesser's next session: %q, want 421 4.7.0", r)
	}
}

// TestAuthCheckpassword: SMTP_AUTH_CHECKPASSWORD through the binary:
// exit 0 lets the client relay, 1 is 535 5.7.8, 111 is 454 4.7.0.
func TestAuthCheckpassword(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "checkpassword")
	os.WriteFile(prog, []byte(`#!/bin/sh
case "$(head -c 600 <&3 | tr '\000' '|')" in
"carol|pw||") exec "$@" ;;
dbdown*) exit 111 ;;
esac
exit 1
`), 0o755)
	pki, sd := newPKI(t), newSpool(t)
	addr := startTCPServer(t, sd, pki.env("SMTP_AUTH_CHECKPASSWORD="+prog, "SMTP_AUTH_FAILURE_DELAY=0s", stranger)...)
	s := dialRaw(t, "127.0.0.1", addr)
	s.expect("", "220 ")
	s.expect("EHLO c.example", "250 STARTTLS")
	s.starttls(pki.client())
	s.expect("EHLO c.example", "250 AUTH PLAIN LOGIN")
	s.expect("AUTH PLAIN "+b64("\x00carol\x00nope"), "535 5.7.8 ")
	s.expect("AUTH PLAIN "+b64("\x00dbdown\x00x"), "454 4.7.0 ")
	s.expect("AUTH PLAIN "+b64("\x00carol\x00pw"), "235 2.7.0 ")
	s.expect("MAIL FROM:<carol@example.net>", "250 ")
	s.expect("RCPT TO:<f@elsewhere.example>", "250 ")
	s.expect("QUIT", "221 ")
}

// TestAuthBadPasswordFile: a password file others may read, or with a
// bad line, refuses every session with 421 and a log line naming the
// variable; nobody gets in without the checker and nothing is served
// without it.
func TestAuthBadPasswordFile(t *testing.T) {
	pw := passwordFile(t)
	os.Chmod(pw, 0o644)
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("alice:plaintext-password\n"), 0o600)
	for name, tc := range map[string]struct{ file, want string }{
		"readable by others": {pw, "readable or writable by others"},
		"plaintext":          {bad, "line 1"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(binary(t))
			cmd.Env = baseEnv(newSpool(t), "SMTP_AUTH_PASSWORD_FILE="+tc.file)
			cmd.Stdin = strings.NewReader("EHLO c.example\r\nQUIT\r\n")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, _ := cmd.Output()
			if string(out) != "421 4.3.0 Service not available, closing transmission channel\r\n" || cmd.ProcessState.ExitCode() != 78 {
				t.Errorf("stdout %q, exit %d", out, cmd.ProcessState.ExitCode())
			}
			if log := stderr.String(); !strings.Contains(log, "SMTP_AUTH_PASSWORD_FILE") || !strings.Contains(log, tc.want) {
				t.Errorf("log:\n%s", log)
			}
		})
	}
}

// TestHashPasswordTerminal: on a terminal (script(1) gives the binary a
// pseudo-terminal) --hash-password asks twice, prints the hash of the
// password, and refuses two that differ.
func TestHashPasswordTerminal(t *testing.T) {
	script := testutil.Need(t, "script")
	run := func(first, second string) (string, error) {
		cmd := exec.Command(script, "-qec", binary(t)+" --hash-password", "/dev/null")
		pr, pw, _ := os.Pipe()
		cmd.Stdin = pr
		go func() {
			// The second line after the prompt for it, as a person types.
			io.WriteString(pw, first+"\n")
			time.Sleep(300 * time.Millisecond)
			io.WriteString(pw, second+"\n")
			time.Sleep(300 * time.Millisecond)
			pw.Close()
		}()
		out, err := cmd.CombinedOutput()
		pr.Close()
		return string(out), err
	}
	out, err := run("pw on a tty", "pw on a tty")
	if err != nil || !strings.Contains(out, "Password: ") || !strings.Contains(out, "Again: ") || !strings.Contains(out, "$argon2id$v=19$") {
		t.Fatalf("%v\n%q", err, out)
	}
	out, err = run("one", "two")
	if err == nil || !strings.Contains(out, "differ") || strings.Contains(out, "$argon2id$") {
		t.Errorf("two different passwords: %v\n%q", err, out)
	}
}
