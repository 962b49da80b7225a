package send

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Message statuses shown by List.
const (
	ListNew        = "new"        // never tried: due now
	ListDeferred   = "deferred"   // tried; waits for its next attempt
	ListActive     = "active"     // locked by a delivery run right now
	ListUnreadable = "unreadable" // could not be opened (skipped by runs), or not a regular file (set aside by the next run)
	ListCorrupt    = "corrupt"    // does not parse (in queue/ until the next run moves it)
	ListFailed     = "failed"     // in failed/ (shown with all)
)

// ListEntry is one message as --list shows it (and --list --json, one
// object per line).
type ListEntry struct {
	ID       string       `json:"id"`
	Area     string       `json:"area"`
	Status   string       `json:"status"`
	Arrival  time.Time    `json:"arrival,omitzero"`
	Age      string       `json:"age,omitempty"`
	Size     int64        `json:"size"`
	From     string       `json:"from"`
	Attempts int          `json:"attempts"`
	Next     time.Time    `json:"next_attempt,omitzero"`
	Error    string       `json:"error,omitempty"`
	Rcpts    []spool.Rcpt `json:"recipients"`
}

// List reads the queue without the run lock (a run may be going on):
// every message in queue/, with its state, ordered by arrival; with all,
// also failed/ and corrupt/. It takes each message's lock shared and at
// once lets it go, only to tell whether a run is delivering it.
func List(sp *spool.Spool, now time.Time, all bool) ([]ListEntry, error) {
	sc, err := sp.Scan()
	if err != nil {
		return nil, err
	}
	out := make([]ListEntry, 0, len(sc.Entries))
	for i := range sc.Entries {
		out = append(out, listQueued(sp, &sc.Entries[i], now))
	}
	if all {
		for _, area := range []string{spool.FailedDir, spool.CorruptDir} {
			names, err := sp.List(area)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			for _, n := range names {
				out = append(out, listArea(sp, area, n, now))
			}
		}
	}
	slices.SortFunc(out, func(a, b ListEntry) int {
		return cmp.Or(a.Arrival.Compare(b.Arrival), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func listQueued(sp *spool.Spool, e *spool.Entry, now time.Time) ListEntry {
	le := ListEntry{ID: e.ID, Area: spool.QueueDir, Status: ListNew}
	m, err := sp.OpenMessage(e.ID)
	if err != nil {
		le.Status, le.Error = ListUnreadable, err.Error()
		if errors.Is(err, spool.ErrCorrupt) {
			le.Status = ListCorrupt
		}
		return le
	}
	defer m.Close()
	fill(&le, m, now)
	if err := spool.LockMessage(m.File(), false); err != nil {
		le.Status = ListActive
	} else {
		spool.UnlockMessage(m.File())
	}
	if len(e.States) == 0 && !e.Journal {
		return le
	}
	st := spool.NewState(&m.Envelope)
	if len(e.States) > 0 {
		if st, err = sp.LoadState(e.States); err != nil {
			// Replaced by a run meanwhile, or damaged, or not a
			// regular file (the next run sets the message aside).
			le.Error = err.Error()
			if errors.Is(err, spool.ErrNotRegular) {
				le.Status = ListUnreadable
			}
			return le
		}
		if le.Status == ListNew {
			le.Status = ListDeferred
		}
	}
	if e.Journal {
		// Outcomes a killed run recorded; the next run folds them in.
		if entries, _, err := sp.ReadJournal(e.ID); err == nil {
			st.Apply(entries)
		}
	}
	le.Attempts, le.Next, le.Rcpts = st.Attempts, st.Next, st.Rcpts
	return le
}

func listArea(sp *spool.Spool, area, name string, now time.Time) ListEntry {
	le := ListEntry{ID: name, Area: area, Status: area}
	m, err := spool.Open(sp.Path(area, name))
	if err != nil {
		le.Error = err.Error()
		return le
	}
	defer m.Close()
	fill(&le, m, now)
	if area == spool.FailedDir {
		if st, err := sp.ReadFailedState(name); err == nil {
			le.Attempts, le.Rcpts = st.Attempts, st.Rcpts
		}
	}
	return le
}

func fill(le *ListEntry, m *spool.Message, now time.Time) {
	le.Arrival, le.Size, le.From = m.Received, m.Size, m.From
	le.Age = now.Sub(m.Received).Truncate(time.Second).String()
	le.Rcpts = spool.NewState(&m.Envelope).Rcpts
}

// WriteList prints entries to w: with asJSON one JSON object per line,
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
func WriteList(w io.Writer, entries []ListEntry, now time.Time, asJSON bool) error {
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
		} else if e.Status == ListNew {
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
	for _, s := range []string{ListNew, ListDeferred, ListActive, ListUnreadable, ListCorrupt, ListFailed} {
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
