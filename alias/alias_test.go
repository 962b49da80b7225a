package alias

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const file = `# the RFC 2142 roles
postmaster: root
abuse:      root
root:       alice, bob@example.net
Staff:      alice,
	carol,
  # a comment between continuation lines
	dave@example.org
alice:      alice
keep:       keep, carol
team:       staff, root, ALICE
`

func local(d string) bool { return d == "example.org" || d == "other.example" }

func TestExpand(t *testing.T) {
	tb, err := Parse(strings.NewReader(file), "aliases")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr  string
		want  []string
		alias bool
	}{
		{"postmaster@example.org", []string{"alice@example.org", "bob@example.net"}, true},
		{"POSTMASTER@example.org", []string{"alice@example.org", "bob@example.net"}, true},
		{"staff@other.example", []string{"alice@other.example", "carol@other.example", "dave@example.org"}, true},
		{"alice@example.org", nil, false},  // lists only itself: a mailbox
		{"nobody@example.org", nil, false}, // not in the file
		{"keep@example.org", []string{"keep@example.org", "carol@example.org"}, true},
		// Duplicates once, in file order; the case of the first kept.
		{"team@example.org", []string{"alice@example.org", "carol@example.org", "dave@example.org", "bob@example.net"}, true},
	} {
		got, alias, err := tb.Expand(c.addr, local)
		if err != nil || alias != c.alias || !slices.Equal(got, c.want) {
			t.Errorf("Expand(%q) = %q, %v, %v; want %q, %v", c.addr, got, alias, err, c.want, c.alias)
		}
	}
	if !tb.Has("Postmaster") || tb.Has("nobody") || tb.Line("staff") != 5 {
		t.Errorf("Has/Line wrong: %v %v %d", tb.Has("Postmaster"), tb.Has("nobody"), tb.Line("staff"))
	}
}

// A name with a domain is expanded again only when that domain is
// local; a cycle through such names stops at the name met again.
func TestExpandAcrossDomains(t *testing.T) {
	tb, err := Parse(strings.NewReader("a: b@other.example\nb: a@example.org, c@remote.example\nc: x\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := tb.Expand("a@example.org", local)
	want := []string{"a@example.org", "c@remote.example"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	got, _, _ = tb.Expand("a@example.org", func(string) bool { return false })
	if want := []string{"b@other.example"}; !slices.Equal(got, want) {
		t.Errorf("no local domain: got %q, want %q", got, want)
	}
}

func TestLimits(t *testing.T) {
	var b strings.Builder
	for i := range MaxDepth + 1 {
		b.WriteString("n" + string(rune('a'+i)) + ": n" + string(rune('a'+i+1)) + "\n")
	}
	tb, err := Parse(strings.NewReader(b.String()), "f")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.Expand("na@example.org", local); !errors.Is(err, ErrTooDeep) {
		t.Errorf("depth %d: err %v, want ErrTooDeep", MaxDepth+1, err)
	}
	if got, _, err := tb.Expand("nb@example.org", local); err != nil || len(got) != 1 {
		t.Errorf("depth %d: %q, %v", MaxDepth, got, err)
	}
	b.Reset()
	b.WriteString("big: x0")
	for i := 1; i <= MaxFanOut; i++ {
		b.WriteString(",\n x" + strings.Repeat("1", i%7) + string(rune('a'+i%26)) + strings.Repeat("z", i/26))
	}
	b.WriteString("\n")
	if tb, err = Parse(strings.NewReader(b.String()), "f"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.Expand("big@example.org", local); !errors.Is(err, ErrTooMany) {
		t.Errorf("fan-out %d: err %v, want ErrTooMany", MaxFanOut+1, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		text string
		line int
		want string
	}{
		{"a: b\nno colon here\n", 2, "no colon"},
		{"a: |/usr/bin/procmail\n", 1, "pipe:/command route"},
		{"a: \"|/bin/x\"\n", 1, "pipe:/command route"},
		{"# c\na: b,\n /var/mail/a\n", 2, "maildir: or mbox: route"},
		{"a: :include:/etc/list\n", 1, ":include:"},
		{"a: b\nA: c\n", 2, "given twice (first on line 1)"},
		{"a:\n", 1, "no address"},
		{"a: b,,c\n", 1, "empty address"},
		{" b\n", 1, "continuation line"},
		{"a@b: c\n", 1, "bad alias name"},
		{"a: b@\n", 1, "bad address"},
		{"x: y\na: b\nb: c\nc: a\n", 4, "cycle through \"a\""},
		{"a: " + strings.Repeat("x", MaxLine) + "\n", 1, "longer than"},
	} {
		_, err := Parse(strings.NewReader(c.text), "f")
		var le *LineError
		if !errors.As(err, &le) || le.Line != c.line || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want line %d with %q", c.text, err, c.line, c.want)
		}
	}
}
