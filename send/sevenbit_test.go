package send

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// A composite entity (multipart/*, message/*) is never given a transfer
// encoding (RFC 2045 section 6.4): when its 8-bit content cannot be
// reached to be converted, the message is unconvertible.
func TestSevenBitNeverEncodesComposite(t *testing.T) {
	deep := strings.Repeat("Content-Type: message/rfc822\r\n\r\n", maxMIMEDepth+1) + "Subject: deep\r\n\r\nd\xc3\xa9j\xc3\xa0\r\n"
	for _, tc := range []struct{ name, in, why string }{
		{"multipart without a boundary", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n\xe9t\xe9\r\n",
			"multipart/mixed part without a usable boundary"},
		{"unreadable multipart Content-Type", "Content-Type: multipart/mixed boundary=B\r\n\r\n--B\r\n\r\n\xe9\r\n--B--\r\n",
			"multipart/mixed boundary=b part without a usable boundary"},
		{"message/rfc822 past the depth limit", deep, "MIME nesting deeper than 100 levels"},
		{"message/partial", "Content-Type: message/partial; id=x; number=1\r\n\r\nSubject: y\r\n\r\n\xe9\r\n",
			"message/partial part"},
		{"base64 multipart", "Content-Type: multipart/mixed; boundary=B\r\nContent-Transfer-Encoding: base64\r\n\r\n--B\r\n\r\n\xe9\r\n--B--\r\n",
			`Content-Transfer-Encoding "base64" on a multipart/mixed part`},
		{"multipart with nothing but an 8-bit preamble", "Content-Type: multipart/mixed; boundary=B\r\n\r\n\xe9\r\n",
			"no body part"},
		{"unknown transfer encoding", "Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin \xe9\r\n", `unknown Content-Transfer-Encoding "x-uuencode"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := downgrade(&out, strings.NewReader(tc.in))
			var u *unconvertibleError
			if !errors.As(err, &u) || !strings.Contains(u.why, tc.why) {
				t.Errorf("got %v, want unconvertible: %s; output:\n%s", err, tc.why, out.String())
			}
		})
	}
	// Entered composites are labelled 7bit, not encoded.
	in := "Content-Type: multipart/mixed; boundary=B\r\nContent-Transfer-Encoding: 8bit\r\n\r\n--B\r\n" +
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: binary\r\n\r\nSubject: in\r\n\r\n\xe9\r\n--B--\r\n"
	var out bytes.Buffer
	if err := downgrade(&out, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	want := "Content-Type: multipart/mixed; boundary=B\r\nContent-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n--B\r\n" +
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" +
		"Subject: in\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n=E9\r\n--B--\r\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
}

// A part that is already 7-bit needs no conversion: it passes through
// byte for byte, however malformed, next to the 8-bit parts that are
// converted; a 7-bit message is returned unchanged.
func TestSevenBitPartsPassUnchanged(t *testing.T) {
	broken := "Content-Type: text/plain\r\nthis line is no header field\r\n\r\nplain text\r\n"
	nested := "Content-Type: multipart/alternative; boundary=C\r\n\r\n--C\r\n: empty name\r\n\r\nx\r\n" // never closed
	in := "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n" +
		"--B\r\n" + broken + "--B\r\n" + nested + "--B\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n--B--\r\n"
	var out bytes.Buffer
	if err := downgrade(&out, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !isASCII(s) || !strings.Contains(s, "--B\r\n"+broken+"--B\r\n"+nested+"--B\r\n") ||
		!strings.Contains(s, "Content-Transfer-Encoding: quoted-printable\r\n\r\nd=C3=A9j=C3=A0 vu\r\n--B--\r\n") {
		t.Errorf("output:\n%s", s)
	}
	for _, in := range []string{in[:strings.Index(in, "d\xc3")] + "ok\r\n--B--\r\n", broken, "no header\n\rat all\x00"} {
		out.Reset()
		if err := downgrade(&out, strings.NewReader(in)); err != nil || out.String() != in {
			t.Errorf("7-bit %q: %v, output %q", in, err, out.String())
		}
	}
}

// Through a smarthost without 8BITMIME: a message whose 8-bit body sits
// in a multipart without a boundary fails with 5.6.3 and a notification
// (before, it went out with quoted-printable on the multipart, which a
// strict next hop refuses); a message with a malformed 7-bit part and an
// 8-bit one goes out in 7 bits with the 7-bit part unchanged (before, it
// failed with 5.6.3).
func TestDowngradeThroughSmarthost(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{Withhold: protocol.Ext8BITMIME})
	f := newFixture(t, ts.Addr)
	eight := func(e *spool.Envelope) { e.Body = "8BITMIME" }
	noBoundary := strings.Replace(body("nb"), "\r\n\r\n", "\r\nContent-Type: multipart/mixed\r\n\r\n\xe9t\xe9", 1)
	f.queue("s@example.org", []string{"a@x.test"}, noBoundary, eight)
	part7 := "--B\r\nContent-Type: text/plain\r\nbroken header\r\n\r\nseven\r\n"
	ok := strings.Replace(body("parts"), "\r\n\r\n", "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n", 1)
	ok = strings.TrimSuffix(ok, "Hello.\r\n") + part7 + "--B\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xe9t\xe9\r\n--B--\r\n"
	f.queue("s@example.org", []string{"b@x.test"}, ok, eight)
	st := f.run(false)
	if st.Delivered != 1 || st.Failed != 1 || st.DSNs != 1 {
		t.Fatalf("stats %+v", st)
	}
	g := ts.Transactions()[0]
	if s := string(g.Data); g.To[0] != "b@x.test" || !isASCII(s) || g.Body == "8BITMIME" ||
		!strings.Contains(s, part7) || !strings.Contains(s, "=E9t=E9") {
		t.Errorf("sent to %v (BODY=%s):\n%s", g.To, g.Body, s)
	}
	np := checkNotice(t, content(t, f.queuedFrom("")[0]), noBoundary, "s@example.org", 1)
	if r := np.perRcpt[0]; r.Get("Final-Recipient") != "rfc822; a@x.test" || r.Get("Status") != "5.6.3" ||
		!strings.Contains(np.text, "cannot be converted to 7 bits: a multipart/mixed part without a usable boundary") {
		t.Errorf("notification %v\n%s", r, np.text)
	}
}
