package relay

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// aLabel is the fuzz oracle's own idea of the form in which DNS, and the
// smarthost, see domain d, computed without the code under test: an
// ASCII domain folded to lower case (RFC 4343) without one root dot; any
// other the A-label of UTS #46's lookup profile of d without one root
// dot (any of the four full stops of UTS #46 section 2.3), which must
// have no empty label (UTS #46 since Unicode 15.1 refuses an "xn--"
// label that decodes to nothing, which x/net/idna empties). A domain
// that is not valid UTF-8 has none (x/net/idna reads each bad byte as
// U+FFFD and converts it). It reports false for a domain without an
// A-label.
func aLabel(d string) (string, bool) {
	if isASCIIString(d) {
		a := strings.TrimSuffix(strings.ToLower(d), ".")
		return a, a != ""
	}
	if !utf8.ValidString(d) { // RFC 6531 section 3.3: a U-label is UTF-8
		return "", false
	}
	r := []rune(d)
	if n := len(r); n > 0 && strings.ContainsRune(".\u3002\uff0e\uff61", r[n-1]) {
		d = string(r[:n-1])
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil || !isASCIIString(a) || slices.Contains(strings.Split(a, "."), "") {
		return "", false
	}
	return strings.ToLower(a), true
}

func isASCIIString(s string) bool {
	for _, r := range s {
		if r >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// FuzzIsLocal holds the relay decision against its oracle (issue 8): a
// recipient is local, and so accepted from a client without relay
// rights, if and only if the A-label of its domain equals the A-label of
// a configured local domain. conf is the SMTP_LOCAL_DOMAINS list, rcpt
// the recipient's domain. The seeds are letters that Unicode case rules
// fold onto ASCII while IDNA maps them elsewhere or nowhere (U+0130, the
// Kelvin sign, long s, dotless i), fullwidth letters and stops, both IDNA
// forms, mixed case and trailing dots.
func FuzzIsLocal(f *testing.F) {
	for _, s := range [][2]string{
		{"internal.example", "\u0130nternal.example"},
		{"internal.example", "\u0130NTERNAL.EXAMPLE"},
		{"\u0130nternal.example", "i\u0307nternal.example"},
		{"kelvin.example", "\u212aelvin.example"},
		{"\u212aelvin.example", "KELVIN.example"},
		{"master.example", "ma\u017fter.example"},
		{"mail.example", "ma\u0131l.example"},
		{"example.org", "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org"},
		{"example.org", "example\uff0eorg"},
		{"example.org", "example.org\u3002"},
		{"Example.ORG.", "example.org"},
		{"example.org", "EXAMPLE.org.."},
		{"b\u00fccher.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.EXAMPLE", "B\u00dcCHER.example."},
		{"stra\u00dfe.de", "strasse.de"},
		{"caf\u00e9.example", "cafe\u0301.example"},
		{"a.example, b.example", "B.Example"},
		{"[192.0.2.1]", "[192.0.2.1]"},
		{"xn--zz.example", "xn--zz.example"},
		{"example.org", "\u202eexample.org"},
		{"", "."},
	} {
		f.Add(s[0], s[1])
	}
	remote := &protocol.Envelope{Client: protocol.Client{Addr: netip.MustParseAddrPort("198.51.100.7:25")}}
	f.Fuzz(func(t *testing.T, conf, rcpt string) {
		if strings.Contains(rcpt, "@") {
			t.Skip() // the domain is what follows the last "@"
		}
		list := strings.Split(conf, ",")
		want, valid := map[string]bool{}, true
		for _, d := range list {
			if d = strings.TrimSpace(d); d == "" {
				continue
			}
			a, ok := aLabel(d)
			if !ok {
				valid = false
			}
			want[a] = true
		}
		p, err := New(list, nil)
		if (err == nil) != valid {
			t.Fatalf("New(%q): err %v, want an error: %v", list, err, !valid)
		}
		if err != nil {
			return
		}
		a, ok := aLabel(rcpt)
		local := ok && want[a]
		if got := p.IsLocal("u@" + rcpt); got != local {
			t.Fatalf("local domains %q, rcpt domain %q (A-label %q, %v): IsLocal %v, oracle %v", list, rcpt, a, ok, got, local)
		}
		if got := p.CheckRecipient(remote, "u@"+rcpt) == nil; got != local {
			t.Fatalf("local domains %q, rcpt domain %q: accepted %v, oracle %v", list, rcpt, got, local)
		}
	})
}
