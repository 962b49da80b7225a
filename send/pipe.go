package send

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// pipeSession runs a route's command for each message (or each
// recipient, per=recipient) with the message on its standard input, as
// Postfix's pipe(8) and qmail's |command deliveries do, without a shell:
// the arguments were split in the route table and only expanded here,
// each value one argument, so that an address (which a remote sender
// chose) can never become a shell command, an option of its own or a
// second argument. The environment is cleared and holds only PATH and
// the envelope: SENDER, QUEUE_ID, and RECIPIENT, USER and DOMAIN when the
// command runs for one recipient. The command runs in a process group of
// its own in /, its output (standard output and error together) kept up
// to queue.MaxText octets for the log and the notification.
//
// The exit status decides, with <sysexits.h> mapped as Postfix's pipe(8)
// maps it (pipeStatus): 0 delivered; 75 (EX_TEMPFAIL) and 71 (EX_OSERR)
// defer; 67 (EX_NOUSER) fails with 5.1.1, other codes fail with their
// status. Output that starts with an RFC 3463 status (4.2.2 mailbox
// full) gives the status instead, as in Postfix. Death by a signal
// defers, and so does the time limit (timeout=), past which the whole
// process group is killed: a stuck delivery agent is not the recipient's
// fault.
type pipeSession struct {
	cfg   *Config
	log   *slog.Logger
	route route.Route
}

// pipePath is the PATH of the command's environment.
const pipePath = "PATH=/usr/local/bin:/usr/bin:/bin"

// Deliver implements Session.
func (s *pipeSession) Deliver(ctx context.Context, d *Delivery, rec Recorder) error {
	if s.route.Pipe.PerRecipient {
		for _, i := range d.Rcpts {
			if err := s.run(ctx, d, []int{i}, rec); err != nil {
				return err
			}
		}
		return nil
	}
	return s.run(ctx, d, d.Rcpts, rec)
}

// Close implements Session.
func (s *pipeSession) Close() error { return nil }

// run runs the command once for the recipients rcpts and reports its
// outcome. It returns an error reading the message, or recording.
func (s *pipeSession) run(ctx context.Context, d *Delivery, rcpts []int, rec Recorder) error {
	c, env := s.route.Pipe, d.Envelope
	relay := "pipe:" + c.Path
	addrs := make([]string, len(rcpts))
	for n, i := range rcpts {
		addrs[n] = env.To[i]
	}
	environ := []string{pipePath, "SENDER=" + env.From, "QUEUE_ID=" + env.QueueID}
	if len(addrs) == 1 {
		user, dom := route.UserDomain(addrs[0])
		environ = append(environ, "RECIPIENT="+addrs[0], "USER="+user, "DOMAIN="+dom)
	}
	cmd := exec.Command(c.Path, c.Args(route.Vars{Sender: env.From, QueueID: env.QueueID, Rcpts: addrs})...)
	cmd.Env, cmd.Dir = environ, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &capBuffer{max: queue.MaxText}
	cmd.Stdout, cmd.Stderr = out, out
	// A command that exits while a child of its own keeps the output
	// open is not waited for past this.
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		rec.Failed(rcpts, localFailure(relay, "4.3.0", oneLine("cannot run the command: "+err.Error())))
		return nil
	}
	var mu sync.Mutex
	timedOut := false
	timer := time.AfterFunc(c.Timeout, func() {
		mu.Lock()
		timedOut = true
		mu.Unlock()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	// The message, with LF line ends as a Unix command expects (as
	// Postfix's pipe(8) gives it); a command that stops reading early
	// breaks the pipe, which is its choice.
	bw := bufio.NewWriterSize(stdin, 32<<10)
	lw := &lfWriter{w: bw}
	cerr := copyMessage(lw, d.Content())
	var rerr *readError
	if errors.As(cerr, &rerr) {
		// The message could not be read to its end: the command must
		// not see an end of input that would make a truncated message
		// look whole, so it dies first.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	} else {
		lw.flush()
		bw.Flush()
	}
	stdin.Close()
	werr := cmd.Wait()
	timer.Stop()
	mu.Lock()
	killed := timedOut
	mu.Unlock()
	if rerr != nil {
		return rerr.err
	}
	f := pipeOutcome(werr, killed, c.Timeout, out.String())
	if f == nil {
		return rec.Delivered(rcpts, Reply{Stage: StageLocal, Enhanced: "2.0.0", Relay: relay, Action: actionDelivered,
			Text: oneLine(strings.TrimSpace("delivered to the command " + c.Path + ": " + out.String()))})
	}
	f.Relay = relay
	s.log.Debug("pipe command failed", "relay", relay, "err", f.Text)
	rec.Failed(rcpts, f)
	return nil
}

// sysexits maps <sysexits.h> codes to RFC 3463 statuses, as Postfix's
// pipe(8) does (global/sys_exits.c).
var sysexits = map[int]struct{ status, name string }{
	64: {"5.3.0", "EX_USAGE"}, 65: {"5.6.0", "EX_DATAERR"}, 66: {"5.3.0", "EX_NOINPUT"},
	67: {"5.1.1", "EX_NOUSER"}, 68: {"5.1.2", "EX_NOHOST"}, 69: {"5.3.0", "EX_UNAVAILABLE"},
	70: {"5.3.0", "EX_SOFTWARE"}, 71: {"4.3.0", "EX_OSERR"}, 72: {"5.3.0", "EX_OSFILE"},
	73: {"5.2.0", "EX_CANTCREAT"}, 74: {"5.3.0", "EX_IOERR"}, 75: {"4.3.0", "EX_TEMPFAIL"},
	76: {"5.5.0", "EX_PROTOCOL"}, 77: {"5.7.0", "EX_NOPERM"}, 78: {"5.3.5", "EX_CONFIG"},
}

// statusPrefix is an RFC 3463 status at the start of a command's output.
var statusPrefix = regexp.MustCompile(`^\s*([45]\.\d{1,3}\.\d{1,3})\b`)

// pipeOutcome classifies the end of a command: nil when it exited 0,
// else the Failure (deferred for a signal, the time limit, EX_TEMPFAIL
// and EX_OSERR; see pipeSession). out is what it wrote.
func pipeOutcome(err error, timedOut bool, limit time.Duration, out string) *Failure {
	out = strings.TrimSpace(out)
	with := func(s string) string {
		if out == "" {
			return s
		}
		return s + ": " + out
	}
	if timedOut {
		return &Failure{Stage: StageLocal, Enhanced: "4.3.0", dest: true,
			Text: oneLine(with("command killed after its time limit of " + limit.String()))}
	}
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return &Failure{Stage: StageLocal, Enhanced: "4.3.0", Text: oneLine(with("command: " + err.Error()))}
	}
	ws, _ := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return &Failure{Stage: StageLocal, Enhanced: "4.3.0", dest: true,
			Text: oneLine(with("command killed by signal " + ws.Signal().String()))}
	}
	code := ee.ExitCode()
	status, why := "5.3.0", "exited with status "+strconv.Itoa(code)
	if se, ok := sysexits[code]; ok {
		status, why = se.status, fmt.Sprintf("exited with status %d (%s)", code, se.name)
	}
	if m := statusPrefix.FindStringSubmatch(out); m != nil {
		status = m[1]
	}
	return &Failure{Stage: StageLocal, Enhanced: status, dest: true, Text: oneLine(with("command " + why))}
}

// capBuffer keeps the first max octets written to it and discards the
// rest, so that a command's output cannot fill memory. It is written by
// the goroutines exec starts for standard output and error.
type capBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

// Write implements io.Writer; it never fails.
func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.max - len(c.b); n > 0 {
		c.b = append(c.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// String returns what was kept.
func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}

var _ io.Writer = (*capBuffer)(nil)
