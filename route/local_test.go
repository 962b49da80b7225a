package route

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLocalRoutes(t *testing.T) {
	tb, err := Parse(strings.NewReader(`
a.test        lmtp:unix:/run/dovecot/lmtp
b.test        lmtp:[127.0.0.1]
c.test        lmtp:[::1]:2424
d.test        maildir:/var/vmail/%d/%u/
g.test        mbox:/var/mail/%u
e.test        pipe:/usr/bin/deliver per=recipient timeout=30s -- -f ${sender} ${user}+x@${domain}
f.test        pipe:/usr/bin/rmail -- ${recipient} id=${queue_id}
`), "t")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr, nexthop string
		kind          Kind
	}{
		{"x@a.test", "lmtp:unix:/run/dovecot/lmtp", LMTP},
		{"x@b.test", "lmtp:[127.0.0.1]", LMTP},
		{"x@c.test", "lmtp:[::1]:2424", LMTP},
		{"x@d.test", "maildir:/var/vmail/%d/%u/", Maildir},
		{"x@g.test", "mbox:/var/mail/%u", Mbox},
		{"x@e.test", "pipe:/usr/bin/deliver", Pipe},
	} {
		r, ok := tb.Lookup(tc.addr)
		if !ok || r.Kind != tc.kind || r.Nexthop() != tc.nexthop || !r.Kind.Local() {
			t.Errorf("Lookup(%q) = %+v, want %s", tc.addr, r, tc.nexthop)
		}
	}
	r, _ := tb.Lookup("x@e.test")
	if !r.Pipe.PerRecipient || r.Pipe.Timeout != 30*time.Second {
		t.Errorf("pipe options %+v", r.Pipe)
	}
	got := r.Pipe.Args(Vars{Sender: "-s@x", Rcpts: []string{"Bob;rm -rf /@e.test"}})
	if want := []string{"-f", "-s@x", "Bob;rm -rf /+x@e.test"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Args = %q, want %q", got, want)
	}
	r, _ = tb.Lookup("x@f.test")
	if r.Pipe.PerRecipient || r.Pipe.Timeout != DefaultPipeTimeout {
		t.Errorf("pipe options %+v", r.Pipe)
	}
	got = r.Pipe.Args(Vars{QueueID: "Q1", Rcpts: []string{"a@f.test", "b@f.test"}})
	if want := []string{"a@f.test", "b@f.test", "id=Q1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Args = %q, want %q", got, want)
	}
}

func TestLocalRouteErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"* lmtp:unix:run/lmtp", "absolute"},
		{"* lmtp:unix:/run/../lmtp", "absolute"},
		{"* lmtp:host:24", "unix:/path or [host]"},
		{"* lmtp:[::1]:99999", "bad port"},
		{"* lmtp:unix:/x tls=may", "no options"},
		{"* maildir:var/mail/%u", "absolute"},
		{"* maildir:/var/%x/", "followed by"},
		{"* maildir:/var/../%u", ".."},
		{"* mbox:/var/mail/", "names a directory"},
		{"* mbox:mail/%u", "absolute"},
		{"* pipe:bin/x", "absolute path"},
		{"* pipe:/bin/x per=rcpt", "per=message or per=recipient"},
		{"* pipe:/bin/x timeout=2h", "timeout="},
		{"* pipe:/bin/x timeout=1s timeout=2s", "twice"},
		{"* pipe:/bin/x ${nobody}", "unknown variable"},
		{"* pipe:/bin/x ${sender", "without }"},
		{"* pipe:/bin/x to=${recipient}", "whole argument"},
	} {
		_, err := Parse(strings.NewReader(tc.line), "t")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.line, err, tc.want)
		}
	}
}

func TestExpand(t *testing.T) {
	r := Route{Kind: Maildir, Path: "/m/%d/%u/%r/100%%"}
	for _, tc := range []struct{ addr, want string }{
		{"Bob@Example.ORG", "/m/example.org/bob/bob@example.org/100%"},
		{"../../etc@b.test", "/m/b.test/_._.._etc/_._.._etc@b.test/100%"},
		{".hidden@b.test", "/m/b.test/_hidden/_hidden@b.test/100%"},
		{"x@BÜCHER.example", "/m/xn--bcher-kva.example/x/x@xn--bcher-kva.example/100%"},
		{"a\nb@b.test", "/m/b.test/a_b/a_b@b.test/100%"},
	} {
		got, err := r.Expand(tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	if _, err := r.Expand("postmaster"); err == nil {
		t.Error("an address without a domain expanded")
	}
}

// users= on each local transport: the file is kept in Route.Users and
// taken out of the option words (a pipe's other options and arguments
// stay as they were); Routes lists the routes in line order. Elsewhere,
// relative, unclean or twice, it is an error naming the line.
func TestUsersOption(t *testing.T) {
	tb, err := Parse(strings.NewReader(`a.test lmtp:unix:/run/lmtp users=/etc/aliases
b.test maildir:/var/vmail/%u/ users=/etc/aliases
c.test mbox:/var/mail/%u users=/etc/users
d.test pipe:/usr/bin/deliver per=recipient users=/etc/aliases timeout=30s -- users=/x ${recipient}
e.test maildir:/var/vmail/%u/
`), "t")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range tb.Routes() {
		got = append(got, r.Pattern+"="+r.Users)
	}
	if want := "a.test=/etc/aliases b.test=/etc/aliases c.test=/etc/users d.test=/etc/aliases e.test="; strings.Join(got, " ") != want {
		t.Errorf("Routes: %q, want %q", got, want)
	}
	r, _ := tb.Lookup("x@d.test")
	if args := r.Pipe.Args(Vars{Rcpts: []string{"x@d.test"}}); !r.Pipe.PerRecipient || r.Pipe.Timeout != 30*time.Second ||
		!reflect.DeepEqual(args, []string{"users=/x", "x@d.test"}) {
		t.Errorf("pipe %+v, args %q", r.Pipe, args)
	}
	for _, tc := range []struct{ line, want string }{
		{"* maildir:/m/%u/ users=etc/aliases", "absolute, clean path"},
		{"* maildir:/m/%u/ users=/etc/../aliases", "absolute, clean path"},
		{"* mbox:/m/%u users=/a users=/b", "given twice"},
		{"* smtp: users=/etc/aliases", "users"},
		{"* error:5.1.1 users=/etc/aliases", ""},
	} {
		_, err := Parse(strings.NewReader("x.test smtp:\n"+tc.line+"\n"), "t")
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v (an error route's text)", tc.line, err)
			}
			continue
		}
		var le *LineError
		if !errors.As(err, &le) || le.Line != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want line 2 with %q", tc.line, err, tc.want)
		}
	}
}
