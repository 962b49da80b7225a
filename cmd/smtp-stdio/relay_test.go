package main

import (
	"strings"
	"testing"
)

// remote names an untrusted client the way tcpserver does, on a pipe.
var remote = []string{"TCPREMOTEIP=198.51.100.7", "TCPREMOTEPORT=4000"}

// The open relay of issue 8 (a Unicode domain that folds to a local one)
// is testdata/unicode_relay.txt; 60 relay probes that get 421 after the
// 21st are testdata/relay_probes.txt.

// TestLocalDomainWithoutALabel: a non-ASCII local domain that IDNA
// refuses could never match; it is a configuration error (421, exit 78)
// that names it, not a silent hole.
func TestLocalDomainWithoutALabel(t *testing.T) {
	r := stdio.Run(t, script(t, refused), "SMTP_LOCAL_DOMAINS=example.org,a_b.b\u00fccher.example")
	if !strings.Contains(r.Stderr, "a_b.b\u00fccher.example") {
		t.Fatalf("stderr %q", r.Stderr)
	}
}

// TestBarePostmasterQualified is issue 8 item 12: RCPT TO:<postmaster>
// was spooled as "postmaster", which the smarthost took for its own
// postmaster. It is still accepted from any client (RFC 5321 section
// 4.5.1), and the spool file now holds postmaster@SMTP_POSTMASTER_DOMAIN
// (by default SMTP_HOSTNAME), once however often it is given.
func TestBarePostmasterQualified(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want string
	}{
		{"", "postmaster@mx.test.example"},
		{"SMTP_POSTMASTER_DOMAIN=Example.ORG", "postmaster@example.org"},
		{"SMTP_POSTMASTER_DOMAIN=b\u00fccher.example", "postmaster@xn--bcher-kva.example"},
	} {
		stdio.Run(t, script(t, `C: EHLO c
C: MAIL FROM:<a@example.net>
C: RCPT TO:<PostMaster>
C: RCPT TO:<postmaster>
C: DATA
`+lines("C", helloBody)+`C: .
C: QUIT
S: 220 mx.test.example ESMTP ready
`+ehlo("c")+`S: 250 2.1.0 Sender OK
2 S: 250 2.1.5 Recipient OK
S: 354 Start mail input; end with <CRLF>.<CRLF>
S: 250 2.0.0 OK queued as …
S: 221 2.0.0 mx.test.example closing connection
= exit 0

E: rcpt-to: <`+tc.want+`>
`), append([]string{tc.env}, remote...)...)
	}
}

// TestBadPostmasterDomain: a value that is no domain name would be
// spooled as a recipient no smarthost takes; it is a configuration
// error, 421 and exit 78, naming the variable.
func TestBadPostmasterDomain(t *testing.T) {
	for _, v := range []string{"example.org, other.example", "[192.0.2.1]", "u@example.org", "a_b.b\u00fccher.example"} {
		r := stdio.Run(t, script(t, refused), "SMTP_POSTMASTER_DOMAIN="+v)
		if !strings.Contains(r.Stderr, "SMTP_POSTMASTER_DOMAIN") {
			t.Errorf("%q: stderr %q", v, r.Stderr)
		}
	}
}
