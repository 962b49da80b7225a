package main

import (
	"strings"
	"testing"
	"time"
)

// remote names an untrusted client the way tcpserver does, on a pipe.
var remote = []string{"TCPREMOTEIP=198.51.100.7", "TCPREMOTEPORT=4000"}

// TestUnicodeRelayRefused is the open relay of issue 8, through the
// binary: "u@\u0130nternal.example" with SMTPUTF8 from an untrusted client
// was accepted for the local internal.example (Unicode folds U+0130 to
// "i"; IDNA, and so the smarthost, makes it xn--internal-o0e.example)
// and queued for smtp-send. It is refused now and nothing is spooled; a
// local domain still matches in both its IDNA forms.
func TestUnicodeRelayRefused(t *testing.T) {
	sd := newSpool(t)
	env := append([]string{"SMTP_LOCAL_DOMAINS=internal.example,b\u00fccher.example"}, remote...)
	in := "EHLO c\r\nMAIL FROM:<a@example.net> SMTPUTF8\r\n" +
		"RCPT TO:<u@\u0130nternal.example>\r\n" +
		"RCPT TO:<u@\u0130NTERNAL.EXAMPLE>\r\n" +
		"RCPT TO:<u@xn--internal-o0e.example>\r\n" +
		"RSET\r\n" +
		"MAIL FROM:<a@example.net> SMTPUTF8\r\n" +
		"RCPT TO:<v@XN--BCHER-KVA.example>\r\n" +
		"RCPT TO:<w@B\u00dcCHER.example>\r\n" +
		"DATA\r\n" + helloBody + ".\r\nQUIT\r\n"
	out, _ := pipeSession(t, sd, in, env...)
	wantCodes(t, out, "220", "250", "250", "550", "550", "550", "250", "250", "250", "250", "354", "250", "221")
	ms := spooled(t, sd)
	if len(ms) != 1 || strings.Join(ms[0].To, ",") != "v@XN--BCHER-KVA.example,w@B\u00dcCHER.example" {
		t.Fatalf("spooled %d messages: %+v", len(ms), ms)
	}
}

// TestLocalDomainWithoutALabel: a non-ASCII local domain that IDNA
// refuses could never match; it is a configuration error (421, exit 78)
// that names it, not a silent hole.
func TestLocalDomainWithoutALabel(t *testing.T) {
	sd := newSpool(t)
	r := serve(t, withStdin(newCmd(sd, "SMTP_LOCAL_DOMAINS=example.org,a_b.b\u00fccher.example"), "QUIT\r\n"), 30*time.Second)
	if !strings.HasPrefix(r.out, "421 4.3.0 ") || r.state.ExitCode() != 78 || !strings.Contains(r.errOut, "a_b.b\u00fccher.example") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.state.ExitCode(), r.out, r.errOut)
	}
}

// TestRelayProbesGet421: issue 8 found 60 "550 5.7.1" relay refusals in
// a row without a 421. Every refusal counts toward SMTP_MAX_ERRORS (20
// by default): the 21st is followed by 421 4.7.0 and the end of the
// session.
func TestRelayProbesGet421(t *testing.T) {
	sd := newSpool(t)
	in := "EHLO c\r\nMAIL FROM:<a@example.net>\r\n" +
		strings.Repeat("RCPT TO:<victim@elsewhere.example>\r\n", 60) + "QUIT\r\n"
	out, _ := pipeSession(t, sd, in, remote...)
	want := []string{"220", "250", "250"}
	for range 21 {
		want = append(want, "550")
	}
	wantCodes(t, out, append(want, "421")...)
	if !strings.HasSuffix(out, "\r\n421 4.7.0 mx.test.example Too many errors, closing connection\r\n") {
		t.Fatalf("last reply is not 421 4.7.0:\n%s", out)
	}
}

// TestBarePostmasterQualified is issue 8 item 12: RCPT TO:<postmaster>
// was spooled as "postmaster", which the smarthost took for its own
// postmaster. It is still accepted from any client (RFC 5321 section
// 4.5.1), and the spool file now holds postmaster@SMTP_POSTMASTER_DOMAIN
// (by default SMTP_HOSTNAME), once however often it is given.
func TestBarePostmasterQualified(t *testing.T) {
	in := "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<PostMaster>\r\nRCPT TO:<postmaster>\r\nDATA\r\n" + helloBody + ".\r\nQUIT\r\n"
	for _, tc := range []struct {
		env  string
		want string
	}{
		{"", "postmaster@mx.test.example"},
		{"SMTP_POSTMASTER_DOMAIN=Example.ORG", "postmaster@example.org"},
		{"SMTP_POSTMASTER_DOMAIN=b\u00fccher.example", "postmaster@xn--bcher-kva.example"},
	} {
		sd := newSpool(t)
		out, _ := pipeSession(t, sd, in, append([]string{tc.env}, remote...)...)
		wantCodes(t, out, "220", "250", "250", "250", "250", "354", "250", "221")
		ms := spooled(t, sd)
		if len(ms) != 1 || strings.Join(ms[0].To, ",") != tc.want {
			t.Fatalf("%s: spooled %d messages, recipients %v; want %s", tc.env, len(ms), ms[0].To, tc.want)
		}
	}
}

// TestBadPostmasterDomain: a value that is no domain name would be
// spooled as a recipient no smarthost takes; it is a configuration
// error, 421 and exit 78, naming the variable.
func TestBadPostmasterDomain(t *testing.T) {
	for _, v := range []string{"example.org, other.example", "[192.0.2.1]", "u@example.org", "a_b.b\u00fccher.example"} {
		sd := newSpool(t)
		r := serve(t, withStdin(newCmd(sd, "SMTP_POSTMASTER_DOMAIN="+v), "QUIT\r\n"), 30*time.Second)
		if !strings.HasPrefix(r.out, "421 4.3.0 ") || r.state.ExitCode() != 78 || !strings.Contains(r.errOut, "SMTP_POSTMASTER_DOMAIN") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", v, r.state.ExitCode(), r.out, r.errOut)
		}
	}
}
