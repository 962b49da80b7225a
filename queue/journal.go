package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// This file is the journal's format. When it is appended to, folded and
// removed is in item.go.
//
// The journal of a message, state/<id>@journal, records outcomes that must
// be durable at once and cannot wait for the next state write. Each record
// is one line, "<crc32c hex> <json>\n", written with one write(2) and
// fsync'd; a crash can only tear the last line, which readers drop.
// Folding a journal twice is harmless, since a record only changes
// pending recipients: it sets them to a final status, or, for a delay
// notice's intent (Item.Delay), leaves them pending with the notice's
// queue id in Rcpt.Delayed.

// maxJournalSize is the longest journal a run writes and so what
// ReadJournal reads. A journal names each recipient at most once: an
// attempt records a recipient as accepted (RecordAccepted), failed
// (Bounce) or, still pending, as given a delay notice (Delay), never two
// of these, and a run folds any journal into the state and removes it
// before it delivers anything.
// So a journal is at most spool.MaxRecipients records of one recipient
// each, every Rcpt bounded as in a state file (maxRcptJSON).
const maxJournalSize = spool.MaxRecipients * (len(`00000000 {"set":[{"i":,}]}`+"\n") + jsonInt + maxRcptJSON)

// castagnoli returns the CRC-32C table of the journal's records, made on
// first use.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// JournalEntry is one journal record: a set of recipient updates made
// durable together.
type JournalEntry struct {
	Set []Update `json:"set"`
}

// Update sets the recipient at Index (into Envelope.To) to Rcpt.
type Update struct {
	Index int `json:"i"`
	Rcpt
}

// encodeRecord bounds the free-text fields of e to MaxText (in e too) and
// returns its journal line. An address over spool.MaxAddrLen is an error.
func encodeRecord(id string, e JournalEntry) ([]byte, error) {
	for i := range e.Set {
		if err := e.Set[i].check(); err != nil {
			return nil, fmt.Errorf("%w (journal %s)", err, id)
		}
		e.Set[i].clip()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("queue: encode journal %s: %w", id, err)
	}
	line := make([]byte, 0, len(b)+10)
	line = fmt.Appendf(line, "%08x ", crc32.Checksum(b, castagnoli()))
	return append(append(line, b...), '\n'), nil
}

// ReadJournal returns the complete records of the journal of message id, in
// order, and torn=true if a damaged or incomplete last part was dropped. A
// missing journal returns no records and no error; a name that is not a
// regular file returns an error wrapping spool.ErrNotRegular (see
// spool.OpenFile).
func (q *Queue) ReadJournal(id string) (entries []JournalEntry, torn bool, err error) {
	f, err := spool.OpenFile(q.sp.Path(StateDir, JournalName(id)), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("queue: journal: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(maxJournalSize)))
	if err != nil {
		return nil, false, fmt.Errorf("queue: journal %s: %w", id, err)
	}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return entries, true, nil
		}
		line := b[:nl]
		b = b[nl+1:]
		if len(line) < 10 || line[8] != ' ' {
			return entries, true, nil
		}
		sum, err := strconv.ParseUint(string(line[:8]), 16, 32)
		if err != nil || crc32.Checksum(line[9:], castagnoli()) != uint32(sum) {
			return entries, true, nil
		}
		var e JournalEntry
		if err := json.Unmarshal(line[9:], &e); err != nil {
			return entries, true, nil
		}
		entries = append(entries, e)
	}
	return entries, false, nil
}

// Apply folds journal entries into st. Done and Failed are final: an
// update for a recipient already final is skipped, so a journal folded
// twice changes nothing. An update for an index out of range or for
// another address wraps spool.ErrCorrupt. It returns the notification
// queue ids named by the applied updates, without duplicates, in order:
// Rcpt.DSN of a final update (a failure or a success notice), Rcpt.Delayed
// of a pending one (a delay notice's intent). A state file names a
// notification only once it is spooled, a journal may name one not yet
// spooled.
func (st *State) Apply(entries []JournalEntry) (dsns []string, err error) {
	seen := map[string]bool{}
	for _, e := range entries {
		for _, u := range e.Set {
			if u.Index < 0 || u.Index >= len(st.Rcpts) || st.Rcpts[u.Index].Addr != u.Addr {
				return nil, fmt.Errorf("%w: journal of %s names recipient %d <%s>", spool.ErrCorrupt, st.ID, u.Index, u.Addr)
			}
			if st.Rcpts[u.Index].Status != Pending {
				continue
			}
			st.Rcpts[u.Index] = u.Rcpt
			id := u.DSN
			if u.Status == Pending {
				id = u.Delayed
			}
			if id != "" && !seen[id] {
				seen[id] = true
				dsns = append(dsns, id)
			}
		}
	}
	return dsns, nil
}
