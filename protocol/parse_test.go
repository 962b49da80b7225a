package protocol

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	local64 := strings.Repeat("l", 64)
	label63 := strings.Repeat("d", 63)
	dom255 := strings.Join([]string{label63, label63, label63, label63[:63]}, ".") // 255
	tests := []struct {
		line string
		want Command // compared when err is ""
		err  string  // "code enhanced" of the expected *Reply
	}{
		// Verbs, case, arguments.
		{line: "EHLO client.example", want: Command{Verb: VerbEHLO, Arg: "client.example"}},
		{line: "ehlo client.example", want: Command{Verb: VerbEHLO, Arg: "client.example"}},
		{line: "HeLo  client.example  ", want: Command{Verb: VerbHELO, Arg: "client.example"}},
		{line: "EHLO", err: "501 5.5.4"},
		{line: "EHLO   ", err: "501 5.5.4"},
		{line: "HELO", err: "501 5.5.4"},
		{line: "DATA", want: Command{Verb: VerbDATA}},
		{line: "data ", want: Command{Verb: VerbDATA}},
		{line: "DATA x", err: "501 5.5.4"},
		{line: "RSET x", err: "501 5.5.4"},
		{line: "QUIT x", err: "501 5.5.4"},
		{line: "NOOP x y", want: Command{Verb: VerbNOOP, Arg: "x y"}},
		{line: "HELP MAIL", want: Command{Verb: VerbHELP, Arg: "MAIL"}},
		{line: "VRFY bob", want: Command{Verb: VerbVRFY, Arg: "bob"}},
		{line: "VRFY", err: "501 5.5.4"},
		{line: "EXPN staff", err: "502 5.5.1"},
		{line: "auth plain", want: Command{Verb: VerbAUTH, Arg: "plain"}},
		{line: "AUTH PLAIN dXNlcgB1c2VyAHB3", want: Command{Verb: VerbAUTH, Arg: "PLAIN dXNlcgB1c2VyAHB3"}},
		{line: "AUTH", err: "501 5.5.4"},
		{line: "AUTH PLAIN a b", err: "501 5.5.4"},
		{line: "BDAT 10 LAST", want: Command{Verb: VerbBDAT, Arg: "10 LAST", Chunk: true, ChunkSize: 10, Last: true}},
		{line: "bdat 0 last", want: Command{Verb: VerbBDAT, Arg: "0 last", Chunk: true, Last: true}},
		{line: "BDAT 65536", want: Command{Verb: VerbBDAT, Arg: "65536", Chunk: true, ChunkSize: 65536}},
		{line: "BDAT", err: "501 5.5.4"},
		{line: "BDAT x LAST", err: "501 5.5.4"},
		{line: "BDAT -1", err: "501 5.5.4"},
		{line: "BDAT +1", err: "501 5.5.4"},
		{line: "BDAT 1234567890123456789", err: "501 5.5.4"},
		{line: "BDAT 10 LAST X", err: "501 5.5.4", want: Command{Verb: VerbBDAT, Arg: "10 LAST X", Chunk: true, ChunkSize: 10, Last: true}},
		{line: "BDAT 10 FIRST", err: "501 5.5.4", want: Command{Verb: VerbBDAT, Arg: "10 FIRST", Chunk: true, ChunkSize: 10}},
		{line: "TURN", err: "502 5.5.1"},
		{line: "FOO", err: "500 5.5.2"},
		{line: "", err: "500 5.5.2"},
		{line: " NOOP", err: "500 5.5.2"},
		{line: "MAIL\tFROM:<a@b.example>", err: "500 5.5.2"},
		{line: "maıl FROM:<a@b.example>", err: "500 5.5.2"}, // dotless i
		{line: "NOOP\x00", err: "500 5.5.2"},
		{line: "NOOP a\rb", err: "500 5.5.2"},
		{line: "NOOP \xff", err: "500 5.5.2"},

		// MAIL FROM syntax (RFC 5321 section 4.1.2).
		{line: "MAIL FROM:<a@b.example>", want: mail("a@b.example")},
		{line: "mail from:<a@b.example>", want: mail("a@b.example")},
		{line: "MAIL FROM: <a@b.example>", want: mail("a@b.example")},
		{line: "MAIL FROM:<>", want: mail("")},
		{line: "MAIL FROM:<@r1.example,@r2.example:a@b.example>", want: mail("a@b.example")},
		{line: "MAIL FROM:<@r1.example:a@b.example>", want: mail("a@b.example")},
		{line: `MAIL FROM:<"john doe"@b.example>`, want: mail(`"john doe"@b.example`)},
		{line: `MAIL FROM:<"a\"b>c"@b.example>`, want: mail(`"a\"b>c"@b.example`)},
		{line: `MAIL FROM:<""@b.example>`, want: mail(`""@b.example`)},
		{line: "MAIL FROM:<a.b+c!#$%&'*/=?^_`{|}~-@b.example>", want: mail("a.b+c!#$%&'*/=?^_`{|}~-@b.example")},
		{line: "MAIL FROM:<a@[192.0.2.1]>", want: mail("a@[192.0.2.1]")},
		{line: "MAIL FROM:<a@[IPv6:2001:db8::1]>", want: mail("a@[IPv6:2001:db8::1]")},
		{line: "MAIL FROM:<a@[ipv6:::ffff:192.0.2.1]>", want: mail("a@[ipv6:::ffff:192.0.2.1]")},
		{line: "MAIL FROM:<a@xn--bcher-kva.example>", want: mail("a@xn--bcher-kva.example")},
		{line: "MAIL FROM:<a@1.example>", want: mail("a@1.example")},
		{line: "MAIL TO:<a@b.example>", err: "501 5.5.4"},
		{line: "MAIL FROM", err: "501 5.5.4"},
		{line: "MAIL", err: "501 5.5.4"},
		{line: "MAIL FROM:a@b.example", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@b.example", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@b.example>x", err: "501 5.1.7"},
		{line: "MAIL FROM:<a>", err: "501 5.1.7"},
		{line: "MAIL FROM:<postmaster>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@>", err: "501 5.1.7"},
		{line: "MAIL FROM:<@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<.a@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a.@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a..b@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a b@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a(b)@b.example>", err: "501 5.1.7"},
		{line: `MAIL FROM:<"a@b.example>`, err: "501 5.1.7"},
		{line: `MAIL FROM:<"a"b@b.example>`, err: "501 5.1.7"},
		{line: "MAIL FROM:<\"a\tb\"@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@-b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@b-.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@b..example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@b.example.>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@b_c.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@[300.0.0.1]>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@[2001:db8::1]>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@[IPv6:192.0.2.1]>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@[IPv6:fe80::1%eth0]>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@[x-tag:stuff]>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@[192.0.2.1>", err: "501 5.1.7"},
		{line: "MAIL FROM:<@r1.example,r2.example:a@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<@r1.example a@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<<a@b.example>>", err: "501 5.1.7"},

		// Limits, RFC 5321 section 4.5.3.1.
		{line: "MAIL FROM:<" + local64 + "@b.example>", want: mail(local64 + "@b.example")},
		{line: "MAIL FROM:<" + local64 + "x@b.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@" + label63 + ".example>", want: mail("a@" + label63 + ".example")},
		{line: "MAIL FROM:<a@" + label63 + "x.example>", err: "501 5.1.7"},
		{line: "MAIL FROM:<a@" + dom255[:252] + ">", want: mail("a@" + dom255[:252])},                      // path 256
		{line: "MAIL FROM:<ab@" + dom255[:252] + ">", err: "501 5.1.7"},                                    // path 257
		{line: "RCPT TO:<a@" + dom255 + "x>", err: "501 5.1.3"},                                            // domain 256
		{line: "RCPT TO:<" + local64 + "x@b.example>", err: "501 5.1.3"},                                   // local 65
		{line: "RCPT TO:<" + local64 + "@" + dom255[:189] + ">", want: rcpt(local64 + "@" + dom255[:189])}, // 256

		// RCPT TO.
		{line: "RCPT TO:<b@c.example>", want: rcpt("b@c.example")},
		{line: "rcpt to: <b@c.example>", want: rcpt("b@c.example")},
		{line: "RCPT TO:<postmaster>", want: rcpt("postmaster")},
		{line: "RCPT TO:<PostMaster>", want: rcpt("postmaster")},
		{line: "RCPT TO:<Postmaster@C.example>", want: rcpt("Postmaster@C.example")},
		{line: "RCPT TO:<@r.example:b@c.example>", want: rcpt("b@c.example")},
		{line: "RCPT TO:<jösé@bücher.example>", want: rcpt("jösé@bücher.example")}, // session checks SMTPUTF8
		{line: "RCPT TO:<>", err: "501 5.1.3"},
		{line: "RCPT TO:<b>", err: "501 5.1.3"},
		{line: "RCPT TO:b@c.example", err: "501 5.1.3"},
		{line: "RCPT FROM:<b@c.example>", err: "501 5.5.4"},
		{line: "RCPT TO:<b@c.example>x", err: "501 5.1.3"},
		{line: "RCPT TO:<b@c.example> NOTIFY=NEVER", want: Command{Verb: VerbRCPT, Path: "b@c.example", Params: true, Notify: NotifyNever}},
		{line: "RCPT TO:<b@c.example> X-FOO", err: "555 5.5.4"},
		{line: "RCPT TO:<b@c.example> ", want: rcpt("b@c.example")},

		// Parameters.
		{line: "MAIL FROM:<a@b.example> SIZE=1000", want: Command{Verb: VerbMAIL, Path: "a@b.example", Params: true, Size: 1000}},
		{line: "MAIL FROM:<a@b.example>  size=0  body=8bitmime", want: Command{Verb: VerbMAIL, Path: "a@b.example", Params: true, Body: "8BITMIME"}},
		{line: "MAIL FROM:<a@b.example> BODY=7BIT", want: Command{Verb: VerbMAIL, Path: "a@b.example", Params: true, Body: "7BIT"}},
		{line: "MAIL FROM:<a@b.example> SIZE=99999999999999999999", want: Command{Verb: VerbMAIL, Path: "a@b.example", Params: true, Size: math.MaxInt64}},
		{line: "MAIL FROM:<a@b.example> SMTPUTF8", want: Command{Verb: VerbMAIL, Path: "a@b.example", Params: true, SMTPUTF8: true}},
		{line: "MAIL FROM:<jürgen@bücher.example> smtputf8", want: Command{Verb: VerbMAIL, Path: "jürgen@bücher.example", Params: true, SMTPUTF8: true}},
		{line: "MAIL FROM:<\"jür gen\"@b.example> SMTPUTF8", want: Command{Verb: VerbMAIL, Path: "\"jür gen\"@b.example", Params: true, SMTPUTF8: true}},
		{line: "MAIL FROM:<jürgen@b.example>", err: "553 5.6.7"},
		{line: "MAIL FROM:<a@bücher.example>", err: "553 5.6.7"},
		{line: "MAIL FROM:<a@b.example> SIZE=abc", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> SIZE=-1", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> SIZE=+1", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> SIZE=123456789012345678901", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> SIZE", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> SIZE=", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> SIZE=1 size=2", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> BODY=BINARYMIME", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> BODY", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> SMTPUTF8=yes", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> SMTPUTF8 SMTPUTF8", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> =x", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> -X=1", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> X=a=b", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> AUTH=<>", want: Command{Verb: VerbMAIL,
			Path: "a@b.example", Params: true, Auth: "<>"}},
		{line: "MAIL FROM:<a@b.example> AUTH=e+2Bf@b.example", want: Command{Verb: VerbMAIL, Path: "a@b.example", Params: true, Auth: "e+f@b.example"}},
		{line: "MAIL FROM:<a@b.example> AUTH", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> AUTH=a+2", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> AUTH=a+2b", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> AUTH=a+", err: "501 5.5.4"},
		{line: "MAIL FROM:<a@b.example> RET=HDRS", want: Command{Verb: VerbMAIL, Path: "a@b.example", Params: true, Ret: "HDRS"}},
	}
	for _, tc := range tests {
		got, err := ParseCommand([]byte(tc.line))
		if tc.err != "" {
			var r *Reply
			if !errors.As(err, &r) {
				t.Errorf("ParseCommand(%q) = %+v, %v; want error %s", tc.line, got, err, tc.err)
				continue
			}
			if s := strings.TrimSpace(r.Error()); !strings.HasPrefix(s, tc.err+" ") {
				t.Errorf("ParseCommand(%q) error %q, want %s", tc.line, s, tc.err)
			}
			if tc.want.Verb == VerbBDAT && (got.Chunk != tc.want.Chunk || got.ChunkSize != tc.want.ChunkSize) {
				t.Errorf("ParseCommand(%q) = %+v; want the chunk of %+v", tc.line, got, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCommand(%q) error %v", tc.line, err)
			continue
		}
		if tc.want.Verb == VerbMAIL || tc.want.Verb == VerbRCPT {
			got.Arg = "" // raw argument: not compared
		}
		if got != tc.want {
			t.Errorf("ParseCommand(%q)\n got %+v\nwant %+v", tc.line, got, tc.want)
		}
	}
}

func mail(path string) Command { return Command{Verb: VerbMAIL, Path: path} }
func rcpt(path string) Command { return Command{Verb: VerbRCPT, Path: path} }

// TestParseCommandVerbKept checks that a known verb is returned with an
// argument error, so that the session can check the order first.
func TestParseCommandVerbKept(t *testing.T) {
	for _, line := range []string{"MAIL FROM:<bad", "RCPT TO:<>", "DATA x", "EHLO", "VRFY"} {
		cmd, err := ParseCommand([]byte(line))
		if err == nil || cmd.Verb == "" {
			t.Errorf("ParseCommand(%q) = %+v, %v; want the verb and an error", line, cmd, err)
		}
	}
}

func TestSanitizeHelo(t *testing.T) {
	tests := map[string]string{
		"client.example":              "client.example",
		"[192.0.2.1]":                 "[192.0.2.1]",
		`a(b)c\d"e'f`:                 "abcdef",
		"client.example extra words":  "client.example",
		"bücher.example":              "bcher.example",
		"\x01\x7f":                    "unknown",
		"()":                          "unknown",
		strings.Repeat("h", 300):      strings.Repeat("h", 255),
		"x;\tRECEIVED:\tfrom\tforged": "x;",
	}
	for in, want := range tests {
		if got := sanitizeHelo(in); got != want {
			t.Errorf("sanitizeHelo(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseCommand checks that the parser never panics, that every error
// is a *Reply with a code the session counts as a bad command, and that a
// parsed path parses again to itself.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"EHLO client.example", "MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME SMTPUTF8",
		"RCPT TO:<postmaster>", `MAIL FROM:<@r.example,@s.example:"a\"b"@[IPv6:2001:db8::1]>`,
		"MAIL FROM:<jürgen@bücher.example> SMTPUTF8", "DATA", "NOOP\x00", "VRFY \xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := ParseCommand(line)
		if err != nil {
			var r *Reply
			if !errors.As(err, &r) {
				t.Fatalf("error %v is not a *Reply", err)
			}
			switch r.Code {
			case 500, 501, 502, 553, 555:
			default:
				t.Fatalf("unexpected error code %d", r.Code)
			}
			return
		}
		if c := lookup(cmd.Verb); c == nil || c.run == nil {
			t.Fatalf("verb %q accepted", cmd.Verb)
		}
		if cmd.Verb != VerbMAIL && cmd.Verb != VerbRCPT {
			return
		}
		if strings.ContainsAny(cmd.Path, "<>\x00\r\n ") && !strings.HasPrefix(cmd.Path, `"`) {
			t.Fatalf("path %q", cmd.Path)
		}
		again := "RCPT TO:<" + cmd.Path + ">"
		if cmd.Verb == VerbMAIL {
			again = "MAIL FROM:<" + cmd.Path + "> SMTPUTF8"
		}
		cmd2, err := ParseCommand([]byte(again))
		if err != nil || cmd2.Path != cmd.Path {
			t.Fatalf("%q parses to %q, %v; want %q", again, cmd2.Path, err, cmd.Path)
		}
	})
}

func TestNonSMTP(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"GET / HTTP/1.1", true},
		{"get /", true},
		{"POST /cgi-bin/form HTTP/1.0", true},
		{"CONNECT mx.example:25 HTTP/1.1", true},
		{"Host: mx.example", true},
		{"Subject:hello", true},
		{"X-Mailer: a b c", true},
		{"From:", true},
		{"MAIL FROM:<a@b.example>", false},
		{"RCPT TO:<c@d.example>", false},
		{"NOOP a:b", false},
		{"GETS /", false},
		{"GET", true},
		{":x", false},
		{"", false},
		{" Host: x", false},
		{"Ho\x00st: x", false},
		{"Höst: x", false},
	} {
		if got := nonSMTP([]byte(tc.line)); got != tc.want {
			t.Errorf("nonSMTP(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// BenchmarkNonSMTP: the check runs on every command line and must not
// allocate.
func BenchmarkNonSMTP(b *testing.B) {
	line := []byte("RCPT TO:<someone@example.net>")
	b.ReportAllocs()
	for b.Loop() {
		if nonSMTP(line) {
			b.Fatal("RCPT taken for non-SMTP")
		}
	}
}
