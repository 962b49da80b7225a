// Command loadtool is the load test that scripts/load runs (issue 5).
// On 127.0.0.1 only, Postfix's smtp-source sends messages over many
// concurrent sessions to tcpserver + smtp-stdio, one message per
// connection; then smtp-send flushes the spool to Postfix's smtp-sink,
// which keeps every message it takes (-d). It checks that every message
// accepted was delivered exactly once and intact, and reports messages per
// second and CPU per message for each side.
//
// Usage:
//
//	loadtool -stdio BIN -send BIN [-messages 5000] [-sessions 50] [-size 2048] [-timeout 10m] [-keep]
//
// Everything it starts runs in a process group of its own and is ended by
// its PID when the run ends, fails, times out or is interrupted.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// config is one load run.
type config struct {
	stdio, send string // the binaries
	messages    int    // messages in all, one per connection
	sessions    int    // concurrent sessions
	size        int    // payload bytes per message (smtp-source -l)
	keep        bool   // keep the work directory
}

// result is what a run measured.
type result struct {
	accepted, delivered int
	recvWall, sendWall  time.Duration
	recvCPU, sendCPU    time.Duration // user + system
	sourceCPU           time.Duration // the client, for comparison
}

func main() {
	var c config
	flag.StringVar(&c.stdio, "stdio", "", "smtp-stdio binary")
	flag.StringVar(&c.send, "send", "", "smtp-send binary")
	flag.IntVar(&c.messages, "messages", 5000, "messages in all, one per connection")
	flag.IntVar(&c.sessions, "sessions", 50, "concurrent sessions")
	flag.IntVar(&c.size, "size", 2048, "payload bytes per message")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if c.stdio == "" || c.send == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: loadtool -stdio BIN -send BIN [-messages N] [-sessions N] [-size BYTES] [-timeout D] [-keep]")
		os.Exit(64)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if _, err := run(ctx, c, os.Stdout); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("stopped (%w): %v", context.Cause(ctx), err)
		}
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// run does one load run, printing the report to w.
func run(ctx context.Context, c config, w io.Writer) (result, error) {
	var r result
	source, sink := "/usr/sbin/smtp-source", "/usr/sbin/smtp-sink"
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		return r, fmt.Errorf("tcpserver: %w (scripts/install-test-deps installs ucspi-tcp)", err)
	}
	for _, p := range []string{source, sink} {
		if _, err := os.Stat(p); err != nil {
			return r, fmt.Errorf("%w (scripts/install-test-deps installs postfix)", err)
		}
	}
	work, err := os.MkdirTemp("", "smtp-load-")
	if err != nil {
		return r, err
	}
	if c.keep {
		defer fmt.Fprintln(w, "work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	var ps procs
	defer ps.stopAll()
	spoolDir := filepath.Join(work, "spool")
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		return r, err
	}

	fmt.Fprintf(w, "load: %d messages of %d bytes, %d concurrent sessions, one message per connection, 127.0.0.1, %d CPUs\n",
		c.messages, c.size, c.sessions, runtime.NumCPU())

	// Receive: tcpserver + smtp-stdio, driven by smtp-source.
	port, err := freePort()
	if err != nil {
		return r, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	srv := exec.Command(tcpserver, "-v", "-RHl0", "-c", strconv.Itoa(c.sessions+14), "-b", "128", "127.0.0.1", strconv.Itoa(port), c.stdio)
	srv.Env = []string{"PATH=" + os.Getenv("PATH"), "SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=load.test",
		"SMTP_LOCAL_DOMAINS=example.org", "SMTP_LOG=off"}
	ends := &sessionEnds{}
	if err := ps.daemon(srv, ends); err != nil {
		return r, err
	}
	if err := probe(ctx, addr); err != nil {
		return r, fmt.Errorf("tcpserver + smtp-stdio: %w", err)
	}
	start := time.Now()
	src := exec.CommandContext(ctx, source, "-s", strconv.Itoa(c.sessions), "-m", strconv.Itoa(c.messages),
		"-l", strconv.Itoa(c.size), "-f", "load@example.net", "-t", "rcpt@example.org", "-M", "source.example", addr)
	ps.bound(src)
	out, err := src.CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("smtp-source: %v\n%s", err, out)
	}
	r.recvWall = time.Since(start)
	r.sourceCPU = cpu(src.ProcessState)
	// Every session, the probe's too, must have ended, with status 0,
	// before tcpserver's own usage holds theirs.
	if err := ends.wait(ctx, c.messages+1); err != nil {
		return r, err
	}
	st, err := ps.stop(srv)
	if err != nil {
		return r, err
	}
	r.recvCPU = cpu(st)

	queued, err := readQueue(spoolDir)
	if err != nil {
		return r, err
	}
	r.accepted = len(queued)
	fmt.Fprintf(w, "receive  smtp-source -> tcpserver + smtp-stdio: %d accepted in %v = %.0f msgs/s; CPU %.2f ms/msg (tcpserver + smtp-stdio, user+sys; %.0f%% of the CPUs; smtp-source used %.2f ms/msg)\n",
		r.accepted, r.recvWall.Round(time.Millisecond), float64(r.accepted)/r.recvWall.Seconds(),
		perMsg(r.recvCPU, r.accepted), busy(r.recvCPU, r.recvWall), perMsg(r.sourceCPU, r.accepted))
	if r.accepted != c.messages {
		return r, fmt.Errorf("smtp-source sent %d messages and got no error, but %d are in queue/", c.messages, r.accepted)
	}

	// Send: smtp-send flushes the spool to smtp-sink, which keeps each
	// message in a file of its own under dump/.
	dump := filepath.Join(work, "dump")
	if err := os.Mkdir(dump, 0o755); err != nil {
		return r, err
	}
	sinkArgs := []string{"-d", dump + "/msg."}
	if os.Geteuid() == 0 {
		// smtp-sink refuses to run as root: it switches to nobody, who
		// must reach dump/.
		os.Chmod(work, 0o711)
		if err := chownNobody(dump); err != nil {
			return r, err
		}
		sinkArgs = append(sinkArgs, "-u", "nobody")
	}
	if port, err = freePort(); err != nil {
		return r, err
	}
	sinkAddr := "127.0.0.1:" + strconv.Itoa(port)
	sk := exec.Command(sink, append(sinkArgs, sinkAddr, "256")...)
	if err := ps.daemon(sk, nil); err != nil {
		return r, err
	}
	if err := probe(ctx, sinkAddr); err != nil {
		return r, fmt.Errorf("smtp-sink: %w", err)
	}
	start = time.Now()
	snd := exec.CommandContext(ctx, c.send)
	snd.Env = []string{"PATH=" + os.Getenv("PATH"), "SMTP_SPOOL_DIR=" + spoolDir, "SMTP_SMARTHOST=" + sinkAddr,
		"SMTP_SMARTHOST_TLS=none", "SMTP_HOSTNAME=load.test"}
	ps.bound(snd)
	sendLog, err := snd.CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("smtp-send: %v\n%s", err, lastLines(sendLog, 20))
	}
	r.sendWall = time.Since(start)
	r.sendCPU = cpu(snd.ProcessState)
	if _, err := ps.stop(sk); err != nil {
		return r, err
	}
	delivered, err := readDumps(dump)
	if err != nil {
		return r, err
	}
	r.delivered = len(delivered)
	fmt.Fprintf(w, "send     smtp-send -> smtp-sink: %d delivered in %v = %.0f msgs/s; CPU %.2f ms/msg (smtp-send, user+sys; %.0f%% of the CPUs)\n",
		r.delivered, r.sendWall.Round(time.Millisecond), float64(r.delivered)/r.sendWall.Seconds(),
		perMsg(r.sendCPU, r.delivered), busy(r.sendCPU, r.sendWall))

	if err := check(queued, delivered, spoolDir); err != nil {
		return r, err
	}
	fmt.Fprintf(w, "check    %d sent = %d accepted = %d delivered: each queue id delivered exactly once, byte for byte; queue/ and tmp/ empty\n",
		c.messages, r.accepted, r.delivered)
	return r, nil
}

// check is the invariant: every message accepted was delivered exactly
// once and intact, nothing else was delivered, and nothing is left.
func check(queued map[string][]byte, delivered []dumped, spoolDir string) error {
	seen := map[string]int{}
	var errs []error
	for _, d := range delivered {
		seen[d.id]++
		q, ok := queued[d.id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: delivered a message that was never accepted", d.file))
		case seen[d.id] == 2:
			errs = append(errs, fmt.Errorf("%s delivered more than once", d.id))
		case !bytes.HasSuffix(d.data, append(bytes.ReplaceAll(q, []byte("\r\n"), []byte("\n")), '\n')):
			// smtp-sink writes the message with LF line endings and an
			// empty line after it.
			errs = append(errs, fmt.Errorf("%s (%s): delivered bytes differ from the spool file", d.id, d.file))
		}
	}
	for id := range queued {
		if seen[id] == 0 {
			errs = append(errs, fmt.Errorf("%s accepted but never delivered", id))
		}
	}
	for _, sub := range []string{spool.QueueDir, spool.TmpDir} {
		if ents, _ := os.ReadDir(filepath.Join(spoolDir, sub)); len(ents) != 0 {
			errs = append(errs, fmt.Errorf("%d files left in %s/", len(ents), sub))
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
	}
	return errors.Join(errs...)
}

// readQueue reads every message in queue/ through the spool package (so
// each is checked complete: size and CRC) and returns its bytes by queue
// id.
func readQueue(spoolDir string) (map[string][]byte, error) {
	ents, err := os.ReadDir(filepath.Join(spoolDir, spool.QueueDir))
	if err != nil {
		return nil, err
	}
	q := map[string][]byte{}
	for _, e := range ents {
		m, err := spool.Open(filepath.Join(spoolDir, spool.QueueDir, e.Name()))
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(m.Content())
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		q[m.QueueID] = b
	}
	return q, nil
}

// dumped is one message that smtp-sink kept.
type dumped struct {
	file, id string
	data     []byte
}

// receivedID finds the queue id in smtp-stdio's Received: header (smtp-sink
// puts one of its own before it).
var receivedID = regexp.MustCompile(`\(smtp-stdio[^)]*\) with [A-Z0-9]+ id (\S+);`)

func readDumps(dir string) ([]dumped, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ds []dumped
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		m := receivedID.FindSubmatch(b)
		if m == nil {
			return nil, fmt.Errorf("%s: no Received: header of smtp-stdio", e.Name())
		}
		ds = append(ds, dumped{file: e.Name(), id: string(m[1]), data: b})
	}
	return ds, nil
}

// procs are the processes a run started. Each has a process group of
// its own, and is ended through it, by PID, when the run ends.
type procs struct {
	mu   sync.Mutex
	cmds []*exec.Cmd
	done map[*exec.Cmd]chan struct{}
}

func groupAttr() *syscall.SysProcAttr {
	// Pdeathsig: should loadtool itself be killed, the kernel ends them.
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// bound prepares a command that runs to its end under the run's
// context: on cancellation its whole process group is killed.
func (p *procs) bound(cmd *exec.Cmd) {
	cmd.SysProcAttr = groupAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
}

// daemon starts a server whose standard error goes, line by line, to
// lines (if not nil).
func (p *procs) daemon(cmd *exec.Cmd, lines lineSink) error {
	cmd.SysProcAttr = groupAttr()
	var pr io.ReadCloser
	if lines != nil {
		var err error
		if pr, err = cmd.StderrPipe(); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd)
	if p.done == nil {
		p.done = map[*exec.Cmd]chan struct{}{}
	}
	p.done[cmd] = done
	p.mu.Unlock()
	if pr != nil {
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines.line(sc.Text())
			}
		}()
	}
	go func() { cmd.Wait(); close(done) }()
	return nil
}

// stop ends a daemon's process group (SIGTERM, then SIGKILL after 5
// seconds) and returns its final state.
func (p *procs) stop(cmd *exec.Cmd) (*os.ProcessState, error) {
	p.mu.Lock()
	done := p.done[cmd]
	p.mu.Unlock()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	if cmd.ProcessState == nil {
		return nil, fmt.Errorf("%s: no exit status", cmd.Path)
	}
	return cmd.ProcessState, nil
}

// stopAll ends every daemon still running.
func (p *procs) stopAll() {
	for _, cmd := range p.cmds {
		select {
		case <-p.done[cmd]:
		default:
			p.stop(cmd)
		}
	}
}

type lineSink interface{ line(string) }

// sessionEnds counts tcpserver's "end PID status N" lines (-v).
type sessionEnds struct {
	mu     sync.Mutex
	n      int
	failed []string
}

func (s *sessionEnds) line(l string) {
	f := strings.Fields(l)
	if len(f) == 5 && f[0] == "tcpserver:" && f[1] == "end" && f[3] == "status" {
		s.mu.Lock()
		s.n++
		if f[4] != "0" {
			s.failed = append(s.failed, l)
		}
		s.mu.Unlock()
	}
}

// wait waits until n sessions have ended, and fails if one ended with a
// status other than 0.
func (s *sessionEnds) wait(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, failed := s.n, s.failed
		s.mu.Unlock()
		switch {
		case len(failed) > 0:
			return fmt.Errorf("%d smtp-stdio sessions exited with an error, first: %s", len(failed), failed[0])
		case got >= n:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d sessions ended: %w", got, n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// probe waits until addr answers with a 220 greeting, then ends that
// session cleanly with QUIT.
func probe(ctx context.Context, addr string) error {
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220") {
				return fmt.Errorf("greeting %q: %v", l, err)
			}
			io.WriteString(c, "QUIT\r\n")
			if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "221") {
				return fmt.Errorf("reply to QUIT %q: %v", l, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listening on %s: %w", addr, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func chownNobody(dir string) error {
	u, err := user.Lookup("nobody")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

// cpu is the user and system time of a process and of the children it
// waited for (wait4 reports both).
func cpu(st *os.ProcessState) time.Duration {
	if st == nil {
		return 0
	}
	return st.UserTime() + st.SystemTime()
}

func perMsg(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / 1000 / float64(n)
}

// busy is the share of the machine's CPUs that cpu over wall is.
func busy(cpu, wall time.Duration) float64 {
	return 100 * cpu.Seconds() / wall.Seconds() / float64(runtime.NumCPU())
}

func lastLines(b []byte, n int) string {
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
}
