package send

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
)

// downgrade converts the message read from r with sevenBit, which reads
// its input twice; r is held in memory, for tests.
func downgrade(w io.Writer, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return sevenBit(w, func() io.Reader { return bytes.NewReader(b) })
}

// FuzzDowngrade: the 7-bit conversion never panics, and
//   - a 7-bit input is returned unchanged (it needs no conversion, however
//     malformed it is);
//   - when every header line of the input is ASCII, the output is ASCII
//     (header fields are left alone, bodies are re-encoded);
//   - it never gives a multipart/* or message/* entity a
//     Content-Transfer-Encoding other than 7bit, 8bit or binary (RFC 2045
//     section 6.4), as go-message parses the output;
//   - the decoded leaf bodies are what they were, when go-message parses
//     both input and output without error.
func FuzzDowngrade(f *testing.F) {
	f.Add("Subject: x\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n")
	f.Add("Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xe9\r\n--B\r\n" +
		"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\n\xff\r\n--B--\r\n")
	f.Add("Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9 \xc3\xa9\r\n")
	f.Add("Content-Transfer-Encoding: base64\r\n\r\nAAE\xffC\r\n")
	f.Add("Content-Transfer-Encoding: binary\r\n\r\n\x00\xff\r\n")
	f.Add("Content-Type: multipart/mixed\r\n\r\n\xe9t\xe9\r\n")
	f.Add("Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nno header here\r\n\r\n--B\r\n\r\n\xe9\r\n--B--\r\n")
	f.Add("Content-Type: message/partial; id=x; number=1\r\n\r\nSubject: y\r\n\r\n\xe9\r\n")
	f.Add("Content-Type: multipart/digest; boundary=D\r\n\r\n--D\r\n\r\nSubject: z\r\n\r\n\xe9\r\n--D--\r\n")
	f.Add(strings.Repeat("Content-Type: message/rfc822\r\n\r\n", maxMIMEDepth+1) + "\xe9\r\n")
	f.Add("Content-Type: multipart/alternative; boundary=\"a b\"\r\n\r\npre \xe9\r\n--a b\r\nContent-Type: text/html\r\n\r\n<p>\xe2\x82\xac\r\n--a b--\r\nepi \xe9\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		err := downgrade(&out, strings.NewReader(in))
		if isASCII(in) {
			if err != nil || out.String() != in {
				t.Fatalf("7-bit input refused (%v) or changed:\n%q\n%q", err, in, out.String())
			}
			return
		}
		if err != nil {
			if _, ok := err.(*unconvertibleError); !ok {
				t.Fatalf("error %v is not an unconvertibleError", err)
			}
			return
		}
		got := out.String()
		headers8 := false
		for _, line := range strings.Split(in, "\n") {
			if (strings.Contains(line, ":") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && !isASCII(line) {
				headers8 = true // an 8-bit header line may pass through
			}
		}
		if !headers8 && !isASCII(got) {
			t.Errorf("8-bit output for %q:\n%q", in, got)
		}
		if !hasEncodingField(in) {
			// The input labels nothing quoted-printable or base64: any
			// such label in the output is ours.
			if why := badComposite(got); why != "" {
				t.Errorf("%s, for %q:\n%q", why, in, got)
			}
		}
		// Where go-message reads the input otherwise, the leaves cannot be
		// compared: it takes a line with an empty field name for a header
		// field (and skips it), where RFC 5322 and this code see the start
		// of the body; and, with mixed line ends, it sees only the
		// boundary delimiters with the line end of the first one, where
		// this code (as Postfix) takes a bare LF for a line end.
		lineEnds := !strings.Contains(in, "\r") || strings.Count(in, "\n") == strings.Count(in, "\r\n")
		emptyName := strings.HasPrefix(in, ":") || strings.Contains(in, "\n:")
		if a, okA := decodedLeaves(in); okA && lineEnds && !emptyName {
			if b, okB := decodedLeaves(got); okB && strings.Join(a, "\x00") != strings.Join(b, "\x00") {
				t.Errorf("decoded leaves differ:\n%q\n%q\nin  %q\nout %q", a, b, in, got)
			}
		}
	})
}

// hasEncodingField reports whether s has a Content-Transfer-Encoding
// field other than 7bit, 8bit or binary, anywhere.
func hasEncodingField(s string) bool {
	for _, line := range strings.Split(strings.ToLower(s), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(name) == "content-transfer-encoding" && !identityEncoding(v) {
			return true
		}
	}
	return false
}

// compositeType reports whether a Content-Type value (or, if empty, the
// default def) names multipart/* or message/*, read as a strict next hop
// reads it: by the name before any ";".
func compositeType(v, def string) (string, bool) {
	t, _, _ := strings.Cut(v, ";")
	t = strings.ToLower(strings.TrimSpace(t))
	if t == "" {
		t = def
	}
	return t, strings.HasPrefix(t, "multipart/") || strings.HasPrefix(t, "message/")
}

// badComposite returns a description of a composite entity of message s
// with a Content-Transfer-Encoding other than 7bit, 8bit or binary, as
// go-message parses s (entering message/rfc822 and message/global too),
// or "".
func badComposite(s string) string {
	e, _ := message.Read(strings.NewReader(s))
	if e == nil {
		return ""
	}
	return walkBad(e, "text/plain", 0)
}

func walkBad(e *message.Entity, def string, depth int) string {
	if depth > 2*maxMIMEDepth {
		return ""
	}
	mt, composite := compositeType(e.Header.Get("Content-Type"), def)
	if cte := e.Header.Get("Content-Transfer-Encoding"); composite && !identityEncoding(cte) {
		return mt + " entity with Content-Transfer-Encoding " + cte
	}
	if mr := e.MultipartReader(); mr != nil {
		child := "text/plain"
		if mt == "multipart/digest" {
			child = "message/rfc822"
		}
		for {
			p, err := mr.NextPart()
			if p == nil || err != nil {
				return ""
			}
			if why := walkBad(p, child, depth+1); why != "" {
				return why
			}
		}
	}
	if mt == "message/rfc822" || mt == "message/global" {
		if inner, _ := message.Read(e.Body); inner != nil {
			return walkBad(inner, "text/plain", depth+1)
		}
	}
	return ""
}

// decodedLeaves returns the decoded bodies of s's leaf entities, line
// ends as LF and without a final one, as go-message reads them (entering message/rfc822 and
// message/global too); false if anything fails to parse or decode.
func decodedLeaves(s string) ([]string, bool) {
	var out []string
	ok := leavesOf(strings.NewReader(s), "text/plain", 0, &out)
	return out, ok
}

func leavesOf(r io.Reader, def string, depth int, out *[]string) bool {
	e, err := message.Read(r)
	if err != nil || depth > 2*maxMIMEDepth {
		return false
	}
	return entityLeaves(e, def, depth, out)
}

func entityLeaves(e *message.Entity, def string, depth int, out *[]string) bool {
	mt, _ := compositeType(e.Header.Get("Content-Type"), def)
	if mr := e.MultipartReader(); mr != nil {
		child := "text/plain"
		if mt == "multipart/digest" {
			child = "message/rfc822"
		}
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return true
			}
			if err != nil || !entityLeaves(p, child, depth+1, out) {
				return false
			}
		}
	}
	if mt == "message/rfc822" || mt == "message/global" {
		return leavesOf(e.Body, "text/plain", depth+1, out)
	}
	b, err := io.ReadAll(e.Body)
	// Line ends as LF; the message's last line gains one if it had none.
	*out = append(*out, strings.TrimSuffix(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n"))
	return err == nil
}

// TestDowngradeFieldNamesASCII: a line that names
// Content-Transfer-Encoding only under Unicode folding (U+017F, long s)
// is no header field at all (a field name is printable ASCII, RFC 5322
// section 2.2), so the body starts there; it is never taken for the
// part's transfer encoding and dropped, as strings.EqualFold would have.
func TestDowngradeFieldNamesASCII(t *testing.T) {
	in := "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Tran\u017ffer-Encoding: 8bit\r\n\r\nh\u00e9llo\r\n"
	var out bytes.Buffer
	if err := downgrade(&out, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\r\nContent-Transfer-Encoding: quoted-printable\r\n") ||
		!strings.Contains(out.String(), "\r\nContent-Tran=C5=BFfer-Encoding: 8bit\r\n") {
		t.Errorf("want the line kept, encoded in the body:\n%s", out.String())
	}
}
