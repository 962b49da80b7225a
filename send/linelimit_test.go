package send

import (
	"bytes"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
)

// limitLines runs s through a lineWriter, written chunk octets at a time
// (all at once if chunk is 0).
func limitLines(t testing.TB, s string, chunk int) string {
	t.Helper()
	var b bytes.Buffer
	lw := newLineWriter(&b)
	for p := s; len(p) > 0; {
		n := len(p)
		if chunk > 0 {
			n = min(n, chunk)
		}
		if _, err := lw.Write([]byte(p[:n])); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := lw.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// longestLine returns the length of the longest line of s, line ends
// (CRLF or LF) excluded.
func longestLine(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		n = max(n, len(strings.TrimSuffix(l, "\r")))
	}
	return n
}

func TestLineWriter(t *testing.T) {
	words := strings.Repeat("word ", 250) // 1250 octets
	for _, tc := range []struct{ name, in, want string }{
		{"short lines pass", "A: b\r\nC: d\n\r\nbody\rx\nend", "A: b\r\nC: d\n\r\nbody\rx\nend"},
		{"998 octets pass", "A: " + strings.Repeat("x", 995) + "\r\n\r\n" + strings.Repeat("y", 998) + "\r\n",
			"A: " + strings.Repeat("x", 995) + "\r\n\r\n" + strings.Repeat("y", 998) + "\r\n"},
		{"header folded at the last blank", "X: " + words + "\r\n\r\nb\r\n",
			"X: " + strings.Repeat("word ", 198) + "word\r\n " + strings.Repeat("word ", 51) + "\r\n\r\nb\r\n"},
		{"header folded after the colon, then broken", "X: " + strings.Repeat("z", 1500) + "\r\n",
			"X:\r\n " + strings.Repeat("z", 997) + "\r\n " + strings.Repeat("z", 503) + "\r\n"},
		{"no blank line is left", "X:" + strings.Repeat(" ", 1200) + "v\r\n",
			"X:" + strings.Repeat(" ", 996) + "\r\n " + strings.Repeat(" ", 204) + "v\r\n"},
		{"body broken", "S: x\r\n\r\n" + strings.Repeat("b", 2000) + "\r\nshort\r\n",
			"S: x\r\n\r\n" + strings.Repeat("b", 998) + "\r\n " + strings.Repeat("b", 997) + "\r\n " + strings.Repeat("b", 5) + "\r\nshort\r\n"},
		{"bare CR counts, CRLF does not", "\r\n" + strings.Repeat("c", 998) + "\r\r\n",
			"\r\n" + strings.Repeat("c", 998) + "\r\n \r\r\n"},
		{"LF line ends", "S: x\n\n" + strings.Repeat("d", 999) + "\n", "S: x\n\n" + strings.Repeat("d", 998) + "\r\n d\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 7, 1000} {
				if got := limitLines(t, tc.in, chunk); got != tc.want {
					t.Fatalf("chunks of %d:\n got %q\nwant %q", chunk, got, tc.want)
				}
			}
			if n := longestLine(tc.want); n > maxLine {
				t.Errorf("a line of %d octets", n)
			}
		})
	}
}

// FuzzLineWriter: no line of the output is longer than maxLine; the
// output does not depend on how the input is cut into writes; a second
// pass changes nothing; only line breaks and spaces are added.
func FuzzLineWriter(f *testing.F) {
	f.Add("X: "+strings.Repeat("word ", 300)+"\r\n\r\n"+strings.Repeat("b", 2100)+"\r\n", 5)
	f.Add(strings.Repeat("\r", 1200)+"\n\n"+strings.Repeat("\r", 999)+"\n", 3)
	f.Add(strings.Repeat(" ", 1000)+"x"+strings.Repeat("\t", 1000), 1)
	f.Fuzz(func(t *testing.T, in string, chunk int) {
		out := limitLines(t, in, 0)
		if n := longestLine(strings.ReplaceAll(out, "\r\n", "\n")); n > maxLine {
			t.Fatalf("line of %d octets", n)
		}
		if got := limitLines(t, in, chunk%50); got != out {
			t.Fatalf("chunks of %d give another output", chunk%50)
		}
		if again := limitLines(t, out, 0); again != out {
			t.Fatalf("second pass changed the output")
		}
		if strip := strings.NewReplacer("\r\n", "", "\n", "", " ", "", "\t", ""); strip.Replace(out) != strip.Replace(in) {
			t.Fatalf("output differs by more than line breaks and blanks")
		}
	})
}

// A smarthost that refuses lines over 998 octets (RFC 5321 section
// 4.5.3.1.6: smtptest's limit set to 1000 with the CRLF) gets every
// message: the long header field folded at a blank (so it unfolds to
// what it was), the long header token folded after its colon and broken
// by CRLF and a space, and so the long body line; SIZE= is the size sent.
func TestLongLinesToStrictSmarthost(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{MaxLineLength: maxLine + 2})
	f := newFixture(t, ts.Addr)
	words := "X-Words: " + strings.TrimSpace(strings.Repeat("lorem ipsum ", 250))
	token := "X-Token: " + strings.Repeat("t", 1500)
	msg := body("long lines") + words + "\r\n" + token + "\r\n\r\n" + strings.Repeat("0123456789", 250) + "\r\nend\r\n"
	msg = strings.Replace(msg, "\r\n\r\nHello.\r\n", "\r\n", 1) // the fields above go in the header section
	f.queue("s@example.org", []string{"a@x.test"}, msg)
	if st := f.run(false); st.Delivered != 1 {
		t.Fatalf("not delivered: %+v", st)
	}
	g := ts.Transactions()[0]
	data := string(g.Data)
	if n := longestLine(data); n > maxLine {
		t.Errorf("a line of %d octets reached the smarthost", n)
	}
	if g.Size != int64(len(data)) {
		t.Errorf("SIZE=%d, %d octets sent", g.Size, len(data))
	}
	hdr, bodyPart, _ := strings.Cut(data, "\r\n\r\n")
	if !strings.Contains(strings.ReplaceAll(hdr, "\r\n", ""), words) ||
		!strings.Contains(hdr, words[:strings.LastIndex(words[:maxLine], " ")]+"\r\n ") {
		t.Errorf("X-Words not folded at the last blank:\n%s", hdr)
	}
	if !strings.Contains(data, "X-Token:\r\n "+strings.Repeat("t", 997)+"\r\n "+strings.Repeat("t", 503)+"\r\n\r\n") {
		t.Errorf("X-Token not folded after its colon and broken at %d octets:\n%s", maxLine, hdr)
	}
	line := strings.Repeat("0123456789", 250)
	if want := line[:998] + "\r\n " + line[998:1995] + "\r\n " + line[1995:] + "\r\nend\r\n"; bodyPart != want {
		t.Errorf("body:\n%q\nwant\n%q", bodyPart, want)
	}
}
