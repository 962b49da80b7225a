package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// TestDropAuthWarning: nobody (not trusted) setting another sender with
// -f or -r gets sendmail's X-Authentication-Warning: in the delivered
// message, below sendmail's Received:; nobody's own address, and nobody
// named in SMTP_SENDMAIL_TRUSTED_USERS, get none; root, the spool's
// owner here, gets none either.
func TestDropAuthWarning(t *testing.T) {
	in := install(t, 1<<20)
	const w = "X-Authentication-Warning: h.test: nobody set sender to "
	cases := []struct {
		rcpt  string
		args  []string
		extra []string
		want  string // "" for no warning
	}{
		{"f@x.test", []string{"-f", "boss@corp.test"}, nil, w + "boss@corp.test using -f\r\n"},
		{"r@x.test", []string{"-r", "<>"}, nil, w + "<> using -r\r\n"},
		{"own@x.test", []string{"-f", "nobody@d.test"}, nil, ""},
		{"trusted@x.test", []string{"-f", "boss@corp.test"}, []string{"SMTP_SENDMAIL_TRUSTED_USERS=daemon, nobody"}, ""},
	}
	want := map[string]string{}
	for _, c := range cases {
		r := asNobody(t, in.sendmail, env(in.spool, c.extra...), strings.NewReader("Subject: w\n\nbody\n"), append(c.args, c.rcpt)...)
		if r.code != 0 {
			t.Fatalf("%v as nobody: exit %d\n%s", c.args, r.code, r.stderr)
		}
		want[c.rcpt] = c.want
	}
	// root owns the spool: it writes queue/ itself, trusted.
	if r := run(t, in.sendmail, env(in.spool), "Subject: w\n\nbody\n", "-f", "boss@corp.test", "root@x.test"); r.code != 0 {
		t.Fatalf("as root: exit %d\n%s", r.code, r.stderr)
	}
	want["root@x.test"] = ""
	txs := deliver(t, in)
	if len(txs) != len(want) {
		t.Fatalf("%d delivered, want %d", len(txs), len(want))
	}
	for _, tx := range txs {
		d := string(tx.Data)
		w, ok := want[tx.To[0]]
		if !ok {
			t.Errorf("delivered to %v", tx.To)
			continue
		}
		// After sendmail's own Received: (and, through drop/, the
		// pickup's before it).
		_, rest, _ := strings.Cut(d, "(smtp-stdio sendmail, ")
		_, rest, _ = strings.Cut(rest, "\r\n\tid ")
		_, rest, _ = strings.Cut(rest, "\r\n")
		if w == "" && strings.Contains(d, "X-Authentication-Warning") || w != "" && !strings.HasPrefix(rest, w) {
			t.Errorf("to %v: want warning %q:\n%s", tx.To, w, d)
		}
	}
}

// TestDropSwaksPipe: "swaks --pipe 'sendmail -bs'" as nobody, who cannot
// write the spool: the session's messages go through the drop helper
// (two in one session, the second to a domain elsewhere: a local client
// may relay), nothing is written to queue/ by nobody, and smtp-send
// delivers both with the pickup's Received: naming uid 65534 and, below
// the session's Received:, sendmail's "nobody owned process doing -bs"
// warning; none when nobody is in SMTP_SENDMAIL_TRUSTED_USERS. A message
// over the helper's limit gets 552 5.3.4 and leaves nothing.
func TestDropSwaksPipe(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed (scripts/install-test-deps)")
	}
	in := install(t, 8<<10)
	for i, to := range []string{"b@y.test", "c@elsewhere.test", "trusted@y.test"} {
		e := env(in.spool, "HOME=/")
		if to == "trusted@y.test" {
			e = append(e, "SMTP_SENDMAIL_TRUSTED_USERS=nobody")
		}
		r := asNobody(t, swaks, e, nil, "--pipe", in.sendmail+" -bs", "--from", "a@x.test", "--to", to,
			"--body", fmt.Sprintf("via swaks %d", i))
		if r.code != 0 || !strings.Contains(r.stdout, "<-  250 2.0.0 ") {
			t.Fatalf("swaks as nobody: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
	}
	if n := names(t, filepath.Join(in.spool, spool.QueueDir)); len(n) != 0 {
		t.Errorf("queue/ holds %v before the pickup", n)
	}
	if n := names(t, filepath.Join(in.spool, queue.DropDir)); len(n) != 3 {
		t.Errorf("drop/ holds %v, want 3 files", n)
	}
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 200)
	r := asNobody(t, swaks, env(in.spool, "HOME=/"), nil, "--pipe", in.sendmail+" -bs", "--from", "a@x.test", "--to", "big@y.test", "--body", big)
	if !strings.Contains(r.stdout, "<** 552 5.3.4 ") {
		t.Errorf("over the limit: exit %d\n%s", r.code, r.stdout)
	}
	txs := deliver(t, in)
	if len(txs) != 3 {
		t.Fatalf("%d delivered, want 3", len(txs))
	}
	for _, tx := range txs {
		d := string(tx.Data)
		if tx.From != "a@x.test" || len(tx.To) != 1 || tx.To[0] == "big@y.test" ||
			!strings.HasPrefix(d, "Received: by h.test (smtp-stdio pickup, from userid 65534 login nobody)") ||
			!strings.Contains(d, "via swaks") {
			t.Errorf("delivered <%s> %v:\n%s", tx.From, tx.To, d)
		}
		// The session's Received: (second field), then the warning.
		_, rest, _ := strings.Cut(d, "\r\nReceived: from ")
		_, rest, _ = strings.Cut(rest, " +0000\r\n")
		warned := strings.HasPrefix(rest, "X-Authentication-Warning: h.test: nobody owned process doing -bs\r\n")
		if warned != (tx.To[0] != "trusted@y.test") || strings.Count(d, "X-Authentication-Warning") > 1 {
			t.Errorf("to %v: warning %v:\n%s", tx.To, warned, d)
		}
	}
}

// TestErrorModes: cron's "sendmail -oem" whose message cannot be queued
// (no recipients here) still exits 65, and the error with the message
// comes back to the user who ran it, from the null sender, as root (the
// spool's owner, directly) and as nobody (through the drop helper):
// smtp-send delivers them to the test smarthost. -oee does the same and
// exits 0, the message being in the error (as Exim's -oee). -oeq says
// nothing and -oep only writes the error; neither queues anything.
func TestErrorModes(t *testing.T) {
	in := install(t, 1<<20)
	const msg = "Subject: Cron <x@h> job\n\njob output\n.\nmore output\n"
	r := asNobody(t, in.sendmail, env(in.spool), strings.NewReader(msg), "-FCronDaemon", "-i", "-B8BITMIME", "-oem")
	if r.code != 65 || !strings.Contains(r.stderr, "sendmail: message not queued: no recipients") ||
		!strings.Contains(r.stderr, "sendmail: the error is mailed to nobody@d.test with the message\n") {
		t.Fatalf("-oem as nobody: exit %d\n%s", r.code, r.stderr)
	}
	if r := run(t, in.sendmail, env(in.spool), msg, "-oem", "-i", "not an address"); r.code != 67 || !strings.Contains(r.stderr, "mailed to root@d.test") {
		t.Fatalf("-oem as root: exit %d\n%s", r.code, r.stderr)
	}
	if r := asNobody(t, in.sendmail, env(in.spool), strings.NewReader(msg), "-oee", "-i"); r.code != 0 || !strings.Contains(r.stderr, "mailed to nobody@d.test") {
		t.Fatalf("-oee as nobody: exit %d\n%s", r.code, r.stderr)
	}
	for _, mode := range []string{"-oeq", "-oep"} {
		r := asNobody(t, in.sendmail, env(in.spool), strings.NewReader(msg), mode, "-i")
		if r.code != 65 || (mode == "-oeq") != (r.stderr == "") || strings.Contains(r.stderr, "mailed") {
			t.Errorf("%s: exit %d, stderr %q", mode, r.code, r.stderr)
		}
	}
	if n := names(t, filepath.Join(in.spool, queue.DropDir)); len(n) != 2 {
		t.Errorf("drop/ holds %v, want nobody's two returned errors", n)
	}
	txs := deliver(t, in)
	if len(txs) != 3 {
		t.Fatalf("%d delivered, want the 3 returned errors", len(txs))
	}
	for _, tx := range txs {
		d := string(tx.Data)
		if tx.From != "" || len(tx.To) != 1 || (tx.To[0] != "nobody@d.test" && tx.To[0] != "root@d.test") ||
			!strings.Contains(d, "\r\nSubject: Returned mail: see transcript for details\r\n") ||
			!strings.Contains(d, "------ The unsent message follows ------\r\nSubject: Cron <x@h> job\r\n\r\njob output\r\n.\r\nmore output\r\n") {
			t.Errorf("delivered <%s> %v:\n%s", tx.From, tx.To, d)
		}
		if tx.To[0] == "nobody@d.test" && (!strings.Contains(d, "    no recipients") ||
			!strings.HasPrefix(d, "Received: by h.test (smtp-stdio pickup, from userid 65534 login nobody)")) {
			t.Errorf("nobody's:\n%s", d)
		}
		if tx.To[0] == "root@d.test" && !strings.Contains(d, "\"not an address\"") {
			t.Errorf("root's:\n%s", d)
		}
	}
}

// TestDropGitSendEmail: git send-email run by nobody with our sendmail as
// its --sendmail-cmd and an --envelope-sender, which it passes as -f: the
// patch goes through the drop helper with nobody's
// X-Authentication-Warning:, and smtp-send delivers it.
func TestDropGitSendEmail(t *testing.T) {
	gitExec, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skip("git not installed")
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(gitExec)), "git-send-email")); err != nil {
		t.Skip("git-email not installed (scripts/install-test-deps)")
	}
	in := install(t, 1<<20)
	repo := filepath.Join(in.dir, "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	e := env(in.spool, "GIT_CONFIG_NOSYSTEM=1", "HOME="+repo, "GIT_AUTHOR_NAME=A", "GIT_AUTHOR_EMAIL=a@x.test",
		"GIT_COMMITTER_NAME=A", "GIT_COMMITTER_EMAIL=a@x.test")
	git := func(args ...string) {
		t.Helper()
		if r := asNobody(t, "/usr/bin/git", e, nil, append([]string{"-C", repo}, args...)...); r.code != 0 {
			t.Fatalf("git %v as nobody: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	if err := os.Chown(repo, nobodyUid, nobodyUid); err != nil {
		t.Fatal(err)
	}
	git("init", "-q")
	if r := asNobody(t, "/bin/sh", e, nil, "-c", "echo hi > "+filepath.Join(repo, "f")); r.code != 0 {
		t.Fatalf("sh: %s", r.stderr)
	}
	git("add", "f")
	git("commit", "-q", "-m", "add f")
	git("format-patch", "-q", "-1", "-o", "out")
	git("send-email", "--sendmail-cmd="+in.sendmail, "--to=t@y.test", "--from=A <a@x.test>",
		"--envelope-sender=a@x.test", "--confirm=never", "--suppress-cc=all", "--quiet", filepath.Join(repo, "out", "0001-add-f.patch"))
	txs := deliver(t, in)
	if len(txs) != 1 {
		t.Fatalf("%d delivered, want 1", len(txs))
	}
	d := string(txs[0].Data)
	if txs[0].From != "a@x.test" || len(txs[0].To) != 1 || txs[0].To[0] != "t@y.test" ||
		!strings.HasPrefix(d, "Received: by h.test (smtp-stdio pickup, from userid 65534 login nobody)") ||
		!strings.Contains(d, "\r\nX-Authentication-Warning: h.test: nobody set sender to a@x.test using -f\r\n") ||
		!strings.Contains(d, "\r\nSubject: [PATCH] add f\r\n") || !strings.Contains(d, "\r\n+hi\r\n") {
		t.Errorf("delivered <%s> %v:\n%s", txs[0].From, txs[0].To, d)
	}
}
