package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	queuepkg "github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// TestKillSendAnywhere kills real smtp-send runs with SIGKILL at random
// instants while they deliver 25 messages per kill over two connections,
// then once more to the end. Every message is delivered;
// a message is delivered twice only inside the documented window, so at
// most one per connection per kill; nothing is left in queue/, state/ or
// tmp/ (the last run with SMTP_SEND_TMP_MAX_AGE=1ns), and nothing moved to
// failed/ or corrupt/. FAULT_KILLS (default 20) bounds the kills.
func TestKillSendAnywhere(t *testing.T) {
	kills := 20
	if s := os.Getenv("FAULT_KILLS"); s != "" {
		var err error
		if kills, err = strconv.Atoi(s); err != nil {
			t.Fatalf("FAULT_KILLS=%q", s)
		}
	}
	const connections = 2
	messages := 25 * kills
	srv := smtptest.Start(t, smtptest.Options{}) // records before its 250, as a real server commits first
	dir := t.TempDir()
	for i := 0; i < messages; i++ {
		queue(t, dir, "r"+strconv.Itoa(i)+"@x.test")
	}
	env := append(sendEnv(dir, srv.Addr), "SMTP_SEND_CONNECTIONS="+strconv.Itoa(connections))
	killed, runs := 0, 0
	for killed < kills {
		if ents, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir)); len(ents) == 0 {
			break
		}
		runs++
		cmd := command(t, env)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A run delivers some 25 messages in 50 ms here: most kills
		// land mid-delivery.
		timer := time.AfterFunc(rand.N(50*time.Millisecond), func() { cmd.Process.Signal(syscall.SIGKILL) })
		cmd.Wait()
		timer.Stop()
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
			killed++
		} else if ws.ExitStatus() != 0 {
			t.Fatalf("run %d exited %d", runs, ws.ExitStatus())
		}
	}
	// A last run, left alone, delivers the rest and removes what the
	// kills left in tmp/.
	if r := runBinary(t, append(env, "SMTP_SEND_TMP_MAX_AGE=1ns")); r.code != 0 {
		t.Fatalf("last run exited %d\n%s", r.code, r.stderr)
	}
	delivered := srv.RcptCount()
	dups := 0
	for i := 0; i < messages; i++ {
		n := delivered["r"+strconv.Itoa(i)+"@x.test"]
		if n == 0 {
			t.Errorf("r%d never delivered", i)
		}
		dups += max(0, n-1)
	}
	if dups > killed*connections {
		t.Errorf("%d duplicates after %d kills of runs with %d connections: more than the window allows", dups, killed, connections)
	}
	for _, sub := range []string{spool.QueueDir, queuepkg.StateDir, spool.TmpDir, queuepkg.FailedDir, queuepkg.CorruptDir} {
		if ents, _ := os.ReadDir(filepath.Join(dir, sub)); len(ents) != 0 {
			t.Errorf("%s/ holds %d files", sub, len(ents))
		}
	}
	t.Logf("%d runs killed at random, %d of them mid-way, then one to the end; %d messages delivered twice (the window)", runs, killed, dups)
}
