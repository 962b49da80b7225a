package main

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
)

// TestVelocityConcurrentSessions starts many sessions of the binary at
// once, each from an untrusted client, and checks that exactly the limit
// get a greeting and all the others 421 4.7.0: never a refusal below the
// limit, never a session above it.
func TestVelocityConcurrentSessions(t *testing.T) {
	for _, c := range []struct {
		name    string
		env     []string
		clients func(i int) string
		want    int
	}{
		{"global", []string{"SMTP_RATE_MAX_SESSIONS=10", "SMTP_RATE_WINDOW=5m"},
			func(i int) string { return fmt.Sprintf("198.51.100.%d", i) }, 10},
		{"per client", []string{"SMTP_RATE_MAX_PER_CLIENT=3"},
			func(i int) string { return fmt.Sprintf("2001:db8:1:2::%x", i) }, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			sd, bin := newSpool(t), binary(t)
			const n = 30
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				greeted int
				refused int
			)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cmd := exec.Command(bin)
					cmd.Env = baseEnv(sd, append(c.env, "TCPREMOTEIP="+c.clients(i), "SMTP_RELAY_CLIENTS=192.0.2.0/24")...)
					cmd.Stdin = strings.NewReader("QUIT\r\n")
					out, _ := cmd.Output()
					mu.Lock()
					defer mu.Unlock()
					switch s := string(out); {
					case strings.HasPrefix(s, "220 "):
						greeted++
					case s == "421 4.7.0 mx.test.example Too many connections, try again later\r\n":
						refused++
					default:
						t.Errorf("session said %q", s)
					}
				}()
			}
			wg.Wait()
			if greeted != c.want || refused != n-c.want {
				t.Errorf("%d greeted, %d refused; want %d and %d", greeted, refused, c.want, n-c.want)
			}
		})
	}
	// A trusted client is neither limited nor counted.
	sd := newSpool(t)
	for range 3 {
		stdio.RunWith(t, script(t, `C: QUIT
S: 220 mx.test.example ESMTP ready
S: 221 2.0.0 mx.test.example closing connection
= exit 0
`), transcript.Setup{Spool: sd, Env: []string{"SMTP_RATE_MAX_SESSIONS=1", "TCPREMOTEIP=127.0.0.1"}})
	}
}
