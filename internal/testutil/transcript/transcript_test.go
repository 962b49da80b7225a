package transcript

import (
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	s, err := Parse("testdata/x.txt", `# a comment
! env SMTP_A=1
! socket
C: EHLO a
S: 220 ready
C: one
R: "two\n"
2 C: three
S: 250 …
= exit 0

E: rcpt-to: <a@example.org>
M: first
2 M: again
E: rcpt-to: <b@example.org>
M: second

M: third
`)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "x" || s.Result != "exit 0" {
		t.Errorf("name %q, result %q", s.Name, s.Result)
	}
	if want := []Option{{"env", "SMTP_A=1", 2}, {"socket", "", 3}}; !reflect.DeepEqual(s.Options, want) {
		t.Errorf("options %+v", s.Options)
	}
	want := []Step{
		{Send: []byte("EHLO a\r\n"), Line: 4},
		{Expect: "220 ready", Line: 5},
		{Send: []byte("one\r\ntwo\nthree\r\nthree\r\n"), Line: 6},
		{Expect: "250 …", Line: 9},
	}
	if !reflect.DeepEqual(s.Steps, want) {
		t.Errorf("steps\n%+v\nwant\n%+v", s.Steps, want)
	}
	wantMsgs := []Message{
		{Envelope: []string{"rcpt-to: <a@example.org>"}, Content: []string{"first", "again", "again"}, Line: 12},
		{Envelope: []string{"rcpt-to: <b@example.org>"}, Content: []string{"second"}, Line: 15},
		{Content: []string{"third"}, Line: 18},
	}
	if !reflect.DeepEqual(s.Messages, wantMsgs) {
		t.Errorf("messages\n%+v\nwant\n%+v", s.Messages, wantMsgs)
	}

	for _, bad := range []string{"X: what\n= nil\n", "R: not quoted\n= nil\n", "0 C: x\n= nil\n", "2 ! env A=B\n= nil\n"} {
		if _, err := Parse("bad.txt", bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, got string
		want         bool
	}{
		{"250 OK", "250 OK", true},
		{"250 OK", "250 OK ", false},
		{"250 OK", "250 O", false},
		{"250 …", "250 2.0.0 OK queued as 1", true},
		{"250 …", "250 ", true},
		{"250 …", "250", false},
		{"250 …", "251 x", false},
		{"… id …;", "by x id Q1;", true},
		{"… id …;", "by x id Q1; ", false},
		{"a…b…b", "abb", true},
		{"ab…b", "ab", false},
		{"a…", "a\rb", false}, // never a line ending
		{"a…c", "a\nc", false},
		{"…", "", true},
		{"x…y…z", "xyz", true},
		{"x…y…z", "xzy", false},
	} {
		if got := Match(c.pattern, c.got); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.got, got, c.want)
		}
	}
}

// TestCheckMessages: every way a committed message can differ fails.
func TestCheckMessages(t *testing.T) {
	s, err := Parse("m.txt", "= nil\nE: rcpt-to: <a@x>\nE: rcpt-to: <…@y>\nE: body:\nM: Received: …\nM: hi\n")
	if err != nil {
		t.Fatal(err)
	}
	good := Committed{ID: "Q1", Envelope: []string{"smtp-spool 1", "body: ", "rcpt-to: <a@x>", "rcpt-to: <b@y>", "helo: h"},
		Content: []byte("Received: by me\r\nhi\r\n")}
	if failed, msg := fails(t, func(t testing.TB) { s.CheckMessages(t, []Committed{good}) }); failed {
		t.Errorf("a matching message failed: %s", msg)
	}
	for name, got := range map[string][]Committed{
		"none":             nil,
		"two":              {good, good},
		"content":          {{ID: "Q1", Envelope: good.Envelope, Content: []byte("Received: by me\r\nho\r\n")}},
		"no final CRLF":    {{ID: "Q1", Envelope: good.Envelope, Content: []byte("Received: by me\r\nhi")}},
		"a line more":      {{ID: "Q1", Envelope: good.Envelope, Content: []byte("Received: by me\r\nhi\r\nhi\r\n")}},
		"a recipient":      {{ID: "Q1", Envelope: []string{"body: ", "rcpt-to: <a@x>"}, Content: good.Content}},
		"another":          {{ID: "Q1", Envelope: []string{"body: ", "rcpt-to: <a@x>", "rcpt-to: <b@z>"}, Content: good.Content}},
		"body":             {{ID: "Q1", Envelope: []string{"body: 8BITMIME", "rcpt-to: <a@x>", "rcpt-to: <b@y>"}, Content: good.Content}},
		"no envelope kept": {{ID: "Q1", Content: good.Content}},
	} {
		if failed, _ := fails(t, func(t testing.TB) { s.CheckMessages(t, got) }); !failed {
			t.Errorf("%s: passed", name)
		}
	}
}

// TestPlay: the client sends each write, matches each reply line, and
// fails on a reply that differs, a reply missing, and one too many.
func TestPlay(t *testing.T) {
	// echo answers each client line with "250 " and the line.
	echo := func(t testing.TB, s *Script, extra string) *Client {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		go func() {
			b, _ := io.ReadAll(inR)
			for _, l := range strings.SplitAfter(string(b), "\r\n") {
				if l != "" {
					io.WriteString(outW, "250 "+l)
				}
			}
			io.WriteString(outW, extra)
			outW.Close()
		}()
		return NewClient(t, inW, outR, time.Second)
	}
	s, err := Parse("p.txt", "C: a\nC: b\nS: 250 a\nS: 250 …\n= nil\n")
	if err != nil {
		t.Fatal(err)
	}
	run := func(t testing.TB, s *Script, extra string) {
		c := echo(t, s, extra)
		// The echo answers at the end of the input: close it first.
		c.Play(s, s.Steps[:1])
		c.Close()
		c.Play(s, s.Steps[1:])
		if rest := c.Rest(); len(rest) != 0 {
			t.Errorf("unexpected reply %q", rest)
		}
	}
	if failed, msg := fails(t, func(t testing.TB) { run(t, s, "") }); failed {
		t.Errorf("the dialog failed: %s", msg)
	}
	if failed, _ := fails(t, func(t testing.TB) { run(t, s, "421 bye\r\n") }); !failed {
		t.Error("a reply too many passed")
	}
	for _, text := range []string{"C: a\nC: b\nS: 250 b\nS: 250 …\n= nil\n", "C: a\nC: b\nS: 250 a\nS: 250 b\nS: 250 c\n= nil\n"} {
		s, _ := Parse("p.txt", text)
		if failed, _ := fails(t, func(t testing.TB) { run(t, s, "") }); !failed {
			t.Errorf("%q passed", text)
		}
	}
}

// recorder is a testing.TB that records failures; Fatal ends the
// goroutine, as it ends a test.
type recorder struct {
	testing.TB
	failed bool
	msgs   []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = true
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// fails runs f on a recorder of t and says whether it failed, and how.
func fails(t *testing.T, f func(testing.TB)) (bool, string) {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.failed, strings.Join(r.msgs, "\n")
}
