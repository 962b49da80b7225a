package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// A spool that other users could change (issue 8 item 2: the root, queue/
// or tmp/, after following symbolic links) refuses the session with one
// 421 4.3.0 before anything is read or written, exits 78 and names the
// directory on standard error. Nothing reaches queue/ or the shared
// directory that tmp/ leads to.
func TestUnsafeSpoolEachWayRefused(t *testing.T) {
	for _, c := range testutil.UnsafeSpools(spool.QueueDir, spool.TmpDir) {
		t.Run(c.Name, func(t *testing.T) {
			sd := newSpool(t)
			path := c.Make(t, sd)
			r := serve(t, withStdin(newCmd(sd), "EHLO c.example\r\n"+transaction(helloBody)+"QUIT\r\n"), 30*time.Second)
			if !strings.HasPrefix(r.out, "421 4.3.0 ") || len(codes(r.out)) != 1 {
				t.Errorf("replies %q, want one 421 4.3.0", r.out)
			}
			if c := r.state.ExitCode(); c != 78 {
				t.Errorf("exit status %d, want 78 (EX_CONFIG)", c)
			}
			if !strings.Contains(r.errOut, path+" ") {
				t.Errorf("standard error does not name %s: %q", path, r.errOut)
			}
			for _, sub := range []string{spool.QueueDir, spool.TmpDir} {
				if ents, _ := os.ReadDir(filepath.Join(sd, sub)); len(ents) != 0 {
					t.Errorf("%s/: %v", sub, ents)
				}
			}
		})
	}
}

// SMTP_MAX_RECIPIENTS past what a message file holds (spool.MaxRecipients)
// is a configuration error, never a message that fails at DATA; at the
// limit itself, the recipients past it get 452 4.5.3 and the message is
// spooled with the first spool.MaxRecipients.
func TestRecipientsCappedBySpool(t *testing.T) {
	sd := newSpool(t)
	r := serve(t, withStdin(newCmd(sd, "SMTP_MAX_RECIPIENTS="+strconv.Itoa(spool.MaxRecipients+1)), "QUIT\r\n"), 30*time.Second)
	if !strings.HasPrefix(r.out, "421 4.3.0 ") || r.state.ExitCode() != 78 || !strings.Contains(r.errOut, "SMTP_MAX_RECIPIENTS") {
		t.Errorf("over the spool's limit: exit %d, stdout %q, stderr %q", r.state.ExitCode(), r.out, r.errOut)
	}

	n := spool.MaxRecipients + 5
	var in strings.Builder
	in.WriteString("EHLO c.example\r\nMAIL FROM:<a@example.net>\r\n")
	for i := range n {
		fmt.Fprintf(&in, "RCPT TO:<r%d@example.org>\r\n", i)
	}
	in.WriteString("DATA\r\n" + helloBody + ".\r\nQUIT\r\n")
	r = serve(t, withStdin(newCmd(sd, "SMTP_MAX_RECIPIENTS="+strconv.Itoa(spool.MaxRecipients)), in.String()), 60*time.Second)
	want := []string{"220 ", "250 ", "250 2.1.0 "}
	for i := range n {
		if i < spool.MaxRecipients {
			want = append(want, "250 2.1.5 ")
		} else {
			want = append(want, "452 4.5.3 ")
		}
	}
	want = append(want, "354 ", "250 2.0.0 ", "221 2.0.0 ")
	wantReplies(t, r.out, want)
	if ms := spooled(t, sd); len(ms) != 1 || len(ms[0].To) != spool.MaxRecipients {
		t.Fatalf("spooled %d messages", len(ms))
	}
}
