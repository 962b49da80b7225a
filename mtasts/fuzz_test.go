package mtasts

import (
	"strings"
	"testing"
)

// FuzzParsePolicy: any text parses or fails without a panic; a parsed
// policy has a valid mode and max_age, mx patterns of the allowed form,
// and matches each of its non-wildcard patterns.
func FuzzParsePolicy(f *testing.F) {
	f.Add(good)
	f.Add("version: STSv1\nmode: none\nmax_age: 0\n")
	f.Add("version: STSv1\r\nmode: testing\r\nmx: *.a.test.\r\nmax_age: 5\r\n")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePolicy(strings.NewReader(text))
		if err != nil {
			return
		}
		if p.Mode < ModeNone || p.Mode > ModeEnforce || p.MaxAge < 0 || p.MaxAge.Seconds() > MaxAge {
			t.Fatalf("%+v", p)
		}
		for _, pat := range p.MX {
			if _, err := parsePattern(pat); err != nil {
				t.Fatalf("pattern %q: %v", pat, err)
			}
			if !strings.HasPrefix(pat, "*.") && !p.Match(pat) {
				t.Fatalf("%q does not match itself", pat)
			}
		}
	})
}
