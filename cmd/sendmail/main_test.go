package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// result is one finished run of a binary.
type result struct {
	code           int
	stdout, stderr string
}

// env is a clean SMTP_* environment for the spool dir, plus more.
func env(dir string, more ...string) []string {
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SMTP_") {
			e = append(e, kv)
		}
	}
	return append(append(e, "SMTP_SPOOL_DIR="+dir, "SMTP_HOSTNAME=h.test", "SMTP_SENDMAIL_DOMAIN=d.test"), more...)
}

// run runs bin with args, the environment e and input on stdin, and
// kills it after a minute.
func run(t *testing.T, bin string, e []string, input string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = e
	cmd.Stdin = strings.NewReader(input)
	r := testutil.Run(t, cmd, time.Minute)
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr}
}

func runSendmail(t *testing.T, dir, input string, args ...string) result {
	t.Helper()
	return run(t, testutil.Program(t, "cmd/sendmail"), env(dir), input, args...)
}

// queued returns the messages in dir's queue/, by queue id, and fails
// when tmp/ is not empty.
func queued(t *testing.T, dir string) map[string]*spool.Message {
	t.Helper()
	if ents, _ := os.ReadDir(filepath.Join(dir, spool.TmpDir)); len(ents) != 0 {
		t.Errorf("tmp/ holds %d files", len(ents))
	}
	ents, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir))
	msgs := map[string]*spool.Message{}
	for _, e := range ents {
		m, err := spool.Open(filepath.Join(dir, spool.QueueDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		msgs[e.Name()] = m
	}
	return msgs
}

func content(t *testing.T, m *spool.Message) string {
	t.Helper()
	b, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDelivered: messages queued by the callers' own invocations
// (echo | sendmail -t, sendmail -f a@b rcpt < msg, cron's exact argv,
// PHP's -t -i) are delivered by smtp-send to the test smarthost byte for
// byte as queued, with the envelope asked for, and no Bcc: ever.
func TestDelivered(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, input string
		args        []string
		from        string
		to          []string
		body        string
	}{
		{"echo | sendmail -t", "To: a@x.test\nBcc: hidden@x.test\nSubject: t\n\nhello\n", []string{"-t"},
			"root@d.test", []string{"a@x.test", "hidden@x.test"}, "hello\r\n"},
		{"sendmail -f a@b rcpt < msg", "Subject: f\n\nline\n.\nnot read\n", []string{"-f", "a@b.test", "r@x.test"},
			"a@b.test", []string{"r@x.test"}, "line\r\n"},
		{"cron", "Subject: Cron <root@h> true\n\nout\n.\nmore\n", []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"},
			"root@d.test", []string{"root@d.test"}, "out\r\n.\r\nmore\r\n"},
		{"php mail()", "To: p@x.test\r\nSubject: php\r\n\r\nphp body\r\n", []string{"-t", "-i"},
			"root@d.test", []string{"p@x.test"}, "php body\r\n"},
	}
	want := map[string]string{} // first recipient → queued bytes
	for _, c := range cases {
		r := runSendmail(t, dir, c.input, c.args...)
		if r.code != 0 || r.stdout != "" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %s", c.name, r.code, r.stdout, r.stderr)
		}
	}
	msgs := queued(t, dir)
	if len(msgs) != len(cases) {
		t.Fatalf("%d messages queued, want %d", len(msgs), len(cases))
	}
	for _, m := range msgs {
		want[m.To[0]] = content(t, m)
	}
	for _, c := range cases {
		m, ok := want[c.to[0]]
		if !ok {
			t.Errorf("%s: not queued", c.name)
			continue
		}
		if !strings.HasSuffix(m, "\r\n\r\n"+c.body) || !strings.HasPrefix(m, "Received: by h.test (smtp-stdio sendmail, from userid ") {
			t.Errorf("%s: queued\n%s", c.name, m)
		}
		for _, f := range []string{"\r\nFrom: ", "\r\nDate: ", "\r\nMessage-ID: <"} {
			if !strings.Contains(m, f) {
				t.Errorf("%s: no %s", c.name, f)
			}
		}
	}
	if m := want["root@d.test"]; !strings.Contains(m, "\r\nFrom: \"CronDaemon\" <root@d.test>\r\n") {
		t.Errorf("cron's From:\n%s", m)
	}

	srv := smtptest.Start(t, smtptest.Options{})
	r := run(t, testutil.Program(t, "cmd/smtp-send"), env(dir, "SMTP_SMARTHOST="+srv.Addr, "SMTP_SMARTHOST_TLS=none"), "")
	if r.code != 0 {
		t.Fatalf("smtp-send: exit %d\n%s", r.code, r.stderr)
	}
	txs := srv.Transactions()
	if len(txs) != len(cases) {
		t.Fatalf("%d transactions delivered, want %d", len(txs), len(cases))
	}
	for _, tx := range txs {
		var c = cases[slices.IndexFunc(cases, func(c struct {
			name, input string
			args        []string
			from        string
			to          []string
			body        string
		}) bool {
			return c.to[0] == tx.To[0]
		})]
		if tx.From != c.from || !slices.Equal(tx.To, c.to) {
			t.Errorf("%s: delivered from <%s> to %v, want <%s> %v", c.name, tx.From, tx.To, c.from, c.to)
		}
		if string(tx.Data) != want[c.to[0]] {
			t.Errorf("%s: delivered\n%q\nqueued\n%q", c.name, tx.Data, want[c.to[0]])
		}
		if bytes.Contains(tx.Data, []byte("hidden")) || bytes.Contains(tx.Data, []byte("Bcc")) {
			t.Errorf("%s: Bcc: delivered", c.name)
		}
		if c.name == "cron" && tx.Body != "8BITMIME" {
			t.Errorf("cron: BODY=%q, want 8BITMIME", tx.Body)
		}
	}
}

// TestSwaksPipe: -bs is smtp-stdio's session as a local client: swaks
// --pipe runs a whole SMTP transaction through it and the message is in
// queue/.
func TestSwaksPipe(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed (scripts/install-test-deps)")
	}
	dir := t.TempDir()
	bin := testutil.Program(t, "cmd/sendmail")
	r := run(t, swaks, env(dir), "", "--pipe", bin+" -bs", "--from", "a@x.test", "--to", "b@y.test", "--body", "via swaks")
	if r.code != 0 {
		t.Fatalf("swaks: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	msgs := queued(t, dir)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued\n%s", len(msgs), r.stdout)
	}
	for _, m := range msgs {
		if m.From != "a@x.test" || !slices.Equal(m.To, []string{"b@y.test"}) || m.Client != "" {
			t.Errorf("envelope %+v", m.Envelope)
		}
		if !strings.Contains(content(t, m), "via swaks") {
			t.Errorf("message\n%s", content(t, m))
		}
	}
}

// TestSession: -bs speaks SMTP on standard input and output as
// smtp-stdio does for a local client (no launcher variable, and the
// ones set are cleared): it may relay, the message is queued with no
// client address, and smtp-stdio does not call SMTP_SENDMAIL_DOMAIN an
// unknown setting.
func TestSession(t *testing.T) {
	dir := t.TempDir()
	in := "EHLO me\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@elsewhere.test>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	r := run(t, testutil.Program(t, "cmd/sendmail"), env(dir, "TCPREMOTEIP=192.0.2.1", "SMTP_LOG=stderr"), in, "-bs")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "220 h.test ") || !strings.Contains(r.stdout, "\r\n250 2.0.0 ") || !strings.Contains(r.stdout, "\r\n221 2.0.0 ") {
		t.Errorf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, "unknown") {
		t.Errorf("stderr: %s", r.stderr)
	}
	msgs := queued(t, dir)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued", len(msgs))
	}
	for _, m := range msgs {
		if m.Client != "" || !slices.Equal(m.To, []string{"b@elsewhere.test"}) {
			t.Errorf("envelope %+v", m.Envelope)
		}
	}
	if r := runSendmail(t, dir, "", "-bs", "x@y.test"); r.code != 64 {
		t.Errorf("-bs with a recipient: exit %d", r.code)
	}
}

// TestModes: -bp and mailq print smtp-send's listing; newaliases says
// there is nothing to rebuild and exits 0, and checks SMTP_SEND_ALIASES
// when it is set (78 naming the bad line, a warning without
// postmaster); -q runs smtp-send (found on $PATH), which delivers.
func TestModes(t *testing.T) {
	dir := t.TempDir()
	if r := runSendmail(t, dir, "Subject: q\n\nx\n", "q@x.test"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var id string
	for k := range queued(t, dir) {
		id = k
	}
	bin := testutil.Program(t, "cmd/sendmail")
	links := t.TempDir()
	for _, name := range []string{"mailq", "newaliases"} {
		if err := os.Symlink(bin, filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range [][]string{{bin, "-bp"}, {filepath.Join(links, "mailq")}} {
		r := run(t, c[0], env(dir), "", c[1:]...)
		// SMTP_SENDMAIL_DOMAIN is in the environment: smtp-send's
		// listing does not call it unknown.
		if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "<q@x.test>") || strings.Contains(r.stderr, "unknown") {
			t.Errorf("%v: exit %d\n%s\n%s", c, r.code, r.stdout, r.stderr)
		}
	}
	r := run(t, filepath.Join(links, "newaliases"), env(dir), "")
	if r.code != 0 || !strings.Contains(r.stderr, "no alias file set (SMTP_SEND_ALIASES)") {
		t.Errorf("newaliases: exit %d, %s", r.code, r.stderr)
	}
	aliases := filepath.Join(t.TempDir(), "aliases")
	for _, tc := range []struct {
		text, want string
		code       int
	}{
		{"postmaster: root\nroot: alice\n", "newaliases: " + aliases + ": 2 names, read by smtp-send at each run; no database to rebuild", 0},
		{"root: alice\n", "warning: " + aliases + " has no postmaster", 0},
		{"postmaster: root\nroot alice\n", aliases + " line 2", 78},
	} {
		if err := os.WriteFile(aliases, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		r := run(t, filepath.Join(links, "newaliases"), env(dir, "SMTP_SEND_ALIASES="+aliases), "")
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("newaliases on %q: exit %d, %s", tc.text, r.code, r.stderr)
		}
	}

	srv := smtptest.Start(t, smtptest.Options{})
	send := testutil.Program(t, "cmd/smtp-send")
	e := env(dir, "SMTP_SMARTHOST="+srv.Addr, "SMTP_SMARTHOST_TLS=none")
	for i, kv := range e {
		if strings.HasPrefix(kv, "PATH=") {
			e[i] = "PATH=" + filepath.Dir(send) + ":" + kv[5:]
		}
	}
	if r := run(t, bin, e, "", "-q"); r.code != 0 {
		t.Fatalf("-q: exit %d\n%s", r.code, r.stderr)
	}
	if txs := srv.Transactions(); len(txs) != 1 || txs[0].To[0] != "q@x.test" {
		t.Errorf("-q delivered %v", txs)
	}
}

// TestErrors: the exit statuses of docs/sendmail.md with one line on
// stderr, and nothing left in the spool.
func TestErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		dir   string
		extra []string
		args  []string
		code  int
		says  string
	}{
		{"no recipients", dir, nil, []string{"-i"}, 65, "no recipients"},
		{"bad recipient", dir, nil, []string{"a b@x.test"}, 67, "not an address"},
		{"unknown option", dir, nil, []string{"-K", "a@x.test"}, 64, "unknown option -K"},
		{"missing spool, -oem", filepath.Join(dir, "missing"), nil, []string{"-oem", "a@x.test"}, 75, "message not queued"},
		{"missing spool, -oee", filepath.Join(dir, "missing"), nil, []string{"-oee", "a@x.test"}, 75, "message not queued"},
		{"unknown SMTP_SENDMAIL_", dir, []string{"SMTP_SENDMAIL_DOMIAN=x"}, []string{"a@x.test"}, 78, "SMTP_SENDMAIL_DOMIAN"},
		{"over the size limit", dir, []string{"SMTP_SENDMAIL_MAX_MESSAGE_SIZE=100"}, []string{"a@x.test"}, 65, "over SMTP_SENDMAIL_MAX_MESSAGE_SIZE (100 bytes)"},
		{"bad size limit", dir, []string{"SMTP_SENDMAIL_MAX_MESSAGE_SIZE=-1"}, []string{"a@x.test"}, 78, "SMTP_SENDMAIL_MAX_MESSAGE_SIZE"},
	} {
		r := run(t, testutil.Program(t, "cmd/sendmail"), env(c.dir, c.extra...), "Subject: e\n\nx\n", c.args...)
		lines, back := 1, true
		if strings.HasPrefix(c.args[0], "-oe") {
			// The error, then why it could not be mailed back either.
			lines, back = 2, strings.Contains(r.stderr, "\nsendmail: the error could not be mailed back: ")
		}
		if r.code != c.code || !strings.Contains(r.stderr, c.says) || strings.Count(r.stderr, "\n") != lines || !back {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", c.name, r.code, r.stderr, c.code, c.says)
		}
	}
	if len(queued(t, dir)) != 0 {
		t.Error("a failed submission left a message")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Error("the missing spool was created")
	}
	// An unknown SMTP_* that no program reads is a warning; the message
	// is queued.
	r := run(t, testutil.Program(t, "cmd/sendmail"), env(dir, "SMTP_SPOOLDIR=x"), "Subject: w\n\nx\n", "a@x.test")
	if r.code != 0 || !strings.Contains(r.stderr, "unknown setting SMTP_SPOOLDIR") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestKilled: a sendmail killed while it reads the message leaves
// nothing in queue/. SIGTERM, SIGINT and SIGHUP remove the temporary
// file too and exit 75; SIGKILL leaves it in tmp/, which smtp-send
// removes after SMTP_SEND_TMP_MAX_AGE.
func TestKilled(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(testutil.Program(t, "cmd/sendmail"), "-t")
			cmd.Env = env(dir)
			w, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			io.WriteString(w, "To: k@x.test\n\n"+strings.Repeat("body line\n", 100000))
			// The header is read and the file created before the body
			// streams: wait for the temporary file, then signal.
			deadline := time.Now().Add(30 * time.Second)
			for {
				if ents, _ := os.ReadDir(filepath.Join(dir, spool.TmpDir)); len(ents) > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cmd.Process.Signal(sig)
			err = cmd.Wait()
			if ents, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir)); len(ents) != 0 {
				t.Errorf("queue/ holds %d files after %v", len(ents), sig)
			}
			wantTmp := 0
			if sig == syscall.SIGKILL {
				wantTmp = 1
			} else if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 75 {
				t.Errorf("after %v: %v, want exit 75", sig, err)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, spool.TmpDir)); len(ents) != wantTmp {
				t.Errorf("tmp/ holds %d files after %v, want %d", len(ents), sig, wantTmp)
			}
		})
	}
}

// TestRealCallers: PHP's mail() (sendmail_path "sendmail -t -i") and
// s-nail's mail (its mta set to our sendmail) queue their messages with
// the recipients they name; PHP's lone dot stays in the body. Each is
// skipped when not installed (scripts/install-test-deps installs both).
func TestRealCallers(t *testing.T) {
	bin := testutil.Program(t, "cmd/sendmail")
	for _, c := range []struct {
		name, prog string
		args       []string
		input      string
		rcpt       string
		has        []string
	}{
		{"php mail()", "php", []string{"-d", "sendmail_path=" + bin + " -t -i", "-r",
			`exit(mail("p@x.test", "php subj", "body\n.\nline", "From: me@x.test") ? 0 : 1);`}, "",
			"p@x.test", []string{"\r\nSubject: php subj\r\n", "\r\nFrom: me@x.test\r\n", "\r\n\r\nbody\r\n.\r\nline\r\n"}},
		{"s-nail", "s-nail", []string{"-:/", "-Smta=" + bin, "-Ssendwait", "-s", "nail subj", "n@x.test"}, "hello from nail\n",
			"n@x.test", []string{"\r\nSubject: nail subj\r\n", "\r\nFrom: <root@d.test>\r\n", "\r\n\r\nhello from nail\r\n"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			prog, err := exec.LookPath(c.prog)
			if err != nil {
				t.Skipf("%s not installed (scripts/install-test-deps)", c.prog)
			}
			dir := t.TempDir()
			if r := run(t, prog, env(dir), c.input, c.args...); r.code != 0 {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			msgs := queued(t, dir)
			if len(msgs) != 1 {
				t.Fatalf("%d messages queued", len(msgs))
			}
			for _, m := range msgs {
				msg := content(t, m)
				if !slices.Equal(m.To, []string{c.rcpt}) {
					t.Errorf("recipients %v", m.To)
				}
				for _, h := range c.has {
					if os.Getuid() != 0 && strings.Contains(h, "root@") {
						continue
					}
					if !strings.Contains(msg, h) {
						t.Errorf("no %q in\n%s", h, msg)
					}
				}
			}
		})
	}
}

// TestOtherUser: a user who does not own the spool (nobody, by runuser)
// goes through the drop helper, which is not installed beside this copy
// of sendmail: 75 from sendmail, 78 from -bp (the queue is private), and
// the spool is unchanged. The installed helper: drop_test.go. Needs root
// and runuser.
func TestOtherUser(t *testing.T) {
	runuser, err := exec.LookPath("runuser")
	if err != nil || os.Getuid() != 0 {
		t.Skip("needs root and runuser")
	}
	// A copy of the binary that nobody may run: Program's directory is
	// private.
	pub, err := os.MkdirTemp("", "sendmail-pub-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pub)
	b, err := os.ReadFile(testutil.Program(t, "cmd/sendmail"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(pub, "sendmail")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pub, 0o755)
	dir := t.TempDir()
	if r := run(t, runuser, env(dir), "Subject: n\n\nx\n", "-u", "nobody", "--", bin, "a@x.test"); r.code != 75 || !strings.Contains(r.stderr, "message not queued") {
		t.Errorf("sendmail as nobody: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, runuser, env(dir), "", "-u", "nobody", "--", bin, "-bp"); r.code != 78 || r.stdout != "" {
		t.Errorf("-bp as nobody: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}
	if len(queued(t, dir)) != 0 {
		t.Error("nobody queued a message")
	}
}

// TestGitSendEmail: git send-email with --sendmail-cmd queues the patch
// for the recipient of --to, From: and Subject: as git wrote them.
// Skipped without git-email (scripts/install-test-deps installs it).
func TestGitSendEmail(t *testing.T) {
	gitExec, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skip("git not installed")
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(gitExec)), "git-send-email")); err != nil {
		t.Skip("git-email not installed (scripts/install-test-deps)")
	}
	repo, dir := t.TempDir(), t.TempDir()
	e := append(env(dir), "GIT_CONFIG_NOSYSTEM=1", "HOME="+repo, "GIT_AUTHOR_NAME=A", "GIT_AUTHOR_EMAIL=a@x.test",
		"GIT_COMMITTER_NAME=A", "GIT_COMMITTER_EMAIL=a@x.test")
	git := func(args ...string) result {
		t.Helper()
		r := run(t, "git", e, "", append([]string{"-C", repo}, args...)...)
		if r.code != 0 {
			t.Fatalf("git %v: exit %d\n%s", args, r.code, r.stderr)
		}
		return r
	}
	git("init", "-q")
	if err := os.WriteFile(filepath.Join(repo, "f"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "f")
	git("commit", "-q", "-m", "add f")
	git("format-patch", "-q", "-1", "-o", "out")
	git("send-email", "--sendmail-cmd="+testutil.Program(t, "cmd/sendmail"), "--to=t@y.test", "--from=A <a@x.test>",
		"--confirm=never", "--suppress-cc=all", "--quiet", filepath.Join(repo, "out", "0001-add-f.patch"))
	msgs := queued(t, dir)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued", len(msgs))
	}
	for _, m := range msgs {
		msg := content(t, m)
		if !slices.Equal(m.To, []string{"t@y.test"}) || !strings.Contains(msg, "\r\nFrom: A <a@x.test>\r\n") ||
			!strings.Contains(msg, "\r\nSubject: [PATCH] add f\r\n") || !strings.Contains(msg, "\r\n+hi\r\n") {
			t.Errorf("recipients %v\n%s", m.To, msg)
		}
	}
}
