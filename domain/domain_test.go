package domain

import (
	"errors"
	"testing"
)

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "example.org", want: "example.org"},
		{in: "EXAMPLE.Org.", want: "example.org"},
		{in: "Bücher.EXAMPLE", want: "xn--bcher-kva.example"},
		{in: "XN--BCHER-KVA.example", want: "xn--bcher-kva.example"},
		{in: "bücher.example\u3002", want: "xn--bcher-kva.example"}, // ideographic full stop
		{in: "\u0130nternal.example", want: "xn--internal-o0e.example"},
		{in: "\u212aelvin.example", want: "kelvin.example"}, // UTS #46 maps the Kelvin sign to k
		{in: "ma\u017fter.example", want: "master.example"}, // and long s to s
		{in: "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org", want: "example.org"},
		{in: "stra\u00dfe.de", want: "xn--strae-oqa.de"}, // nontransitional: ß stays
		{in: "[IPv6:::1]", want: "[ipv6:::1]"},           // ASCII: folded, not validated
		{in: "a_b.example", want: "a_b.example"},
		{in: "example.org..", want: "example.org."}, // one root dot only
		{in: "", bad: true},
		{in: ".", bad: true},
		{in: "\u3002", bad: true},
		{in: "a_b.bücher", bad: true},    // STD3: "_" is disallowed in IDNA
		{in: "xn--zz.bücher", bad: true}, // bad Punycode
		{in: "\u202eexample.org", bad: true},
		{in: "internal.example\u3002xn--", bad: true}, // x/net/idna: an empty label
		{in: "a..b\u00fccher", bad: true},
		{in: "\x85", bad: true}, // x/net/idna: "xn--zn7c", as for "\x86"
		{in: "a\xffb.b\u00fccher", bad: true},
	} {
		got, err := Canonical(tc.in)
		switch {
		case tc.bad && err == nil:
			t.Errorf("Canonical(%q) = %q, want an error", tc.in, got)
		case !tc.bad && err != nil:
			t.Errorf("Canonical(%q): %v", tc.in, err)
		case !tc.bad && got != tc.want:
			t.Errorf("Canonical(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := Canonical(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("Canonical(\"\"): %v, want ErrEmpty", err)
	}
}

// TestSameDomain: two spellings are the same domain exactly when their
// canonical forms are equal.
func TestSameDomain(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"example.org", "EXAMPLE.ORG.", true},
		{"bücher.example", "xn--bcher-kva.EXAMPLE", true},
		{"\u0130nternal.example", "internal.example", false}, // the open relay of issue 8
		{"\u0130nternal.example", "xn--internal-o0e.example", true},
	} {
		ca, erra := Canonical(tc.a)
		cb, errb := Canonical(tc.b)
		if erra != nil || errb != nil || (ca == cb) != tc.want {
			t.Errorf("%q (%q, %v) and %q (%q, %v): same %v, want %v", tc.a, ca, erra, tc.b, cb, errb, ca == cb, tc.want)
		}
	}
}

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		addr, want string
		ok         bool
	}{
		{"u@example.org", "example.org", true},
		{"\"a@b\"@example.org", "example.org", true},
		{"postmaster", "", false},
		{"u@", "", true},
	} {
		if got, ok := Of(tc.addr); got != tc.want || ok != tc.ok {
			t.Errorf("Of(%q) = %q, %v", tc.addr, got, ok)
		}
	}
}
