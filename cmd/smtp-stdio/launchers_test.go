package main

// The launcher examples in scripts/, each run for real on 127.0.0.1 and
// used unchanged: the tcpserver run script and tcprules file as they are,
// the systemd units checked by systemd-analyze verify as they are, and the
// xinetd and inetd entries with only the substitutions their header
// comments list (port, user, binary, spool), on their non-comment lines.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/smtp"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

func readExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../scripts", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// substitute replaces, on the non-comment lines of an example, each
// pattern (a regular expression) by its replacement (a template, as for
// Regexp.ReplaceAllString), and fails unless each pattern matches exactly
// once:
// an example that drifts from what its header comment promises fails the
// test instead of being tested half-changed.
func substitute(t *testing.T, example string, pairs ...string) string {
	t.Helper()
	lines := strings.SplitAfter(example, "\n")
	for i := 0; i < len(pairs); i += 2 {
		re := regexp.MustCompile(pairs[i])
		n := 0
		for j, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "#") {
				continue
			}
			n += len(re.FindAllStringIndex(l, -1))
			lines[j] = re.ReplaceAllString(l, pairs[i+1])
		}
		if n != 1 {
			t.Fatalf("example: %q matches %d times, want once", pairs[i], n)
		}
	}
	return strings.Join(lines, "")
}

func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// reapSessions makes the end of the test wait until no process has
// SMTP_SPOOL_DIR=spoolDir in its environment. inetd and xinetd start each
// session in a session of its own, out of reach of startDaemon's group
// kill, and a late one (such as the probe connection of waitListening)
// could still be creating spool directories while the test removes them.
// A session still running 10s after its test is killed and reported: its
// client has long gone, so it is a bug.
func reapSessions(t *testing.T, spoolDir string) {
	want := []byte("\x00SMTP_SPOOL_DIR=" + spoolDir + "\x00")
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			pids := processes(func(dir string) bool {
				env, _ := os.ReadFile(filepath.Join(dir, "environ"))
				return bytes.Contains(append([]byte{0}, env...), want)
			})
			if len(pids) == 0 {
				return
			}
			if time.Now().After(deadline) {
				for _, pid := range pids {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				t.Errorf("sessions %v still running 10s after the test; killed", pids)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// processes returns the pids of the processes whose /proc directory
// match accepts.
func processes(match func(dir string) bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && match(filepath.Join("/proc", e.Name())) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startRunScript starts a run script of scripts/tcpserver (cmd, its
// knobs set) listening on addr, its output (tcpserver's log and the
// sessions') kept and shown if the test fails.
func startRunScript(t *testing.T, addr string, cmd *exec.Cmd) *testutil.LockedBuffer {
	t.Helper()
	// The run script sends standard error to standard output (for
	// multilog): that is where tcpserver's and smtp-stdio's logs go.
	logs := &testutil.LockedBuffer{}
	cmd.Stdout = logs
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run script output:\n%s", logs.String())
		}
	})
	startDaemon(t, addr, cmd)
	return logs
}

// dialFrom connects to addr from a given loopback address: all of
// 127.0.0.0/8 is local on Linux, so rules for 127.0.0.2 are reachable.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// recorder keeps every byte the client reads: the transcript.
type recorder struct {
	net.Conn
	got bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.got.Write(p[:n])
	return n, err
}

// sendOne runs one whole session with net/smtp over conn: one message
// from from to rcpts, QUIT, and reads on to the end of the connection. It
// returns the transcript (every byte the server sent) and the replies to
// the RCPT commands, in order.
func sendOne(t *testing.T, conn net.Conn, from string, rcpts []string, body string) (transcript string, rcptErrs []error) {
	t.Helper()
	rec := &recorder{Conn: conn}
	c, err := smtp.NewClient(rec, "127.0.0.1")
	if err != nil {
		t.Fatalf("greeting: %v\n%s", err, rec.got.String())
	}
	if err := c.Hello("client.test.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for _, r := range rcpts {
		err := c.Rcpt(r)
		rcptErrs = append(rcptErrs, err)
		if err == nil {
			accepted++
		}
	}
	if accepted > 0 {
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		if err := w.Close(); err != nil {
			t.Fatalf("end of data: %v\n%s", err, rec.got.String())
		}
	}
	// QUIT by hand, then read to the end: anything the server (or its
	// log) writes after the 221 belongs in the transcript too.
	id, err := c.Text.Cmd("QUIT")
	if err == nil {
		c.Text.StartResponse(id)
		_, _, err = c.Text.ReadResponse(221)
		c.Text.EndResponse(id)
	}
	if err != nil {
		t.Fatalf("QUIT: %v\n%s", err, rec.got.String())
	}
	io.Copy(io.Discard, rec)
	return rec.got.String(), rcptErrs
}

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// notReplies returns the lines of a transcript that are not SMTP replies.
func notReplies(transcript string) []string {
	var bad []string
	for _, l := range strings.Split(strings.TrimSuffix(transcript, "\r\n"), "\r\n") {
		if !replyLine.MatchString(l) {
			bad = append(bad, l)
		}
	}
	return bad
}

// TestTCPServerRun runs scripts/tcpserver/run unchanged (its knobs set
// through the environment, the SMTP_* settings through envdir) with a
// rules database built by tcprules from scripts/tcpserver/tcp.smtp, plus
// two rules for other loopback addresses. It shows that RELAYCLIENT from
// the rules lets 127.0.0.1 relay although SMTP_RELAY_CLIENTS excludes it,
// that a client without it may not, that a rule can set a setting (the
// greeting) for one client, and that a denied client gets no session at
// all: the connection closes before any greeting.
func TestTCPServerRun(t *testing.T) {
	testutil.Need(t, "tcpserver")
	tcprules := testutil.Need(t, "tcprules")
	testutil.Need(t, "envdir")
	sd := newSpool(t)
	reapSessions(t, sd)
	dir := t.TempDir()

	rules := readExample(t, "tcpserver/tcp.smtp") +
		"127.0.0.2:deny\n" +
		"127.0.0.3:allow,SMTP_GREETING=\"ready for 127.0.0.3 only\"\n"
	cdb := filepath.Join(dir, "tcp.smtp.cdb")
	build := exec.Command(tcprules, cdb, cdb+".tmp")
	build.Stdin = strings.NewReader(rules)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("tcprules: %v\n%s", err, out)
	}

	envDir := filepath.Join(dir, "env")
	if err := os.Mkdir(envDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, kv := range baseEnv(sd, "SMTP_RELAY_CLIENTS=192.0.2.0/24") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "PATH" {
			continue
		}
		if err := os.WriteFile(filepath.Join(envDir, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	run := exec.Command("../../scripts/tcpserver/run")
	run.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"TCPSERVER_PROGRAM=" + binary(t),
		"TCPSERVER_IP=127.0.0.1",
		"TCPSERVER_PORT=" + strconv.Itoa(port),
		"TCPSERVER_RULES=" + cdb,
		"TCPSERVER_MAX=10",
		"TCPSERVER_USER=", // run the sessions as ourselves
		"TCPSERVER_ENVDIR=" + envDir,
	}
	logs := startRunScript(t, addr, run)

	// 127.0.0.1: RELAYCLIENT from the example's 127. rule.
	body := "Subject: via tcpserver\r\n\r\nrelayed\r\n"
	tr, errs := sendOne(t, dialFrom(t, "127.0.0.1", addr), "a@example.net",
		[]string{"far@relay.example", "near@example.org"}, body)
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("127.0.0.1 may relay: %v\n%s", errs, tr)
	}

	// 127.0.0.3: allowed, no RELAYCLIENT, its own greeting.
	tr, errs = sendOne(t, dialFrom(t, "127.0.0.3", addr), "b@example.net",
		[]string{"far@relay.example", "near@example.org"}, body)
	if !strings.Contains(tr, "550 5.7.1 ") || errs[0] == nil || errs[1] != nil {
		t.Errorf("127.0.0.3 must not relay but may send locally: %v\n%s", errs, tr)
	}
	if greeting, _, _ := strings.Cut(tr, "\r\n"); !strings.HasSuffix(greeting, " ready for 127.0.0.3 only") {
		t.Errorf("per-client greeting not used:\n%s", tr)
	}

	// 127.0.0.2: denied, no session at all.
	c := dialFrom(t, "127.0.0.2", addr)
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 0 {
		t.Errorf("denied client got %q, %v; want the connection closed at once", got, err)
	}

	ms := spooled(t, sd)
	if len(ms) != 2 {
		t.Fatalf("%d messages spooled, want 2", len(ms))
	}
	byClient := map[string][]string{}
	for _, m := range ms {
		ip, _, _ := strings.Cut(m.Client, ":")
		byClient[ip] = m.To
		if _, rest := content(t, m); rest != body {
			t.Errorf("body %q", rest)
		}
	}
	if strings.Join(byClient["127.0.0.1"], ",") != "far@relay.example,near@example.org" ||
		strings.Join(byClient["127.0.0.3"], ",") != "near@example.org" {
		t.Errorf("recipients by client: %v", byClient)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "tcpserver: deny ") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "tcpserver: deny ") || !strings.Contains(logs.String(), ":127.0.0.2:") {
		t.Errorf("tcpserver did not log the denied connection")
	}
}

// TestSystemdVerify checks the example units with systemd-analyze verify,
// which needs no running systemd. It needs the program of each ExecStart=
// and the units that default dependencies name (sysinit.target, ...), so
// it runs in a private --root: a copy of the host's unit directory, the
// example units unchanged in etc/systemd/system, and a program at each
// ExecStart= path (the real binary for smtp-stdio). Nothing is installed
// on the host. systemd-analyze exits 0 after mere warnings (an unknown
// key, a bad value), so any line of output about our units fails too.
func TestSystemdVerify(t *testing.T) {
	sa := testutil.Need(t, "systemd-analyze")
	const hostUnits = "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(hostUnits, "sysinit.target")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s/sysinit.target: %v (the systemd package provides it)", hostUnits, err)
		}
		t.Skipf("no systemd units in %s to verify against", hostUnits)
	}
	for _, c := range []struct {
		name  string
		units []string // under scripts/
	}{
		{"smtp-stdio", []string{"systemd/smtp-stdio.socket", "systemd/smtp-stdio@.service"}},
		{"smtp-submission", []string{"systemd/smtp-submission.socket", "systemd/smtp-submission@.service"}},
		{"smtp-submissions", []string{"systemd/smtp-submissions.socket", "systemd/smtp-submissions@.service"}},
		{"smtp-stdio-server", []string{"systemd/smtp-stdio-server.socket", "systemd/smtp-stdio-server.service"}},
		// Written with smtp-send (docs/send.md); verified here with
		// the other units.
		{"smtp-send", []string{"smtp-send.service", "smtp-send.timer"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			lib := filepath.Join(root, "usr/lib/systemd")
			etc := filepath.Join(root, "etc/systemd/system")
			for _, d := range []string{lib, etc} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := exec.Command("cp", "-a", hostUnits, lib).CombinedOutput(); err != nil {
				t.Fatalf("copy units: %v %s", err, out)
			}
			var names []string
			for _, u := range c.units {
				text, err := os.ReadFile(filepath.Join("../../scripts", u))
				if err != nil {
					t.Fatal(err)
				}
				name := filepath.Base(u)
				names = append(names, name)
				if err := os.WriteFile(filepath.Join(etc, name), text, 0o644); err != nil {
					t.Fatal(err)
				}
				for _, prog := range execPrograms(string(text)) {
					installProgram(t, filepath.Join(root, prog))
				}
			}
			out, err := exec.Command(sa, append([]string{"verify", "--root=" + root}, names...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
			}
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				// Lines about the host's units are not ours to fix.
				if strings.Contains(strings.ReplaceAll(l, root, ""), c.name) {
					t.Errorf("systemd-analyze verify: %s", l)
				}
			}
		})
	}
}

// execPrograms returns the program paths of a unit's Exec*= lines.
func execPrograms(unit string) []string {
	var progs []string
	for _, l := range strings.Split(unit, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok || !strings.HasPrefix(k, "Exec") {
			continue
		}
		// Prefixes: - @ : + ! (systemd.service(5), "Command lines").
		v = strings.TrimLeft(strings.TrimSpace(v), "-@:+!")
		if f := strings.Fields(v); len(f) > 0 && strings.HasPrefix(f[0], "/") {
			progs = append(progs, f[0])
		}
	}
	return progs
}

// installProgram puts the binary under test at path when path names
// smtp-stdio, else a do-nothing script.
func installProgram(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) == "smtp-stdio" {
		// A copy: systemd-analyze resolves a symbolic link inside
		// the root, where the binary's real path does not exist.
		b, err := os.ReadFile(binary(t))
		if err == nil {
			err = os.WriteFile(path, b, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
}

// TestXinetd runs xinetd in the foreground with its own configuration: a
// defaults section binding 127.0.0.1, then scripts/xinetd/smtp-stdio with
// the substitutions its header lists. Python's smtplib sends a message;
// the spool file names the client as xinetd's REMOTE_HOST gives it
// (address only: getpeername would have given the port too).
func TestXinetd(t *testing.T) {
	xinetd := testutil.Need(t, "xinetd", "/usr/sbin/xinetd")
	py := "/usr/bin/python3"
	sd := newSpool(t)
	reapSessions(t, sd)
	dir := t.TempDir()
	port := freePort(t)
	conf := "defaults\n{\n\tbind = 127.0.0.1\n\tlog_type = FILE " + filepath.Join(dir, "xinetd.log") + "\n}\n\n" +
		substitute(t, readExample(t, "xinetd/smtp-stdio"),
			`^(\s*port\s*=\s*)25(\s*)$`, "${1}"+strconv.Itoa(port)+"${2}",
			`^(\s*user\s*=\s*)smtp-stdio(\s*)$`, "${1}"+currentUser(t)+"${2}",
			`/usr/local/bin/smtp-stdio`, binary(t),
			`/var/spool/smtp-stdio`, sd)
	confPath := filepath.Join(dir, "xinetd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(xinetd, "-dontfork", "-f", confPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	startDaemon(t, addr, cmd)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", `
import smtplib, sys
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="py.example", timeout=30) as s:
    s.set_debuglevel(1)
    s.sendmail("x@example.net", ["r@example.org"], b"Subject: via xinetd\r\n\r\nhello xinetd\r\n")
print("OK")
`, "127.0.0.1", strconv.Itoa(port)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages spooled, want 1", len(ms))
	}
	m := ms[0]
	// xinetd's REMOTE_HOST carries no port; the socket is the truth
	// (issue 8 item 7), so the client is getpeername's address and port.
	if ap, err := netip.ParseAddrPort(m.Client); err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") || ap.Port() == 0 {
		t.Errorf("client %q, want 127.0.0.1 and a port from getpeername", m.Client)
	}
	if rcv, rest := content(t, m); rest != "Subject: via xinetd\r\n\r\nhello xinetd\r\n" || !strings.Contains(rcv, "[127.0.0.1]") {
		t.Errorf("message %q %q", rcv, rest)
	}
}

// TestInetd runs openbsd-inetd in the foreground (-i) with its own
// configuration: a "127.0.0.1:" line, then scripts/inetd/inetd.conf with
// the substitutions its header lists. A net/smtp client sends a message
// and reads to the end of the connection. Standard error is the socket
// under inetd, so the transcript must hold SMTP replies only: smtp-stdio
// logs to syslog there (or nowhere, without a syslog daemon). A control
// run with SMTP_LOG=stderr added shows that a log line on the socket would
// be seen.
func TestInetd(t *testing.T) {
	inetd := testutil.Need(t, "inetd", "/usr/sbin/inetd", "/opt/openbsd-inetd/usr/sbin/inetd")
	for _, c := range []struct {
		name     string
		extraEnv string
		wantLeak bool
	}{
		{"example", "", false},
		{"control with SMTP_LOG=stderr", "SMTP_LOG=stderr ", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			sd := newSpool(t)
			reapSessions(t, sd)
			dir := t.TempDir()
			port := freePort(t)
			conf := "127.0.0.1:\n" + substitute(t, readExample(t, "inetd/inetd.conf"),
				`^smtp(\s)`, strconv.Itoa(port)+"${1}",
				`(\s)smtp-stdio(\s)`, "${1}"+currentUser(t)+"${2}",
				`/usr/local/bin/smtp-stdio`, binary(t),
				`(env )SMTP_SPOOL_DIR=/var/spool/smtp-stdio`, "${1}"+c.extraEnv+"SMTP_SPOOL_DIR="+sd)
			confPath := filepath.Join(dir, "inetd.conf")
			if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			cmd := exec.Command(inetd, "-i", confPath)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			startDaemon(t, addr, cmd)

			conn := dialFrom(t, "127.0.0.1", addr)
			if c.wantLeak {
				// Log lines on the socket break any real client:
				// send raw commands and read what comes back.
				io.WriteString(conn, "EHLO c.example\r\nQUIT\r\n")
				tr, _ := io.ReadAll(conn)
				if bad := notReplies(string(tr)); len(bad) == 0 {
					t.Errorf("no log line seen on the socket:\n%s", tr)
				}
				return
			}
			body := "Subject: via inetd\r\n\r\nhello inetd\r\n"
			tr, errs := sendOne(t, conn, "i@example.net", []string{"r@example.org"}, body)
			if errs[0] != nil {
				t.Fatalf("RCPT: %v\n%s", errs[0], tr)
			}
			if bad := notReplies(tr); len(bad) > 0 {
				t.Errorf("lines that are not SMTP replies: %q\ntranscript:\n%s", bad, tr)
			}
			ms := spooled(t, sd)
			if len(ms) != 1 {
				t.Fatalf("%d messages spooled, want 1", len(ms))
			}
			// No launcher variables: the address comes from getpeername.
			if ms[0].Client != conn.LocalAddr().String() {
				t.Errorf("client %q, want %s", ms[0].Client, conn.LocalAddr())
			}
			if _, rest := content(t, ms[0]); rest != body {
				t.Errorf("body %q", rest)
			}
		})
	}
}
