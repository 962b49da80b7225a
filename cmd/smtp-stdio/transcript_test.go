package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// TestTranscripts replays each testdata/*.txt against the binary (package
// transcript has the format), in a fresh spool and testEnv with the
// transcript's own settings; Run checks the replies, the exit status and
// the spool. Then the checks in after[name], if any, look at what a
// transcript cannot say: the log, the spool file itself.
func TestTranscripts(t *testing.T) {
	scripts := transcript.ReadAll(t, "testdata/*.txt")
	for name := range after {
		if !slices.ContainsFunc(scripts, func(s *transcript.Script) bool { return s.Name == name }) {
			t.Errorf("after[%q]: no such transcript", name)
		}
	}
	for _, s := range scripts {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			r := stdio.Run(t, s)
			if check := after[s.Name]; check != nil && !t.Failed() {
				check(t, s, r)
			}
		})
	}
}

// after holds further checks of transcripts, by name.
var after = map[string]func(t *testing.T, s *transcript.Script, r *transcript.Result){
	// The README's session is testdata/session.smtp, byte for byte; the
	// Received: header names the queue id and no recipient, and the spool
	// file is the receiving user's alone.
	"session": func(t *testing.T, s *transcript.Script, r *transcript.Result) {
		want, err := os.ReadFile("../../testdata/session.smtp")
		if err != nil {
			t.Fatal(err)
		}
		var sent []byte
		for _, st := range s.Steps {
			sent = append(sent, st.Send...)
		}
		if !bytes.Equal(sent, want) {
			t.Errorf("the C: lines of %s are not testdata/session.smtp:\n%q\nwant\n%q", s.File, sent, want)
		}
		m := transcript.Spooled(t, r.Spool)[0]
		rcv, _ := splitReceived(t, string(m.Content))
		if !strings.Contains(rcv, " id "+m.ID+";") {
			t.Errorf("Received: header does not name queue id %s: %q", m.ID, rcv)
		}
		if strings.Contains(rcv, "bob@") || strings.Contains(rcv, "for <") {
			t.Errorf("Received: header leaks recipients: %q", rcv)
		}
		fi, err := os.Stat(filepath.Join(r.Spool, spool.QueueDir, m.ID))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("spool file mode %v, %v; want 0600", fi.Mode().Perm(), err)
		}
	},
	// One warning names the launcher variable that disagrees with the
	// socket's peer, its value and the peer.
	"launcher_variable": func(t *testing.T, s *transcript.Script, r *transcript.Result) {
		var warned []string
		for line := range strings.Lines(r.Stderr) {
			if strings.Contains(line, "launcher variable disagrees") {
				warned = append(warned, line)
			}
		}
		if len(warned) != 1 || !strings.Contains(warned[0], "level=WARN") || !strings.Contains(warned[0], "var=REMOTE_ADDR") ||
			!strings.Contains(warned[0], "value=192.0.2.1") || !strings.Contains(warned[0], "peer=127.0.0.1") {
			t.Errorf("want one warning naming REMOTE_ADDR, 192.0.2.1 and 127.0.0.1; stderr:\n%s", r.Stderr)
		}
	},
	// The log, on standard error, names the session and the queue id.
	"stdout_only_replies": func(t *testing.T, s *transcript.Script, r *transcript.Result) {
		if !strings.Contains(r.Stderr, "sid=") || !strings.Contains(r.Stderr, "queue_id=") {
			t.Errorf("log lacks session or queue id:\n%s", r.Stderr)
		}
	},
	// One log line says why the session ended, and names the client.
	"early_talker": func(t *testing.T, s *transcript.Script, r *transcript.Result) {
		if n := strings.Count(r.Stderr, "early talker"); n != 1 || !strings.Contains(r.Stderr, "client=127.0.0.1:") {
			t.Errorf("log:\n%s", r.Stderr)
		}
	},
	"improper_pipelining_after_ehlo":           improperLogged,
	"improper_pipelining_after_helo":           improperLogged,
	"improper_pipelining_mail_rcpt_after_helo": improperLogged,
	"improper_pipelining_text_with_data":       improperLogged,
}

// improperLogged: the log says why the session ended.
func improperLogged(t *testing.T, s *transcript.Script, r *transcript.Result) {
	if !strings.Contains(r.Stderr, `msg="improper pipelining"`) {
		t.Errorf("log:\n%s", r.Stderr)
	}
}
