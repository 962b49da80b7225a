package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// The hostile tests of the privilege model (issue 13, phase 2), as
// docs/reliability.md lists them. Each installs, as
// scripts/install-sendmail does, sendmail and the setgid drop helper in a
// directory of their own, with a spool owned by root (the spool's user
// here), and runs the callers as nobody. They need root.

// dropGid is the group of the drop helper in the tests: a number, so
// that no group is added to the system.
const dropGid = 64999

// nobody is the unprivileged caller.
const nobodyUid = 65534

// installed is sendmail and smtp-drop installed as scripts/install-sendmail
// does, with the helper's configuration file fixed at build time.
type installed struct {
	dir      string // binaries and configuration, mode 0755
	sendmail string
	drop     string
	spool    string // owned by root, group dropGid, mode 0710
}

func install(t *testing.T, limit int64) *installed {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: installs a setgid helper and runs callers as nobody")
	}
	dir, err := os.MkdirTemp("", "sendmail-drop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	in := &installed{dir: dir, sendmail: filepath.Join(dir, "sendmail"), drop: filepath.Join(dir, "smtp-drop"),
		spool: filepath.Join(dir, "spool")}
	b, err := os.ReadFile(testutil.Program(t, "cmd/sendmail"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in.sendmail, b, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sendmail.conf")
	// The one build not through testutil.Program: the configuration path
	// is fixed at build time, as in production.
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(gobin, "build", "-ldflags", "-X main.configPath="+conf, "-o", in.drop, "./cmd/smtp-drop")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build smtp-drop: %v\n%s", err, out)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chown(in.drop, 0, dropGid))
	must(syscall.Chmod(in.drop, 0o2755))
	must(os.WriteFile(conf, fmt.Appendf(nil, "# test\nSMTP_SPOOL_DIR=%s\nSMTP_SENDMAIL_MAX_MESSAGE_SIZE=%d\n", in.spool, limit), 0o644))
	must(os.Mkdir(in.spool, 0o700))
	_, err = spool.New(in.spool)
	must(err)
	must(os.Chown(in.spool, 0, dropGid))
	must(syscall.Chmod(in.spool, 0o710))
	d := filepath.Join(in.spool, queue.DropDir)
	must(os.Mkdir(d, 0o700))
	must(os.Chown(d, 0, dropGid))
	must(syscall.Chmod(d, 0o1730))
	return in
}

// asNobody runs bin as nobody (syscall.Credential) with env e, and kills
// it after a minute.
func asNobody(t *testing.T, bin string, e []string, stdin io.Reader, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdin = e, stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyUid, Gid: nobodyUid}}
	r := testutil.Run(t, cmd, time.Minute)
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr}
}

// names returns the names in dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}

// deliver runs smtp-send (as root, the spool's user) to a test smarthost
// and returns what it received.
func deliver(t *testing.T, in *installed) []smtptest.Tx {
	t.Helper()
	srv := smtptest.Start(t, smtptest.Options{})
	r := run(t, testutil.Program(t, "cmd/smtp-send"), env(in.spool, "SMTP_SMARTHOST="+srv.Addr, "SMTP_SMARTHOST_TLS=none"), "")
	if r.code != 0 {
		t.Fatalf("smtp-send: exit %d\n%s", r.code, r.stderr)
	}
	return srv.Transactions()
}

// TestDropDelivered: nobody's "sendmail -t" goes through the helper into
// drop/ (a file owned by nobody, nothing in queue/), and smtp-send picks
// it up and delivers it byte for byte: its own Received: naming uid 65534
// first, then the file as dropped, without Bcc:. nobody may not list the
// queue.
func TestDropDelivered(t *testing.T) {
	in := install(t, 1<<20)
	r := asNobody(t, in.sendmail, env(in.spool), strings.NewReader("To: a@x.test\nBcc: hidden@x.test\nSubject: d\n\nhello\n"), "-t")
	if r.code != 0 {
		t.Fatalf("sendmail -t as nobody: exit %d\n%s", r.code, r.stderr)
	}
	dropped := names(t, filepath.Join(in.spool, queue.DropDir))
	if len(dropped) != 1 || len(names(t, filepath.Join(in.spool, spool.QueueDir))) != 0 {
		t.Fatalf("drop/ %v, queue/ %v", dropped, names(t, filepath.Join(in.spool, spool.QueueDir)))
	}
	p := filepath.Join(in.spool, queue.DropDir, dropped[0])
	fi, _ := os.Stat(p)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobodyUid || st.Gid != dropGid {
		t.Errorf("drop file owned by %d:%d, want %d:%d", st.Uid, st.Gid, nobodyUid, dropGid)
	}
	m, err := spool.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	want := content(t, m)
	m.Close()
	if r := asNobody(t, in.sendmail, env(in.spool), nil, "-bp"); r.code != 78 || r.stdout != "" || !strings.Contains(r.stderr, "private") {
		t.Errorf("mailq as nobody: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}

	txs := deliver(t, in)
	if len(txs) != 1 {
		t.Fatalf("%d transactions, want 1", len(txs))
	}
	got := string(txs[0].Data)
	pick, rest, _ := strings.Cut(got, "\r\n\tid ")
	if pick != "Received: by h.test (smtp-stdio pickup, from userid 65534 login nobody)" {
		t.Errorf("first field %q", pick)
	}
	if _, rest, _ = strings.Cut(rest, "\r\n"); rest != want {
		t.Errorf("delivered\n%q\nwant the pickup's Received: and\n%q", got, want)
	}
	if !strings.Contains(want, "(smtp-stdio sendmail, from userid 65534 login nobody)") ||
		strings.Contains(got, "hidden") || strings.Contains(got, "Bcc") {
		t.Errorf("delivered\n%s", got)
	}
	if txs[0].From != "nobody@d.test" || len(txs[0].To) != 2 {
		t.Errorf("envelope %s %v", txs[0].From, txs[0].To)
	}
	if n := names(t, filepath.Join(in.spool, queue.DropDir)); len(n) != 0 {
		t.Errorf("drop/ still holds %v", n)
	}
}

// TestDropHostileEnvironment: nobody points SMTP_SPOOL_DIR, TMPDIR,
// GODEBUG and the locale at other places; the helper reads only its
// configuration file, so the message lands in the configured spool and
// the other spool stays empty.
func TestDropHostileEnvironment(t *testing.T) {
	in := install(t, 1<<20)
	other := t.TempDir()
	os.Chmod(other, 0o777)
	hostile := env(other, "TMPDIR="+other, "GODEBUG=panicnil=1,madvdontneed=1", "LANG=xx_XX.UTF-8", "LC_ALL=C", "TZ=/etc/passwd")
	r := asNobody(t, in.sendmail, hostile, strings.NewReader("Subject: env\n\nx\n"), "a@x.test")
	if r.code != 0 {
		t.Fatalf("sendmail: exit %d\n%s", r.code, r.stderr)
	}
	// And the helper run directly, with a stream of nobody's own making.
	var b bytes.Buffer
	id, _ := spool.NewQueueID(time.Now())
	dw, _ := spool.NewDropWriter(&b, &spool.Envelope{QueueID: id, Received: time.Now(), From: "x@y.test", To: []string{"z@y.test"}})
	io.WriteString(dw, "Subject: direct\r\n\r\nx\r\n")
	dw.Close()
	if r := asNobody(t, in.drop, hostile, &b); r.code != 0 {
		t.Fatalf("smtp-drop: exit %d\n%s", r.code, r.stderr)
	}
	if n := names(t, other); len(n) != 0 {
		t.Errorf("the other spool holds %v", n)
	}
	if n := names(t, filepath.Join(in.spool, queue.DropDir)); len(n) != 2 {
		t.Errorf("drop/ holds %v, want 2 files", n)
	}
	if len(deliver(t, in)) != 2 {
		t.Error("not both delivered")
	}
	// A configuration file that others may write is refused.
	os.Chmod(filepath.Join(in.dir, "sendmail.conf"), 0o666)
	if r := asNobody(t, in.drop, hostile, strings.NewReader("")); r.code != 78 || !strings.Contains(r.stderr, "owned by root") {
		t.Errorf("writable configuration: exit %d, %s", r.code, r.stderr)
	}
}

// TestDropPlanted: symbolic links, a FIFO and a file that is no message,
// planted in drop/, are never followed, read or queued: smtp-send sets
// each aside in corrupt/ and the link's target is unchanged.
func TestDropPlanted(t *testing.T) {
	in := install(t, 1<<20)
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("secret\n"), 0o600)
	d := filepath.Join(in.spool, queue.DropDir)
	os.Symlink(target, filepath.Join(d, "link"))
	os.Symlink(filepath.Join(in.spool, spool.QueueDir), filepath.Join(d, "dirlink"))
	syscall.Mkfifo(filepath.Join(d, "fifo"), 0o644)
	os.WriteFile(filepath.Join(d, "garbage"), []byte("smtp-spool 1\nqueue-id: x\n"), 0o644)
	var txs []smtptest.Tx
	testutil.Within(t, "smtp-send", func() { txs = deliver(t, in) })
	if len(txs) != 0 {
		t.Errorf("%d delivered", len(txs))
	}
	if n := names(t, d); len(n) != 0 {
		t.Errorf("drop/ holds %v", n)
	}
	if n := names(t, filepath.Join(in.spool, queue.CorruptDir)); len(n) != 4 {
		t.Errorf("corrupt/ holds %v, want the 4 planted names", n)
	}
	if b, _ := os.ReadFile(target); string(b) != "secret\n" {
		t.Error("the link's target changed")
	}
}

// TestDropNoOverwrite: another user of the drop group cannot replace,
// rename or remove nobody's drop file: O_EXCL refuses the name and the
// sticky bit refuses the rename and the unlink. Without the group, nobody
// cannot even reach drop/.
func TestDropNoOverwrite(t *testing.T) {
	in := install(t, 1<<20)
	if r := asNobody(t, in.sendmail, env(in.spool), strings.NewReader("Subject: mine\n\nx\n"), "a@x.test"); r.code != 0 {
		t.Fatalf("sendmail: exit %d\n%s", r.code, r.stderr)
	}
	d := filepath.Join(in.spool, queue.DropDir)
	victim := names(t, d)[0]
	own := filepath.Join(d, "own")
	os.WriteFile(own, []byte("forged"), 0o644)
	os.Chown(own, 65533, dropGid)
	// uid 65533 with the drop group: what the helper's privilege gives.
	mallory := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65533, Gid: dropGid}}
	for _, c := range [][]string{
		{"mv", "-f", "-T", own, filepath.Join(d, victim)},
		{"mv", "-f", "-T", filepath.Join(d, victim), filepath.Join(d, "stolen")},
		{"rm", "-f", filepath.Join(d, victim)},
		{"sh", "-c", "set -C; echo forged > " + filepath.Join(d, victim)},
		{"ls", d},
	} {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.SysProcAttr = mallory
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%v as uid 65533 of the drop group succeeded", c)
		}
		t.Logf("%v: %v: %s", c, err, bytes.TrimSpace(out))
	}
	if r := asNobody(t, "mv", nil, nil, "-f", filepath.Join(in.dir, "sendmail.conf"), filepath.Join(d, victim)); r.code == 0 {
		t.Error("nobody reached drop/ without the group")
	}
	txs := deliver(t, in)
	if len(txs) != 1 || !strings.Contains(string(txs[0].Data), "Subject: mine") {
		t.Errorf("delivered %d, want nobody's message intact", len(txs))
	}
}

// TestDropLimit: a message over the helper's limit (10 GiB offered
// against 64 KiB) is refused with 65 after reading little more than the
// limit, and nothing is left in drop/.
func TestDropLimit(t *testing.T) {
	in := install(t, 64<<10)
	huge := io.MultiReader(strings.NewReader("Subject: big\n\n"), io.LimitReader(zeroLines{}, 10<<30))
	start := time.Now()
	r := asNobody(t, in.sendmail, env(in.spool), huge, "-i", "a@x.test")
	if r.code != 65 || !strings.Contains(r.stderr, "over the size limit") {
		t.Errorf("exit %d, %s", r.code, r.stderr)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("took %v: the stream was not cut at the limit", time.Since(start))
	}
	if n := names(t, filepath.Join(in.spool, queue.DropDir)); len(n) != 0 {
		t.Errorf("drop/ holds %v", n)
	}
}

// zeroLines is an endless body of "x" lines.
type zeroLines struct{}

func (zeroLines) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
		if i%64 == 63 {
			p[i] = '\n'
		}
	}
	return len(p), nil
}

// TestDropKilled: a helper killed mid-write leaves only a '.' name, which
// smtp-send never picks up (it removes it once older than
// SMTP_SEND_TMP_MAX_AGE); a sendmail killed mid-write leaves nothing, as
// the helper refuses a stream without its trailer.
func TestDropKilled(t *testing.T) {
	in := install(t, 1<<20)
	d := filepath.Join(in.spool, queue.DropDir)
	for _, victim := range []string{"helper", "sendmail"} {
		bin, args := in.drop, []string(nil)
		if victim == "sendmail" {
			bin, args = in.sendmail, []string{"-i", "a@x.test"}
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = env(in.spool)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyUid, Gid: nobodyUid}}
		w, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if victim == "helper" {
			var b bytes.Buffer
			id, _ := spool.NewQueueID(time.Now())
			spool.NewDropWriter(&b, &spool.Envelope{QueueID: id, Received: time.Now(), From: "x@y.test", To: []string{"z@y.test"}})
			w.Write(b.Bytes())
		}
		io.WriteString(w, "Subject: half\r\n\r\n"+strings.Repeat("half a message\r\n", 1000))
		// Wait until the helper has written into drop/.
		for i := 0; i < 500 && (victim == "helper" && len(names(t, d)) == 0); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		w.Close()
	}
	time.Sleep(200 * time.Millisecond) // the sendmail's helper sees EOF and cleans up
	left := names(t, d)
	if len(left) != 1 || !strings.HasPrefix(left[0], ".") {
		t.Fatalf("drop/ holds %v, want the killed helper's one '.' file", left)
	}
	if txs := deliver(t, in); len(txs) != 0 {
		t.Errorf("%d delivered", len(txs))
	}
	if n := names(t, filepath.Join(in.spool, spool.QueueDir)); len(n) != 0 {
		t.Errorf("queue/ holds %v", n)
	}
	if n := names(t, d); len(n) != 1 {
		t.Errorf("drop/ holds %v: a young temporary file was touched", n)
	}
}

// TestDropRealCallers: as nobody (runuser), PHP's mail(), s-nail, cron's
// exact argv and "sendmail -f a@b rcpt" submit through the helper, and
// smtp-send delivers each once, with the pickup's Received: naming uid
// 65534 first. PHP and s-nail are skipped when not installed.
func TestDropRealCallers(t *testing.T) {
	in := install(t, 1<<20)
	runuser, err := exec.LookPath("runuser")
	if err != nil {
		t.Skip("no runuser")
	}
	want := map[string]string{} // recipient → text the delivered message holds
	for _, c := range []struct {
		prog  string
		args  []string
		input string
		rcpt  string
		has   string
	}{
		{"php", []string{"-d", "sendmail_path=" + in.sendmail + " -t -i", "-r",
			`exit(mail("p@x.test", "php subj", "body\n.\nline", "From: me@x.test") ? 0 : 1);`}, "", "p@x.test", "\r\nbody\r\n.\r\nline\r\n"},
		{"s-nail", []string{"-:/", "-Smta=" + in.sendmail, "-Ssendwait", "-s", "nail subj", "n@x.test"}, "hello from nail\n",
			"n@x.test", "\r\nSubject: nail subj\r\n"},
		{in.sendmail, []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "c@x.test"}, "Subject: Cron <nobody@h> true\n\nout\n",
			"c@x.test", "\r\nFrom: \"CronDaemon\" <nobody@d.test>\r\n"},
		{in.sendmail, []string{"-f", "a@b.test", "f@x.test"}, "Subject: f\n\nline\n", "f@x.test", "\r\n\r\nline\r\n"},
	} {
		prog, err := exec.LookPath(c.prog)
		if err != nil {
			t.Logf("%s not installed (scripts/install-test-deps): skipped", c.prog)
			continue
		}
		r := run(t, runuser, env(in.spool, "HOME=/"), c.input, append([]string{"-u", "nobody", "--", prog}, c.args...)...)
		if r.code != 0 {
			t.Fatalf("%s as nobody: exit %d\n%s%s", c.prog, r.code, r.stdout, r.stderr)
		}
		want[c.rcpt] = c.has
	}
	txs := deliver(t, in)
	if len(txs) != len(want) {
		t.Fatalf("%d delivered, want %d", len(txs), len(want))
	}
	for _, tx := range txs {
		d := string(tx.Data)
		has, ok := want[tx.To[0]]
		if !ok || !strings.HasPrefix(d, "Received: by h.test (smtp-stdio pickup, from userid 65534 login nobody)") || !strings.Contains(d, has) {
			t.Errorf("to %v:\n%s", tx.To, d)
		}
		if tx.To[0] == "f@x.test" && tx.From != "a@b.test" {
			t.Errorf("-f: from <%s>", tx.From)
		}
	}
}
