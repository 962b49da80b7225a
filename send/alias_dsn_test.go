package send

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// aliasDSNFile adds a single-recipient alias to aliasFile.
const aliasDSNFile = aliasFile + "solo: dave\n"

// mailbox returns the maildir of addr under mail (route
// maildir:<mail>/%d/%u/) and the contents of the messages in its new/.
func mailbox(t *testing.T, mail, addr string) []string {
	t.Helper()
	l, d, _ := strings.Cut(addr, "@")
	dir := filepath.Join(mail, d, l)
	var out []string
	for _, n := range maildirFiles(t, dir, "new") {
		b, err := os.ReadFile(filepath.Join(dir, "new", n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// An alias recipient whose NOTIFY names SUCCESS gets one "expanded"
// success notice when its alias has several addresses (RFC 3461 section
// 5.2.7.3), one notice for all such recipients of the message, with
// Action: expanded and Status: 2.0.0, and its addresses lose SUCCESS
// (their deliveries report nothing); a single-recipient alias (section
// 5.2.7.2) passes NOTIFY on whole, so its one address's delivery reports
// "delivered", with the alias as Original-Recipient (section 4.2); an
// alias recipient without SUCCESS gets no notice. Later runs send
// nothing more.
func TestAliasExpandedNotice(t *testing.T) {
	mail := t.TempDir()
	f := aliasFixture(t, "maildir:"+mail+"/%d/%u/", aliasDSNFile)
	f.queue("sender@example.org", []string{"staff@example.org", "root@example.org", "solo@example.org", "postmaster@example.org"}, body("aliases"),
		withDSN("", "env 7", spool.RcptDSN{Notify: "SUCCESS,FAILURE"}, spool.RcptDSN{Notify: "SUCCESS", ORcpt: "rfc822;boss@example.net"},
			spool.RcptDSN{Notify: "SUCCESS"}, spool.RcptDSN{Notify: "FAILURE"}))
	for range 3 {
		f.run(true)
	}
	// One copy each, however many of the aliases name them.
	for a, n := range map[string]int{"alice@example.org": 1, "bob@example.org": 1, "carol@other.test": 1, "dave@example.org": 1} {
		if got := len(mailbox(t, mail, a)); got != n {
			t.Errorf("%s has %d messages, want %d", a, got, n)
		}
	}
	var expandedN, delivered []string
	for _, d := range mailbox(t, mail, "sender@example.org") {
		switch {
		case strings.Contains(d, "Action: expanded\n"):
			expandedN = append(expandedN, d)
		case strings.Contains(d, "Action: delivered\n"):
			delivered = append(delivered, d)
		default:
			t.Errorf("unexpected notice:\n%s", d)
		}
	}
	if len(expandedN) != 1 || len(delivered) != 1 {
		t.Fatalf("%d expanded and %d delivered notices, want 1 and 1", len(expandedN), len(delivered))
	}
	d := expandedN[0]
	for _, want := range []string{"Subject: Successful Mail Delivery Report\n", "Original-Envelope-Id: env 7\n",
		"Final-Recipient: rfc822; staff@example.org\nAction: expanded\nStatus: 2.0.0\n",
		"Original-Recipient: rfc822;boss@example.net\nFinal-Recipient: rfc822; root@example.org\nAction: expanded\nStatus: 2.0.0\n",
		"<staff@example.org>: expanded by an alias"} {
		if !strings.Contains(d, want) {
			t.Errorf("expanded notice lacks %q:\n%s", want, d)
		}
	}
	for _, bad := range []string{"solo@", "postmaster@", "Remote-MTA", "Diagnostic-Code", "queue id"} {
		if strings.Contains(d, bad) {
			t.Errorf("expanded notice holds %q:\n%s", bad, d)
		}
	}
	if d := delivered[0]; !strings.Contains(d, "Original-Recipient: rfc822;solo@example.org\nFinal-Recipient: rfc822; dave@example.org\nAction: delivered\n") {
		t.Errorf("delivered notice:\n%s", d)
	}
	if q := f.names(spool.QueueDir); len(q) != 0 {
		t.Errorf("left in queue/: %v", q)
	}
}

// No "expanded" notice from the null reverse-path (RFC 3461 section
// 6.1: a notice never gets one), nor for NOTIFY without SUCCESS or no
// NOTIFY at all (section 4.1); the expansion is delivered all the same.
func TestAliasExpandedNoticeNotWanted(t *testing.T) {
	for _, tc := range []struct {
		name, from, notify string
	}{{"null sender", "", "SUCCESS"}, {"failure only", "sender@example.org", "FAILURE,DELAY"},
		{"never", "sender@example.org", "NEVER"}, {"no notify", "sender@example.org", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			mail := t.TempDir()
			f := aliasFixture(t, "maildir:"+mail+"/%d/%u/", aliasDSNFile)
			f.queue(tc.from, []string{"staff@example.org"}, body("aliases"), withDSN("", "", spool.RcptDSN{Notify: tc.notify}))
			f.run(true)
			f.run(true)
			if n := len(mailbox(t, mail, "alice@example.org")) + len(mailbox(t, mail, "carol@other.test")); n != 2 {
				t.Errorf("%d deliveries, want 2", n)
			}
			if n := mailbox(t, mail, "sender@example.org"); len(n) != 0 {
				t.Errorf("%d notices, want none:\n%s", len(n), n[0])
			}
			if q := f.names(spool.QueueDir); len(q) != 0 {
				t.Errorf("left in queue/: %v", q)
			}
		})
	}
}

// The DSN parameters of an expansion's addresses (RFC 3461 section
// 5.2.7): SUCCESS dropped for several addresses (NEVER when nothing is
// left), kept for one; the ORCPT kept, or the alias's address added.
func TestExpansionDSN(t *testing.T) {
	for _, tc := range []struct {
		notify, orcpt, addr string
		n                   int
		want                spool.RcptDSN
	}{
		{"SUCCESS", "", "staff@example.org", 2, spool.RcptDSN{Notify: "NEVER", ORcpt: "rfc822;staff@example.org"}},
		{"SUCCESS,FAILURE,DELAY", "", "staff@example.org", 3, spool.RcptDSN{Notify: "FAILURE,DELAY", ORcpt: "rfc822;staff@example.org"}},
		{"SUCCESS", "rfc822;boss@example.net", "solo@example.org", 1, spool.RcptDSN{Notify: "SUCCESS", ORcpt: "rfc822;boss@example.net"}},
		{"SUCCESS,FAILURE", "", "solo@example.org", 1, spool.RcptDSN{Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;solo@example.org"}},
		{"", "", "st\u00e9@example.org", 2, spool.RcptDSN{ORcpt: "utf-8;st\u00e9@example.org"}},
		{"NEVER", "", "staff@example.org", 2, spool.RcptDSN{Notify: "NEVER", ORcpt: "rfc822;staff@example.org"}},
	} {
		got := expansionDSN(spool.RcptDSN{Notify: tc.notify, ORcpt: tc.orcpt}, tc.addr, tc.n, tc.n)
		if len(got) != tc.n {
			t.Fatalf("%+v: %d parameters", tc, len(got))
		}
		for _, g := range got {
			if g != tc.want {
				t.Errorf("%+v: got %+v, want %+v", tc, g, tc.want)
			}
		}
	}
	// An alias of three addresses, two of which already had a copy:
	// still a multiple-recipient alias, for its one address left.
	got := expansionDSN(spool.RcptDSN{Notify: "SUCCESS,FAILURE"}, "staff@example.org", 3, 1)
	if want := (spool.RcptDSN{Notify: "FAILURE", ORcpt: "rfc822;staff@example.org"}); len(got) != 1 || got[0] != want {
		t.Errorf("3 addresses, 1 left: got %+v, want [%+v]", got, want)
	}
}

// A run killed with SIGKILL at each step of expanding an alias recipient
// that asked for NOTIFY=SUCCESS (expansion spooled, record begun, record
// durable, notice spooled), then run again: the sender gets exactly one
// "expanded" notice (queue ordering rules 7 and 8), every address and the
// other recipient get the message once, and nothing is left queued. For
// a single-recipient alias, whose record after a crash reads the
// expansion's envelope to know it is one, the one notice is its
// address's "delivered".
func TestKillExpandedNotice(t *testing.T) {
	for _, tc := range []struct {
		alias, notice string
		boxes         map[string]int
	}{
		{"staff", "Final-Recipient: rfc822; staff@example.org\nAction: expanded\nStatus: 2.0.0\n",
			map[string]int{"alice@example.org": 1, "carol@other.test": 1, "bob@example.org": 1, "staff@example.org": 0}},
		{"solo", "Original-Recipient: rfc822;solo@example.org\nFinal-Recipient: rfc822; dave@example.org\nAction: delivered\n",
			map[string]int{"dave@example.org": 1, "bob@example.org": 1, "solo@example.org": 0}},
	} {
		for _, step := range []queue.Step{queue.StepExpansionSpooled, queue.StepAccepted, queue.StepRecorded, queue.StepSuccessSpooled} {
			if tc.alias == "solo" && step == queue.StepSuccessSpooled {
				continue // the alias's record spools no notice
			}
			t.Run(tc.alias+"/"+step.String(), func(t *testing.T) {
				killExpandedNotice(t, step, tc.alias, tc.notice, tc.boxes)
			})
		}
	}
}

// killExpandedNotice is one case of TestKillExpandedNotice: a message to
// aliasName (NOTIFY=SUCCESS) and bob, a run killed at step, two more runs.
func killExpandedNotice(t *testing.T, step queue.Step, aliasName, wantNotice string, boxes map[string]int) {
	mail := t.TempDir()
	route0 := "maildir:" + mail + "/%d/%u/"
	f := aliasFixture(t, route0, aliasDSNFile)
	dir := t.TempDir()
	routes, aliases := filepath.Join(dir, "routes"), filepath.Join(dir, "aliases")
	if err := os.WriteFile(routes, []byte("example.org "+route0+"\nother.test "+route0+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aliases, []byte(aliasDSNFile), 0o600); err != nil {
		t.Fatal(err)
	}
	f.queue("sender@example.org", []string{aliasName + "@example.org", "bob@example.org"}, body("crash"),
		withDSN("", "", spool.RcptDSN{Notify: "SUCCESS"}, spool.RcptDSN{}))
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SEND_CRASH_STEP="+step.String(), "SEND_CRASH_DIR="+f.sp.Root(),
		"SEND_CRASH_ADDR=127.0.0.1:1", "SEND_CRASH_ROUTES="+routes, "SEND_CRASH_ALIASES="+aliases,
		"SEND_CRASH_NOW="+strconv.FormatInt(f.clk.Now().UnixNano(), 10))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper not killed at %s: %v\n%s", step, err, out)
	}
	f.run(false)
	f.run(true)
	for a, n := range boxes {
		if got := len(mailbox(t, mail, a)); got != n {
			t.Errorf("%s has %d messages, want %d", a, got, n)
		}
	}
	notices := mailbox(t, mail, "sender@example.org")
	if len(notices) != 1 {
		t.Fatalf("%d notices, want 1", len(notices))
	}
	if !strings.Contains(notices[0], wantNotice) {
		t.Errorf("notice:\n%s", notices[0])
	}
	if q := f.names(spool.QueueDir); len(q) != 0 {
		t.Errorf("left in queue/: %v", q)
	}
	if n := f.names(queue.StateDir); len(n) != 0 {
		t.Errorf("left in state/: %v", n)
	}
}
