package send

import (
	"context"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/route"
)

// --explain names the local destination of each local route without
// asking the DNS anything (a nil Resolver would fail if it did).
func TestExplainLocal(t *testing.T) {
	tb, err := route.Parse(strings.NewReader("a.test lmtp:unix:/run/lmtp\nb.test maildir:/m/%d/%u/\nc.test pipe:/bin/cmd per=recipient -- -d ${user}\nd.test mbox:/var/mail/%u\n"), "routes")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Routes: tb}
	for rcpt, want := range map[string]string{
		"x@a.test": "LMTP (RFC 2033) to unix:/run/lmtp",
		"Y@b.test": "the maildir /m/b.test/y/",
		"z@c.test": `the command /bin/cmd ["-d" "z"]`,
		"W@d.test": "the mbox file /var/mail/w",
	} {
		p := Explain(context.Background(), cfg, nil, rcpt)
		if p.Target != want || p.Outcome == "" || len(p.Hosts) != 0 {
			t.Errorf("%s: %+v, want %s", rcpt, p, want)
		}
	}
}
