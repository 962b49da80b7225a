package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// aliasEnv writes a route table sending example.org to maildirs under
// mail and the alias file text, and returns smtp-send's environment.
func aliasEnv(t *testing.T, spoolDir, mail, aliases string) []string {
	t.Helper()
	dir := t.TempDir()
	routes, file := filepath.Join(dir, "routes"), filepath.Join(dir, "aliases")
	if err := os.WriteFile(routes, []byte("example.org maildir:"+mail+"/%u/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(aliases), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=client.test", "SMTP_SEND_ROUTES=" + routes, "SMTP_SEND_ALIASES=" + file}
}

// SMTP_SEND_ALIASES: an alias of a local domain is delivered to its
// addresses in the same run; a file without postmaster is warned about.
func TestAliases(t *testing.T) {
	dir, mail := t.TempDir(), t.TempDir()
	queue(t, dir, "team@example.org")
	r := runBinary(t, aliasEnv(t, dir, mail, "team: alice, bob\n"))
	if r.code != 0 || !strings.Contains(r.stderr, "the alias file has no postmaster") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, u := range []string{"alice", "bob"} {
		ents, _ := os.ReadDir(filepath.Join(mail, u, "new"))
		if len(ents) != 1 {
			t.Errorf("%s has %d messages, want 1\n%s", u, len(ents), r.stderr)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "queue")); len(ents) != 0 {
		t.Errorf("left in queue/: %d", len(ents))
	}
	r = runBinary(t, aliasEnv(t, t.TempDir(), mail, "postmaster: root\n"))
	if r.code != 0 || strings.Contains(r.stderr, "no postmaster") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}

// A bad alias file is a configuration error (exit 78) naming the file
// and the line, before anything is sent; a command or a file target
// points at the route table.
func TestAliasFileBad(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"postmaster: root\nlist: |/usr/bin/list\n", "aliases line 2: alias \"list\": \"|/usr/bin/list\": commands are not run from the alias file; use a pipe:/command route"},
		{"postmaster: root\n# x\nbox: /var/mail/box\n", "aliases line 3: alias \"box\": \"/var/mail/box\": files are not written"},
		{"postmaster: root\nx: :include:/etc/x\n", "aliases line 2: alias \"x\": \":include:/etc/x\": :include: is not supported"},
		{"a: b\nb: a\n", "aliases line 2: alias \"b\" is part of a cycle"},
	} {
		dir, mail := t.TempDir(), t.TempDir()
		queue(t, dir, "a@example.org")
		r := runBinary(t, aliasEnv(t, dir, mail, c.text))
		if r.code != exConfig || !strings.Contains(r.stderr, "SMTP_SEND_ALIASES: ") || !strings.Contains(strings.ReplaceAll(r.stderr, `\"`, `"`), c.want) {
			t.Errorf("%q: exit %d\n%s", c.text, r.code, r.stderr)
		}
		if ents, _ := os.ReadDir(mail); len(ents) != 0 {
			t.Errorf("%q: delivered before the check", c.text)
		}
	}
}

// users= naming a missing or bad file is a configuration error (exit
// 78) naming the route table's line, before anything is sent.
func TestRouteUsersBad(t *testing.T) {
	dir, mail := t.TempDir(), t.TempDir()
	queue(t, dir, "a@example.org")
	users := filepath.Join(t.TempDir(), "users")
	routes := filepath.Join(t.TempDir(), "routes")
	if err := os.WriteFile(routes, []byte("# local\nexample.org maildir:"+mail+"/%u/ users="+users+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SMTP_SPOOL_DIR=" + dir, "SMTP_HOSTNAME=client.test", "SMTP_SEND_ROUTES=" + routes}
	r := runBinary(t, env)
	if r.code != exConfig || !strings.Contains(r.stderr, "routes line 2: users=: open "+users) {
		t.Errorf("missing file: exit %d\n%s", r.code, r.stderr)
	}
	if err := os.WriteFile(users, []byte("a: |/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runBinary(t, env)
	if r.code != exConfig || !strings.Contains(r.stderr, "routes line 2: users=: "+users+" line 1") {
		t.Errorf("bad file: exit %d\n%s", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(mail); len(ents) != 0 {
		t.Errorf("delivered before the check")
	}
}

// Aliases in front of a real Dovecot over LMTP: the alias's expansion is
// delivered in the same run, each address once (bob, a recipient of his
// own too, gets one copy), and Dovecot's copy carries Delivered-To:
// naming the alias; a second run delivers nothing more.
func TestAliasesDovecot(t *testing.T) {
	dv := startDovecot(t, "alice@mail.test", "bob@mail.test")
	dir := t.TempDir()
	queue(t, dir, "staff@mail.test", "Bob@mail.test")
	aliases := filepath.Join(t.TempDir(), "aliases")
	if err := os.WriteFile(aliases, []byte("postmaster: alice\nstaff: alice,\n  bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := localEnv(t, dir, "mail.test lmtp:unix:"+dv.Socket+"\n", "SMTP_SEND_ALIASES="+aliases)
	for run := range 2 {
		if r := runBinary(t, env); r.code != 0 || run == 0 && !strings.Contains(r.stderr, "rcpt=staff@mail.test status=expanded") {
			t.Fatalf("run %d: exit %d\n%s", run, r.code, r.stderr)
		}
	}
	if a, b := dv.count("alice@mail.test"), dv.count("bob@mail.test"); a != 1 || b != 1 {
		// bob: as a recipient of his own, not again through staff
		// (docs/send.md: one copy per address).
		t.Errorf("alice has %d messages, bob %d; want 1 and 1", a, b)
	}
	if got := dv.doveadm("fetch", "-u", "alice@mail.test", "hdr.delivered-to", "mailbox", "INBOX", "all"); !strings.Contains(got, "staff@mail.test") {
		t.Errorf("alice's message: %q", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "queue")); len(ents) != 0 {
		t.Errorf("left in queue/: %d", len(ents))
	}
}
