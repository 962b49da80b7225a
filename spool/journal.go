package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
)

// The journal of a message, state/<id>@journal, records outcomes that must
// be durable at once and cannot wait for the next state write: the
// recipients accepted by a final 250 (appended and fsync'd before the
// sender sends anything else, so a crash re-sends at most the transaction
// whose 250 was not yet recorded) and the intent to spool a delivery
// status notification. Each record is one line, "<crc32c hex> <json>\n",
// written with one write(2) and fsync'd; a crash can only tear the last
// line, which readers drop. The next state write folds the journal in and
// removes it; folding twice is harmless, since a record only sets
// recipients to a final status.

// maxJournalSize is the longest journal AppendJournal writes and so what
// ReadJournal reads. A journal names each recipient at most once: a
// record only sets pending recipients to a final status, and a run folds
// any journal into the state and removes it before it delivers anything.
// So a journal is at most MaxRecipients records of one recipient each,
// every Rcpt bounded as in a state file (maxRcptJSON).
const maxJournalSize = MaxRecipients * (len(`00000000 {"set":[{"i":,}]}`+"\n") + jsonInt + maxRcptJSON)

// JournalEntry is one journal record: a set of recipient updates made
// durable together.
type JournalEntry struct {
	Set []JournalRcpt `json:"set"`
}

// JournalRcpt sets the recipient at Index (into Envelope.To) to Rcpt.
type JournalRcpt struct {
	Index int `json:"i"`
	Rcpt
}

// AppendJournal appends e to the journal of message id and fsyncs it; when
// the journal is new, it also fsyncs state/ so that its name survives a
// crash. Only after a nil return is the outcome recorded. Free-text fields
// are cut to MaxText first, as by WriteState (in e too); an address over
// MaxAddrLen, or a journal that would grow past what ReadJournal reads
// (which a sender that folds its journals never makes), is an error.
func (s *Spool) AppendJournal(id string, e JournalEntry) error {
	for i := range e.Set {
		if err := e.Set[i].check(); err != nil {
			return fmt.Errorf("%w (journal %s)", err, id)
		}
		e.Set[i].clip()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("spool: encode journal %s: %w", id, err)
	}
	line := make([]byte, 0, len(b)+10)
	line = fmt.Appendf(line, "%08x ", crc32.Checksum(b, castagnoli()))
	line = append(append(line, b...), '\n')

	path := s.Path(StateDir, JournalName(id))
	created := true
	f, err := OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, FileMode)
	if errors.Is(err, os.ErrExist) {
		created = false
		f, err = OpenFile(path, os.O_WRONLY|os.O_APPEND, FileMode)
	}
	if err != nil {
		return fmt.Errorf("spool: journal: %w", err)
	}
	if fi, serr := f.Stat(); serr != nil {
		err = serr
	} else if fi.Size()+int64(len(line)) > int64(maxJournalSize) {
		err = fmt.Errorf("%d bytes would pass the reader's limit of %d", fi.Size()+int64(len(line)), maxJournalSize)
	}
	if err == nil {
		_, err = f.Write(line)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: journal %s: %w", id, err)
	}
	if created {
		return SyncDir(s.Path(StateDir))
	}
	return nil
}

// ReadJournal returns the complete records of the journal of message id, in
// order, and torn=true if a damaged or incomplete last part was dropped. A
// missing journal returns no records and no error; a name that is not a
// regular file returns an error wrapping ErrNotRegular (see OpenFile).
func (s *Spool) ReadJournal(id string) (entries []JournalEntry, torn bool, err error) {
	f, err := OpenFile(s.Path(StateDir, JournalName(id)), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("spool: journal: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(maxJournalSize)))
	if err != nil {
		return nil, false, fmt.Errorf("spool: journal %s: %w", id, err)
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

// RemoveJournal removes the journal of message id, if any. The removal is
// not fsync'd: a journal that reappears after a crash is folded again,
// which changes nothing.
func (s *Spool) RemoveJournal(id string) error {
	err := os.Remove(s.Path(StateDir, JournalName(id)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Apply folds journal entries into st. Done and Failed are final: an
// update for a recipient already final is skipped, so a journal folded
// twice changes nothing. An update for an index out of range or for
// another address wraps ErrCorrupt. It returns the DSN queue ids named by
// the applied updates, without duplicates, in order: a state file names a
// DSN only once it is spooled, a journal may name one not yet spooled.
func (st *State) Apply(entries []JournalEntry) (dsns []string, err error) {
	seen := map[string]bool{}
	for _, e := range entries {
		for _, u := range e.Set {
			if u.Index < 0 || u.Index >= len(st.Rcpts) || st.Rcpts[u.Index].Addr != u.Addr {
				return nil, fmt.Errorf("%w: journal of %s names recipient %d <%s>", ErrCorrupt, st.ID, u.Index, u.Addr)
			}
			if st.Rcpts[u.Index].Status != Pending {
				continue
			}
			st.Rcpts[u.Index] = u.Rcpt
			if u.DSN != "" && !seen[u.DSN] {
				seen[u.DSN] = true
				dsns = append(dsns, u.DSN)
			}
		}
	}
	return dsns, nil
}
