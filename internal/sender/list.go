package sender

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/queue"
)

// writeList prints entries (from queue.Queue.List) to w, for smtp-send
// --list: with asJSON one JSON object per line,
// else a block per message (id, status, age, size, sender, attempts, next
// try) and one line per recipient (status, address, last reply), then a
// summary line.
//
// Addresses, reply texts and file names come from clients, smarthosts and
// the spool, and are printed for a terminal: in the text form every one
// goes through textsafe.Escape, so a control character, a bidi override or
// invalid UTF-8 shows as an escape (\x1b, \u202e, \xff) and can neither
// drive the terminal nor disguise a line. The JSON form is valid JSON
// whatever the strings hold (encoding/json writes invalid UTF-8 as U+FFFD),
// with the same characters written as \u escapes by textsafe.EscapeJSON.
func writeList(w io.Writer, entries []queue.ListEntry, now time.Time, asJSON bool) error {
	if asJSON {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		for i := range entries {
			if err := enc.Encode(&entries[i]); err != nil {
				return err
			}
		}
		_, err := w.Write(textsafe.EscapeJSON(b.Bytes()))
		return err
	}
	q := textsafe.Escape
	var b strings.Builder
	counts := map[string]int{}
	for _, e := range entries {
		counts[e.Status]++
		next := "-"
		if !e.Next.IsZero() {
			next = e.Next.UTC().Format(time.RFC3339) + " (in " + e.Next.Sub(now).Truncate(time.Second).String() + ")"
		} else if e.Status == queue.ListNew {
			next = "now"
		}
		fmt.Fprintf(&b, "%s  %s  age %s  %d bytes  from <%s>  attempts %d  next %s\n",
			q(e.ID), q(e.Status), q(cmp.Or(e.Age, "?")), e.Size, q(e.From), e.Attempts, next)
		if e.Error != "" {
			fmt.Fprintf(&b, "    error: %s\n", q(e.Error))
		}
		for _, rc := range e.Rcpts {
			fmt.Fprintf(&b, "    %-8s <%s>", q(rc.Status.String()), q(rc.Addr))
			if rc.Stage != "" {
				fmt.Fprintf(&b, "  %s:", q(rc.Stage))
				if rc.Code != 0 {
					fmt.Fprintf(&b, " %d", rc.Code)
				}
				if rc.Enhanced != "" {
					fmt.Fprintf(&b, " %s", q(rc.Enhanced))
				}
				fmt.Fprintf(&b, " %s", q(rc.Text))
			}
			if rc.Relay != "" {
				fmt.Fprintf(&b, "  (relay %s)", q(rc.Relay))
			}
			if rc.DSN != "" {
				fmt.Fprintf(&b, "  (dsn %s)", q(rc.DSN))
			}
			b.WriteByte('\n')
		}
	}
	var parts []string
	for _, s := range []string{queue.ListNew, queue.ListDeferred, queue.ListActive, queue.ListUnreadable, queue.ListCorrupt, queue.ListFailed} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if len(parts) == 0 {
		parts = []string{"empty"}
	}
	fmt.Fprintf(&b, "-- %d messages: %s\n", len(entries), strings.Join(parts, ", "))
	_, err := io.WriteString(w, b.String())
	return err
}
