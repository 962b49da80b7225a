package sender

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Queue administration: --show, --hold, --release, --deliver, --expire
// and --delete, each on the queue ids given as arguments, or read from
// standard input with "-", so that a listing can feed them:
//
//	smtp-send --list --json --from spammer.example | jq -r .id | smtp-send --delete -

// maxQueueIDs bounds the ids one command takes from standard input.
const maxQueueIDs = 1_000_000

// queueIDs returns the queue ids of args, or those of in, one a line
// (blank lines skipped), when args is just "-". It returns an error
// naming the first id that is not a plain file name (validQueueID), or
// in's read error.
func queueIDs(args []string, in io.Reader) ([]string, error) {
	if len(args) == 1 && args[0] == "-" {
		args = nil
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			if id := strings.TrimSpace(sc.Text()); id != "" {
				if len(args) == maxQueueIDs {
					return nil, fmt.Errorf("more than %d queue ids on standard input", maxQueueIDs)
				}
				args = append(args, id)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading queue ids from standard input: %w", err)
		}
		if len(args) == 0 {
			return nil, errors.New("no queue ids on standard input")
		}
	}
	for _, id := range args {
		if strings.HasPrefix(id, "-") && id != "-" {
			return nil, fmt.Errorf("%q after a queue id: flags go before the queue ids", id)
		}
		if !validQueueID(id) {
			return nil, fmt.Errorf("%q is not a queue id (a file name in queue/, as --list shows it)", id)
		}
	}
	return args, nil
}

// validQueueID reports whether id can name a message file: a name in one
// directory (no '/', not "." or ".."), not hidden, of printable ASCII,
// without the '@' of state file names, at most 255 bytes; and not
// starting with '-', which is a flag put after the ids.
func validQueueID(id string) bool {
	if id == "" || len(id) > 255 || id[0] == '.' || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '/' || c == '@' {
			return false
		}
	}
	return true
}

// show prints, for each id, the message's --list entry (from queue/,
// failed/ or corrupt/), the envelope fields the listing leaves out, and
// the content as queued (the message as received, CRLF line endings,
// our Received: field first), as Postfix's postcat -q. It returns 0, 66
// when an id is in none of those, or 74 when the spool or stdout fails.
func show(stdout io.Writer, q *queue.Queue, ids []string, now time.Time, log *slog.Logger) int {
	lw := newListWriter(stdout, now, false)
	w := lw.w
	code := exitOK
	entries, err := findEntries(q, ids, now)
	if err != nil {
		log.Error("reading the queue", "err", err)
		return exitIOErr
	}
	for n, id := range ids {
		found := entries[id]
		if found == nil {
			log.Error("no such message in queue/, failed/ or corrupt/", "id", id)
			code = worse(code, exitNoInput)
			continue
		}
		if n > 0 {
			w.WriteString("\n")
		}
		if err := lw.entry(found); err != nil {
			log.Error("writing", "err", err)
			return exitIOErr
		}
		if err := showContent(w, q, found); err != nil {
			log.Error("reading the message", "id", id, "err", err)
			code = worse(code, exitIOErr)
		}
		if err := w.Flush(); err != nil {
			log.Error("writing", "err", err)
			return exitIOErr
		}
	}
	return code
}

// walkEach is the most ids findEntries looks up one Walk each (a Walk
// with an ID filter opens only that message, but lists the directories
// every time); more take one Walk of the whole queue.
const walkEach = 8

// findEntries returns the --list entries of ids (queue/, failed/ and
// corrupt/), by id; an id found nowhere has none. It returns Walk's
// error.
func findEntries(q *queue.Queue, ids []string, now time.Time) (map[string]*queue.ListEntry, error) {
	out := make(map[string]*queue.ListEntry, len(ids))
	keep := func(e *queue.ListEntry) error {
		c := *e
		out[e.ID] = &c
		return nil
	}
	if len(ids) <= walkEach {
		for _, id := range ids {
			if err := q.Walk(now, true, queue.ListFilter{ID: id}, keep); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	err := q.Walk(now, true, queue.ListFilter{}, func(e *queue.ListEntry) error {
		if want[e.ID] {
			return keep(e)
		}
		return nil
	})
	return out, err
}

// showContent writes the envelope fields that --list leaves out, a blank
// line and the content of message le. A corrupt or unreadable message
// has no content to show: its path is printed, to be read with the tools
// one reads any file with. It returns the error of opening or reading the message.
func showContent(w *bufio.Writer, q *queue.Queue, le *queue.ListEntry) error {
	if le.Area != spool.QueueDir && le.Area != queue.FailedDir || le.Status == queue.ListCorrupt || le.Status == queue.ListUnreadable {
		fmt.Fprintf(w, "    (no content shown: the file is %s)\n", textsafe.Escape(q.Spool().Path(le.Area, le.ID)))
		return nil
	}
	m, err := spool.Open(q.Spool().Path(le.Area, le.ID))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(w, "    (gone from the queue meanwhile)")
			return nil
		}
		return err
	}
	defer m.Close()
	e, esc := &m.Envelope, textsafe.Escape
	fmt.Fprintf(w, "    received: %s from %s (helo %s) with %s", e.Received.UTC().Format(time.RFC3339), esc(e.Client), esc(e.Helo), esc(e.Protocol))
	if e.Body != "" {
		fmt.Fprintf(w, "  body %s", esc(e.Body))
	}
	if e.TLSVersion != "" {
		fmt.Fprintf(w, "  tls %s %s", esc(e.TLSVersion), esc(e.TLSCipher))
	}
	if e.AuthUser != "" {
		fmt.Fprintf(w, "  auth %s", esc(e.AuthUser))
	}
	w.WriteString("\n\n")
	_, err = io.Copy(w, m.Content())
	return err
}

// deleteMessages removes each id from queue/ (queue.Queue.Delete) and
// logs each removal with its sender and recipients, as an audit trail.
// It returns 0, 66 when an id is not in queue/, 75 when a run holds one
// or one has a journal to fold first, or 74 on an I/O error; the other
// ids are still handled.
func deleteMessages(q *queue.Queue, ids []string, now time.Time, log *slog.Logger) int {
	sc, err := q.Scan()
	if err != nil {
		log.Error("reading the queue", "err", err)
		return exitIOErr
	}
	byID := make(map[string]*queue.Entry, len(sc.Entries))
	for i := range sc.Entries {
		byID[sc.Entries[i].ID] = &sc.Entries[i]
	}
	code := exitOK
	for _, id := range ids {
		e := byID[id]
		if e == nil {
			log.Error("no such message in queue/", "id", id)
			code = worse(code, exitNoInput)
			continue
		}
		env, st, err := q.Delete(e, now)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			log.Error("no such message in queue/ (gone meanwhile)", "id", id)
			code = worse(code, exitNoInput)
			continue
		case errors.Is(err, queue.ErrLocked):
			log.Error("message held by a delivery run; not deleted: try again when it ends", "id", id)
			code = worse(code, exitTempFail)
			continue
		case errors.Is(err, queue.ErrJournal):
			log.Error("message not deleted", "id", id, "err", err)
			code = worse(code, exitTempFail)
			continue
		case err != nil:
			log.Error("message not deleted", "id", id, "err", err)
			code = worse(code, exitIOErr)
			continue
		}
		delete(byID, id) // an id given twice is gone the second time
		log.Warn("message deleted by the administrator (smtp-send --delete); its sender is not told", "id", id,
			"from", textsafe.Escape(env.From), "nrcpt", len(env.To), "pending", len(st.Pending()),
			"to", textsafe.Escape(strings.Join(env.To, ",")))
	}
	return code
}

// holdMessages holds (hold) or releases each id (queue.Queue.Hold,
// Release) and logs each. Holding a held message, or releasing one not
// held, is logged and done. It returns 0, 66 when an id is not in
// queue/, or 74 on an I/O error; the other ids are still handled.
func holdMessages(q *queue.Queue, ids []string, hold bool, log *slog.Logger) int {
	code := exitOK
	for _, id := range ids {
		var err error
		if hold {
			err = q.Hold(id)
		} else if err = q.Release(id); errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Lstat(q.Spool().Path(spool.QueueDir, id)); serr == nil {
				log.Info("message not held; nothing to release", "id", id)
				continue
			}
		}
		switch {
		case errors.Is(err, queue.ErrHeld):
			log.Info("message held already", "id", id)
		case errors.Is(err, fs.ErrNotExist):
			log.Error("no such message in queue/", "id", id)
			code = worse(code, exitNoInput)
		case err != nil:
			log.Error("message not changed", "id", id, "err", err)
			code = worse(code, exitIOErr)
		case hold:
			log.Warn("message held by the administrator (smtp-send --hold); runs leave it until --release", "id", id)
		default:
			log.Info("message released (smtp-send --release); due as its retry time says", "id", id)
		}
	}
	return code
}

// worse returns the more telling of two exit statuses of commands on
// several ids: an I/O error, then a message held by a run, then an id
// not queued, then success.
func worse(code, c int) int {
	rank := map[int]int{exitOK: 0, exitNoInput: 1, exitTempFail: 2, exitIOErr: 3}
	if rank[c] > rank[code] {
		return c
	}
	return code
}
