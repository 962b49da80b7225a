package alias

import (
	"errors"
	"strings"
	"testing"
)

// FuzzAliasFile: any text either parses or fails with a *LineError
// naming a line that exists, never panics; an expansion of a parsed
// table stays within MaxFanOut, holds no address twice and never the
// alias itself unless it lists itself, or fails with ErrTooDeep or
// ErrTooMany.
func FuzzAliasFile(f *testing.F) {
	f.Add(file, "team@example.org")
	f.Add("a: b\nb: c@other.example\n", "A@example.org")
	f.Add("a: a, b\n\tc\n#x\n d\n", "a@example.org")
	f.Add("a: |x\n", "a@b")
	f.Add("a: b@other.example\nb: a@example.org\n", "a@example.org")
	f.Fuzz(func(t *testing.T, text, addr string) {
		tb, err := Parse(strings.NewReader(text), "f")
		lines := strings.Count(text, "\n") + 1
		if err != nil {
			var le *LineError
			if errors.As(err, &le) && (le.Line < 1 || le.Line > lines) {
				t.Fatalf("error names line %d of %d: %v", le.Line, lines, err)
			}
			return
		}
		got, isAlias, err := tb.Expand(addr, local)
		if err != nil {
			if !errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrTooMany) {
				t.Fatalf("Expand(%q): unexpected error %v", addr, err)
			}
			return
		}
		if !isAlias && got != nil || len(got) > MaxFanOut {
			t.Fatalf("Expand(%q) = %d addresses, alias %v", addr, len(got), isAlias)
		}
		seen := map[string]bool{}
		for _, a := range got {
			l, d := split(a)
			k := fold(l, d)
			if seen[k] {
				t.Fatalf("Expand(%q) gives %q twice", addr, a)
			}
			seen[k] = true
			if !strings.Contains(a, "@") {
				t.Fatalf("Expand(%q) gives %q without a domain", addr, a)
			}
		}
	})
}
