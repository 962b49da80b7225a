package protocol

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDSNParams: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT (RFC
// 3461 section 4), decoded from xtext; a malformed or repeated one gets
// 501 5.5.4 (as Postfix answers), an unknown one 555 5.5.4.
func TestDSNParams(t *testing.T) {
	tests := []struct {
		line string
		want Command // compared: Ret, EnvID, Notify, ORcpt
		err  string
	}{
		{line: "MAIL FROM:<a@b.example> RET=FULL", want: Command{Ret: "FULL"}},
		{line: "MAIL FROM:<a@b.example> ret=hdrs", want: Command{Ret: "HDRS"}},
		{line: "MAIL FROM:<a@b.example> RET=ALL", err: "501 5.5.4 Bad RET"},
		{line: "MAIL FROM:<a@b.example> RET", err: "501 5.5.4 Bad RET"},
		{line: "MAIL FROM:<a@b.example> RET=FULL RET=HDRS", err: "501 5.5.4 Parameter given twice"},
		{line: "MAIL FROM:<a@b.example> ENVID=QQ314159", want: Command{EnvID: "QQ314159"}},
		{line: "MAIL FROM:<a@b.example> ENVID=a+2Bb+20c+3D", want: Command{EnvID: "a+b c="}},
		{line: "MAIL FROM:<a@b.example> ENVID=a+0Db", err: "501 5.5.4 Bad ENVID"},
		{line: "MAIL FROM:<a@b.example> ENVID=a+2", err: "501 5.5.4 Bad ENVID"},
		{line: "MAIL FROM:<a@b.example> ENVID=a+2b", err: "501 5.5.4 Bad ENVID"},
		{line: "MAIL FROM:<a@b.example> ENVID=" + strings.Repeat("x", 101), err: "501 5.5.4 Bad ENVID"},
		{line: "MAIL FROM:<a@b.example> ENVID=" + strings.Repeat("x", 100), want: Command{EnvID: strings.Repeat("x", 100)}},
		{line: "MAIL FROM:<a@b.example> ENVID", err: "501 5.5.4 Bad ENVID"},
		{line: "MAIL FROM:<a@b.example> ENVID=a ENVID=b", err: "501 5.5.4 Parameter given twice"},
		{line: "MAIL FROM:<a@b.example> NOTIFY=NEVER", err: "555 5.5.4"},
		{line: "RCPT TO:<b@c.example> RET=FULL", err: "555 5.5.4"},

		{line: "RCPT TO:<b@c.example> NOTIFY=SUCCESS,FAILURE,DELAY", want: Command{Notify: NotifySuccess | NotifyFailure | NotifyDelay}},
		{line: "RCPT TO:<b@c.example> notify=delay,success", want: Command{Notify: NotifySuccess | NotifyDelay}},
		{line: "RCPT TO:<b@c.example> NOTIFY=FAILURE", want: Command{Notify: NotifyFailure}},
		{line: "RCPT TO:<b@c.example> NOTIFY=NEVER,SUCCESS", err: "501 5.5.4 Bad NOTIFY"},
		{line: "RCPT TO:<b@c.example> NOTIFY=SUCCESS,SUCCESS", err: "501 5.5.4 Bad NOTIFY"},
		{line: "RCPT TO:<b@c.example> NOTIFY=SUCCESS,", err: "501 5.5.4 Bad NOTIFY"},
		{line: "RCPT TO:<b@c.example> NOTIFY=ALWAYS", err: "501 5.5.4 Bad NOTIFY"},
		{line: "RCPT TO:<b@c.example> NOTIFY", err: "501 5.5.4 Bad NOTIFY"},
		{line: "RCPT TO:<b@c.example> NOTIFY=NEVER NOTIFY=NEVER", err: "501 5.5.4 Parameter given twice"},
		{line: "RCPT TO:<b@c.example> ORCPT=rfc822;b@c.example", want: Command{ORcpt: "rfc822;b@c.example"}},
		{line: "RCPT TO:<b@c.example> ORCPT=RFC822;root", want: Command{ORcpt: "rfc822;root"}},
		{line: "RCPT TO:<b@c.example> ORCPT=rfc822;a+2Bb@c.example", want: Command{ORcpt: "rfc822;a+b@c.example"}},
		{line: "RCPT TO:<b@c.example> ORCPT=rfc822;\"a+20b\"@c.example", want: Command{ORcpt: "rfc822;\"a b\"@c.example"}},
		{line: "RCPT TO:<b@c.example> ORCPT=utf-8;j\\x{E9}r\\x{F4}me@c.example", want: Command{ORcpt: "utf-8;jérôme@c.example"}},
		{line: "RCPT TO:<b@c.example> ORCPT=utf-8;jérôme@c.example", want: Command{ORcpt: "utf-8;jérôme@c.example"}},
		{line: "RCPT TO:<b@c.example> ORCPT=utf-8;a\\x{D}b", err: "501 5.5.4 Bad ORCPT"},
		{line: "RCPT TO:<b@c.example> ORCPT=utf-8;a\\x{e9}b", err: "501 5.5.4 Bad ORCPT"},
		{line: "RCPT TO:<b@c.example> ORCPT=utf-8;a+b", err: "501 5.5.4 Bad ORCPT"},
		{line: "RCPT TO:<b@c.example> ORCPT=rfc822;a+0Ab", err: "501 5.5.4 Bad ORCPT"},
		{line: "RCPT TO:<b@c.example> ORCPT=rfc822;", err: "501 5.5.4 Bad ORCPT"},
		{line: "RCPT TO:<b@c.example> ORCPT=b@c.example", err: "501 5.5.4 Bad ORCPT"},
		{line: "RCPT TO:<b@c.example> ORCPT=;b@c.example", err: "501 5.5.4 Bad ORCPT"},
		{line: "RCPT TO:<b@c.example> ORCPT=rfc822;" + strings.Repeat("x", 501), err: "501 5.5.4 Bad ORCPT"},
		{line: "RCPT TO:<b@c.example> ORCPT=rfc822;a ORCPT=rfc822;b", err: "501 5.5.4 Parameter given twice"},
		{line: "RCPT TO:<b@c.example> NOTIFY=SUCCESS ORCPT=rfc822;x@y.example", want: Command{Notify: NotifySuccess, ORcpt: "rfc822;x@y.example"}},
	}
	for _, tc := range tests {
		got, err := ParseCommand([]byte(tc.line))
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("ParseCommand(%q) error %v, want %s", tc.line, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCommand(%q) error %v", tc.line, err)
			continue
		}
		if got.Ret != tc.want.Ret || got.EnvID != tc.want.EnvID || got.Notify != tc.want.Notify || got.ORcpt != tc.want.ORcpt {
			t.Errorf("ParseCommand(%q) = RET %q ENVID %q NOTIFY %v ORCPT %q; want %+v", tc.line, got.Ret, got.EnvID, got.Notify, got.ORcpt, tc.want)
		}
	}
}

func TestNotifyString(t *testing.T) {
	for n, want := range map[Notify]string{0: "", NotifyNever: "NEVER", NotifyDelay | NotifySuccess: "SUCCESS,DELAY",
		NotifySuccess | NotifyFailure | NotifyDelay: "SUCCESS,FAILURE,DELAY"} {
		if got := n.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", n, got, want)
		}
		if back, ok := ParseNotify(want); want != "" && (!ok || back != n) {
			t.Errorf("ParseNotify(%q) = %v, %v", want, back, ok)
		}
	}
}

// TestDSNEnvelope: the parameters reach the envelope, per message and
// per recipient at the index of To; a recipient given twice keeps the
// first's; RSET and a new MAIL clear them; with DSN withheld or after
// HELO they are refused with 555.
func TestDSNEnvelope(t *testing.T) {
	d := &fakeDelivery{}
	in := "EHLO c.example\r\nMAIL FROM:<a@c.example> RET=HDRS ENVID=id+2B1\r\n" +
		"RCPT TO:<b@d.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;B@d.example\r\n" +
		"RCPT TO:<c@d.example>\r\nRCPT TO:<b@d.example> NOTIFY=NEVER\r\nRCPT TO:<e@d.example> NOTIFY=NEVER\r\n" +
		"DATA\r\nx\r\n.\r\n" +
		"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nBDAT 3 LAST\r\nx\r\nQUIT\r\n"
	out, err := serveString(testConfig(), d, in)
	if err != nil {
		t.Fatalf("Serve: %v\n%s", err, out)
	}
	c := d.committed()
	if len(c) != 2 {
		t.Fatalf("%d committed\n%s", len(c), out)
	}
	e := c[0].env
	if e.Ret != "HDRS" || e.EnvID != "id+1" || len(e.To) != 3 || len(e.DSN) != 3 {
		t.Fatalf("envelope %+v", e)
	}
	want := []RcptDSN{{NotifySuccess | NotifyDelay, "rfc822;B@d.example"}, {}, {NotifyNever, ""}}
	for i, w := range want {
		if e.RcptDSN(i) != w {
			t.Errorf("RcptDSN(%d) = %+v, want %+v", i, e.RcptDSN(i), w)
		}
	}
	if e.RcptDSN(3) != (RcptDSN{}) || e.RcptDSN(-1) != (RcptDSN{}) {
		t.Errorf("RcptDSN out of range is not zero")
	}
	if e := c[1].env; e.Ret != "" || e.EnvID != "" || e.RcptDSN(0) != (RcptDSN{}) {
		t.Errorf("second envelope kept DSN: %+v", e)
	}

	cfg := testConfig()
	cfg.Withhold = ExtDSN
	out, _ = serveString(cfg, &fakeDelivery{}, "EHLO c.example\r\nMAIL FROM:<a@c.example> RET=FULL\r\n"+
		"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example> NOTIFY=NEVER\r\nHELO c.example\r\nMAIL FROM:<a@c.example>\r\n"+
		"RCPT TO:<b@d.example> ORCPT=rfc822;b@d.example\r\nQUIT\r\n")
	if strings.Contains(out, "DSN") || strings.Count(out, "555 5.5.4 Unsupported parameter") != 2 || !strings.Contains(out, "555 5.5.4 Parameters need EHLO") {
		t.Errorf("DSN withheld:\n%s", out)
	}
}

// encodeUTF8AddrXtext is the test's own encoder of RFC 6533 section 3's
// utf-8-addr-xtext: ASCII but controls, space, "+", "=" and "\" as they
// are, every other character as \x{HEX}.
func encodeUTF8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > ' ' && r < 0x7f && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "\\x{%X}", r)
		}
	}
	return b.String()
}

// FuzzORcpt holds the ORCPT parser against the test's encoders (xtext
// for rfc822, RFC 6533 for utf-8): an address that may be stored (no
// control character, not empty, within the limit; printable ASCII for
// rfc822) survives encoding and parsing; whatever the parser accepts
// holds no control character, and parses back from its own encoding.
func FuzzORcpt(f *testing.F) {
	for _, s := range []string{"b@c.example", "j\u00e9r\u00f4me@c.example", "a+b=c\\d", "\x01", "", "\"a b\"@c"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, addr string, utf bool) {
		if utf && !utf8.ValidString(addr) {
			return // no utf-8-addr-xtext holds it
		}
		typ, enc := "rfc822", encodeXtext(addr)
		if utf {
			typ, enc = "utf-8", encodeUTF8AddrXtext(addr)
		}
		storable := addr != "" && len(addr) <= maxORcpt && utf8.ValidString(addr) && !strings.ContainsFunc(addr, func(r rune) bool {
			return r < ' ' || r == 0x7f || !utf && r > '~'
		})
		got, ok := parseORcpt(typ + ";" + enc)
		if ok != storable || ok && got != typ+";"+addr {
			t.Fatalf("parseORcpt(%q) = %q, %v; storable %v", typ+";"+enc, got, ok, storable)
		}
		if !ok {
			return
		}
		if strings.ContainsFunc(got, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("parseORcpt accepted a control character: %q", got)
		}
	})
}
