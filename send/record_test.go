package send

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// A smarthost that defers 100 recipients with a 200 kB multi-line 451
// each (issue 8 item 8): the state file keeps at most queue.MaxText
// octets of each reply, so the next run reads it and delivers, instead of
// moving a deliverable message to corrupt/. Before, the state file was
// 20 MB, past the reader's 16 MiB.
func TestHugeReplyStillDelivers(t *testing.T) {
	var lines strings.Builder
	for lines.Len() < 200<<10 {
		lines.WriteString("mailbox temporarily unavailable, the message is kept and retried later\n")
	}
	huge := strings.TrimSuffix(lines.String(), "\n")
	fail := true
	ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(*smtptest.Conn, string) *protocol.Reply {
		if fail {
			return smtptest.Reply(451, "4.2.1", huge)
		}
		return nil
	}}})
	f := newFixture(t, ts.Addr)
	f.s.Config.MaxRecipients = 100
	var rcpts []string
	for i := range 100 {
		rcpts = append(rcpts, fmt.Sprintf("r%03d@x.test", i))
	}
	id := f.queue("s@example.org", rcpts, body("huge reply"))
	if st := f.run(false); st.Deferred != 100 {
		t.Fatalf("first run %+v", st)
	}
	s := f.state(id)
	for _, r := range s.Rcpts {
		if r.Status != queue.Pending || r.Code != 451 || len(r.Text) > queue.MaxText ||
			!strings.HasPrefix(r.Text, "mailbox temporarily unavailable") || !strings.HasSuffix(r.Text, queue.TextCut) {
			t.Fatalf("stored reply %d %q (%d octets)", r.Code, r.Text[:min(len(r.Text), 80)], len(r.Text))
		}
	}
	// Logged whole, the reply would make 100 lines of 200 kB; clipped,
	// each recipient's line holds queue.MaxText octets of it and a few
	// hundred of attributes.
	if n := len(f.logs.String()); n > 100*(queue.MaxText+1024) {
		t.Errorf("the log holds %d octets: the whole reply was logged", n)
	}
	fail = false
	f.clk.Add(time.Hour)
	if st := f.run(false); st.Delivered != 100 || st.Corrupt != 0 {
		t.Fatalf("second run %+v", st)
	}
	if c := f.names(queue.CorruptDir); len(c) != 0 {
		t.Errorf("corrupt/ %v", c)
	}
	if q := f.names(spool.QueueDir); len(q) != 0 {
		t.Errorf("queue/ %v", q)
	}
}
