package main

// The "localflush" mode of benchtool, which scripts/bench-send runs: local
// delivery (issue 12, "Performance").
//
// One spool of n messages of size bytes, one recipient each, spread over
// 100 users (u0@bench.test ... u99@bench.test), is flushed by smtp-send
// through a route table twice per round: into 100 maildirs
// (maildir:/work/mail/%u/, created by the first messages) and over LMTP
// to a private Dovecot (lmtp:unix:, the configuration of the Dovecot
// tests in cmd/smtp-send/dovecot_test.go: passwd-file users, one mail
// uid, Maildir homes). The order of the two alternates by round. It
// prints, per round and as medians, messages per second and smtp-send's
// CPU per message. Then one more flush of each runs under strace -f -y
// (slower, not timed) to count fsync(2) and fdatasync(2) per message by
// what they sync: the maildir file, the maildir's new/ directory, queue/
// (the message leaving the queue), other; for LMTP, Dovecot's own
// fsyncs (strace attached to its master, following its lmtp processes).
// The floor of a durable maildir delivery is one file fsync and one
// directory fsync per message; the queue adds one fsync of queue/.
// Dovecot needs root (its mail user is uid 65534): without root only
// the maildir rows run.

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/dovecotlab"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// localFlush runs the mode with its arguments (see usage below).
func localFlush(args []string) error {
	fs := flag.NewFlagSet("localflush", flag.ContinueOnError)
	send := fs.String("send", "", "path of the smtp-send binary")
	n := fs.Int("n", 1000, "messages per flush")
	size := fs.Int("size", 2048, "message size in bytes")
	boxes := fs.Int("boxes", 100, "users (maildirs)")
	conns := fs.Int("connections", 8, "SMTP_SEND_CONNECTIONS")
	rounds := fs.Int("rounds", 3, "rounds (each: one maildir flush, one LMTP flush)")
	straceBin := fs.String("strace", "/usr/bin/strace", "strace, to count fsyncs (empty: no count)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *send == "" {
		return errors.New("usage: benchtool localflush -send SMTP-SEND [-n 1000] [-size 2048] [-boxes 100] [-connections 8] [-rounds 3]")
	}
	// A short path: a unix socket's path must stay under about 100 bytes.
	work, err := os.MkdirTemp("", "blf")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	tmpl := filepath.Join(work, "template")
	if err := localSpool(tmpl, *n, *size, *boxes); err != nil {
		return err
	}
	type mode struct {
		name  string
		route func(round string) (string, error) // route table line for bench.test
		count func(round string) int             // messages delivered, counted in the mailboxes
	}
	modes := []mode{{
		name: "maildir",
		route: func(r string) (string, error) {
			return "bench.test maildir:" + filepath.Join(work, "mail-"+r) + "/%u/", nil
		},
		count: func(r string) int { return countNew(filepath.Join(work, "mail-"+r), "*/new") },
	}}
	var dv *benchDovecot
	if os.Getuid() == 0 {
		if dv, err = startBenchDovecot(filepath.Join(work, "dv"), *boxes); err != nil {
			return err
		}
		defer dv.Stop()
		modes = append(modes, mode{
			name:  "LMTP",
			route: func(string) (string, error) { return "bench.test lmtp:unix:" + dv.Socket, nil },
			count: func(string) int { return countNew(dv.Mail, "*/Maildir/new") },
		})
	}
	fmt.Printf("localflush: %d messages of %d bytes to %d users, %d connections; maildir:%s/%%u/ and, as root, LMTP to a private Dovecot; %d rounds, interleaved\n",
		*n, *size, *boxes, *conns, work, *rounds)
	if dv == nil {
		fmt.Println("  (not root: no Dovecot, no LMTP rows)")
	}
	flush := func(m mode, r, dir string, wrap []string) (time.Duration, time.Duration, error) {
		if err := copySpool(tmpl, dir); err != nil {
			return 0, 0, err
		}
		line, _ := m.route(r)
		routes := filepath.Join(work, "routes-"+r)
		if err := os.WriteFile(routes, []byte(line+"\n"), 0o644); err != nil {
			return 0, 0, err
		}
		before := m.count(r)
		env := []string{"PATH=/usr/bin:/bin", "SMTP_HOSTNAME=bench.test", "SMTP_SPOOL_DIR=" + dir,
			"SMTP_SEND_ROUTES=" + routes, "SMTP_SEND_CONNECTIONS=" + strconv.Itoa(*conns)}
		wall, cpu, delivered, err := flushWrapped(*send, wrap, env, filepath.Join(work, r+".log"))
		if err != nil {
			return 0, 0, fmt.Errorf("%s flush: %w", m.name, err)
		}
		left, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir))
		if got := m.count(r) - before; delivered != *n || len(left) != 0 || got != *n {
			return 0, 0, fmt.Errorf("%s flush: %d delivered, %d in the mailboxes, %d left in the queue (log %s)",
				m.name, delivered, got, len(left), filepath.Join(work, r+".log"))
		}
		os.RemoveAll(dir)
		return wall, cpu, nil
	}
	rates := make([][]float64, len(modes))
	cpus := make([][]float64, len(modes))
	for r := range *rounds {
		for k := range modes {
			m := (k + r) % len(modes)
			name := fmt.Sprintf("r%d-%d", r, m)
			wall, cpu, err := flush(modes[m], name, filepath.Join(work, name), nil)
			if err != nil {
				return err
			}
			rate := float64(*n) / wall.Seconds()
			perMsg := float64(cpu.Microseconds()) / float64(*n)
			rates[m], cpus[m] = append(rates[m], rate), append(cpus[m], perMsg)
			fmt.Printf("  round %d  %-8s %5d delivered in %6d ms = %6.0f msgs/s, smtp-send CPU %5.0f µs/msg\n",
				r+1, modes[m].name, *n, wall.Milliseconds(), rate, perMsg)
		}
	}
	for m := range modes {
		fmt.Printf("  median    %-8s %6.0f msgs/s, smtp-send CPU %5.0f µs/msg\n", modes[m].name, medianF(rates[m]), medianF(cpus[m]))
	}
	if *straceBin == "" {
		return nil
	}
	if _, err := os.Stat(*straceBin); err != nil {
		fmt.Printf("  no %s: fsyncs not counted (apt-get install strace)\n", *straceBin)
		return nil
	}
	for m := range modes {
		name := fmt.Sprintf("strace-%d", m)
		trace := filepath.Join(work, name+".strace")
		wrap := []string{*straceBin, "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o", trace, "--"}
		var stopDV func() (map[string]int, error)
		if modes[m].name == "LMTP" {
			if stopDV, err = dv.traceFsyncs(*straceBin, filepath.Join(work, "dovecot.strace")); err != nil {
				return err
			}
		}
		if _, _, err := flush(modes[m], name, filepath.Join(work, name), wrap); err != nil {
			return err
		}
		counts, err := classifyFsyncs(trace)
		if err != nil {
			return err
		}
		fmt.Printf("  fsyncs    %-8s smtp-send %s\n", modes[m].name, perMessage(counts, *n))
		if stopDV != nil {
			dc, err := stopDV()
			if err != nil {
				return err
			}
			fmt.Printf("  fsyncs    %-8s Dovecot   %s\n", modes[m].name, perMessage(dc, *n))
		}
	}
	fmt.Println("  (fsyncs: one more flush of each under strace -f -y -e trace=fsync,fdatasync, per message; the floor of a durable maildir delivery is 1 file + 1 new/)")
	return nil
}

// flushWrapped is flushOnce with the command run under wrap (strace),
// if any.
func flushWrapped(bin string, wrap, env []string, logFile string) (time.Duration, time.Duration, int, error) {
	if len(wrap) == 0 {
		return flushOnce(bin, env, logFile)
	}
	script := logFile + ".sh"
	q := make([]string, 0, len(wrap)+1)
	for _, w := range append(wrap, bin) {
		q = append(q, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec "+strings.Join(q, " ")+"\n"), 0o755); err != nil {
		return 0, 0, 0, err
	}
	return flushOnce(script, env, logFile)
}

// localSpool writes a spool of n messages of size bytes at dir, message i
// to u<i mod boxes>@bench.test.
func localSpool(dir string, n, size, boxes int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sp, err := spool.New(dir)
	if err != nil {
		return err
	}
	body := payload(size)
	now := time.Now()
	for i := range n {
		id, _ := spool.NewQueueID(now)
		w, err := sp.Create(&spool.Envelope{QueueID: id, Received: now, Client: "127.0.0.1:1", Helo: "bench.test",
			Protocol: "ESMTP", From: "bench@example.org", To: []string{fmt.Sprintf("u%d@bench.test", i%boxes)}})
		if err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
		if err := w.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// countNew counts the files in the directories matching root/pattern.
func countNew(root, pattern string) int {
	dirs, _ := filepath.Glob(filepath.Join(root, pattern))
	n := 0
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		n += len(ents)
	}
	return n
}

// classifyFsyncs reads an strace -y output and counts the fsync and
// fdatasync calls by what they synced, all but those that returned an
// error. With -f, a call that another thread interrupts is split into
// "fsync(5</path> <unfinished ...>" and "<... fsync resumed>) = 0": the
// first line, which names the file, counts; the second does not.
func classifyFsyncs(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		i := strings.Index(l, "sync(")
		if i < 0 || strings.Contains(l, "= -1 ") {
			continue
		}
		target := ""
		if a := strings.IndexByte(l[i:], '<'); a >= 0 {
			if b := strings.IndexByte(l[i+a:], '>'); b > 0 {
				target = l[i+a+1 : i+a+b]
			}
		}
		c[fsyncKind(target)]++
	}
	return c, sc.Err()
}

// fsyncKind names what an fsync synced, from its path.
func fsyncKind(p string) string {
	base, parent := filepath.Base(p), filepath.Base(filepath.Dir(p))
	switch {
	case base == "new" || base == "cur" || base == "tmp":
		return base + "/ dir"
	case parent == "new" || parent == "tmp" || parent == "cur":
		return "mail file"
	case base == spool.QueueDir:
		return "queue/ dir"
	case base == "state" || parent == "state":
		return "state/"
	case strings.HasPrefix(base, "dovecot"):
		return "dovecot-* files"
	case base == "Maildir" || parent == "Maildir":
		return "Maildir/"
	}
	return "other"
}

// perMessage formats counts divided by n, total first.
func perMessage(c map[string]int, n int) string {
	total := 0
	for _, v := range c {
		total += v
	}
	s := fmt.Sprintf("%.2f per message", float64(total)/float64(n))
	var parts []string
	for _, k := range []string{"mail file", "new/ dir", "tmp/ dir", "cur/ dir", "queue/ dir", "state/", "dovecot-* files", "Maildir/", "other"} {
		if c[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(c[k])/float64(n)))
		}
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

// benchDovecot is a private Dovecot serving LMTP on a unix socket
// (internal/testutil/dovecotlab, as cmd/smtp-send's Dovecot tests).
type benchDovecot struct {
	*dovecotlab.Lab
}

// startBenchDovecot starts Dovecot under root with users u0..u<boxes-1>
// @bench.test and waits for its LMTP socket.
func startBenchDovecot(root string, boxes int) (*benchDovecot, error) {
	l, err := dovecotlab.Start(root, false, func(mail string) []dovecotlab.User {
		us := make([]dovecotlab.User, boxes)
		for i := range us {
			us[i] = dovecotlab.User{Addr: fmt.Sprintf("u%d@bench.test", i), Home: filepath.Join(mail, "u"+strconv.Itoa(i))}
		}
		return us
	})
	if err != nil {
		return nil, err
	}
	return &benchDovecot{l}, nil
}

// traceFsyncs attaches strace to the Dovecot master and every process
// under it (the lmtp processes of earlier flushes stay for a while),
// following those it forks, and returns a function that stops that
// strace (by its PID) and counts the fsyncs it saw.
func (d *benchDovecot) traceFsyncs(straceBin, out string) (func() (map[string]int, error), error) {
	args := []string{"-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o", out}
	for _, pid := range descendants(d.MasterPID()) {
		args = append(args, "-p", strconv.Itoa(pid))
	}
	cmd := exec.Command(straceBin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond) // attached before the flush starts
	return func() (map[string]int, error) {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		return classifyFsyncs(out)
	}, nil
}

// descendants returns pid and every process under it, from /proc.
func descendants(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; cut after ")".
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[p] = pp
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for p, pp := range parent {
			if pp == out[i] {
				out = append(out, p)
			}
		}
	}
	return out
}
