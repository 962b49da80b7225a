package ascii

import "testing"

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		s, t string
		want bool
	}{
		{"MAIL", "mail", true},
		{"PostMaster", "postmaster", true},
		{"", "", true},
		{"mail", "mai", false},
		{"\u212a", "k", false}, // Kelvin sign: not folded
		{"[", "{", false},      // '[' | 0x20 == '{': not a letter
		{"@", "`", false},
		{"Received", "received", true},
	} {
		if got := EqualFold(tc.s, tc.t); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v", tc.s, tc.t, got)
		}
		if got := EqualFold([]byte(tc.s), tc.t); got != tc.want {
			t.Errorf("EqualFold([]byte(%q), %q) = %v", tc.s, tc.t, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { EqualFold([]byte("RCPT"), "rcpt") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestLower(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"example.org", "example.org"},
		{"EXAMPLE.Org", "example.org"},
		{"\u0130NTERNAL", "\u0130nternal"}, // U+0130 stays: Unicode would give "i"
		{"\u212aELVIN", "\u212aelvin"},     // the Kelvin sign stays
		{"[IPv6:::1]", "[ipv6:::1]"},
		{"@[\\]^_`{", "@[\\]^_`{"},
	} {
		if got := Lower(tc.in); got != tc.want {
			t.Errorf("Lower(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Lower("example.org") }); n != 0 {
		t.Errorf("%v allocations for a lower-case string", n)
	}
}
