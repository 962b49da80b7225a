package main

import (
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// startDaemon starts a launcher (tcpserver, systemd-socket-activate) that
// serves the binary on addr, in a process group of its own that it ends,
// by the launcher's PID, when the test ends.
func startDaemon(t *testing.T, addr string, cmd *exec.Cmd) {
	t.Helper()
	var errBuf strings.Builder
	cmd.Stderr = &errBuf
	// Registered first, so that it runs once the launcher is gone.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("launcher stderr:\n%s", errBuf.String())
		}
	})
	testutil.StartGroup(t, cmd)
	waitListening(t, addr)
}

// startTCPServer serves the binary with ucspi-tcp's tcpserver on a
// loopback port and returns the address.
func startTCPServer(t *testing.T, spoolDir string, extraEnv ...string) string {
	t.Helper()
	tcpserver := testutil.Need(t, "tcpserver")
	port := freePort(t)
	// -R: no ident lookup, -H: no reverse DNS, -l0: local name "0".
	cmd := exec.Command(tcpserver, "-RHl0", "-c", "20", "127.0.0.1", strconv.Itoa(port), binary(t))
	cmd.Env = baseEnv(spoolDir, extraEnv...)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startDaemon(t, addr, cmd)
	return addr
}

const pySend = `
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
msg = b"From: py@example.net\r\nTo: r1@example.org\r\nSubject: from smtplib\r\n\r\nline one\r\n.starts with a dot\r\n8bit: \xc3\xa9\r\n"
with smtplib.SMTP(host, port, local_hostname="py.example") as s:
    code, _ = s.ehlo("py.example")
    assert code == 250, code
    assert s.has_extn("pipelining") and s.has_extn("8bitmime") and s.has_extn("smtputf8")
    refused = s.sendmail("py@example.net", ["r1@example.org", "r2@example.org"], msg, mail_options=["BODY=8BITMIME"])
    assert refused == {}, refused
    try:
        s.sendmail("py@example.net", ["x@relay.example"], b"Subject: relay\r\n\r\nno\r\n")
        print("RELAYED")
    except smtplib.SMTPRecipientsRefused as e:
        print("REFUSED", e.recipients["x@relay.example"][0])
print("OK")
`

// TestTCPServerPythonSmtplib is the done-when: a session from
// Python's smtplib through tcpserver ends in a durable spool file whose
// envelope and bytes match what was sent.
func TestTCPServerPythonSmtplib(t *testing.T) {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import smtplib").CombinedOutput(); err != nil {
		t.Fatalf("python3: %v %s", err, out)
	}
	sd := newSpool(t)
	// Loopback is a relay client by default; narrow it so the relay
	// refusal is visible over real TCP.
	addr := startTCPServer(t, sd, "SMTP_RELAY_CLIENTS=192.0.2.0/24")
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command(py, "-c", pySend, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "REFUSED 550") || !strings.Contains(string(out), "OK") {
		t.Errorf("smtplib said:\n%s", out)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages spooled, want 1", len(ms))
	}
	m := ms[0]
	if m.From != "py@example.net" || strings.Join(m.To, ",") != "r1@example.org,r2@example.org" ||
		m.Body != "8BITMIME" || m.Helo != "py.example" || !strings.HasPrefix(m.Client, "127.0.0.1:") {
		t.Errorf("envelope %+v", m.Envelope)
	}
	rcv, rest := content(t, m)
	want := "From: py@example.net\r\nTo: r1@example.org\r\nSubject: from smtplib\r\n\r\nline one\r\n.starts with a dot\r\n8bit: \xc3\xa9\r\n"
	if rest != want {
		t.Errorf("bytes differ:\n got %q\nwant %q", rest, want)
	}
	if !strings.Contains(rcv, "[127.0.0.1]") {
		t.Errorf("Received: lacks client address: %q", rcv)
	}
}

// TestTCPServerSwaks: the other half of the done-when, swaks over TCP.
func TestTCPServerSwaks(t *testing.T) {
	swaks := testutil.Need(t, "swaks")
	sd := newSpool(t)
	addr := startTCPServer(t, sd)
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command(swaks, "--server", host, "--port", port, "--from", "sw@example.net",
		"--to", "a@example.org,b@elsewhere.example", "--helo", "sw.example", "--pipeline",
		"--header", "Subject: swaks tcp", "--body", "over tcpserver").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages, want 1:\n%s", len(ms), out)
	}
	// Loopback may relay by default.
	if strings.Join(ms[0].To, ",") != "a@example.org,b@elsewhere.example" || ms[0].From != "sw@example.net" {
		t.Errorf("envelope %+v", ms[0].Envelope)
	}
	if _, rest := content(t, ms[0]); !strings.Contains(rest, "Subject: swaks tcp\r\n") || !strings.Contains(rest, "\r\n\r\nover tcpserver\r\n") {
		t.Errorf("body %q", rest)
	}
}

// TestTCPServerGoNetSMTP drives the binary with Go's net/smtp client.
func TestTCPServerGoNetSMTP(t *testing.T) {
	sd := newSpool(t)
	addr := startTCPServer(t, sd)
	body := "Subject: net/smtp\r\n\r\n.dot\r\nend\r\n"
	if err := smtp.SendMail(addr, nil, "go@example.net", []string{"g@example.org"}, []byte(body)); err != nil {
		t.Fatal(err)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages", len(ms))
	}
	if _, rest := content(t, ms[0]); rest != body {
		t.Errorf("body %q, want %q", rest, body)
	}
}

// TestSystemdSocketActivate serves the binary as systemd does with
// Accept=yes, through systemd-socket-activate --inetd --accept.
func TestSystemdSocketActivate(t *testing.T) {
	ssa := testutil.Need(t, "systemd-socket-activate")
	sd := newSpool(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"--listen=" + addr, "--inetd", "--accept"}
	for _, kv := range baseEnv(sd) {
		args = append(args, "-E", kv)
	}
	cmd := exec.Command(ssa, append(args, binary(t))...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	startDaemon(t, addr, cmd)
	body := "Subject: socket activated\r\n\r\nhello systemd\r\n"
	if err := smtp.SendMail(addr, nil, "sd@example.net", []string{"s@example.org"}, []byte(body)); err != nil {
		t.Fatal(err)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages", len(ms))
	}
	if _, rest := content(t, ms[0]); rest != body {
		t.Errorf("body %q", rest)
	}
	if !strings.HasPrefix(ms[0].Client, "127.0.0.1:") {
		t.Errorf("client %q, want the peer from getpeername", ms[0].Client)
	}
}
