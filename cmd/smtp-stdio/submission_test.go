package main

// The submission launchers (issue 10): scripts/systemd/smtp-submission*
// and scripts/tcpserver/submission*/, each run as shipped, with only the
// paths of the spool, the key pair and the password file moved into
// the test's directory, and a real client (swaks) that must
// authenticate over TLS before it may send.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// submissionServices are the two services: port 587 with STARTTLS and
// port 465 with implicit TLS, and swaks's flag for each.
var submissionServices = []struct{ name, swaksTLS string }{
	{"submission", "--tls"}, {"submissions", "--tlsc"},
}

// moved replaces the production paths of the examples by the test's.
func moved(v string, pki *testPKI, spoolDir, pw string) string {
	return strings.NewReplacer(
		"/var/spool/smtp-stdio", spoolDir,
		"/etc/smtp-stdio/tls/fullchain.pem", pki.cert,
		"/etc/smtp-stdio/tls/privkey.pem", pki.key,
		"/etc/smtp-stdio/passwd", pw,
	).Replace(v)
}

// unitEnvironment returns the Environment= assignments of a unit.
func unitEnvironment(unit string) []string {
	var env []string
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Environment="); ok {
			env = append(env, v)
		}
	}
	return env
}

// checkSubmission sends through the service at addr with swaks: without
// AUTH it is refused (530 5.7.0 after TLS, nothing spooled); with it
// the message to another domain is spooled, with the user.
func checkSubmission(t *testing.T, addr, tlsFlag, spoolDir string) {
	t.Helper()
	swaks := testutil.Need(t, "swaks")
	host, port, _ := net.SplitHostPort(addr)
	args := []string{tlsFlag, "--server", host, "--port", port, "--from", authUser, "--to", "out@elsewhere.example",
		"--helo", "swaks.example", "--timeout", "20"}
	out, err := exec.Command(swaks, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "530 5.7.0 Authentication required") {
		t.Errorf("without AUTH: %v\n%s", err, out)
	}
	args = append(args, "--auth", "PLAIN", "--auth-user", authUser, "--auth-password", authPass)
	if out, err := exec.Command(swaks, args...).CombinedOutput(); err != nil {
		t.Fatalf("swaks --auth: %v\n%s", err, out)
	}
	checkAuthMessage(t, spoolDir, "out@elsewhere.example")
}

// TestSystemdSubmission runs a session of each submission service unit
// under systemd-socket-activate with the unit's own Environment= lines,
// and checks that its sandboxing is smtp-stdio@.service's, line for
// line, as its header promises.
func TestSystemdSubmission(t *testing.T) {
	ssa := testutil.Need(t, "systemd-socket-activate")
	base := readExample(t, "systemd/smtp-stdio@.service")
	sandbox := base[strings.Index(base, "# Sandboxing:"):]
	pw := passwordFile(t)
	for _, svc := range submissionServices {
		t.Run(svc.name, func(t *testing.T) {
			unit := readExample(t, "systemd/smtp-"+svc.name+"@.service")
			if !strings.HasSuffix(unit, sandbox) {
				t.Errorf("smtp-%s@.service: the sandboxing differs from smtp-stdio@.service's", svc.name)
			}
			socket := readExample(t, "systemd/smtp-"+svc.name+".socket")
			if want := map[string]string{"submission": "587", "submissions": "465"}[svc.name]; !strings.Contains(socket, "\nListenStream="+want+"\n") {
				t.Errorf("smtp-%s.socket does not listen on %s", svc.name, want)
			}
			pki, sd := newPKI(t), newSpool(t)
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			args := []string{"--listen=" + addr, "--inetd", "--accept"}
			for _, kv := range unitEnvironment(unit) {
				args = append(args, "-E", moved(kv, pki, sd, pw))
			}
			// The journal is the test's standard error.
			args = append(args, "-E", "SMTP_LOG=stderr", "-E", "SMTP_AUTH_FAILURE_DELAY=0s")
			cmd := exec.Command(ssa, append(args, binary(t))...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			startDaemon(t, addr, cmd)
			checkSubmission(t, addr, svc.swaksTLS, sd)
		})
	}
}

// TestTCPServerSubmission runs scripts/tcpserver/submission/run and
// submissions/run unchanged, from a copy of scripts/tcpserver laid out
// as shipped (each beside ../run), with their env directories' paths
// moved and the knobs of ../run set for a loopback port.
func TestTCPServerSubmission(t *testing.T) {
	testutil.Need(t, "tcpserver")
	tcprules := testutil.Need(t, "tcprules")
	testutil.Need(t, "envdir")
	pw := passwordFile(t)
	for _, svc := range submissionServices {
		t.Run(svc.name, func(t *testing.T) {
			pki, sd := newPKI(t), newSpool(t)
			reapSessions(t, sd)
			dir := t.TempDir()
			if out, err := exec.Command("cp", "-a", "../../scripts/tcpserver/.", dir).CombinedOutput(); err != nil {
				t.Fatalf("copy: %v %s", err, out)
			}
			cdb := filepath.Join(dir, "tcp.smtp.cdb")
			build := exec.Command(tcprules, cdb, cdb+".tmp")
			build.Stdin = strings.NewReader(readExample(t, "tcpserver/tcp.smtp"))
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("tcprules: %v\n%s", err, out)
			}
			envDir := filepath.Join(dir, svc.name, "env")
			ents, err := os.ReadDir(envDir)
			if err != nil || len(ents) < 5 {
				t.Fatalf("%s: %v, %d settings", envDir, err, len(ents))
			}
			for _, e := range ents {
				p := filepath.Join(envDir, e.Name())
				b, _ := os.ReadFile(p)
				os.WriteFile(p, []byte(moved(string(b), pki, sd, pw)), 0o644)
			}
			os.WriteFile(filepath.Join(envDir, "SMTP_AUTH_FAILURE_DELAY"), []byte("0s\n"), 0o644)
			port := freePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			run := exec.Command("./run")
			run.Dir = filepath.Join(dir, svc.name)
			run.Env = []string{
				"PATH=" + os.Getenv("PATH"),
				"TCPSERVER_PROGRAM=" + binary(t),
				"TCPSERVER_IP=127.0.0.1",
				"TCPSERVER_PORT=" + strconv.Itoa(port),
				"TCPSERVER_RULES=" + cdb,
				"TCPSERVER_USER=",
			}
			startRunScript(t, addr, run)
			checkSubmission(t, addr, svc.swaksTLS, sd)
		})
	}
}
