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
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/route"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// crashScript is the smarthost of TestKillAtEachStep: it refuses bad*
// for good, defers later* and takes the others.
func crashScript() smtptest.Script {
	return smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
		switch {
		case strings.HasPrefix(to, "bad"):
			return smtptest.Reply(550, "5.1.1", "unknown user")
		case strings.HasPrefix(to, "later"):
			return smtptest.Reply(451, "4.3.0", "later")
		}
		return nil
	}}
}

// TestCrashHelper is not a test: TestKillAtEachStep runs the test binary
// with SEND_CRASH_* set, and this runs a Sender that kills its own process
// with SIGKILL at the named step (SEND_CRASH_DELAY_WARNING sets
// Config.DelayWarning). With SEND_CRASH_SINK set it delivers
// over memTransport, to crashScript, appending what it delivers to that
// file. With SEND_CRASH_ROUTES set it delivers through that route table
// instead of the smarthost (TestKillLocalAtEachStep).
func TestCrashHelper(t *testing.T) {
	if os.Getenv("SEND_CRASH_STEP") == "" {
		t.Skip("helper process for TestKillAtEachStep")
	}
	sp, err := spool.New(os.Getenv("SEND_CRASH_DIR"))
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := strconv.ParseInt(os.Getenv("SEND_CRASH_NOW"), 10, 64)
	step := os.Getenv("SEND_CRASH_STEP")
	s := &Sender{
		Spool: sp,
		Config: Config{Smarthosts: []Host{{Addr: os.Getenv("SEND_CRASH_ADDR"), Name: "127.0.0.1"}},
			TLS: TLSNone, Hostname: "client.test", Connections: 1},
		Now: func() time.Time { return time.Unix(0, ns).UTC() },
		Hooks: Hooks{Step: func(st queue.Step, _ string) {
			if st.String() == step {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // never returns
			}
		}},
	}
	if d := os.Getenv("SEND_CRASH_DELAY_WARNING"); d != "" {
		if s.Config.DelayWarning, err = time.ParseDuration(d); err != nil {
			t.Fatal(err)
		}
	}
	if routes := os.Getenv("SEND_CRASH_ROUTES"); routes != "" {
		tb, err := route.Load(routes)
		if err != nil {
			t.Fatal(err)
		}
		s.Config.Smarthosts, s.Config.Routes = nil, tb
	}
	if aliases := os.Getenv("SEND_CRASH_ALIASES"); aliases != "" {
		al, err := alias.Load(aliases)
		if err != nil {
			t.Fatal(err)
		}
		s.Config.Aliases = al
	}
	if sink := os.Getenv("SEND_CRASH_SINK"); sink != "" {
		s.Transport = &memTransport{srv: smtptest.New(smtptest.Options{Script: crashScript()}), relay: os.Getenv("SEND_CRASH_ADDR"), sink: sink}
	}
	s.Run(context.Background(), false)
	os.Exit(3) // the step never came
}

// A run killed with SIGKILL at any step of recording an outcome loses
// nothing and duplicates nothing, except the one window: killed after the
// final 250 arrived and before it was recorded, the next run sends that
// transaction again. Every notification is spooled exactly once. The same
// over both transports.
func TestKillAtEachStep(t *testing.T) {
	overTransports(t, killAtEachStep)
}

func killAtEachStep(t *testing.T, tr string) {
	scenarios := []struct {
		name  string
		rcpts []string
		steps []queue.Step
	}{
		// one accepted, one failing (notification), one deferred
		{"partial", []string{"ok@x.test", "bad@x.test", "later@x.test"},
			[]queue.Step{queue.StepAccepted, queue.StepRecorded, queue.StepBounceIntent, queue.StepBounceSpooled, queue.StepStateWritten}},
		// one accepted, one failing: the message ends in failed/
		{"failed", []string{"ok@x.test", "bad@x.test"},
			[]queue.Step{queue.StepAccepted, queue.StepRecorded, queue.StepBounceIntent, queue.StepBounceSpooled, queue.StepFinished}},
		// all accepted: the message is removed
		{"done", []string{"ok@x.test", "ok2@x.test"}, []queue.Step{queue.StepAccepted, queue.StepRecorded}},
	}
	for _, sc := range scenarios {
		for _, step := range sc.steps {
			t.Run(sc.name+"/"+step.String(), func(t *testing.T) {
				ts := smtptest.Start(t, smtptest.Options{Script: crashScript()})
				f := newFixtureOver(t, tr, ts)
				id := f.queue("sender@example.org", sc.rcpts, body("crash"))

				cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
				cmd.Env = append(os.Environ(), "SEND_CRASH_STEP="+step.String(), "SEND_CRASH_DIR="+f.sp.Root(),
					"SEND_CRASH_ADDR="+ts.Addr, "SEND_CRASH_NOW="+strconv.FormatInt(f.clk.Now().UnixNano(), 10))
				sink := filepath.Join(t.TempDir(), "sink")
				if tr == "memory" {
					cmd.Env = append(cmd.Env, "SEND_CRASH_SINK="+sink)
				}
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("helper not killed at %s: %v\n%s", step, err, out)
				}
				sunk := loadSink(t, sink) // what the killed helper delivered in memory

				f.run(false) // recovers, then delivers what is due
				f.run(true)  // and the notification, if any
				want := map[string]int{"ok@x.test": 1, "ok2@x.test": 1}
				if step == queue.StepAccepted {
					want = map[string]int{"ok@x.test": 2, "ok2@x.test": 2} // the window
				}
				txs := append(sunk, ts.Transactions()...)
				got := smtptest.CountRcpts(txs)
				for _, r := range sc.rcpts {
					if got[r] != want[r] {
						t.Errorf("%s delivered %d times, want %d", r, got[r], want[r])
					}
				}
				var dsnIDs []string
				for _, g := range txs {
					if g.From == "" {
						_, rest, _ := strings.Cut(string(g.Data), "Message-ID: <")
						dsnID, _, _ := strings.Cut(rest, "@")
						dsnIDs = append(dsnIDs, dsnID)
						if strings.Count(string(g.Data), "Final-Recipient: rfc822; bad@x.test") != 1 {
							t.Errorf("notification:\n%s", g.Data)
						}
					}
				}
				wantDSN := 1
				if sc.name == "done" {
					wantDSN = 0
				}
				if len(dsnIDs) != wantDSN || len(f.queuedFrom("")) != 0 {
					t.Fatalf("%d notifications delivered (%v), want %d", len(dsnIDs), dsnIDs, wantDSN)
				}
				var st *queue.State
				switch sc.name {
				case "partial":
					st = f.state(id)
				case "failed":
					st, _ = f.q.ReadFailedState(id)
				}
				if st != nil && st.Rcpts[1].DSN != dsnIDs[0] {
					t.Errorf("state names notification %q, delivered %q", st.Rcpts[1].DSN, dsnIDs[0])
				}
				if sc.name == "partial" && rcptStatus(st) != "ok@x.test=done bad@x.test=failed later@x.test=pending" {
					t.Errorf("state %s", rcptStatus(st))
				}
				for _, n := range f.names(queue.StateDir) {
					if !strings.HasPrefix(n, id+"@") || strings.HasSuffix(n, "@journal") || sc.name != "partial" {
						t.Errorf("left in state/: %s", n)
					}
				}
				if n := f.names(spool.TmpDir); len(n) != 0 {
					t.Errorf("left in tmp/: %v", n)
				}
			})
		}
	}
}

// A run killed with SIGKILL at any step of recording an acceptance that
// owes a success notice (NOTIFY=SUCCESS, a next hop without DSN) spools
// that notice exactly once (queue ordering rule 8): killed after the
// journal line, the next run spools the notice the line names; killed
// after the notice, it spools none. Killed before the record (the
// window), the message goes again and the notice follows the second
// acceptance.
func TestKillSuccessNotice(t *testing.T) {
	for _, step := range []queue.Step{queue.StepAccepted, queue.StepRecorded, queue.StepSuccessSpooled, queue.StepFinished} {
		t.Run(step.String(), func(t *testing.T) {
			ts := smtptest.Start(t, smtptest.Options{Script: crashScript(), Withhold: protocol.ExtDSN})
			f := newFixture(t, ts.Addr)
			f.queue("sender@example.org", []string{"ok@x.test", "ok2@x.test"}, body("crash"),
				withDSN("", "", spool.RcptDSN{Notify: "SUCCESS"}, spool.RcptDSN{Notify: "SUCCESS,FAILURE"}))
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SEND_CRASH_STEP="+step.String(), "SEND_CRASH_DIR="+f.sp.Root(),
				"SEND_CRASH_ADDR="+ts.Addr, "SEND_CRASH_NOW="+strconv.FormatInt(f.clk.Now().UnixNano(), 10))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper not killed at %s: %v\n%s", step, err, out)
			}
			f.run(false)
			f.run(true)
			var notices []smtptest.Tx
			for _, tx := range ts.Transactions() {
				if tx.From == "" {
					notices = append(notices, tx)
				}
			}
			if len(notices) != 1 || len(f.names(spool.QueueDir)) != 0 || len(f.names(queue.StateDir)) != 0 {
				t.Fatalf("%d notices delivered, want 1; left queue/ %v state/ %v", len(notices), f.names(spool.QueueDir), f.names(queue.StateDir))
			}
			d := string(notices[0].Data)
			if strings.Count(d, "Action: relayed\r\n") != 2 || !strings.Contains(d, "Final-Recipient: rfc822; ok@x.test\r\n") ||
				!strings.Contains(d, "Final-Recipient: rfc822; ok2@x.test\r\n") {
				t.Errorf("notice:\n%s", d)
			}
			want := 1
			if step == queue.StepAccepted {
				want = 2 // the window
			}
			if got := smtptest.CountRcpts(ts.Transactions()); got["ok@x.test"] != want {
				t.Errorf("delivered %d times, want %d", got["ok@x.test"], want)
			}
		})
	}
}

// A run killed with SIGKILL at any step of giving a deferred recipient its
// delay notice spools that notice exactly once (queue ordering rule 8):
// killed after the intent, the next run spools it; killed after the
// notice, before or after the state that names it, the next run, which
// defers the recipient again, gives it none.
func TestKillDelayNotice(t *testing.T) {
	for _, step := range []queue.Step{queue.StepDelayIntent, queue.StepDelaySpooled, queue.StepStateWritten} {
		t.Run(step.String(), func(t *testing.T) {
			ts := smtptest.Start(t, smtptest.Options{Script: crashScript()})
			f := newFixture(t, ts.Addr)
			f.s.Config.DelayWarning = 4 * time.Hour
			id := f.queue("sender@example.org", []string{"later@x.test", "later2@x.test"}, body("crash"),
				withDSN("", "", spool.RcptDSN{Notify: "FAILURE,DELAY"}, spool.RcptDSN{}))
			f.clk.Add(5 * time.Hour)
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SEND_CRASH_STEP="+step.String(), "SEND_CRASH_DIR="+f.sp.Root(),
				"SEND_CRASH_ADDR="+ts.Addr, "SEND_CRASH_NOW="+strconv.FormatInt(f.clk.Now().UnixNano(), 10),
				"SEND_CRASH_DELAY_WARNING=4h")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper not killed at %s: %v\n%s", step, err, out)
			}
			for range 3 {
				f.clk.Add(2 * time.Hour)
				f.run(true)
			}
			var notices []string
			for _, tx := range ts.Transactions() {
				if tx.From == "" {
					notices = append(notices, string(tx.Data))
				}
			}
			if len(notices) != 1 || len(f.queuedFrom("")) != 0 {
				t.Fatalf("%d delay notices delivered, %d queued; want 1 and 0", len(notices), len(f.queuedFrom("")))
			}
			if strings.Count(notices[0], "Action: delayed\r\n") != 2 {
				t.Errorf("notice:\n%s", notices[0])
			}
			st := f.state(id)
			if st == nil || st.Rcpts[0].Delayed == "" || st.Rcpts[0].Delayed != st.Rcpts[1].Delayed ||
				!strings.Contains(notices[0], "Message-ID: <"+st.Rcpts[0].Delayed+"@") {
				t.Errorf("state %+v does not name the notice", st)
			}
		})
	}
}

// The same for a final delivery by a local transport (a maildir route):
// killed at any step of recording it, the recipient with NOTIFY=SUCCESS
// gets exactly one "delivered" notice, itself delivered to the sender's
// maildir.
func TestKillDeliveredNotice(t *testing.T) {
	for _, step := range []queue.Step{queue.StepAccepted, queue.StepRecorded, queue.StepSuccessSpooled, queue.StepFinished} {
		t.Run(step.String(), func(t *testing.T) {
			mail := t.TempDir()
			routes := filepath.Join(t.TempDir(), "routes")
			if err := os.WriteFile(routes, []byte("example.org maildir:"+mail+"/%d/%u/\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			tb, err := route.Load(routes)
			if err != nil {
				t.Fatal(err)
			}
			f := newFixture(t)
			f.s.Config.Routes = tb
			f.queue("sender@example.org", []string{"a@example.org"}, body("crash"), withDSN("", "", spool.RcptDSN{Notify: "SUCCESS"}))
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SEND_CRASH_STEP="+step.String(), "SEND_CRASH_DIR="+f.sp.Root(),
				"SEND_CRASH_ADDR=127.0.0.1:1", "SEND_CRASH_ROUTES="+routes,
				"SEND_CRASH_NOW="+strconv.FormatInt(f.clk.Now().UnixNano(), 10))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper not killed at %s: %v\n%s", step, err, out)
			}
			f.run(false)
			f.run(true)
			notices := maildirFiles(t, filepath.Join(mail, "example.org", "sender"), "new")
			if len(notices) != 1 || len(f.names(spool.QueueDir)) != 0 || len(f.names(queue.StateDir)) != 0 {
				t.Fatalf("%d notices, want 1; left queue/ %v state/ %v", len(notices), f.names(spool.QueueDir), f.names(queue.StateDir))
			}
			b, _ := os.ReadFile(filepath.Join(mail, "example.org", "sender", "new", notices[0]))
			if !strings.Contains(string(b), "Action: delivered") {
				t.Errorf("notice:\n%s", b)
			}
		})
	}
}
