package main

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
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
	sock, logged := syslogSink(t)
	s := stdio.Start(t, transcript.Setup{Spool: sd, Socket: true, StderrOnSocket: true,
		Env: []string{"SMTP_LOG=auto", "SMTP_SYSLOG_SOCKET=" + sock}})
	// On a socket the message text must wait for the 354.
	dialog := script(t, greeting+"C: EHLO c.example\n"+ehlo("c.example")+txStart+txReplies+lines("C", helloBody)+"C: .\nC: QUIT\n"+
		queued+closing+`= exit 0

M: Received: from c.example ([127.0.0.1])
M: 	by mx.test.example (smtp-stdio) with ESMTP id …;
M: 	…
`+lines("M", helloBody))
	s.Play(dialog, dialog.Steps)
	r := s.Finish(dialog)
	_, id, _ := strings.Cut(r.Replies[len(r.Replies)-2], " queued as ")
	id = strings.TrimSpace(id)
	got := logged()
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
	sock, logged := syslogSink(t)
	// The client sends nothing: its bytes would be unread when the
	// process exits.
	stdio.RunWith(t, script(t, "S: 421 4.3.0 Service not available, closing transmission channel\n= exit 78\n"), transcript.Setup{Spool: sd, Socket: true, StderrOnSocket: true,
		Env: []string{"SMTP_MAX_RECIPIENTS=0", "SMTP_SYSLOG_SOCKET=" + sock}})
	all := strings.Join(logged(), "\n")
	if !strings.Contains(all, `msg="session refused"`) || !strings.Contains(all, "SMTP_MAX_RECIPIENTS") || !strings.HasPrefix(all, "<19>") {
		t.Errorf("syslog got:\n%s", all)
	}
}
