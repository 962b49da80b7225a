package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// pipeScripts writes the test's delivery commands into a new directory
// and returns it. record writes its arguments (NUL-separated), its
// environment and its standard input to out/<pid>.*; exit prints to
// standard error and exits with its first argument; slow leaves a child
// in its process group and sleeps; sig kills itself.
func pipeScripts(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Mkdir(filepath.Join(d, "out"), 0o700); err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{
		"record": `d=$(dirname "$0")/out/$$
printf '%s\0' "$@" > "$d.args"
env > "$d.env"
cat > "$d.stdin"
pwd > "$d.pwd"
echo "stored for $RECIPIENT"`,
		"exit": `echo "exiting $1: no mailbox here" >&2
cat > /dev/null
exit "$1"`,
		"status": `echo "4.2.2 mailbox full"
exit 1`,
		"slow": `sleep 60 &
echo $! > "$(dirname "$0")/out/child.pid"
sleep 60`,
		"sig": `kill -9 $$`,
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(d, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// pipe: the command runs without a shell, per message or per recipient,
// its arguments expanded one value per argument: addresses with shell
// metacharacters, quotes, a leading dash or an option's shape reach it
// as they are, never as commands or options; its environment is only
// PATH and the envelope; the message arrives with LF ends.
func TestPipeArgumentsAndEnvironment(t *testing.T) {
	d := pipeScripts(t)
	dir := t.TempDir()
	hostile := []string{"-rf@per.test", "a;touch${IFS}pwned$(id)`id`'\"@per.test", "--help=x@per.test"}
	queue(t, dir, append(slices.Clone(hostile), "one@msg.test", "two@msg.test")...)
	table := "per.test pipe:" + d + "/record per=recipient timeout=30s -- -f ${sender} -- ${recipient} u=${user} d=${domain} q=${queue_id}\n" +
		"msg.test pipe:" + d + "/record -f ${sender} ${recipient}\n"
	r := runBinary(t, append(localEnv(t, dir, table), "LEAKED_SECRET=1"))
	if r.code != 0 || strings.Count(r.stderr, "status=sent relay=pipe:"+d+"/record") != 5 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	args, _ := filepath.Glob(filepath.Join(d, "out", "*.args"))
	if len(args) != 4 { // three per recipient, one for the message
		t.Fatalf("%d runs: %q", len(args), args)
	}
	seen := map[string]bool{}
	for _, a := range args {
		b, _ := os.ReadFile(a)
		got := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		base := strings.TrimSuffix(a, ".args")
		env, _ := os.ReadFile(base + ".env")
		in, _ := os.ReadFile(base + ".stdin")
		pwd, _ := os.ReadFile(base + ".pwd")
		if string(in) != "Subject: test\n\nbody\n" || strings.TrimSpace(string(pwd)) != "/" {
			t.Errorf("stdin %q, directory %q", in, pwd)
		}
		if strings.Contains(string(env), "LEAKED_SECRET") || strings.Contains(string(env), "SMTP_") ||
			!strings.Contains(string(env), "SENDER=s@example.org\n") || !strings.Contains(string(env), "QUEUE_ID=") {
			t.Errorf("environment:\n%s", env)
		}
		if len(got) == 4 && got[2] != "--" {
			if want := []string{"-f", "s@example.org", "one@msg.test", "two@msg.test"}; !slices.Equal(got, want) {
				t.Errorf("per message: %q", got)
			}
			if strings.Contains(string(env), "RECIPIENT=") {
				t.Errorf("RECIPIENT set for two recipients:\n%s", env)
			}
			continue
		}
		if len(got) != 7 || got[0] != "-f" || got[1] != "s@example.org" || got[2] != "--" {
			t.Fatalf("per recipient: %q", got)
		}
		rc := got[3]
		seen[rc] = true
		user, dom, _ := strings.Cut(rc, "@")
		if got[4] != "u="+user || got[5] != "d="+dom || !strings.HasPrefix(got[6], "q=") ||
			!strings.Contains(string(env), "RECIPIENT="+rc+"\n") || !strings.Contains(string(env), "USER="+user+"\n") {
			t.Errorf("per recipient %q, environment:\n%s", got, env)
		}
	}
	for _, h := range hostile {
		if !seen[h] {
			t.Errorf("%q never reached the command as one argument (saw %v)", h, seen)
		}
	}
	if !strings.Contains(r.stderr, `reply="delivered to the command `+d+`/record: stored for -rf@per.test"`) {
		t.Errorf("the command's output is not in the log:\n%s", r.stderr)
	}
}

// Exit statuses as Postfix's pipe(8) maps <sysexits.h>: 75 defers, 67
// fails with 5.1.1 and a notification quoting the command's output, an
// RFC 3463 status at the start of the output wins (4.2.2 defers); a
// command killed by a signal defers; one past its timeout is killed with
// its whole process group and defers.
func TestPipeExitStatus(t *testing.T) {
	d := pipeScripts(t)
	dir := t.TempDir()
	id := queue(t, dir, "a@tempfail.test", "b@nouser.test", "c@status.test", "d@sig.test", "e@slow.test", "f@other.test")
	table := "tempfail.test pipe:" + d + "/exit 75\n" +
		"nouser.test pipe:" + d + "/exit 67\n" +
		"other.test pipe:" + d + "/exit 3\n" +
		"status.test pipe:" + d + "/status\n" +
		"sig.test pipe:" + d + "/sig\n" +
		"slow.test pipe:" + d + "/slow timeout=1s\n"
	start := time.Now()
	r := runBinary(t, localEnv(t, dir, table))
	if r.code != 0 || time.Since(start) > 30*time.Second {
		t.Fatalf("exit %d after %v\n%s", r.code, time.Since(start), r.stderr)
	}
	for _, want := range []string{
		"rcpt=a@tempfail.test status=deferred relay=pipe:" + d + "/exit stage=local code=0 enhanced=4.3.0 reply=\"command exited with status 75 (EX_TEMPFAIL): exiting 75: no mailbox here\"",
		"rcpt=b@nouser.test status=failed relay=pipe:" + d + "/exit stage=local code=0 enhanced=5.1.1 reply=\"command exited with status 67 (EX_NOUSER): exiting 67: no mailbox here\"",
		"rcpt=f@other.test status=failed relay=pipe:" + d + "/exit stage=local code=0 enhanced=5.3.0 reply=\"command exited with status 3: exiting 3: no mailbox here\"",
		"rcpt=c@status.test status=deferred relay=pipe:" + d + "/status stage=local code=0 enhanced=4.2.2 reply=\"command exited with status 1: 4.2.2 mailbox full\"",
		"rcpt=d@sig.test status=deferred relay=pipe:" + d + "/sig stage=local code=0 enhanced=4.3.0 reply=\"command killed by signal killed\"",
		"rcpt=e@slow.test status=deferred relay=pipe:" + d + "/slow stage=local code=0 enhanced=4.3.0 reply=\"command killed after its time limit of 1s\"",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("log lacks %s\n%s", want, r.stderr)
		}
	}
	b, _ := os.ReadFile(filepath.Join(d, "out", "child.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("the slow command's child pid: %q", b)
	}
	// The child was in the command's process group: killed with it.
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && !zombie(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL) // ours: the test started it
			t.Fatalf("the slow command's child %d outlived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lab := &mxLab{t: t, spool: dir}
	bounces := lab.bounces()
	for i := range bounces {
		bounces[i] = strings.ReplaceAll(bounces[i], "\r\n ", " ") // unfolded
	}
	if len(bounces) != 1 || !strings.Contains(bounces[0], "Final-Recipient: rfc822; b@nouser.test") ||
		!strings.Contains(bounces[0], "Status: 5.1.1") || strings.Contains(bounces[0], "Remote-MTA") ||
		!strings.Contains(bounces[0], "Diagnostic-Code: x-unix; command exited with status 67 (EX_NOUSER): exiting 67: no mailbox here") ||
		!strings.Contains(bounces[0], "Final-Recipient: rfc822; f@other.test") {
		t.Errorf("notifications: %q", bounces)
	}
	sp, _ := spool.New(dir)
	if _, err := os.Stat(sp.Path(spool.QueueDir, id)); err != nil {
		t.Errorf("the message with deferred recipients left the queue: %v", err)
	}
}

// zombie reports whether pid is a zombie (dead, not yet reaped by its
// parent, here init after the command's group was killed).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}
