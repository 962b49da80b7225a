package route

import (
	"errors"
	"strings"
	"testing"
)

const table = `# the test table
*                     smtp:
example.org           smtp:[relay.example.net]:2525 tls=encrypt
.example.org          smtp:mx.example.com
deep.sub.example.org  error:5.7.1 deep is closed
.sub.example.org      smtp:[192.0.2.1]
Bob@Example.ORG       error:5.1.1 no such user   # a comment after
bücher.example        smtp:[::1]:25 tls=verify
`

func TestLookup(t *testing.T) {
	tb, err := Parse(strings.NewReader(table), "routes")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr, nexthop, pattern string
		line                   int
	}{
		{"alice@example.net", "smtp:", "*", 2},
		{"alice@example.org", "smtp:[relay.example.net]:2525", "example.org", 3},
		{"alice@EXAMPLE.org.", "smtp:[relay.example.net]:2525", "example.org", 3},
		{"bob@example.org", "error:5.1.1", "Bob@Example.ORG", 7},
		{"BOB@example.ORG", "error:5.1.1", "Bob@Example.ORG", 7},
		{"bob@a.example.org", "smtp:mx.example.com", ".example.org", 4},
		{"x@a.b.example.org", "smtp:mx.example.com", ".example.org", 4},
		{"x@sub.example.org", "smtp:mx.example.com", ".example.org", 4},
		{"x@a.sub.example.org", "smtp:[192.0.2.1]", ".sub.example.org", 6},
		{"x@deep.sub.example.org", "error:5.7.1", "deep.sub.example.org", 5},
		{"x@a.deep.sub.example.org", "smtp:[192.0.2.1]", ".sub.example.org", 6},
		{"x@xn--bcher-kva.example", "smtp:[::1]:25", "bücher.example", 8},
		{"x@BÜCHER.example", "smtp:[::1]:25", "bücher.example", 8},
		{"postmaster", "smtp:", "*", 2},
		{"x@example.org@", "smtp:", "*", 2},
	} {
		r, ok := tb.Lookup(tc.addr)
		if !ok || r.Nexthop() != tc.nexthop || r.Pattern != tc.pattern || r.Line != tc.line || r.File != "routes" {
			t.Errorf("Lookup(%q) = %+v %v, want %s from line %d (%s)", tc.addr, r, ok, tc.nexthop, tc.line, tc.pattern)
		}
	}
	r, _ := tb.Lookup("bob@example.org")
	if r.Kind != Error || r.Status != "5.1.1" || r.Text != "no such user" {
		t.Errorf("error route %+v", r)
	}
	r, _ = tb.Lookup("a@example.org")
	if r.Kind != SMTP || !r.Literal || r.Host != "relay.example.net" || r.Port != 2525 || r.TLS != TLSEncrypt {
		t.Errorf("smtp route %+v", r)
	}
	r, _ = tb.Lookup("a@x.example.org")
	if r.Literal || r.Host != "mx.example.com" || r.Port != 0 || r.TLS != TLSDefault {
		t.Errorf("MX route %+v", r)
	}

	// Without "*", an unmatched address has no route; nor has anything
	// in an empty or nil table.
	tb, err = Parse(strings.NewReader("example.org smtp:\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := tb.Lookup("a@example.com"); ok {
		t.Errorf("unmatched: %+v", r)
	}
	if r, ok := tb.Lookup("a@sub.example.org"); ok {
		t.Errorf("a domain pattern matched a subdomain: %+v", r)
	}
	var nilTable *Table
	if _, ok := nilTable.Lookup("a@example.org"); ok {
		t.Error("nil table matched")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		line int
		want string
	}{
		{"example.org", 1, "without a transport"},
		{"# c\n\nexample.org uucp:x", 3, "unknown transport"},
		{"example.org smtp", 1, "without a colon"},
		{"example.org error:4.1.1 later", 1, "permanent"},
		{"example.org error:5.1", 1, "permanent"},
		{"example.org error:", 1, "permanent"},
		{"example.org error:5.1.1234 x", 1, "permanent"},
		{"example.org smtp:[x.example", 1, "lacks its ]"},
		{"example.org smtp:[x.example]y", 1, "bad next hop"},
		{"example.org smtp:[x.example]:0", 1, "bad port"},
		{"example.org smtp:[x.example]:65536", 1, "bad port"},
		{"example.org smtp:x.example:", 1, "bad port"},
		{"example.org smtp:x.example:+25", 1, "bad port"},
		{"example.org smtp: tls=maybe", 1, "unknown TLS policy"},
		{"example.org smtp: tls=may tls=none", 1, "twice"},
		{"example.org smtp: verify", 1, "not key=value"},
		{"example.org smtp: auth=x", 1, "unknown option"},
		{"a smtp:\nA. smtp:", 2, "given again (first on line 1)"},
		{"* smtp:\n* error:5.0.0", 2, "* given again"},
		{"@example.org smtp:", 1, "bad address pattern"},
		{"a@b@example.org smtp:", 1, "bad address pattern"},
		{"..example.org smtp:", 1, "bad domain"},
		{"*.example.org smtp:", 1, "bad domain"},
		{"a..b smtp:", 1, "bad domain"},
		{"example.org smtp:a/b", 1, "bad domain"},
		{"\xff\xfe.example smtp:", 1, "UTF-8"},
		{"ok smtp:\n" + strings.Repeat("x", MaxLine+1), 2, "longer than"},
	} {
		_, err := Parse(strings.NewReader(tc.in), "tbl")
		var le *LineError
		if !errors.As(err, &le) || le.Line != tc.line || !strings.Contains(err.Error(), tc.want) ||
			!strings.HasPrefix(err.Error(), "tbl line ") {
			t.Errorf("Parse(%.80q): %.200v; want line %d, %q", tc.in, err, tc.line, tc.want)
		}
	}
	if _, err := Parse(strings.NewReader(strings.Repeat("x", MaxLine-6)+" smtp:\r\n"), "t"); err != nil {
		t.Errorf("a line of MaxLine octets: %v", err)
	}
	if _, err := Load("/nonexistent/routes"); err == nil {
		t.Error("Load of a missing file")
	}
}

func TestTLSPolicy(t *testing.T) {
	for _, s := range []string{"none", "may", "encrypt", "verify"} {
		p, err := ParseTLSPolicy(strings.ToUpper(s))
		if err != nil || p.String() != s {
			t.Errorf("%s: %v %v", s, p, err)
		}
	}
	if _, err := ParseTLSPolicy("default"); err == nil {
		t.Error("default accepted")
	}
}
