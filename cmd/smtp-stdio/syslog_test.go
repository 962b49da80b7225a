package main

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// syslogSink listens on a datagram socket as a local syslog daemon does
// and returns its path and a function that returns what arrived so far.
func syslogSink(t *testing.T) (path string, lines func() []string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, func() []string {
		var got []string
		buf := make([]byte, 64<<10)
		for {
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				return got
			}
			got = append(got, string(buf[:n]))
		}
	}
}

// syslogLine is one message of internal/syslog: facility mail (2), the
// severity, a timestamp, the tag and the process id (RFC 3164 section 4).
var syslogLine = regexp.MustCompile(`^<(1[6-9]|2[0-3])>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d smtp-stdio\[\d+\]: `)

// TestSyslogUnderInetd: started as inetd starts it (standard input,
// output and error all the client's socket), smtp-stdio logs to the
// syslog socket of SMTP_SYSLOG_SOCKET: the session's lines, the queue id
// among them, arrive there, and the client sees SMTP replies only.
func TestSyslogUnderInetd(t *testing.T) {
	sd := newSpool(t)
	sock, lines := syslogSink(t)
	s := startSockSession(t, sd, "", true, "SMTP_LOG=auto", "SMTP_SYSLOG_SOCKET="+sock)
	s.reply(t) // 220
	s.send(t, "EHLO c.example\r\n")
	s.reply(t)
	s.send(t, "MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n")
	s.reply(t)
	s.reply(t)
	s.reply(t)
	s.send(t, helloBody+".\r\nQUIT\r\n")
	queued := s.reply(t)
	code, rest, _ := s.wait(t)
	if !strings.HasPrefix(queued, "250 2.0.0 OK queued as ") || rest != "221 2.0.0 mx.test.example closing connection\r\n" || code != 0 {
		t.Fatalf("replies %q %q, exit %d", queued, rest, code)
	}
	id := strings.TrimSpace(strings.TrimPrefix(queued, "250 2.0.0 OK queued as "))
	got := lines()
	all := strings.Join(got, "\n")
	if !strings.Contains(all, `msg="message accepted"`) || !strings.Contains(all, "queue_id="+id) || !strings.Contains(all, `msg="session end"`) {
		t.Errorf("syslog got:\n%s", all)
	}
	for _, l := range got {
		if !syslogLine.MatchString(l) {
			t.Errorf("not a syslog message of facility mail: %q", l)
		}
	}
}

// TestConfigErrorUnderInetd: a bad setting under inetd refuses the session
// with 421 and says why on syslog, since standard error is the client's
// socket and the log is not set up yet.
func TestConfigErrorUnderInetd(t *testing.T) {
	sd := newSpool(t)
	sock, lines := syslogSink(t)
	s := startSockSession(t, sd, "", true, "SMTP_MAX_RECIPIENTS=0", "SMTP_SYSLOG_SOCKET="+sock)
	code, rest, _ := s.wait(t)
	if rest != "421 4.3.0 Service not available, closing transmission channel\r\n" || code != 78 {
		t.Errorf("client got %q, exit %d", rest, code)
	}
	all := strings.Join(lines(), "\n")
	if !strings.Contains(all, `msg="session refused"`) || !strings.Contains(all, "SMTP_MAX_RECIPIENTS") || !strings.HasPrefix(all, "<19>") {
		t.Errorf("syslog got:\n%s", all)
	}
}
