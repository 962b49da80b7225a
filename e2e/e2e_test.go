// Package e2e holds the end-to-end test of the whole mail path: a real
// client (Python's smtplib) talks to smtp-stdio served by tcpserver, the
// message lands in the spool, smtp-send forwards it to a real smarthost
// (aiosmtpd), and what the smarthost received is compared with what the
// client sent, envelope and bytes.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// startSmarthost runs aiosmtpd (send/testdata/aiosmtpd_sink.py) and
// returns its address and the directory where it stores what it receives.
func startSmarthost(t *testing.T) (addr, dir string) {
	t.Helper()
	testutil.Need(t, "/usr/bin/python3")
	dir = t.TempDir()
	cmd := exec.Command("/usr/bin/python3", "../send/testdata/aiosmtpd_sink.py", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	testutil.StartGroup(t, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("aiosmtpd did not start: %v", err)
	}
	return "127.0.0.1:" + strings.TrimSpace(line), dir
}

// startReceiver serves smtp-stdio with tcpserver on a free loopback port.
func startReceiver(t *testing.T, spoolDir string) (host, port string) {
	t.Helper()
	tcpserver := testutil.Need(t, "tcpserver")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(tcpserver, "-RHl0", "127.0.0.1", port, testutil.Program(t, "cmd/smtp-stdio"))
	cmd.Env = []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=mx.e2e.example",
		"SMTP_LOCAL_DOMAINS=example.org", "SMTP_MAX_MESSAGE_SIZE=" + strconv.Itoa(64<<20), "SMTP_LOG=stderr"}
	cmd.Stderr = os.Stderr
	testutil.StartGroup(t, cmd)
	for i := 0; i < 500; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return "127.0.0.1", port
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("tcpserver did not listen")
	return
}

// The client: three messages, each written to a file so the test can
// compare bytes. smtplib dot-stuffs on the wire; the smarthost must get
// the original lines back.
const pyClient = `
import smtplib, sys
host, port, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msgs = []
msgs.append((b"From: a@example.net\r\nTo: b@example.org\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nend\r\n",
             "a@example.net", ["b@example.org", "c@example.org"], []))
msgs.append(("From: a@example.net\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCaf\u00e9 cr\u00e8me \u2603\r\n".encode(),
             "a@example.net", ["d@example.org"], ["BODY=8BITMIME"]))
line = b"0123456789" * 7 + b"abcdef\r\n"
big = b"From: a@example.net\r\nSubject: big\r\n\r\n" + line * ((20 << 20) // len(line)) + b".dot after big\r\n"
msgs.append((big, "", ["e@example.org"], []))
with smtplib.SMTP(host, port) as s:
    for i, (m, frm, to, opts) in enumerate(msgs):
        open("%s/sent%d.eml" % (d, i), "wb").write(m)
        refused = s.sendmail(frm, to, m, mail_options=opts)
        assert refused == {}, refused
print("OK")
`

type received struct {
	From        string   `json:"from"`
	To          []string `json:"to"`
	MailOptions []string `json:"mail_options"`
	data        []byte
}

// TestReceiveThenSend is the whole path, checked byte for byte.
func TestReceiveThenSend(t *testing.T) {
	spoolDir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sentDir := t.TempDir()
	host, port := startReceiver(t, spoolDir)
	out, err := exec.Command("/usr/bin/python3", "-c", pyClient, host, port, sentDir).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(spoolDir, "queue")); len(ents) != 3 {
		t.Fatalf("spool holds %d messages, want 3", len(ents))
	}

	relay, got := startSmarthost(t)
	send := exec.Command(testutil.Program(t, "cmd/smtp-send"))
	send.Env = []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=mx.e2e.example",
		"SMTP_SMARTHOST=" + relay, "SMTP_SMARTHOST_TLS=none"}
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("smtp-send: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(spoolDir, "queue")); len(ents) != 0 {
		t.Errorf("queue not empty after the run: %d left", len(ents))
	}

	rs := readReceived(t, got)
	if len(rs) != 3 {
		t.Fatalf("smarthost got %d messages, want 3", len(rs))
	}
	want := []struct {
		from string
		to   string
		body string
	}{
		{"a@example.net", "b@example.org,c@example.org", ""},
		{"a@example.net", "d@example.org", "8BITMIME"},
		{"", "e@example.org", ""},
	}
	// Several connections deliver in parallel: match by recipients.
	sort.Slice(rs, func(a, b int) bool { return strings.Join(rs[a].To, ",") < strings.Join(rs[b].To, ",") })
	for i, r := range rs {
		if r.From == "<>" {
			r.From = "" // aiosmtpd's spelling of the null reverse-path
		}
		sent, err := os.ReadFile(filepath.Join(sentDir, fmt.Sprintf("sent%d.eml", i)))
		if err != nil {
			t.Fatal(err)
		}
		if r.From != want[i].from || strings.Join(r.To, ",") != want[i].to {
			t.Errorf("message %d: envelope from %q to %v, want %q %q", i, r.From, r.To, want[i].from, want[i].to)
		}
		if want[i].body != "" && !strings.Contains(strings.Join(r.MailOptions, " "), "BODY="+want[i].body) {
			t.Errorf("message %d: MAIL options %v lack BODY=%s", i, r.MailOptions, want[i].body)
		}
		// The receiver prepends exactly one Received: header; the rest
		// must be the client's bytes exactly.
		rest, ok := stripReceived(r.data, "by mx.e2e.example")
		if !ok {
			t.Errorf("message %d: no Received: header from smtp-stdio at the top: %q", i, r.data[:min(200, len(r.data))])
			continue
		}
		if !bytes.Equal(rest, sent) {
			t.Errorf("message %d: %d bytes delivered, %d sent; first difference at %d", i, len(rest), len(sent), firstDiff(rest, sent))
		}
	}
}

func readReceived(t *testing.T, dir string) []received {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(names)
	var rs []received
	for _, n := range names {
		var r received
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.data, err = os.ReadFile(strings.TrimSuffix(n, ".json") + ".eml"); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

// stripReceived removes a leading Received: header (with its folded
// lines) that contains marker.
func stripReceived(b []byte, marker string) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte("Received: ")) {
		return nil, false
	}
	i := 0
	for {
		j := bytes.Index(b[i:], []byte("\r\n"))
		if j < 0 {
			return nil, false
		}
		i += j + 2
		if i >= len(b) || (b[i] != ' ' && b[i] != '\t') {
			break
		}
	}
	if !bytes.Contains(b[:i], []byte(marker)) {
		return nil, false
	}
	return b[i:], true
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
