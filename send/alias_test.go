package send

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/alias"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/route"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

const aliasFile = `postmaster: root
abuse: root
root: alice, bob
staff: Alice,
	carol@other.test
ext: x@remote.test
`

// aliasFixture is a fixture whose route table sends example.org and
// other.test to route0 and remote.test to an error route, with the
// aliases text.
func aliasFixture(t *testing.T, route0, aliases string) *fixture {
	t.Helper()
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes")
	table := "example.org " + route0 + "\nother.test " + route0 + "\nremote.test error:5.1.2 remote refused\n"
	if err := os.WriteFile(routes, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	tb, err := route.Load(routes)
	if err != nil {
		t.Fatal(err)
	}
	al, err := alias.Parse(strings.NewReader(aliases), "aliases")
	if err != nil {
		t.Fatal(err)
	}
	f.s.Config.Routes, f.s.Config.Aliases = tb, al
	return f
}

// pipeLog is a pipe: route, per recipient, that appends each recipient
// to a log file, and a counter of a recipient's lines in it.
func pipeLog(t *testing.T) (string, func(string) int) {
	dir := t.TempDir()
	script, log := filepath.Join(dir, "deliver"), filepath.Join(dir, "log")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat >/dev/null\necho \"$1\" >> "+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return "pipe:" + script + " per=recipient ${recipient}", func(rcpt string) int {
		b, _ := os.ReadFile(log)
		return strings.Count(string(b), rcpt+"\n")
	}
}

// An alias recipient of a local domain becomes an expansion, delivered in
// the same run, with Delivered-To: naming the alias; the alias
// recipient is recorded done; local parts match in any case; an address
// in another local domain is routed there, one elsewhere by its own
// route (here an error route: the notice names it, not the alias); an
// address two aliases name (alice) gets one copy, through the first.
func TestAliasExpansion(t *testing.T) {
	mail := t.TempDir()
	f := aliasFixture(t, "maildir:"+mail+"/%d/%u/", aliasFile)
	id := f.queue("sender@example.org", []string{"PostMaster@example.org", "staff@example.org", "dave@example.org", "ext@example.org"}, body("aliases"))
	st := f.run(false)
	if st.Delivered != 4 || st.Started != 4 {
		// dave, then alice and bob, carol (alice had hers),
		// x@remote.test failed; the expansions are not deliveries.
		t.Errorf("delivered %d in %d messages, want 4 in 4: %+v", st.Delivered, st.Started, st)
	}
	box := func(a string) string { l, d, _ := strings.Cut(a, "@"); return filepath.Join(mail, d, l) }
	for a, n := range map[string]int{"alice@example.org": 1, "bob@example.org": 1, "carol@other.test": 1, "dave@example.org": 1,
		"root@example.org": 0, "postmaster@example.org": 0, "staff@example.org": 0} {
		if got := len(maildirFiles(t, box(a), "new")); got != n {
			t.Errorf("%s has %d messages, want %d", a, got, n)
		}
	}
	var via []string
	for _, n := range maildirFiles(t, box("alice@example.org"), "new") {
		b, err := os.ReadFile(filepath.Join(box("alice@example.org"), "new", n))
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(strings.ToLower(string(b)), "delivered-to: alice@example.org\n")
		dt, _, _ := strings.Cut(rest, "\n")
		via = append(via, dt)
		if !strings.Contains(string(b), "Subject: aliases\n") {
			t.Errorf("message:\n%s", b)
		}
	}
	if strings.Join(via, " ") != "delivered-to: postmaster@example.org" {
		t.Errorf("alice's messages have %q below her Delivered-To:", via)
	}
	if !strings.Contains(f.logs.String(), `rcpt=staff@example.org status=expanded relay="" stage=expanded code=0 enhanced=2.0.0 reply="alias expanded to 2 address(es), 1 already getting the message, queue id `+queue.ExpansionID(id, 1)) {
		t.Errorf("log does not say staff's alice already had the message")
	}
	for _, e := range []string{queue.ExpansionID(id, 0), queue.ExpansionID(id, 1), queue.ExpansionID(id, 3)} {
		if !strings.Contains(f.logs.String(), e) {
			t.Errorf("log does not name expansion %s", e)
		}
	}
	// x@remote.test failed by its route: the notice goes to the sender.
	f.run(true)
	notices := maildirFiles(t, box("sender@example.org"), "new")
	if len(notices) != 1 {
		t.Fatalf("%d notices, want 1", len(notices))
	}
	b, _ := os.ReadFile(filepath.Join(box("sender@example.org"), "new", notices[0]))
	if !strings.Contains(string(b), "Final-Recipient: rfc822; x@remote.test") ||
		!strings.Contains(string(b), "Original-Recipient: rfc822;ext@example.org") {
		t.Errorf("notice:\n%s", b)
	}
	if q := f.names(spool.QueueDir); len(q) != 0 {
		t.Errorf("left in queue/: %v", q)
	}
}

// One copy per address however the message reaches it (as Postfix's
// duplicate_filter_limit): an address that is a recipient of its own
// and in an alias, or in two aliases, gets one; an alias whose addresses
// all have a copy spools no expansion, is recorded done with its reason,
// and its NOTIFY=SUCCESS gets an "expanded" notice; an alias naming
// itself (bob: bob, archive) keeps its own mailbox's copy.
func TestAliasDuplicatesDelivered(t *testing.T) {
	mail := t.TempDir()
	const aliases = `team: alice, bob, carol
leads: alice, carol
bob: bob, archive
`
	f := aliasFixture(t, "maildir:"+mail+"/%d/%u/", aliases)
	to := []string{"alice@example.org", "team@example.org", "leads@example.org", "bob@example.org", "dave@example.org"}
	id := f.queue("sender@example.org", to, body("duplicates"), withDSN("", "", spool.RcptDSN{}, spool.RcptDSN{}, spool.RcptDSN{Notify: "SUCCESS"}, spool.RcptDSN{}, spool.RcptDSN{}))
	f.run(false)
	box := func(a string) string { l, d, _ := strings.Cut(a, "@"); return filepath.Join(mail, d, l) }
	for a, n := range map[string]int{"alice@example.org": 1, "bob@example.org": 1, "carol@example.org": 1, "archive@example.org": 1,
		"dave@example.org": 1, "team@example.org": 0, "leads@example.org": 0} {
		if got := len(maildirFiles(t, box(a), "new")); got != n {
			t.Errorf("%s has %d messages, want %d", a, got, n)
		}
	}
	logs := f.logs.String()
	// team is alice, bob's alias (bob, archive) and carol; alice is a
	// recipient of her own, and bob a recipient that is an alias, so
	// his mailbox gets team's copy; leads and bob then have nothing new.
	for _, want := range []string{
		`rcpt=team@example.org status=expanded relay="" stage=expanded code=0 enhanced=2.0.0 reply="alias expanded to 4 address(es), 1 already getting the message, queue id ` + queue.ExpansionID(id, 1),
		`rcpt=leads@example.org status=expanded relay="" stage=expanded code=0 enhanced=2.0.0 reply="alias expanded to 2 address(es), each already getting the message"`,
		`rcpt=bob@example.org status=expanded relay="" stage=expanded code=0 enhanced=2.0.0 reply="alias expanded to 2 address(es), each already getting the message"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for _, i := range []int{2, 3} {
		if strings.Contains(logs, queue.ExpansionID(id, i)) {
			t.Errorf("an expansion was spooled for %s", to[i])
		}
	}
	f.run(true)
	notices := maildirFiles(t, box("sender@example.org"), "new")
	if len(notices) != 1 {
		t.Fatalf("%d notices, want 1 (leads expanded)", len(notices))
	}
	b, _ := os.ReadFile(filepath.Join(box("sender@example.org"), "new", notices[0]))
	if !strings.Contains(string(b), "Final-Recipient: rfc822; leads@example.org\nAction: expanded\nStatus: 2.0.0\n") {
		t.Errorf("notice:\n%s", b)
	}
	if q := f.names(spool.QueueDir); len(q) != 0 {
		t.Errorf("left in queue/: %v", q)
	}
}

// A message that already went through an alias (its Delivered-To:
// names it) fails for that alias with 5.4.6 and a notice; an alias that
// nests past alias.MaxDepth fails with 5.4.6 too. Other recipients are
// delivered.
func TestAliasLoopAndDepth(t *testing.T) {
	mail := t.TempDir()
	var chain strings.Builder
	for i := range alias.MaxDepth + 1 {
		chain.WriteString("deep" + strconv.Itoa(i) + ": deep" + strconv.Itoa(i+1) + "\n")
	}
	f := aliasFixture(t, "maildir:"+mail+"/%d/%u/", aliasFile+chain.String())
	looped := "Delivered-To: someone@example.org\r\nDelivered-To:\r\n <STAFF@example.org>\r\n" + body("loop")
	f.queue("sender@example.org", []string{"staff@example.org", "dave@example.org", "deep0@example.org"}, looped)
	f.run(false)
	f.run(true)
	if n := len(maildirFiles(t, filepath.Join(mail, "example.org", "alice"), "new")); n != 0 {
		t.Errorf("alice has %d messages: the loop was delivered", n)
	}
	if n := len(maildirFiles(t, filepath.Join(mail, "example.org", "dave"), "new")); n != 1 {
		t.Errorf("dave has %d messages, want 1", n)
	}
	notices := maildirFiles(t, filepath.Join(mail, "example.org", "sender"), "new")
	if len(notices) != 1 {
		t.Fatalf("%d notices, want 1", len(notices))
	}
	b, _ := os.ReadFile(filepath.Join(mail, "example.org", "sender", "new", notices[0]))
	for _, want := range []string{"Final-Recipient: rfc822; staff@example.org", "Status: 5.4.6", "mail forwarding loop",
		"Final-Recipient: rfc822; deep0@example.org", "nesting too deep"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("notice lacks %q:\n%s", want, b)
		}
	}
}

// An expansion is queued exactly once even when the run that spooled it
// died before recording the alias recipient and the expansion would be
// delivered before its original is tried again (rule 7 of package
// queue): the next run records the alias first. Without that, the
// original, due later, would spool the expansion again.
func TestAliasExpansionRecoveredBeforeDelivery(t *testing.T) {
	route0, count := pipeLog(t)
	f := aliasFixture(t, route0, aliasFile)
	id := f.queue("sender@example.org", []string{"staff@example.org", "dave@example.org"}, body("crash"))
	// What a run killed at StepExpansionSpooled leaves, after an earlier
	// attempt deferred the message to an hour from now.
	sc, err := f.q.Scan()
	if err != nil || len(sc.Entries) != 1 {
		t.Fatal(sc, err)
	}
	it, err := f.q.Open(&sc.Entries[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := it.Load(f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := it.SpoolExpansion(queue.Expansion{Index: 0, To: []string{"Alice@example.org", "carol@other.test"},
		Header: "Delivered-To: staff@example.org\r\n"}); err != nil {
		t.Fatal(err)
	}
	it.State.Attempts, it.State.Next = 1, f.clk.Now().Add(time.Hour)
	if _, err := it.Settle(); err != nil {
		t.Fatal(err)
	}
	it.Close()

	f.run(false) // the original is not due; its expansion is
	if st := f.state(id); st == nil || rcptStatus(st) != "staff@example.org=done dave@example.org=pending" {
		t.Fatalf("original's state %v, want staff done before the expansion is delivered", st)
	}
	f.run(true)
	for a, n := range map[string]int{"Alice@example.org": 1, "carol@other.test": 1, "dave@example.org": 1, "staff@example.org": 0} {
		if got := count(a); got != n {
			t.Errorf("%s delivered %d times, want %d", a, got, n)
		}
	}
	if q := f.names(spool.QueueDir); len(q) != 0 {
		t.Errorf("left in queue/: %v", q)
	}
}

// A run killed with SIGKILL at each step of an alias expansion (spooled,
// recording, recorded), then run again: every address of the expansion
// and the other recipient are delivered exactly once (a pipe route that
// logs each delivery), and nothing is left in the queue.
func TestKillAliasAtEachStep(t *testing.T) {
	for _, step := range []queue.Step{queue.StepExpansionSpooled, queue.StepAccepted, queue.StepRecorded} {
		t.Run(step.String(), func(t *testing.T) {
			route0, count := pipeLog(t)
			f := aliasFixture(t, route0, aliasFile)
			dir := t.TempDir()
			routes, aliases := filepath.Join(dir, "routes"), filepath.Join(dir, "aliases")
			table := "example.org " + route0 + "\nother.test " + route0 + "\n"
			if err := os.WriteFile(routes, []byte(table), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(aliases, []byte(aliasFile), 0o600); err != nil {
				t.Fatal(err)
			}
			f.queue("sender@example.org", []string{"staff@example.org", "dave@example.org"}, body("crash"))
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
			for a, n := range map[string]int{"Alice@example.org": 1, "carol@other.test": 1, "dave@example.org": 1, "staff@example.org": 0} {
				if got := count(a); got != n {
					t.Errorf("%s delivered %d times, want %d", a, got, n)
				}
			}
			if q := f.names(spool.QueueDir); len(q) != 0 {
				t.Errorf("left in queue/: %v", q)
			}
			if n := f.names(queue.StateDir); len(n) != 0 {
				t.Errorf("left in state/: %v", n)
			}
		})
	}
}

// users= on a local route: a recipient whose local part the file does
// not name fails with 5.1.1 and a notice, before any delivery; a name
// (ASCII case ignored) and postmaster pass; with aliases, an expanded
// address is checked too when its expansion is delivered.
func TestRouteUsers(t *testing.T) {
	mail := t.TempDir()
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice: alice\nstaff: alice, carol\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := aliasFixture(t, "maildir:"+mail+"/%d/%u/ users="+users, "staff: alice, carol\n")
	tb, err := route.Parse(strings.NewReader("example.org maildir:"+mail+"/%d/%u/ users="+users+"\nother.test maildir:"+mail+"/%d/%u/\n"), "routes")
	if err != nil {
		t.Fatal(err)
	}
	f.s.Config.Routes = tb
	f.queue("s@other.test", []string{"ALICE@example.org", "bob@example.org", "Postmaster@example.org", "staff@example.org"}, body("users"))
	f.run(false)
	f.run(true)
	// alice once: a recipient of her own (ALICE) and in staff.
	for a, n := range map[string]int{"alice": 1, "bob": 0, "postmaster": 1, "carol": 0, "staff": 0} {
		if got := len(maildirFiles(t, filepath.Join(mail, "example.org", a), "new")); got != n {
			t.Errorf("%s has %d messages, want %d", a, got, n)
		}
	}
	notices := maildirFiles(t, filepath.Join(mail, "other.test", "s"), "new")
	if len(notices) != 2 {
		t.Fatalf("%d notices, want 2 (bob's, then carol's from the expansion)", len(notices))
	}
	var all string
	for _, n := range notices {
		b, _ := os.ReadFile(filepath.Join(mail, "other.test", "s", "new", n))
		all += string(b)
	}
	for _, want := range []string{"Final-Recipient: rfc822; bob@example.org", "Final-Recipient: rfc822; carol@example.org",
		"Status: 5.1.1", "no such user here"} {
		if !strings.Contains(all, want) {
			t.Errorf("notices lack %q:\n%s", want, all)
		}
	}
}

// --explain says what users= and the aliases do with a local recipient.
func TestExplainAliasAndUsers(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice: alice\nstaff: alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := aliasFixture(t, "maildir:/var/vmail/%d/%u/ users="+users, aliasFile)
	cfg := f.s.Config
	for rcpt, want := range map[string]string{
		"staff@example.org": "alias (aliases line 4): queue an expansion to Alice@example.org, carol@other.test, each address routed",
		"bob@example.org":   "bounce at once: 5.1.1 no such user here: bob is not in " + users,
		"alice@example.org": "write the message into /var/vmail/example.org/alice/new/",
	} {
		if p := Explain(context.Background(), cfg, nil, rcpt); !strings.Contains(p.Outcome, want) {
			t.Errorf("%s: outcome %q, want %q", rcpt, p.Outcome, want)
		}
	}
}
