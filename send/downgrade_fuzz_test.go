package send

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzDowngrade: the 7-bit conversion never panics, and when every header
// line of the input is ASCII, its output is ASCII (header fields are
// left alone, bodies are re-encoded).
func FuzzDowngrade(f *testing.F) {
	f.Add("Subject: x\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n")
	f.Add("Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xe9\r\n--B\r\n" +
		"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\n\xff\r\n--B--\r\n")
	f.Add("Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9 \xc3\xa9\r\n")
	f.Add("Content-Transfer-Encoding: base64\r\n\r\nAAE\xffC\r\n")
	f.Add("Content-Transfer-Encoding: binary\r\n\r\n\x00\xff\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		if err := downgrade(&out, strings.NewReader(in)); err != nil {
			return
		}
		for _, line := range strings.Split(in, "\n") {
			if (strings.Contains(line, ":") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && !isASCII(line) {
				return // an 8-bit header line may pass through
			}
		}
		if !isASCII(out.String()) {
			t.Errorf("8-bit output for %q:\n%q", in, out.String())
		}
	})
}
