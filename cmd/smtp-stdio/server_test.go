package main

// One process for many connections (issue 14): systemd Accept=no through
// systemd-socket-activate without --accept, inetd "wait" through an
// openbsd-inetd started by the test, and systemd Accept=yes without
// StandardInput=socket (the connected socket on fd 3); with real clients
// (swaks, smtplib, Postfix's smtp-source, Go's net/smtp), the limits, the
// shutdown on SIGTERM, the idle exit and kill -9 under load.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// startServer runs the binary under systemd-socket-activate listening on
// a free loopback port with Accept=no (the listening socket as fd 3),
// and returns the address and the process: systemd-socket-activate
// execs the program, so the process is smtp-stdio itself.
func startServer(t *testing.T, spoolDir string, extra ...string) (string, *exec.Cmd) {
	t.Helper()
	ssa := testutil.Need(t, "systemd-socket-activate")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--listen=" + addr, "--fdname=smtp"}
	for _, kv := range baseEnv(spoolDir, extra...) {
		args = append(args, "-E", kv)
	}
	cmd := exec.Command(ssa, append(args, binary(t))...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	startDaemon(t, addr, cmd)
	return addr, cmd
}

// TestServerClients: under Accept=no, one process serves swaks, smtplib
// and 20 concurrent smtp-source clients; every message is spooled, and
// all by the one process (no session process is ever started).
func TestServerClients(t *testing.T) {
	swaks := testutil.Need(t, "swaks")
	py := testutil.Need(t, "python3")
	source := testutil.Need(t, "smtp-source", "/usr/sbin/smtp-source")
	sd := newSpool(t)
	addr, cmd := startServer(t, sd)
	host, port, _ := net.SplitHostPort(addr)
	if out, err := exec.Command(swaks, "--server", host, "--port", port, "--from", "s@example.net", "--to", "r@example.org",
		"--helo", "swaks.example", "--timeout", "20").CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if out, err := exec.Command(py, "-c", pySend, host, port).CombinedOutput(); err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	before := len(spooled(t, sd))
	if before < 2 {
		t.Errorf("%d spooled from swaks and smtplib", before)
	}
	const n = 400
	if out, err := exec.Command(source, "-s", "20", "-m", strconv.Itoa(n), "-l", "2048", "-f", "src@example.net",
		"-t", "r@example.org", addr).CombinedOutput(); err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	ms := spooled(t, sd)
	if len(ms) != before+n {
		t.Errorf("%d messages spooled, want %d", len(ms), before+n)
	}
	// Every session ran in the one process: it is still there, and it
	// started no other.
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the server is gone: %v", err)
	}
	if kids := childrenOf(cmd.Process.Pid); len(kids) != 0 {
		t.Errorf("the server has child processes %v", kids)
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	return processes(func(dir string) bool {
		b, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			return false
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		return len(f) > 1 && f[1] == strconv.Itoa(pid)
	})
}

// TestServerLimits: past SMTP_MAX_CONNECTIONS a connection gets 421
// 4.3.2, past SMTP_MAX_CONNECTIONS_PER_CLIENT 421 4.7.0 (for a client
// outside SMTP_RELAY_CLIENTS), and another client is still served.
func TestServerLimits(t *testing.T) {
	sd := newSpool(t)
	addr, _ := startServer(t, sd, "SMTP_MAX_CONNECTIONS=3", "SMTP_MAX_CONNECTIONS_PER_CLIENT=2", stranger)
	greet := func(src string) (net.Conn, string) {
		c := dialFrom(t, src, addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return c, l
	}
	// startServer's probe that the port listens was a session from
	// 127.0.0.1 too, which counts until the server has seen it close:
	// the first two are tried again until it has.
	var a, b net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var l1, l2 string
		a, l1 = greet("127.0.0.1")
		b, l2 = greet("127.0.0.1")
		if strings.HasPrefix(l1, "220 ") && strings.HasPrefix(l2, "220 ") {
			break
		}
		a.Close()
		b.Close()
		if time.Now().After(deadline) || !strings.HasPrefix(l2, "421 4.7.0 ") {
			t.Fatalf("first two: %q %q", l1, l2)
		}
	}
	if _, l := greet("127.0.0.1"); !strings.HasPrefix(l, "421 4.7.0 ") {
		t.Errorf("third from one client: %q, want 421 4.7.0", l)
	}
	c, l3 := greet("127.0.0.2")
	if !strings.HasPrefix(l3, "220 ") {
		t.Errorf("another client: %q", l3)
	}
	if _, l := greet("127.0.0.3"); !strings.HasPrefix(l, "421 4.3.2 ") {
		t.Errorf("fourth in all: %q, want 421 4.3.2", l)
	}
	a.Close()
	// The slot comes back once the session has ended.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, l := greet("127.0.0.3")
		d.Close()
		if strings.HasPrefix(l, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a session ended: %q", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Close()
	c.Close()
}

// TestServerShutdown: SIGTERM stops accepting; a session that finishes
// its message within SMTP_SHUTDOWN_GRACE gets its durable 250; after the
// grace an idle session and one in the middle of DATA get 421 4.3.2,
// the half message is not spooled, no temporary file is left, and the
// process exits 0.
func TestServerShutdown(t *testing.T) {
	sd := newSpool(t)
	addr, cmd := startServer(t, sd, "SMTP_SHUTDOWN_GRACE=1500ms")
	open := func() *rawSession {
		s := dialRaw(t, "127.0.0.1", addr)
		s.raw.SetDeadline(time.Now().Add(20 * time.Second))
		s.expect("", "220 ")
		s.expect("EHLO c.example", "250 ")
		return s
	}
	idle, inData, finishing := open(), open(), open()
	for _, s := range []*rawSession{inData, finishing} {
		s.expect("MAIL FROM:<a@example.net>", "250 ")
		s.expect("RCPT TO:<r@example.org>", "250 ")
		s.expect("DATA", "354 ")
		io.WriteString(s.conn, "Subject: shutdown\r\n\r\nhalf\r\n")
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	// Within the grace: the message ends and is answered 250.
	finishing.expect(".", "250 2.0.0 OK queued as ")
	finishing.expect("QUIT", "221 ")
	// No new connection is taken.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if l, _ := bufio.NewReader(c).ReadString('\n'); strings.HasPrefix(l, "220") {
			t.Errorf("a connection after SIGTERM was greeted: %q", l)
		}
		c.Close()
	}
	for name, s := range map[string]*rawSession{"idle": idle, "in DATA": inData} {
		if r := s.cmd(""); !strings.HasPrefix(r, "421 4.3.2 ") {
			t.Errorf("%s session: %q, want 421 4.3.2", name, r)
		}
	}
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Errorf("sessions stopped after %v, before the grace", took)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not exit")
	}
	if ms := spooled(t, sd); len(ms) != 1 {
		t.Errorf("%d messages spooled, want the one answered 250", len(ms))
	}
	noTempFiles(t, sd)
}

// TestServerIdleExit: with SMTP_IDLE_EXIT the process exits 0 once no
// session has been open that long, and not while one is.
func TestServerIdleExit(t *testing.T) {
	sd := newSpool(t)
	addr, cmd := startServer(t, sd, "SMTP_IDLE_EXIT=700ms")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s := dialRaw(t, "127.0.0.1", addr)
	s.expect("", "220 ")
	select {
	case err := <-done:
		t.Fatalf("exited with a session open: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	s.expect("QUIT", "221 ")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no idle exit")
	}
}

// TestServerKill: kill -9 of the one process under 20 concurrent
// clients: every message answered 250 is in the spool, whole, exactly
// once; no message without its 250 is half there (a temporary file at
// most, which smtp-send removes).
func TestServerKill(t *testing.T) {
	sd := newSpool(t)
	addr, cmd := startServer(t, sd)
	var mu sync.Mutex
	accepted := map[string]string{} // queue id -> subject
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				subject := fmt.Sprintf("kill-%d-%d", w, i)
				id, err := sendRaw(addr, subject)
				if err != nil {
					continue
				}
				mu.Lock()
				accepted[id] = subject
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Kill()
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) < 20 {
		t.Fatalf("only %d messages accepted before the kill", len(accepted))
	}
	seen := map[string]int{}
	for _, m := range spooled(t, sd) {
		_, rest := content(t, m)
		subject, _, _ := strings.Cut(strings.TrimPrefix(rest, "Subject: "), "\r\n")
		seen[subject]++
		if !strings.HasSuffix(rest, "body of "+subject+"\r\n") {
			t.Errorf("message %s is not whole: %q", m.QueueID, rest)
		}
	}
	for id, subject := range accepted {
		if seen[subject] != 1 {
			t.Errorf("message %s (%s) answered 250 is in the spool %d times", id, subject, seen[subject])
		}
	}
}

// sendRaw sends one message by net/smtp and returns the queue id of
// the 250 reply to its end of data.
func sendRaw(addr, subject string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	reply := func() (string, error) {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(l) < 4 || l[3] != '-' {
				return l, nil
			}
		}
	}
	var last string
	for _, cmd := range []string{"", "EHLO k.example\r\n", "MAIL FROM:<k@example.net>\r\n", "RCPT TO:<r@example.org>\r\n", "DATA\r\n",
		"Subject: " + subject + "\r\n\r\nbody of " + subject + "\r\n.\r\n"} {
		if cmd != "" {
			if _, err := io.WriteString(c, cmd); err != nil {
				return "", err
			}
		}
		if last, err = reply(); err != nil {
			return "", err
		}
	}
	id, ok := strings.CutPrefix(strings.TrimSpace(last), "250 2.0.0 OK queued as ")
	if !ok {
		return "", fmt.Errorf("end of data: %q", last)
	}
	io.WriteString(c, "QUIT\r\n")
	return id, nil
}

// TestInetdWait runs scripts/inetd/inetd-wait.conf under an
// openbsd-inetd of the test's own: inetd hands the listening socket to
// one smtp-stdio, which serves several sessions, logging to syslog, not
// to the socket.
func TestInetdWait(t *testing.T) {
	inetd := testutil.Need(t, "inetd", "/usr/sbin/inetd", "/opt/openbsd-inetd/usr/sbin/inetd")
	sd := newSpool(t)
	reapSessions(t, sd)
	port := freePort(t)
	conf := "127.0.0.1:\n" + substitute(t, readExample(t, "inetd/inetd-wait.conf"),
		`^smtp(\s)`, strconv.Itoa(port)+"${1}",
		`(\s)smtp-stdio(\s)`, "${1}"+currentUser(t)+"${2}",
		`/usr/local/bin/smtp-stdio`, binary(t),
		`(env )SMTP_SPOOL_DIR=/var/spool/smtp-stdio`, "${1}SMTP_SPOOL_DIR="+sd,
		`SMTP_IDLE_EXIT=10m`, "SMTP_IDLE_EXIT=1s")
	confPath := filepath.Join(t.TempDir(), "inetd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(inetd, "-i", confPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	startDaemon(t, addr, cmd)
	pids := map[int]bool{}
	for i := range 3 {
		if err := smtp.SendMail(addr, nil, "w@example.net", []string{"r@example.org"}, []byte(fmt.Sprintf("Subject: wait %d\r\n\r\nhi\r\n", i))); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		for _, p := range childrenOf(cmd.Process.Pid) {
			pids[p] = true
		}
	}
	if len(pids) != 1 {
		t.Errorf("inetd ran %d processes for 3 sessions, want 1", len(pids))
	}
	// After SMTP_IDLE_EXIT the process is gone and inetd listens again:
	// the next session is served by a new process.
	deadline := time.Now().Add(10 * time.Second)
	for len(childrenOf(cmd.Process.Pid)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if kids := childrenOf(cmd.Process.Pid); len(kids) > 0 {
		t.Fatalf("no idle exit: %v", kids)
	}
	if err := smtp.SendMail(addr, nil, "w@example.net", []string{"r@example.org"}, []byte("Subject: wait again\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("after the idle exit: %v", err)
	}
	if n := len(spooled(t, sd)); n != 4 {
		t.Errorf("%d spooled, want 4", n)
	}
}

// TestAcceptYesOnFD3: systemd Accept=yes without StandardInput=socket
// passes the connected socket as fd 3 with LISTEN_FDS=1: smtp-stdio
// serves that connection (not accept on it), with its peer's address.
func TestAcceptYesOnFD3(t *testing.T) {
	ssa := testutil.Need(t, "systemd-socket-activate")
	sd := newSpool(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--listen=" + addr, "--accept"}
	for _, kv := range baseEnv(sd) {
		args = append(args, "-E", kv)
	}
	cmd := exec.Command(ssa, append(args, binary(t))...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	startDaemon(t, addr, cmd)
	conn := dialFrom(t, "127.0.0.1", addr)
	tr, errs := sendOne(t, conn, "f@example.net", []string{"r@example.org"}, "Subject: fd3\r\n\r\nhi\r\n")
	if errs[0] != nil {
		t.Fatalf("%v\n%s", errs, tr)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 || ms[0].Client != conn.LocalAddr().String() {
		t.Errorf("spooled %d, client %q", len(ms), func() string {
			if len(ms) > 0 {
				return ms[0].Client
			}
			return ""
		}())
	}
}

// TestSystemdServer: the Accept=no pair as shipped: the socket hands
// over a listening socket (Accept=no), the service runs with the
// Environment= lines of the unit under systemd-socket-activate without
// --accept and serves two clients in one process; its sandboxing is
// smtp-stdio@.service's but for RuntimeMaxSec=.
func TestSystemdServer(t *testing.T) {
	ssa := testutil.Need(t, "systemd-socket-activate")
	socket := readExample(t, "systemd/smtp-stdio-server.socket")
	if !strings.Contains(socket, "\nAccept=no\n") || !strings.Contains(socket, "\nListenStream=25\n") {
		t.Errorf("smtp-stdio-server.socket is not Accept=no on port 25")
	}
	unit := readExample(t, "systemd/smtp-stdio-server.service")
	base := readExample(t, "systemd/smtp-stdio@.service")
	sandbox := base[strings.Index(base, "# Sandboxing:"):strings.Index(base, "# smtp-stdio enforces the RFC 5321 timeouts")]
	if !strings.HasSuffix(unit, strings.TrimRight(sandbox, "\n")+"\n") || strings.Contains(unit, "\nRuntimeMaxSec=") {
		t.Errorf("smtp-stdio-server.service: the sandboxing differs from smtp-stdio@.service's")
	}
	sd := newSpool(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--listen=" + addr, "--fdname=smtp"}
	for _, kv := range unitEnvironment(unit) {
		args = append(args, "-E", strings.ReplaceAll(kv, "/var/spool/smtp-stdio", sd))
	}
	args = append(args, "-E", "SMTP_LOG=stderr")
	cmd := exec.Command(ssa, append(args, binary(t))...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	startDaemon(t, addr, cmd)
	for i := range 2 {
		if err := smtp.SendMail(addr, nil, "u@example.net", []string{"r@example.org"}, []byte(fmt.Sprintf("Subject: unit %d\r\n\r\nhi\r\n", i))); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if n := len(spooled(t, sd)); n != 2 {
		t.Errorf("%d spooled, want 2", n)
	}
	if kids := childrenOf(cmd.Process.Pid); len(kids) != 0 {
		t.Errorf("child processes %v", kids)
	}
}

// TestServerNamedSockets: one process serves three sockets named as
// systemd's FileDescriptorName= names them: "smtp" with the settings
// as they are, "submission" with STARTTLS and AUTH required, and
// "submissions" with implicit TLS and AUTH required. Without a key pair
// the submission sockets are not served (the log says why) and smtp
// still is.
func TestServerNamedSockets(t *testing.T) {
	ssa := testutil.Need(t, "systemd-socket-activate")
	pki, pw := newPKI(t), passwordFile(t)
	start := func(sd string, env ...string) []string {
		var addrs []string
		args := []string{"--fdname=smtp:submission:submissions"}
		for range 3 {
			a := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			addrs = append(addrs, a)
			args = append(args, "--listen="+a)
		}
		for _, kv := range baseEnv(sd, env...) {
			args = append(args, "-E", kv)
		}
		cmd := exec.Command(ssa, append(args, binary(t))...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		startDaemon(t, addrs[0], cmd)
		return addrs
	}
	sd := newSpool(t)
	addrs := start(sd, pki.env("SMTP_AUTH_PASSWORD_FILE="+pw, "SMTP_AUTH_FAILURE_DELAY=0s", stranger)...)

	// smtp: as configured; a local recipient needs no AUTH.
	s := dialRaw(t, "127.0.0.1", addrs[0])
	s.expect("", "220 ")
	s.expect("EHLO c.example", "250 STARTTLS")
	s.expect("MAIL FROM:<a@example.net>", "250 ")
	s.expect("RCPT TO:<r@example.org>", "250 ")
	s.expect("QUIT", "221 ")

	// submission: TLS first, then AUTH, then anything may be relayed.
	s = dialRaw(t, "127.0.0.1", addrs[1])
	s.expect("", "220 ")
	s.expect("EHLO c.example", "250 STARTTLS")
	s.expect("MAIL FROM:<a@example.net>", "530 5.7.0 Must issue a STARTTLS command first")
	s.starttls(pki.client())
	s.expect("EHLO c.example", "250 AUTH PLAIN LOGIN")
	s.expect("MAIL FROM:<a@example.net>", "530 5.7.0 Authentication required")
	s.expect("AUTH PLAIN "+b64("\x00"+authUser+"\x00"+authPass), "235 ")
	s.expect("MAIL FROM:<a@example.net>", "250 ")
	s.expect("RCPT TO:<far@elsewhere.example>", "250 ")
	s.expect("QUIT", "221 ")

	// submissions: TLS from the first byte.
	c := dialFrom(t, "127.0.0.1", addrs[2])
	tc := tls.Client(c, pki.client())
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("submissions: %v", err)
	}
	s = &rawSession{t: t, raw: c, conn: tc, r: bufio.NewReader(tc)}
	s.expect("", "220 ")
	s.expect("EHLO c.example", "250 AUTH PLAIN LOGIN")
	s.expect("MAIL FROM:<a@example.net>", "530 5.7.0 Authentication required")
	s.expect("QUIT", "221 ")

	// No key pair: only smtp is served.
	addrs = start(newSpool(t), stranger)
	if c, err := net.DialTimeout("tcp", addrs[1], time.Second); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if l, _ := bufio.NewReader(c).ReadString('\n'); strings.HasPrefix(l, "220") {
			t.Errorf("submission without a key pair greeted: %q", l)
		}
		c.Close()
	}
	s = dialRaw(t, "127.0.0.1", addrs[0])
	s.expect("", "220 ")
	s.expect("QUIT", "221 ")
}

// TestServerVelocityInMemory: in one-process mode the velocity limits
// count in memory, with the meaning they have in the shared file: a
// client over SMTP_RATE_MAX_PER_CLIENT gets 421 4.7.0, another is
// served, and no state file is written.
func TestServerVelocityInMemory(t *testing.T) {
	sd := newSpool(t)
	addr, _ := startServer(t, sd, "SMTP_RATE_MAX_PER_CLIENT=2", stranger)
	greet := func(src string) string {
		c := dialFrom(t, src, addr)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return l
	}
	for i, want := range []string{"220 ", "220 ", "421 4.7.0 "} {
		if l := greet("127.0.0.5"); !strings.HasPrefix(l, want) {
			t.Errorf("session %d: %q, want %q", i+1, l, want)
		}
	}
	if l := greet("127.0.0.6"); !strings.HasPrefix(l, "220 ") {
		t.Errorf("another client: %q", l)
	}
	if _, err := os.Stat(filepath.Join(sd, "velocity")); err == nil {
		t.Errorf("a velocity file was written in one-process mode")
	}
}
