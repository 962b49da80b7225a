package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// bdatClient is an SMTP client of the test's own over TCP, for what no
// installed client does: BDAT (swaks and smtplib have none, Postfix's
// SMTP client never sends it).
type bdatClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialBDAT(t *testing.T, addr string) *bdatClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &bdatClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("", "220 ")
	return c
}

// send writes s in one write, and waits a little so that the next write
// goes in a TCP segment of its own.
func (c *bdatClient) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
	time.Sleep(5 * time.Millisecond)
}

// reply reads one reply, its lines joined by "\n".
func (c *bdatClient) reply() string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect sends cmd (with CRLF, unless empty) and checks the reply.
func (c *bdatClient) expect(cmd, prefix string) string {
	c.t.Helper()
	if cmd != "" {
		c.send(cmd + "\r\n")
	}
	r := c.reply()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%q: got %q, want %q...", cmd, r, prefix)
	}
	return r
}

// chunkedMessage is sent in BDAT chunks split inside a CRLF, inside the
// CRLF.CRLF that would end DATA, and before a bare "." line, then an
// empty BDAT 0 LAST: none of it is special to BDAT.
var (
	chunkedMessage = "From: a@example.net\r\nSubject: chunks\r\n\r\nline\r\n.\r\n..two dots\r\n.\r\nlast\r\n"
	chunkCuts      = []string{"From: a@example.net\r", "\nSubject: chunks\r\n\r\nline\r\n.", "\r", "\n..two dots\r\n.\r\nlast\r\n"}
)

// TestBDATRawClient: a client of our own sends BDAT over TCP through
// tcpserver, each chunk in a segment of its own, then the same message
// pipelined in one write, then again with DATA; the three spool files
// hold the same bytes, and the DSN parameters of the first reach the
// spool (a version 2 file).
func TestBDATRawClient(t *testing.T) {
	sd := newSpool(t)
	c := dialBDAT(t, startTCPServer(t, sd))
	if r := c.expect("EHLO raw.example", "250-"); !strings.Contains(r, "\n250-DSN\n250-CHUNKING\n") {
		t.Fatalf("EHLO reply offers no DSN and CHUNKING:\n%s", r)
	}
	c.expect("MAIL FROM:<a@example.net> RET=HDRS ENVID=raw+2B1", "250 ")
	c.expect("RCPT TO:<x@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;X@example.org", "250 ")
	c.expect("RCPT TO:<y@example.org>", "250 ")
	for _, p := range chunkCuts {
		c.send(fmt.Sprintf("BDAT %d\r\n", len(p)))
		c.send(p)
		c.expect("", fmt.Sprintf("250 2.0.0 %d octets received", len(p)))
	}
	c.expect("BDAT 0 LAST", "250 2.0.0 OK queued as ")

	var b strings.Builder
	b.WriteString("MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\n")
	for i, p := range chunkCuts {
		last := ""
		if i == len(chunkCuts)-1 {
			last = " LAST"
		}
		fmt.Fprintf(&b, "BDAT %d%s\r\n%s", len(p), last, p)
	}
	b.WriteString("NOOP\r\n")
	c.send(b.String())
	c.expect("", "250 2.1.0")
	c.expect("", "250 2.1.5")
	for range chunkCuts[1:] {
		c.expect("", "250 2.0.0 ")
	}
	c.expect("", "250 2.0.0 OK queued as ")
	c.expect("", "250 2.0.0 OK")

	c.expect("MAIL FROM:<a@example.net>", "250 ")
	c.expect("RCPT TO:<x@example.org>", "250 ")
	c.expect("DATA", "354 ")
	c.expect(strings.ReplaceAll(strings.TrimSuffix(chunkedMessage, "\r\n"), "\r\n.", "\r\n..")+"\r\n.", "250 2.0.0 OK queued as ")
	c.expect("QUIT", "221 ")

	ms := spooled(t, sd)
	if len(ms) != 3 {
		t.Fatalf("%d messages spooled, want 3", len(ms))
	}
	for i, m := range ms {
		if _, rest := content(t, m); rest != chunkedMessage {
			t.Errorf("message %d:\n got %q\nwant %q", i, rest, chunkedMessage)
		}
	}
	// Queue ids of one second sort at random: find the first message by
	// its two recipients.
	dsn := 0
	for _, m := range ms {
		if len(m.To) == 1 {
			if m.Version != spool.Version1 {
				t.Errorf("a message without DSN parameters is a version %d file", m.Version)
			}
			continue
		}
		dsn++
		if m.Version != spool.VersionDSN || m.Ret != "HDRS" || m.EnvID != "raw+1" ||
			m.RcptDSN(0) != (spool.RcptDSN{Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;X@example.org"}) || m.RcptDSN(1) != (spool.RcptDSN{}) {
			t.Errorf("first envelope: version %d %+v", m.Version, m.Envelope)
		}
	}
	if dsn != 1 {
		t.Errorf("%d messages with two recipients, want 1", dsn)
	}
	noTempFiles(t, sd)
}

// TestBDATRefusedChunkInStep: over TCP, chunks the session refuses (out
// of sequence, over the size limit) are read to their end, so the
// commands after them are read as commands and chunk bytes never are.
func TestBDATRefusedChunkInStep(t *testing.T) {
	sd := newSpool(t)
	c := dialBDAT(t, startTCPServer(t, sd, "SMTP_MAX_MESSAGE_SIZE=1000"))
	c.expect("EHLO raw.example", "250-")
	evil := "MAIL FROM:<evil@example.net>\r\nRCPT TO:<v@example.org>\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n", len(evil)))
	c.send(evil)
	c.expect("", "503 5.5.1 Need MAIL before BDAT")
	c.expect("MAIL FROM:<a@example.net>", "250 ")
	c.expect("RCPT TO:<x@example.org>", "250 ")
	big := strings.Repeat("x", 1198) + "\r\n"
	c.send("BDAT 1200\r\n" + big[:600])
	c.send(big[600:])
	c.expect("", "552 5.3.4")
	c.send("BDAT 6 LAST\r\nQUIT\r\n")
	c.expect("", "503 5.5.1")
	c.expect("NOOP", "250 ")
	c.expect("BDAT 1x", "501 5.5.4")
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Errorf("the session went on after a BDAT size it could not read")
	}
	if ents, _ := os.ReadDir(filepath.Join(sd, spool.QueueDir)); len(ents) != 0 {
		t.Errorf("%d messages spooled, want none", len(ents))
	}
	noTempFiles(t, sd)
}

const pyDSN = `
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
msg = b"From: py@example.net\r\nSubject: dsn\r\n\r\nbody\r\n"
with smtplib.SMTP(host, port, local_hostname="py.example") as s:
    s.ehlo("py.example")
    assert s.has_extn("dsn") and s.has_extn("chunking"), s.esmtp_features
    refused = s.sendmail("py@example.net", ["r1@example.org", "r2@example.org"], msg,
        mail_options=["RET=FULL", "ENVID=py+2Bid+20x"],
        rcpt_options=["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;R1+2Bx@example.org"])
    assert refused == {}, refused
    s.mail("py@example.net", ["RET=HDRS"])
    print("RCPT", s.rcpt("r3@example.org", ["NOTIFY=NEVER,SUCCESS"])[0])
    print("RCPT", s.rcpt("r3@example.org", ["NOTIFY=NEVER", "NOTIFY=NEVER"])[0])
    print("RCPT", s.rcpt("r3@example.org", ["ORCPT=r3@example.org"])[0])
    print("RCPT", s.rcpt("r3@example.org", ["XYZ=1"])[0])
    s.rset()
    print("MAIL", s.mail("py@example.net", ["RET=SOME"])[0])
    print("MAIL", s.mail("py@example.net", ["ENVID=a+0Db"])[0])
print("OK")
`

// TestDSNSmtplib: Python's smtplib sends DSN parameters with
// mail_options and rcpt_options (each recipient gets the same); they
// reach the spool decoded from xtext, and malformed, repeated or
// unknown ones are refused.
func TestDSNSmtplib(t *testing.T) {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import smtplib").CombinedOutput(); err != nil {
		t.Fatalf("python3: %v %s", err, out)
	}
	sd := newSpool(t)
	host, port, _ := strings.Cut(startTCPServer(t, sd), ":")
	out, err := exec.Command(py, "-c", pyDSN, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	if want := "RCPT 501\nRCPT 501\nRCPT 501\nRCPT 555\nMAIL 501\nMAIL 501\nOK\n"; string(out) != want {
		t.Errorf("smtplib said:\n%s\nwant\n%s", out, want)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages spooled, want 1", len(ms))
	}
	m := ms[0]
	want := spool.RcptDSN{Notify: "SUCCESS,DELAY", ORcpt: "rfc822;R1+x@example.org"}
	if m.Version != spool.VersionDSN || m.Ret != "FULL" || m.EnvID != "py+id x" || m.RcptDSN(0) != want || m.RcptDSN(1) != want {
		t.Errorf("envelope: version %d %+v", m.Version, m.Envelope)
	}
}

// startPostfixRelay starts a private Postfix (as startPostfix, with its
// master.cf) that relays everything to addr in clear text and without
// SASL: smtp-stdio takes loopback as a relay client.
func startPostfixRelay(t *testing.T, addr string) *privatePostfix {
	t.Helper()
	return startPostfixWith(t, addr, func(string) []string { return []string{"smtp_tls_security_level = none"} })
}

// TestDSNPostfixClient: a private Postfix relays through smtp-stdio and
// passes on the DSN parameters its sendmail was given (-N, -R, -V): the
// spool holds them, with the ORCPT Postfix adds. Postfix's SMTP client
// (3.7) has no BDAT and sends DATA although CHUNKING is offered; the
// message arrives whole all the same.
func TestDSNPostfixClient(t *testing.T) {
	sd := newSpool(t)
	addr := startTCPServer(t, sd)
	pf := startPostfixRelay(t, addr)
	msg := "From: pf@example.net\nTo: far@elsewhere.example\nSubject: DSN via Postfix\n\n.a dot line\nrelayed\n"
	cmd := exec.Command("/usr/sbin/sendmail", "-C", pf.conf, "-f", "pf@example.net", "-N", "success,delay",
		"-R", "hdrs", "-V", "env-42", "-i", "--", "far@elsewhere.example")
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postfix sendmail: %v\n%s", err, out)
	}
	exec.Command("/usr/sbin/postqueue", "-c", pf.conf, "-f").Run()
	waitSpooled(t, sd, 1)
	m := spooled(t, sd)[0]
	if m.Version != spool.VersionDSN || m.Ret != "HDRS" || m.EnvID != "env-42" || m.From != "pf@example.net" ||
		strings.Join(m.To, ",") != "far@elsewhere.example" ||
		m.RcptDSN(0) != (spool.RcptDSN{Notify: "SUCCESS,DELAY", ORcpt: "rfc822;far@elsewhere.example"}) {
		t.Errorf("envelope: version %d %+v", m.Version, m.Envelope)
	}
	if _, rest := content(t, m); !strings.Contains(rest, "Subject: DSN via Postfix\r\n") || !strings.Contains(rest, "\r\n.a dot line\r\nrelayed\r\n") {
		t.Errorf("message:\n%s", rest)
	}
}
