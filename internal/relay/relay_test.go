package relay

import (
	"net/netip"
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
