package route

import (
	"errors"
	"strings"
	"testing"
)

// FuzzRouteTable: any text either parses or fails with a *LineError
// naming a line that exists, never panics; every route a parsed table
// returns has a line of the table, a nexthop that parses again, and an
// error route a permanent status.
func FuzzRouteTable(f *testing.F) {
	f.Add(table, "a@b.example.org")
	f.Add("* smtp:\n", "x@y")
	f.Add("example.org smtp:[::1]:25 tls=may\n.org error:5.1.2 x\n", "a@b.org")
	f.Add("a@b smtp:b:25\n", "A@B.")
	f.Add("* lmtp:unix:/run/dovecot/lmtp\nb lmtp:[::1]:24\n", "x@b")
	f.Add("* maildir:/var/vmail/%d/%u/\n", "../x@b")
	f.Add("* mbox:/var/mail/%u\n", ".x@b")
	f.Add("* pipe:/bin/deliver per=recipient timeout=10s -- -f ${sender} ${recipient} u=${user}@${domain}\n", "-x@b")
	f.Fuzz(func(t *testing.T, text, addr string) {
		tb, err := Parse(strings.NewReader(text), "f")
		lines := strings.Count(text, "\n") + 1
		if err != nil {
			var le *LineError
			if errors.As(err, &le) && (le.Line < 1 || le.Line > lines) {
				t.Fatalf("error names line %d of %d: %v", le.Line, lines, err)
			}
			return
		}
		r, ok := tb.Lookup(addr)
		if !ok {
			return
		}
		if r.Line < 1 || r.Line > lines {
			t.Fatalf("route from line %d of %d", r.Line, lines)
		}
		if r.Kind == Error {
			if !isPermanentStatus(r.Status) {
				t.Fatalf("status %q", r.Status)
			}
			return
		}
		if r.Kind == Maildir || r.Kind == Mbox {
			if _, err := r.Expand(addr); err == nil {
				p, _ := r.Expand(addr)
				if strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
					t.Fatalf("maildir path %q from %q", p, addr)
				}
			}
		}
		if r.Kind == Pipe {
			r.Pipe.Args(Vars{Sender: addr, Rcpts: []string{addr, addr}})
		}
		again, err := parseTransport(r.Nexthop(), nil)
		if err != nil || again.Kind != r.Kind || again.Host != r.Host || again.Literal != r.Literal || again.Port != r.Port ||
			again.Socket != r.Socket || again.Path != r.Path {
			t.Fatalf("nexthop %q parses to %+v, %v; was %+v", r.Nexthop(), again, err, r)
		}
	})
}
