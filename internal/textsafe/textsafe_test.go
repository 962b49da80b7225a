package textsafe

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile is a family of inputs that can drive a terminal or disguise
// text: C0 and C1 controls, bidi controls, invisible format characters,
// odd separators and spaces, and broken UTF-8.
var hostile = []string{
	"\x1b[2J\x1b[31mred", "\a\b\f\v", "\x7f", "\u009b31m", "\u0085", "\u0080\u009f",
	"\u202a\u202b\u202c\u202d\u202e", "\u2066\u2067\u2068\u2069", "\u200e\u200f\u061c",
	"\u200b\u200c\u200d\u2060\ufeff\u00ad", "\u2028\u2029", "\u00a0\u3000\u2007",
	"\U000e0041\U000e007f", "\ue000\U000f0000", "\U0010ffff\ufffe",
	"\xff", "\x9b", "\xc2", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\x80",
	"tab\there", "back\\slash", `"quoted\"local"`,
}

func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"user@example.org", "user@example.org"},
		{"", ""},
		{`"a b"@example.org`, `"a b"@example.org`},
		{"jöran@bücher.example", "jöran@bücher.example"},
		{"用户@例子.广告", "用户@例子.广告"},
		{"\"x\x1b[31m\"@e.example", `"x\x1b[31m"@e.example`},
		{"\"x\u009b31m\"@e.example", `"x\u009b31m"@e.example`},
		{"\"x\x9b31m\"@e.example", `"x\x9b31m"@e.example`},
		{"\"evil\u202egro.elpmaxe\"@e.example", `"evil\u202egro.elpmaxe"@e.example`},
		{"\"\u2066a\u2069\"@e", `"\u2066a\u2069"@e`},
		{"a\u200bb", `a\u200bb`},
		{"\U000e0041", `\U000e0041`},
		{"a\\b", `a\\b`},
		{"\t\r\n", `\t\r\n`},
		{"\x00\x1f\x7f", `\x00\x1f\x7f`},
		{"\xed\xa0\x80", `\xed\xa0\x80`},
		{"\ufffd", "\ufffd"}, // a real U+FFFD is a visible symbol
	} {
		if got := Escape(c.in); got != c.want {
			t.Errorf("Escape(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

// checkEscaped holds Escape to its promise for one input: the output is
// valid UTF-8 with nothing but visible characters and the ASCII space,
// and reads back, as a Go string literal, to exactly the input.
func checkEscaped(t *testing.T, s string) {
	t.Helper()
	e := Escape(s)
	if !utf8.ValidString(e) {
		t.Fatalf("Escape(%q) = %q is not UTF-8", s, e)
	}
	for _, r := range e {
		if !strconv.IsPrint(r) {
			t.Fatalf("Escape(%q) = %q holds %U", s, e, r)
		}
	}
	back, err := strconv.Unquote(`"` + strings.ReplaceAll(e, `"`, `\"`) + `"`)
	if err != nil || back != s {
		t.Fatalf("Escape(%q) = %q reads back as %q, %v", s, e, back, err)
	}
}

func TestEscapeHostile(t *testing.T) {
	for _, h := range hostile {
		checkEscaped(t, h)
		checkEscaped(t, "\"pre"+h+"post\"@example.org")
	}
}

func FuzzEscape(f *testing.F) {
	for _, h := range hostile {
		f.Add(h)
	}
	f.Add("plain@example.org")
	f.Fuzz(checkEscaped)
}

// checkJSON holds EscapeJSON to its promise for one string: encoded by
// encoding/json, then escaped, it is valid JSON with only visible
// characters, and decodes to what encoding/json's own text decodes to.
func checkJSON(t *testing.T, s string) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"a": s, "list": []string{s, "x"}})
	if err != nil {
		t.Fatal(err)
	}
	e := EscapeJSON(raw)
	if !json.Valid(e) || !utf8.Valid(e) {
		t.Fatalf("EscapeJSON(%s) = %s is not valid", raw, e)
	}
	for _, r := range string(e) {
		if !strconv.IsPrint(r) {
			t.Fatalf("EscapeJSON(%s) = %s holds %U", raw, e, r)
		}
	}
	var want, got any
	json.Unmarshal(raw, &want)
	if err := json.Unmarshal(e, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("EscapeJSON(%s) = %s decodes to %v, want %v (%v)", raw, e, got, want, err)
	}
}

func TestEscapeJSON(t *testing.T) {
	for _, h := range hostile {
		checkJSON(t, h)
	}
	if got := string(EscapeJSON([]byte(`{"a":"x\u009by` + "\u202e\U000e0041" + `"}`))); got != `{"a":"x\u009by\u202e\udb40\udc41"}` {
		t.Errorf("got %s", got)
	}
}

func FuzzEscapeJSON(f *testing.F) {
	for _, h := range hostile {
		f.Add(h)
	}
	f.Fuzz(checkJSON)
}
