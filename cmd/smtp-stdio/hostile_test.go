package main

// Hostile clients: silent, slow, trickling, endless lines, floods of
// commands. Each test checks the exact replies and that the process ends
// by itself.

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
)

// TestSilentClient: a client that connects and says nothing gets 421
// 4.4.2 once SMTP_COMMAND_TIMEOUT passes, and the process exits, on a
// pipe and through tcpserver on a socket.
// timedOut is the reply when SMTP_COMMAND_TIMEOUT, SMTP_DATA_TIMEOUT or
// SMTP_SESSION_TIMEOUT passes.
const timedOut = "421 4.4.2 mx.test.example Timeout, closing connection"

func TestSilentClient(t *testing.T) {
	t.Run("pipe", func(t *testing.T) {
		t.Parallel()
		// Standard input stays open, never written.
		s := stdio.Start(t, transcript.Setup{Env: []string{"SMTP_COMMAND_TIMEOUT=1s"}, Spool: newSpool(t)})
		s.Expect("greeting", "220 mx.test.example ESMTP ready")
		s.Expect("the timeout", timedOut)
		r := s.Wait()
		if len(r.Rest) != 0 || r.Took > 4*time.Second || r.Exit < 0 {
			t.Errorf("after %v, exit %d: %q", r.Took, r.Exit, r.Rest)
		}
	})
	t.Run("tcpserver", func(t *testing.T) {
		t.Parallel()
		addr := startTCPServer(t, newSpool(t), "SMTP_COMMAND_TIMEOUT=1s")
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		c := transcript.NewClient(t, conn, conn, 10*time.Second)
		c.Expect("greeting", "220 mx.test.example ESMTP ready")
		c.Expect("the timeout", timedOut)
		// To EOF: the session process has exited.
		if rest := c.Rest(); len(rest) != 0 || c.Err() != nil {
			t.Fatalf("%v after %q", c.Err(), rest)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("after %v", took)
		}
	})
}

// TestSlowData: message text that stops coming gets 421 4.4.2 once
// SMTP_DATA_TIMEOUT passes; the message is dropped and the process exits.
func TestSlowData(t *testing.T) {
	t.Parallel()
	s := stdio.Start(t, transcript.Setup{Env: []string{"SMTP_DATA_TIMEOUT=1s"}})
	dialog := stalled(t, "Subject: slow\r\n\r\nfirst line\r\n", timedOut)
	s.Play(dialog, dialog.Steps)
	if r := s.Finish(dialog); r.Took > 4*time.Second {
		t.Errorf("after %v", r.Took)
	}
}

// stalled is a session whose client sends EHLO, a message up to text and
// then no more than a trickle: the session ends it with reply.
func stalled(t *testing.T, text, reply string) *transcript.Script {
	return script(t, "C: EHLO c.example\n"+txStart+lines("C", text)+greeting+ehlo("c.example")+txReplies+"S: "+reply+"\n= exit 1\n")
}

// trickle sends a byte to s every 50 ms until stop is called, which the
// test must do before it finishes the session.
func trickle(s *transcript.Session) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for tick := time.NewTicker(50 * time.Millisecond); ; {
			select {
			case <-done:
				return
			case <-tick.C:
				s.Send("x")
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// TestTrickle: a client that sends message text one byte every 50 ms
// never lets SMTP_DATA_TIMEOUT pass, but SMTP_SESSION_TIMEOUT ends the
// session all the same: 421 4.4.2, nothing spooled, the process exits.
func TestTrickle(t *testing.T) {
	t.Parallel()
	s := stdio.Start(t, transcript.Setup{Env: []string{"SMTP_SESSION_TIMEOUT=2s"}})
	dialog := stalled(t, "", timedOut)
	s.Play(dialog, dialog.Steps[:1])
	stop := trickle(s)
	s.Play(dialog, dialog.Steps[1:])
	stop()
	if r := s.Finish(dialog); r.Took > 5*time.Second {
		t.Errorf("after %v", r.Took)
	}
}

// peakRSS returns the peak resident set size of the running process pid
// (VmHWM), which counts only its own memory since exec. The Maxrss of
// ProcessState.SysUsage would not do: Go starts a child with
// clone(CLONE_VM|CLONE_VFORK), and Linux carries the peak of the memory
// the child shared with the parent up to exec (the whole test process)
// into the child's maxrss.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, v, ok := strings.Cut(string(b), "\nVmHWM:")
	kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.SplitN(v, "\n", 2)[0], "kB")), 10, 64)
	if !ok || err != nil {
		t.Fatalf("no VmHWM in /proc/%d/status: %v", pid, err)
	}
	return kib << 10
}

// TestTenMegabyteLine: 10 MB without a newline get one 500 5.5.2 when the
// line ends; the session stays in step (the next transaction goes
// through) and the process's peak RSS stays small.
func TestTenMegabyteLine(t *testing.T) {
	dialog := script(t, "C: EHLO c.example\n"+greeting+ehlo("c.example")+"S: 500 5.5.2 Line too long\nS: 250 2.0.0 OK\n"+txReplies+queued+
		"= exit 0\n\n"+receivedLocal("c.example")+lines("M", helloBody))
	s := stdio.Start(t, transcript.Setup{})
	// All but QUIT: the process must still be there to be measured.
	s.Send("EHLO c.example\r\n" + strings.Repeat("x", 10<<20) + "\r\nNOOP\r\n" + transaction(helloBody))
	s.Play(dialog, dialog.Steps[1:])
	rss := peakRSS(t, s.Cmd.Process.Pid)
	if rss >= 32<<20 {
		t.Errorf("peak RSS %d MiB, want under 32", rss>>20)
	}
	t.Logf("peak RSS %.1f MiB", float64(rss)/(1<<20))
	s.Finish(dialog) // the client goes away; so does the session
}

// TestTenThousandRcpt: of 10,000 RCPT commands the first 100
// (SMTP_MAX_RECIPIENTS) are accepted and the rest get 452 4.5.3; the
// session then takes DATA and spools one message for exactly those 100.
func TestTenThousandRcpt(t *testing.T) {
	r := stdio.Run(t, script(t, manyRecipients(10000, 100)))
	t.Logf("%v", r.Took.Round(time.Millisecond))
}

// manyRecipients is the transcript of one message for n recipients, of
// which the first max are accepted and spooled.
func manyRecipients(n, max int) string {
	var b strings.Builder
	b.WriteString("C: EHLO c.example\nC: MAIL FROM:<a@example.net>\n")
	for i := range n {
		fmt.Fprintf(&b, "C: RCPT TO:<r%d@example.org>\n", i)
	}
	b.WriteString("C: DATA\n" + lines("C", helloBody) + "C: .\nC: QUIT\n")
	b.WriteString("S: 220 mx.test.example ESMTP ready\n" + ehlo("c.example") + "S: 250 2.1.0 Sender OK\n")
	fmt.Fprintf(&b, "%d S: 250 2.1.5 Recipient OK\n%d S: 452 4.5.3 Too many recipients\n", max, n-max)
	b.WriteString("S: 354 Start mail input; end with <CRLF>.<CRLF>\nS: 250 2.0.0 OK queued as …\n")
	b.WriteString("S: 221 2.0.0 mx.test.example closing connection\n= exit 0\n\n")
	for i := range max {
		fmt.Fprintf(&b, "E: rcpt-to: <r%d@example.org>\n", i)
	}
	b.WriteString(receivedLocal("c.example") + lines("M", helloBody))
	return b.String()
}

// TestHundredThousandNoops: 100,000 NOOPs get 100,000 250s and QUIT 221,
// in bounded time (NOOP is no error, so SMTP_MAX_ERRORS does not end the
// session).
func TestHundredThousandNoops(t *testing.T) {
	r := stdio.Run(t, script(t, "C: EHLO c.example\n100000 C: NOOP\nC: QUIT\n"+
		"S: 220 mx.test.example ESMTP ready\n"+ehlo("c.example")+"100000 S: 250 2.0.0 OK\n"+
		"S: 221 2.0.0 mx.test.example closing connection\n= exit 0\n"))
	if r.Took > 20*time.Second {
		t.Errorf("took %v", r.Took)
	}
	t.Logf("%v", r.Took.Round(time.Millisecond))
}

// TestPipelinedBurst writes 1 MB of pipelined commands at once (a local
// session: RFC 2920 limits on what may follow what apply to network
// clients) and checks that each gets exactly one reply, in order.
func TestPipelinedBurst(t *testing.T) {
	cycle := []struct{ cmd, reply string }{
		{"MAIL FROM:<a@example.net>", "250 2.1.0 Sender OK"},
		{"RCPT TO:<x@example.org>", "250 2.1.5 Recipient OK"},
		{"NOOP", "250 2.0.0 OK"},
		{"RCPT TO:<y@example.org>", "250 2.1.5 Recipient OK"},
		{"VRFY x@example.org", "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"},
		{"RSET", "250 2.0.0 OK"},
		{"HELP", "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY; see RFC 5321"},
	}
	var in, out strings.Builder
	in.WriteString("C: EHLO c.example\n")
	out.WriteString("S: 220 mx.test.example ESMTP ready\n" + ehlo("c.example"))
	n, size := 1, 0 // commands, and their bytes on the wire
	for size < 1<<20 {
		for _, c := range cycle {
			in.WriteString("C: " + c.cmd + "\n")
			out.WriteString("S: " + c.reply + "\n")
			n, size = n+1, size+len(c.cmd)+2
		}
	}
	r := stdio.Run(t, script(t, in.String()+"C: QUIT\n"+out.String()+"S: 221 2.0.0 mx.test.example closing connection\n= exit 0\n"))
	t.Logf("%d commands in %v", n, r.Took.Round(time.Millisecond))
}
