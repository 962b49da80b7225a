package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
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
			// The runner checks that queue/ and tmp/ hold nothing.
			r := stdio.RunWith(t, script(t, refused), transcript.Setup{Spool: sd})
			if !strings.Contains(r.Stderr, path+" ") {
				t.Errorf("standard error does not name %s: %q", path, r.Stderr)
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
	r := stdio.RunWith(t, script(t, refused), transcript.Setup{Spool: sd,
		Env: []string{"SMTP_MAX_RECIPIENTS=" + strconv.Itoa(spool.MaxRecipients+1)}})
	if !strings.Contains(r.Stderr, "SMTP_MAX_RECIPIENTS") {
		t.Errorf("over the spool's limit: stderr %q", r.Stderr)
	}
	stdio.RunWith(t, script(t, manyRecipients(spool.MaxRecipients+5, spool.MaxRecipients)), transcript.Setup{Spool: sd,
		Env: []string{"SMTP_MAX_RECIPIENTS=" + strconv.Itoa(spool.MaxRecipients)}})
}
