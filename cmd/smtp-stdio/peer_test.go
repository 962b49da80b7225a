package main

import (
	"strings"
	"testing"
)

// TestLauncherVariableCannotGrantRelay: the binary serves a loopback TCP
// socket (as inetd or systemd hand it over) with REMOTE_ADDR=192.0.2.1
// leaked into its environment and SMTP_RELAY_CLIENTS=192.0.2.0/24. The
// real peer is 127.0.0.1, untrusted here: relaying is denied, local mail
// is accepted, and one warning names the variable and both addresses.
func TestLauncherVariableCannotGrantRelay(t *testing.T) {
	sd := newSpool(t)
	s := newSockSession(t, sd, "", "REMOTE_ADDR=192.0.2.1", "REMOTE_PORT=2525",
		"TCPREMOTEIP=127.0.0.1", "SMTP_RELAY_CLIENTS=192.0.2.0/24")
	for _, step := range []struct{ send, want string }{
		{"", "220 "},
		{"EHLO client.example\r\n", "250"},
		{"MAIL FROM:<a@client.example>\r\n", "250 "},
		{"RCPT TO:<x@relay.example>\r\n", "550 5.7.1 "},
		{"RCPT TO:<u@example.org>\r\n", "250 "},
		{"QUIT\r\n", "221 "},
	} {
		if step.send != "" {
			s.send(t, step.send)
		}
		if r := s.reply(t); !strings.HasPrefix(r, step.want) {
			t.Fatalf("after %q: %q, want %s", step.send, r, step.want)
		}
	}
	_, _, stderr := s.wait(t)
	var warned []string
	for line := range strings.Lines(stderr) {
		if strings.Contains(line, "launcher variable disagrees") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "level=WARN") || !strings.Contains(warned[0], "var=REMOTE_ADDR") ||
		!strings.Contains(warned[0], "value=192.0.2.1") || !strings.Contains(warned[0], "peer=127.0.0.1") {
		t.Errorf("want one warning naming REMOTE_ADDR, 192.0.2.1 and 127.0.0.1; stderr:\n%s", stderr)
	}
}
