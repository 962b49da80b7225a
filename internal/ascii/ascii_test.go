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
