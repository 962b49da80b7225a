package sender

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/queue"
)

// listQueue prints the queue to w for smtp-send --list as it reads it
// (queue.Queue.Walk): one message at a time, never the whole list in
// memory. all adds failed/ and corrupt/; f selects the messages. It
// returns the error of reading the spool or of writing to w.
func listQueue(w io.Writer, q *queue.Queue, now time.Time, all, asJSON bool, f queue.ListFilter) error {
	lw := newListWriter(w, now, asJSON)
	if err := q.Walk(now, all, f, lw.entry); err != nil {
		return err
	}
	return lw.finish(f != queue.ListFilter{})
}

// writeList prints entries with a listWriter, as listQueue prints the
// queue.
func writeList(w io.Writer, entries []queue.ListEntry, now time.Time, asJSON bool) error {
	lw := newListWriter(w, now, asJSON)
	for i := range entries {
		if err := lw.entry(&entries[i]); err != nil {
			return err
		}
	}
	return lw.finish(false)
}

// listWriter prints the entries of a listing one at a time, for smtp-send
// --list: with asJSON one JSON object per line (as postqueue -j), else a
// block per message (id, status, age, size, sender, attempts, next try)
// and one line per recipient (status, address, last reply), then a
// summary line.
//
// Addresses, reply texts and file names come from clients, smarthosts and
// the spool, and are printed for a terminal: in the text form every one
// goes through textsafe.Escape, so a control character, a bidi override or
// invalid UTF-8 shows as an escape (\x1b, \u202e, \xff) and can neither
// drive the terminal nor disguise a line. The JSON form is valid JSON
// whatever the strings hold (encoding/json writes invalid UTF-8 as U+FFFD),
// with the same characters written as \u escapes by textsafe.EscapeJSON.
type listWriter struct {
	w      *bufio.Writer
	now    time.Time
	asJSON bool
	js     bytes.Buffer // one entry's JSON
	enc    *json.Encoder
	counts map[string]int // messages by status
	n      int
	num    []byte // scratch for numbers and times
}

// writeInt writes n in decimal.
func (l *listWriter) writeInt(n int64) {
	l.num = strconv.AppendInt(l.num[:0], n, 10)
	l.w.Write(l.num)
}

func newListWriter(w io.Writer, now time.Time, asJSON bool) *listWriter {
	lw := &listWriter{w: bufio.NewWriterSize(w, 64<<10), now: now, asJSON: asJSON, counts: map[string]int{}}
	lw.enc = json.NewEncoder(&lw.js)
	return lw
}

// entry prints one message. It returns the error of writing (sticky:
// after one, nothing more is written).
func (l *listWriter) entry(e *queue.ListEntry) error {
	l.n++
	if l.asJSON {
		js, ok := appendEntryJSON(l.num[:0], e)
		l.num = js
		if !ok {
			l.js.Reset()
			if err := l.enc.Encode(e); err != nil {
				return err
			}
			js = l.js.Bytes()
		}
		_, err := l.w.Write(textsafe.EscapeJSON(js))
		return err
	}
	b, q := l.w, textsafe.Escape
	l.counts[e.Status]++
	// Written piece by piece rather than by fmt: with 100,000 messages
	// the formatting was a tenth of the listing's CPU time.
	b.WriteString(q(e.ID))
	b.WriteString("  ")
	b.WriteString(q(e.Status))
	b.WriteString("  age ")
	b.WriteString(q(cmp.Or(e.Age, "?")))
	b.WriteString("  ")
	l.writeInt(int64(e.Size))
	b.WriteString(" bytes  from <")
	b.WriteString(q(e.From))
	b.WriteString(">  attempts ")
	l.writeInt(int64(e.Attempts))
	b.WriteString("  next ")
	switch {
	case !e.Next.IsZero():
		l.num = e.Next.UTC().AppendFormat(l.num[:0], time.RFC3339)
		b.Write(l.num)
		b.WriteString(" (in ")
		b.WriteString(e.Next.Sub(l.now).Truncate(time.Second).String())
		b.WriteString(")")
	case e.Status == queue.ListNew:
		b.WriteString("now")
	default:
		b.WriteString("-")
	}
	b.WriteByte('\n')
	if e.Error != "" {
		b.WriteString("    error: ")
		b.WriteString(q(e.Error))
		b.WriteByte('\n')
	}
	for _, rc := range e.Rcpts {
		// As fmt's %-8s: padded to 8 characters.
		st := q(rc.Status.String())
		b.WriteString("    ")
		b.WriteString(st)
		for n := utf8.RuneCountInString(st); n < 8; n++ {
			b.WriteByte(' ')
		}
		b.WriteString(" <")
		b.WriteString(q(rc.Addr))
		b.WriteByte('>')
		if rc.Stage != "" {
			b.WriteString("  ")
			b.WriteString(q(rc.Stage))
			b.WriteByte(':')
			if rc.Code != 0 {
				b.WriteByte(' ')
				l.writeInt(int64(rc.Code))
			}
			if rc.Enhanced != "" {
				b.WriteByte(' ')
				b.WriteString(q(rc.Enhanced))
			}
			b.WriteByte(' ')
			b.WriteString(q(rc.Text))
		}
		if rc.Relay != "" {
			b.WriteString("  (relay ")
			b.WriteString(q(rc.Relay))
			b.WriteByte(')')
		}
		if rc.DSN != "" {
			b.WriteString("  (dsn ")
			b.WriteString(q(rc.DSN))
			b.WriteByte(')')
		}
		b.WriteByte('\n')
	}
	// bufio.Writer keeps its first error: this is the write's error, or
	// nil while all went well.
	_, err := b.Write(nil)
	return err
}

// finish prints the text form's summary line (of the messages shown,
// "matching" when filtered), and flushes. It returns the error of
// writing.
func (l *listWriter) finish(filtered bool) error {
	if !l.asJSON {
		var parts []string
		for _, s := range []string{queue.ListNew, queue.ListDeferred, queue.ListHeld, queue.ListActive, queue.ListUnreadable, queue.ListCorrupt, queue.ListFailed} {
			if l.counts[s] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", l.counts[s], s))
			}
		}
		if len(parts) == 0 {
			parts = []string{"empty"}
		}
		what := "messages"
		if filtered {
			what = "messages matching"
		}
		fmt.Fprintf(l.w, "-- %d %s: %s\n", l.n, what, strings.Join(parts, ", "))
	}
	return l.w.Flush()
}
