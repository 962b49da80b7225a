package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Alias expansion as a queue hand-off (ordering rule 7 in item.go): the
// addresses an alias recipient stands for become a new message in
// queue/, its expansion, under a queue id derived from the original's and
// the recipient's index, so that a run that repeats the expansion after a
// crash finds it already there.

// expansionSep separates the original's queue id from the recipient
// index in an expansion's queue id. NewQueueID never writes a '-'.
const expansionSep = "-a"

// ExpansionID returns the queue id of the expansion of recipient i
// (its index in the envelope) of message id: id, "-a", i in decimal. It
// is the same at every call, so a retry finds the expansion it wrote
// before. It returns "" when the result would not be a valid queue id
// (longer than spool.MaxQueueIDLen).
func ExpansionID(id string, i int) string {
	x := id + expansionSep + strconv.Itoa(i)
	if !spool.ValidQueueID(x) {
		return ""
	}
	return x
}

// ExpansionOf returns the original's queue id and the recipient index of
// an expansion's queue id, and false when id is not one.
func ExpansionOf(id string) (orig string, i int, ok bool) {
	j := strings.LastIndex(id, expansionSep)
	if j <= 0 {
		return "", 0, false
	}
	digits := id[j+len(expansionSep):]
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || strconv.Itoa(n) != digits {
		return "", 0, false
	}
	return id[:j], n, true
}

// Expansion is what SpoolExpansion writes for one alias recipient.
type Expansion struct {
	// Index is the alias recipient's index in the original's envelope.
	Index int
	// To are the addresses it expands to, at most spool.MaxRecipients.
	To []string
	// DSN are the DSN parameters of each of To (RFC 3461 section 5.2.7:
	// the alias's NOTIFY and ORCPT carried over).
	DSN []spool.RcptDSN
	// Header is prepended to the message data: the "Delivered-To:" field
	// naming the alias, CRLF-terminated, by which a loop back to the
	// alias is found.
	Header string
}

// SpoolExpansion spools the expansion x of the item's message as
// queue/<ExpansionID>, from the same reverse-path, with the same
// reception facts and DSN envelope parameters, the message data streamed
// from the original after x.Header, and returns its queue id. When the
// expansion is already in queue/ (a crash came between its spooling and
// the record of the alias recipient) it writes nothing. Only after it
// returns may the caller record the alias recipient as done (rule 7).
// An error (an id too long, the spool write) leaves no new file.
func (it *Item) SpoolExpansion(x Expansion) (string, error) {
	if it.err != nil {
		return "", it.err
	}
	env := it.msg.Envelope
	id := ExpansionID(env.QueueID, x.Index)
	if id == "" {
		return "", fmt.Errorf("queue: the expansion of %s's recipient %d has no valid queue id", env.QueueID, x.Index)
	}
	if _, err := os.Lstat(it.q.sp.Path(spool.QueueDir, id)); err == nil {
		it.q.log().Info("expansion already spooled by an earlier run", "id", env.QueueID, "expansion", id)
		it.q.hook(StepExpansionSpooled, env.QueueID)
		return id, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("queue: %w", err)
	}
	env.QueueID, env.To, env.DSN = id, x.To, x.DSN
	w, err := it.q.sp.Create(&env)
	if err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	if _, err := io.WriteString(w, x.Header); err != nil {
		w.Abort()
		return "", fmt.Errorf("queue: %w", err)
	}
	if _, err := io.Copy(w, it.msg.Content()); err != nil {
		w.Abort()
		return "", fmt.Errorf("queue: %w", err)
	}
	if err := w.Commit(); err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	it.q.hook(StepExpansionSpooled, it.msg.QueueID)
	return id, nil
}
