package relay

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

func TestCheckRecipient(t *testing.T) {
	p, err := New([]string{"Example.ORG.", " local.test"}, []string{"127.0.0.0/8", "::1", "192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	remote := protocol.Client{Addr: netip.MustParseAddrPort("198.51.100.7:25")}
	loop := protocol.Client{Addr: netip.MustParseAddrPort("127.0.0.1:25")}
	mapped := protocol.Client{Addr: netip.MustParseAddrPort("[::ffff:192.0.2.9]:25")}
	v6 := protocol.Client{Addr: netip.MustParseAddrPort("[::1]:25")}
	pipe := protocol.Client{Local: true}
	cases := []struct {
		client protocol.Client
		rcpt   string
		ok     bool
	}{
		{remote, "user@example.org", true},
		{remote, "user@EXAMPLE.org.", true},
		{remote, "user@local.test", true},
		{remote, "Postmaster", true},
		{remote, "postma\u017fter", false}, // long s: Unicode folds it to "s", RFC 5321 does not
		{remote, "user@elsewhere.net", false},
		{remote, "user@sub.example.org", false},
		{remote, "victim%elsewhere.net@example.org", false},
		{remote, "elsewhere.net!victim@example.org", false},
		{remote, "\"victim@elsewhere.net\"@example.org", false},
		{remote, "nodomain", false},
		{loop, "user@elsewhere.net", true},
		{mapped, "user@elsewhere.net", true},
		{v6, "user@elsewhere.net", true},
		{pipe, "user@elsewhere.net", true},
		{protocol.Client{}, "user@elsewhere.net", false},
	}
	for _, c := range cases {
		got := p.CheckRecipient(&protocol.Envelope{Client: c.client}, c.rcpt) == nil
		if got != c.ok {
			t.Errorf("client %v rcpt %q: accepted=%v, want %v", c.client, c.rcpt, got, c.ok)
		}
	}
}

func TestDefaultIsNoOpenRelay(t *testing.T) {
	p, err := New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := protocol.Client{Addr: netip.MustParseAddrPort("203.0.113.5:1234")}
	if r := p.CheckRecipient(&protocol.Envelope{Client: c}, "a@b.example"); r == nil || r.Code != 550 || r.Enhanced != "5.7.1" {
		t.Fatalf("got %v, want 550 5.7.1", r)
	}
	// AUTH grants relaying (RFC 6409) to that envelope's session only.
	if r := p.CheckRecipient(&protocol.Envelope{Client: c, AuthUser: "alice"}, "a@b.example"); r != nil {
		t.Fatalf("authenticated client refused: %v", r)
	}
	if r := p.CheckRecipient(&protocol.Envelope{Client: c}, "a@b.example"); r == nil {
		t.Fatal("the policy remembered an authentication")
	}
	p.Trust()
	if r := p.CheckRecipient(&protocol.Envelope{Client: c}, "a@b.example"); r != nil {
		t.Fatalf("trusted client refused: %v", r)
	}
}

func TestBadNetwork(t *testing.T) {
	if _, err := New(nil, []string{"300.1.2.3/8"}); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}

// TestUnicodeFoldingIsNoRelay is the open relay of issue 8: Unicode case
// folding turns U+0130 into "i", so "u@İnternal.example" passed for the
// local "internal.example", while DNS and the smarthost see the domain
// xn--internal-o0e.example, someone else's. Without relay rights it must
// be refused; a local domain must match in either of its IDNA forms.
func TestUnicodeFoldingIsNoRelay(t *testing.T) {
	p, err := New([]string{"internal.example", "bücher.example", "xn--caf-dma.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	remote := &protocol.Envelope{Client: protocol.Client{Addr: netip.MustParseAddrPort("198.51.100.7:25")}, SMTPUTF8: true}
	for _, tc := range []struct {
		rcpt string
		ok   bool
	}{
		{"u@\u0130nternal.example", false},      // İ: xn--internal-o0e, not ours
		{"u@\u0130NTERNAL.EXAMPLE", false},      // and in upper case
		{"u@internal.\u0130xample", false},      // in another label
		{"u@xn--internal-o0e.example", false},   // its A-label
		{"u@\u212anternal.example", false},      // Kelvin sign: "knternal"
		{"u@INTERNAL.example", true},            // ASCII case folding
		{"u@\uff49nternal.example", true},       // fullwidth i: IDNA maps it to i
		{"u@bücher.example", true},              // U-label as configured
		{"u@B\u00dcCHER.EXAMPLE", true},         // UTS #46 maps Ü to ü
		{"u@xn--bcher-kva.example", true},       // A-label of a U-label configured
		{"u@XN--BCHER-KVA.EXAMPLE.", true},      // in upper case, with the root dot
		{"u@café.example", true},                // U-label of an A-label configured
		{"u@cafe\u0301.example", true},          // NFC makes it café
		{"u@b\u00fccher.example\u3002", true},   // ideographic full stop
		{"u@xn--zz.b\u00fccher.example", false}, // bad Punycode: no A-label, not local
		{"u@\u202einternal.example", false},     // bidi override: no A-label
	} {
		got := p.CheckRecipient(remote, tc.rcpt) == nil
		if got != tc.ok {
			t.Errorf("rcpt %q: accepted=%v, want %v", tc.rcpt, got, tc.ok)
		}
	}
}

// SetLocalRecipients: the file is read at the first recipient in a
// local domain and only then (a session with none never opens it), once
// for all sessions sharing the policy; an unknown local part gets 550
// 5.1.1 from any client, postmaster and known names (ASCII case
// ignored) pass; an unreadable file defers local recipients with 451
// 4.3.0 and is reported once.
func TestLocalRecipients(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "aliases")
	p, err := New([]string{"example.org"}, []string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	p.SetLocalRecipients(path, func(err error) { errs = append(errs, err) })
	env := &protocol.Envelope{Client: protocol.Client{Addr: netip.MustParseAddrPort("127.0.0.1:25")}}
	if r := p.CheckRecipient(env, "x@elsewhere.net"); r != nil || len(errs) != 0 {
		t.Fatalf("a remote recipient: %v, file errors %v (the file was read)", r, errs)
	}
	if err := os.WriteFile(path, []byte("staff: alice\nAlice: alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for rcpt, want := range map[string]*protocol.Reply{"alice@example.org": nil, "STAFF@Example.ORG": nil,
		"postmaster@example.org": nil, "postmaster": nil, "bob@example.org": ReplyUnknownUser, "bob@elsewhere.net": nil} {
		if r := p.CheckRecipient(env, rcpt); r != want {
			t.Errorf("%s: %v, want %v", rcpt, r, want)
		}
	}
	remote := &protocol.Envelope{Client: protocol.Client{Addr: netip.MustParseAddrPort("198.51.100.7:25")}}
	if r := p.CheckRecipient(remote, "bob@example.org"); r != ReplyUnknownUser {
		t.Errorf("remote client, unknown user: %v", r)
	}
	if r := p.CheckRecipient(remote, "bob@elsewhere.net"); r != ReplyDenied {
		t.Errorf("remote client, other domain: %v", r)
	}
	os.Remove(path)
	if r := p.CheckRecipient(env, "bob@example.org"); r != ReplyUnknownUser {
		t.Errorf("the file is read once per process: %v", r)
	}
	q, _ := New([]string{"example.org"}, nil)
	q.SetLocalRecipients(path, func(err error) { errs = append(errs, err) })
	for range 2 {
		if r := q.CheckRecipient(remote, "alice@example.org"); r != ReplyUsersUnavailable {
			t.Errorf("missing file: %v", r)
		}
	}
	if len(errs) != 1 {
		t.Errorf("errors reported: %v, want one", errs)
	}
}
