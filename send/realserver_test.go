package send

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// requireBinary skips the test when a Debian package's program is missing
// on a developer's machine; in CI (CI set) it must be there.
func requireBinary(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s missing (install the Debian package %s, or see scripts/install-test-deps)", path, pkg)
		}
		t.Fatalf("%s missing in CI: %v", path, err)
	}
}

// waitListening dials addr until it answers, for a server started as a
// separate process.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened: %v", addr, err)
		}
		time.Sleep(delay)
	}
}

// startAiosmtpd runs testdata/aiosmtpd_sink.py and returns its address and
// the directory where it writes what it receives.
func startAiosmtpd(t *testing.T) (addr, dir string) {
	t.Helper()
	requireBinary(t, "/usr/bin/python3", "python3")
	if err := exec.Command("/usr/bin/python3", "-c", "import aiosmtpd").Run(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("python3-aiosmtpd missing (apt-get install python3-aiosmtpd)")
		}
		t.Fatal("python3-aiosmtpd missing in CI")
	}
	dir = t.TempDir()
	cmd := exec.Command("/usr/bin/python3", "testdata/aiosmtpd_sink.py", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Start(t, cmd)
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("aiosmtpd: %v", err)
	}
	return "127.0.0.1:" + strings.TrimSpace(port), dir
}

type received struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	Opts []string `json:"mail_options"`
	Data []byte   `json:"-"`
}

func readReceived(t *testing.T, dir string) []received {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	slices.Sort(files)
	var out []received
	for _, f := range files {
		var r received
		b, _ := os.ReadFile(f)
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.Data, _ = os.ReadFile(strings.TrimSuffix(f, ".json") + ".eml"); r.Data == nil {
			r.Data = []byte{}
		}
		out = append(out, r)
	}
	return out
}

// End to end through a real smarthost (aiosmtpd): envelope and bytes
// arrive unchanged, including lines starting with a dot, a line holding
// only a dot, 8-bit bytes, UTF-8 addresses and a 20 MiB message.
func TestEndToEndAiosmtpd(t *testing.T) {
	addr, dir := startAiosmtpd(t)
	f := newFixture(t, addr)
	f.s.Config.DataTimeout = time.Minute
	dots := body("dots") + ".leading dot\r\n..two dots\r\n.\r\n. space\r\nend\r\n"
	eight := body("8bit") + "d\xc3\xa9j\xc3\xa0 vu \xff\xfe raw bytes\r\n"
	var big strings.Builder
	big.WriteString(body("big"))
	line := strings.Repeat("0123456789", 7) + "\r\n"
	for big.Len() < 20<<20 {
		big.WriteString(line)
		big.WriteString("." + line)
	}
	f.queue("s@example.org", []string{"a@x.test", "b@x.test"}, dots)
	f.clk.Add(time.Second)
	f.queue("s@example.org", []string{"c@x.test"}, eight, func(e *spool.Envelope) { e.Body = "8BITMIME" })
	f.clk.Add(time.Second)
	f.queue("s\u00e9@example.org", []string{"\u00fc@x.test"}, body("utf8"), func(e *spool.Envelope) { e.SMTPUTF8 = true })
	f.clk.Add(time.Second)
	f.queue("s@example.org", []string{"d@x.test"}, big.String())
	st := f.run(false)
	if st.Delivered != 5 {
		t.Fatalf("stats %+v", st)
	}
	got := readReceived(t, dir)
	want := []received{
		{From: "s@example.org", To: []string{"a@x.test", "b@x.test"}, Data: []byte(dots)},
		{From: "s@example.org", To: []string{"c@x.test"}, Data: []byte(eight)},
		{From: "s\u00e9@example.org", To: []string{"\u00fc@x.test"}, Data: []byte(body("utf8"))},
		{From: "s@example.org", To: []string{"d@x.test"}, Data: []byte(big.String())},
	}
	if len(got) != len(want) {
		t.Fatalf("received %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.From != w.From || !slices.Equal(g.To, w.To) {
			t.Errorf("message %d envelope %s %v, want %s %v", i, g.From, g.To, w.From, w.To)
		}
		if !bytes.Equal(g.Data, w.Data) {
			t.Errorf("message %d: %d bytes received differ from the %d sent", i, len(g.Data), len(w.Data))
		}
	}
	if !slices.Contains(got[2].Opts, "SMTPUTF8") || !slices.Contains(got[1].Opts, "BODY=8BITMIME") {
		t.Errorf("MAIL parameters %v, %v", got[1].Opts, got[2].Opts)
	}
}

// A transaction left open because every RCPT was refused is ended with
// RSET before the next MAIL on the same connection: aiosmtpd, like most
// servers, answers a nested MAIL with 503.
func TestRsetAfterOpenTransaction(t *testing.T) {
	addr, dir := startAiosmtpd(t)
	f := newFixture(t, addr)
	f.queue("s@example.org", []string{"refuse@x.test"}, body("refused"))
	f.clk.Add(time.Second)
	f.queue("s@example.org", []string{"ok@x.test"}, body("accepted"))
	f.clk.Add(time.Second)
	f.queue("s@example.org", []string{"ok2@x.test"}, body("accepted too"))
	st := f.run(false)
	if st.Delivered != 2 || st.Failed != 1 || f.dialCount(addr) != 1 {
		t.Errorf("stats %+v, %d connections", st, f.dialCount(addr))
	}
	if got := readReceived(t, dir); len(got) != 2 || got[0].To[0] != "ok@x.test" || got[1].To[0] != "ok2@x.test" {
		t.Errorf("received %+v", got)
	}
}

// startSmtpSink runs Postfix's smtp-sink with args; it returns the address
// and the directory where -d dumps each transaction.
func startSmtpSink(t *testing.T, args ...string) (addr, dir string) {
	t.Helper()
	requireBinary(t, "/usr/sbin/smtp-sink", "postfix")
	dir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777) // smtp-sink writes as nobody when started as root
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	args = append(args, "-d", dir+"/%H%M%S.", addr, "16")
	cmd := exec.Command("/usr/sbin/smtp-sink", args...)
	cmd.Stderr = os.Stderr
	testutil.Start(t, cmd)
	waitListening(t, addr)
	return addr, dir
}

// A smarthost without 8BITMIME (smtp-sink -8) gets a 7-bit MIME version of
// an 8-bit message, quoted-printable, never raw 8-bit bytes; a 7-bit
// message goes unchanged.
func TestDowngradeToSmtpSink(t *testing.T) {
	addr, dir := startSmtpSink(t, "-8")
	f := newFixture(t, addr)
	f.queue("s@example.org", []string{"a@x.test"}, body("8bit")+"d\xc3\xa9j\xc3\xa0 vu\r\n",
		func(e *spool.Envelope) { e.Body = "8BITMIME" })
	f.queue("s@example.org", []string{"b@x.test"}, body("7bit")+"plain\r\n")
	if st := f.run(false); st.Delivered != 2 {
		t.Fatalf("stats %+v", st)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 2 {
		t.Fatalf("smtp-sink dumped %d files", len(files))
	}
	var seen8, seen7 bool
	for _, p := range files {
		b, _ := os.ReadFile(p)
		s := string(b)
		if !isASCII(s) {
			t.Errorf("8-bit bytes sent to a server without 8BITMIME:\n%s", s)
		}
		if strings.Contains(s, "BODY=8BITMIME") {
			t.Errorf("BODY=8BITMIME sent to a server without 8BITMIME:\n%s", s)
		}
		switch {
		case strings.Contains(s, "Subject: 8bit"):
			seen8 = strings.Contains(s, "Content-Transfer-Encoding: quoted-printable\n") &&
				strings.Contains(s, "MIME-Version: 1.0\n") && strings.Contains(s, "d=C3=A9j=C3=A0 vu")
		case strings.Contains(s, "Subject: 7bit"):
			seen7 = strings.Contains(s, "\nplain\n") && !strings.Contains(s, "Content-Transfer-Encoding")
		}
	}
	if !seen8 || !seen7 {
		for _, p := range files {
			b, _ := os.ReadFile(p)
			t.Logf("%s", b)
		}
		t.Errorf("8-bit message converted: %v; 7-bit message unchanged: %v", seen8, seen7)
	}
}

// downgrade re-encodes every 8-bit leaf, recursing into multipart and
// message/rfc822, and the decoded content is what it was.
func TestDowngrade(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"plain", "Subject: x\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n.dot\r\n"},
		{"multipart", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\npre\r\n--B\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n--B\r\n" +
			"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--B\r\n" +
			"Content-Type: multipart/alternative; boundary=C\r\n\r\n--C\r\nContent-Type: text/html\r\n\r\n<p>\xe2\x82\xac</p>\r\n--C--\r\n" +
			"--B--\r\n"},
		{"binary", "Content-Type: application/x-bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\xff\x80\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := downgrade(&out, strings.NewReader(tc.in)); err != nil {
				t.Fatal(err)
			}
			if !isASCII(out.String()) {
				t.Fatalf("not 7-bit:\n%s", out.String())
			}
			if a, b := leaves(t, tc.in), leaves(t, out.String()); !slices.Equal(a, b) {
				t.Errorf("decoded parts differ:\n%q\n%q\n%s", a, b, out.String())
			}
		})
	}
	var out bytes.Buffer
	in := "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSubject: inner\r\n\r\n\xc3\xa9\r\n"
	if err := downgrade(&out, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !isASCII(s) || !strings.Contains(s, "Content-Transfer-Encoding: 7bit") ||
		!strings.Contains(s, "Subject: inner\r\n") || !strings.Contains(s, "=C3=A9") {
		t.Errorf("message/rfc822:\n%s", s)
	}
}

// leaves returns the decoded bodies of a message's leaf parts.
func leaves(t *testing.T, s string) []string {
	t.Helper()
	e, err := message.Read(strings.NewReader(s))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatal(err)
	}
	var out []string
	err = e.Walk(func(_ []int, p *message.Entity, _ error) error {
		if p.MultipartReader() == nil {
			b, err := io.ReadAll(p.Body)
			out = append(out, strconv.Quote(strings.TrimRight(string(b), "\r\n")))
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A real next hop without DSN (aiosmtpd, which answers 555 to any RCPT
// parameter, chatmail/core#7223): smtp-send passes no DSN parameter to
// it and gives the notices itself, delivered through it: "relayed" for
// the recipient with NOTIFY=SUCCESS that it took (RFC 3461 section
// 5.2.2), "failed" with the whole message for the one it refused
// (RET=FULL), each with ENVID and ORCPT.
func TestNoticesThroughAiosmtpd(t *testing.T) {
	addr, dir := startAiosmtpd(t)
	f := newFixture(t, addr)
	f.s.Config.NoticeReturnMax = 1 << 20
	orig := body("dsn")
	f.queue("s@example.org", []string{"ok@x.test", "refuse@x.test"}, orig,
		withDSN("FULL", "ENV-5", spool.RcptDSN{Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;Ok@x.test"},
			spool.RcptDSN{Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;Refuse@x.test"}))
	if st := f.run(false); st.Delivered != 1 || st.Failed != 1 || st.DSNs != 2 {
		t.Fatalf("stats %+v", st)
	}
	if st := f.run(false); st.Delivered != 2 {
		t.Fatalf("the notices were not delivered: %+v", st)
	}
	got := readReceived(t, dir)
	if len(got) != 3 || got[0].From != "s@example.org" || slices.ContainsFunc(got[0].Opts, func(o string) bool {
		return strings.HasPrefix(o, "RET=") || strings.HasPrefix(o, "ENVID=")
	}) {
		t.Fatalf("received %+v", got)
	}
	actions := map[string]noticeParts{}
	for _, g := range got[1:] {
		if g.From != "<>" || !slices.Equal(g.To, []string{"s@example.org"}) { // aiosmtpd keeps the brackets of <>
			t.Errorf("notice from <%s> to %v", g.From, g.To)
		}
		np := checkNotice(t, string(g.Data), orig, "s@example.org", 1)
		actions[np.perRcpt[0].Get("Action")] = np
	}
	ok, failed := actions["relayed"], actions["failed"]
	if ok.perRcpt == nil || ok.perRcpt[0].Get("Original-Recipient") != "rfc822;Ok@x.test" || ok.perMsg.Get("Original-Envelope-Id") != "ENV-5" ||
		ok.parts[2]["type"] != "text/rfc822-headers" {
		t.Errorf("relayed notice: %+v", ok)
	}
	if failed.perRcpt == nil || failed.perRcpt[0].Get("Final-Recipient") != "rfc822; refuse@x.test" || failed.full != orig {
		t.Errorf("failed notice: %+v", failed)
	}
}
