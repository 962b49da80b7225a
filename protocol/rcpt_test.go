package protocol

import (
	"slices"
	"strings"
	"testing"
)

// recordingPolicy accepts what its inner policy accepts and records the
// forward-paths it was asked about.
type recordingPolicy struct {
	inner Policy
	asked []string
}

func (p *recordingPolicy) CheckRecipient(env *Envelope, rcpt string) *Reply {
	p.asked = append(p.asked, rcpt)
	return p.inner.CheckRecipient(env, rcpt)
}

// envelopeTo runs one transaction with the RCPT TO lines of rcpts and
// returns the recipients of the committed message and the paths the
// policy was asked about. The policy accepts recipients in domains
// (compared in ASCII) and postmaster; everything for no domains.
func envelopeTo(t *testing.T, cfg Config, domains []string, rcpts ...string) (to, asked []string) {
	t.Helper()
	in := "EHLO c.example\r\nMAIL FROM:<a@c.example> SMTPUTF8\r\n"
	for _, r := range rcpts {
		in += "RCPT TO:" + r + "\r\n"
	}
	in += "DATA\r\nhi\r\n.\r\nQUIT\r\n"
	d := &fakeDelivery{}
	pol := &recordingPolicy{inner: &relayPolicy{domains: domains}}
	out, err := serveWith(cfg, pol, d, in)
	if err != nil || len(d.committed()) != 1 {
		t.Fatalf("Serve returned %v, %d messages: %q", err, len(d.committed()), out)
	}
	return d.committed()[0].env.To, pol.asked
}

// TestBarePostmasterQualified is issue 8 item 12: RCPT TO:<postmaster>
// left as "postmaster", which the smarthost took for its own
// postmaster. The envelope now says postmaster@PostmasterDomain (by
// default Hostname, in canonical form); the policy is still asked about
// the bare "postmaster", which it accepts from anyone (RFC 5321 section
// 4.5.1).
func TestBarePostmasterQualified(t *testing.T) {
	for _, tc := range []struct {
		domain string // Config.PostmasterDomain
		want   string
	}{
		{"", "postmaster@mx.example.net"},
		{"Example.ORG", "postmaster@example.org"},
		{"B\u00fccher.Example", "postmaster@xn--bcher-kva.example"},
	} {
		cfg := testConfig()
		cfg.PostmasterDomain = tc.domain
		to, asked := envelopeTo(t, cfg, []string{"example.net"}, "<PostMaster>", "<postmaster>", "<bob@example.net>")
		if !slices.Equal(to, []string{tc.want, "bob@example.net"}) {
			t.Errorf("PostmasterDomain %q: envelope To %q, want [%s bob@example.net]", tc.domain, to, tc.want)
		}
		if !slices.Equal(asked, []string{"postmaster", "bob@example.net"}) {
			t.Errorf("PostmasterDomain %q: policy asked about %q", tc.domain, asked)
		}
	}
}

// TestDuplicateRecipients: a recipient given again is accepted and kept
// once, its domain compared in canonical form (either IDNA form, any
// ASCII case), its local part exactly.
func TestDuplicateRecipients(t *testing.T) {
	to, _ := envelopeTo(t, testConfig(), nil,
		"<bob@example.net>", "<bob@EXAMPLE.NET>", "<Bob@example.net>",
		"<postmaster>", "<postmaster@MX.example.net>",
		"<u@b\u00fccher.example>", "<u@XN--BCHER-KVA.example>", "<u@B\u00dcCHER.example>",
		"<u@\u0130.example>", "<u@i.example>")
	want := []string{"bob@example.net", "Bob@example.net", "postmaster@mx.example.net",
		"u@b\u00fccher.example", "u@\u0130.example", "u@i.example"}
	if !slices.Equal(to, want) {
		t.Errorf("envelope To %q, want %q", to, want)
	}
}

func TestValidDomain(t *testing.T) {
	for d, want := range map[string]bool{
		"example.org":                   true,
		"mx1.Example.ORG":               true,
		"b\u00fccher.example":           true,
		"localhost":                     true,
		"":                              false,
		"example.org.":                  false, // no root dot in a forward-path
		"a b.example":                   false,
		"a_b.example":                   false,
		"-a.example":                    false,
		"[192.0.2.1]":                   false,
		"u@example.org":                 false,
		"a..b":                          false,
		"\u0130.example\x85":            false,
		"\u202eexample.org":             false, // no A-label
		strings.Repeat("a.", 128) + "a": false,
	} {
		if got := ValidDomain(d); got != want {
			t.Errorf("ValidDomain(%q) = %v", d, got)
		}
	}
}
