package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// This file is the state file's format: what it holds, its name, its
// limits, and how it is encoded and decoded. How and when it is written
// is in item.go.

// StateVersion is the version of the state file format. A state file with
// another version is corrupt to this reader (spool.ErrCorrupt), never
// guessed at.
const StateVersion = 1

// MaxText is the most octets of a recipient's reply text that a state
// file or a journal keeps (Rcpt.Text), and of each of its other free-text
// fields (Enhanced, Stage, Relay, DSN, Action, Delayed). A longer text is cut on a UTF-8
// boundary and ends in TextCut (see ClipText). A smarthost can send a
// reply of any length, many lines of it for each recipient; Postfix, too,
// keeps only a few hundred bytes of it.
const MaxText = 512

// TextCut ends a text that ClipText shortened.
const TextCut = " [...]"

// The longest state file a run can write, derived from the limits of what
// it holds, so that ReadState, whose limit this is, reads every state
// file the writer can produce. A test writes the worst case and reads it
// back.
const (
	// jsonEscape is the most octets encoding/json writes for one octet
	// of a string: "\u003c" for '<', a control or an invalid byte.
	jsonEscape = 6
	// jsonInt is the longest decimal int64 or uint64, sign included.
	jsonInt = 20
	// jsonTime is the longest time encoding/json writes: RFC 3339 with
	// nanoseconds and a numeric offset, in quotes (it refuses years past
	// 9999).
	jsonTime = len(`"2006-01-02T15:04:05.999999999-07:00"`)
	// maxRcptJSON is the longest Rcpt: every key, the longest status,
	// number and time, and every string at its limit fully escaped.
	maxRcptJSON = len(`{"addr":"","status":"pending","code":,"enhanced":"","text":"","stage":"","relay":"","at":,"expired":true,"dsn":"","action":"","delayed":""}`) +
		jsonInt + jsonTime + jsonEscape*(spool.MaxAddrLen+7*MaxText)
	// maxStateSize is the longest state file: the fixed fields, then
	// spool.MaxRecipients recipients, each followed by a comma or the
	// end.
	maxStateSize = len(`{"version":,"id":"","seq":,"arrival":,"attempts":,"first_attempt":,"last_attempt":,"next_attempt":,"rcpts":[]}`+"\n") +
		3*jsonInt + 4*jsonTime + jsonEscape*spool.MaxQueueIDLen + spool.MaxRecipients*(maxRcptJSON+1)
)

// ClipText returns s if it is at most MaxText octets long, else its first
// octets, cut where a UTF-8 sequence starts, followed by TextCut: at most
// MaxText octets in all, and at most utf8.UTFMax-1 fewer. (In invalid
// UTF-8, where no sequence starts nearby, the cut is at MaxText.)
func ClipText(s string) string {
	if len(s) <= MaxText {
		return s
	}
	n := MaxText - len(TextCut)
	for i := n; i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			n = i
			break
		}
	}
	return s[:n] + TextCut
}

// clip bounds the free-text fields of r (see MaxText).
func (r *Rcpt) clip() {
	for _, p := range []*string{&r.Enhanced, &r.Text, &r.Stage, &r.Relay, &r.DSN, &r.Action, &r.Delayed} {
		*p = ClipText(*p)
	}
}

// check reports whether r can be stored: an address of at most
// spool.MaxAddrLen octets (an address is never cut: it must match the
// envelope).
func (r *Rcpt) check() error {
	if len(r.Addr) > spool.MaxAddrLen {
		return fmt.Errorf("queue: recipient address longer than %d octets", spool.MaxAddrLen)
	}
	return nil
}

// RcptStatus is the delivery status of one recipient. The zero value is
// Pending: a message without a state file has every recipient pending.
type RcptStatus int

const (
	// Pending recipients are still to be delivered.
	Pending RcptStatus = iota
	// Done recipients were accepted by a final 250 after the data; they
	// are never sent again.
	Done
	// Failed recipients failed permanently or expired; a delivery status
	// notification was spooled for them unless the sender was <> or
	// their NOTIFY excludes FAILURE.
	Failed
)

var statusNames = [...]string{Pending: "pending", Done: "done", Failed: "failed"}

// String returns "pending", "done" or "failed".
func (s RcptStatus) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return "status(" + strconv.Itoa(int(s)) + ")"
	}
	return statusNames[s]
}

// MarshalText encodes the status as its name; an unknown status is an
// error.
func (s RcptStatus) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(statusNames) {
		return nil, fmt.Errorf("queue: bad recipient status %d", int(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText decodes a status name; an unknown name is an error.
func (s *RcptStatus) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if string(b) == n {
			*s = RcptStatus(i)
			return nil
		}
	}
	return fmt.Errorf("queue: unknown recipient status %q", b)
}

// Rcpt is the delivery state of one recipient and the result of its last
// attempt. The queue stores the reply fields without interpreting them.
type Rcpt struct {
	// Addr is the forward-path, a copy of Envelope.To at the same index
	// (checked when the state is loaded).
	Addr   string     `json:"addr"`
	Status RcptStatus `json:"status"`
	// Code is the last SMTP reply code (RFC 5321 section 4.2); 0 when the
	// last attempt ended without a reply (network, TLS, local limit).
	Code int `json:"code,omitempty"`
	// Enhanced is the RFC 3463 status code "class.subject.detail" of the
	// last reply, or the one assigned locally.
	Enhanced string `json:"enhanced,omitempty"`
	// Text is the reply text (one line) or the local error.
	Text string `json:"text,omitempty"`
	// Stage is the protocol step of the last result ("connect", "rcpt",
	// "dot", ...).
	Stage string `json:"stage,omitempty"`
	// Relay is the smarthost of the last attempt, "" if none was reached.
	Relay string `json:"relay,omitempty"`
	// At is the time of the last result.
	At time.Time `json:"at,omitzero"`
	// Expired is true for a recipient failed because the queue lifetime
	// passed, not by a permanent reply.
	Expired bool `json:"expired,omitempty"`
	// DSN is the queue id of the delivery status notification that
	// reported this recipient's final status: its failure, or, for a Done
	// recipient whose sender asked for NOTIFY=SUCCESS, its success (see
	// Action).
	DSN string `json:"dsn,omitempty"`
	// Action is, for a Done recipient, the RFC 3464 Action of a success
	// notice: "relayed" when the next hop took the message without
	// offering DSN, so that it will not report success (RFC 3461
	// section 5.2.2), "delivered" for a final delivery by a local
	// transport (section 5.2.3), "expanded" for an alias recipient
	// handed to its expansion of several addresses (section 5.2.7.3;
	// rule 7 then rule 8 in item.go). In RecordAccepted's updates it is the
	// transport's offer; it stays only when the notice is spooled (DSN
	// names it). Absent from files written before success notices.
	Action string `json:"action,omitempty"`
	// Delayed is the queue id of the one delay notice (RFC 3464 Action:
	// delayed) spooled for this recipient while it was pending (see
	// Item.Delay). Absent from files written before delay notices.
	Delayed string `json:"delayed,omitempty"`
}

// State is the delivery state of one queued message: state/<name>, where
// the name carries the queue id and the next attempt time (see StateName),
// so that a run finds what is due from a directory listing alone.
type State struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Seq grows by one at each write; of two state files left for one
	// message by a crash, the higher Seq wins.
	Seq uint64 `json:"seq"`
	// Arrival is the envelope's Received time (RFC 3464 Arrival-Date).
	Arrival time.Time `json:"arrival"`
	// Attempts counts delivery runs that tried the message.
	Attempts int `json:"attempts"`
	// First and Last are the times of the first and latest attempt.
	First time.Time `json:"first_attempt,omitzero"`
	Last  time.Time `json:"last_attempt,omitzero"`
	// Next is when the message is due again.
	Next time.Time `json:"next_attempt,omitzero"`
	// Rcpts has one entry per Envelope.To, in the same order.
	Rcpts []Rcpt `json:"rcpts"`
}

// NewState returns the state of a message never tried: every recipient
// pending, arrival at the envelope's Received time.
func NewState(env *spool.Envelope) *State {
	st := &State{Version: StateVersion, ID: env.QueueID, Arrival: env.Received}
	st.Rcpts = make([]Rcpt, len(env.To))
	for i, to := range env.To {
		st.Rcpts[i].Addr = to
	}
	return st
}

// Pending returns the indexes of the pending recipients, in envelope order.
func (st *State) Pending() []int {
	var p []int
	for i, r := range st.Rcpts {
		if r.Status == Pending {
			p = append(p, i)
		}
	}
	return p
}

// AnyFailed reports whether a recipient has failed.
func (st *State) AnyFailed() bool {
	for _, r := range st.Rcpts {
		if r.Status == Failed {
			return true
		}
	}
	return false
}

// Check reports whether st belongs to the message env: same id and the
// same recipients in the same order. A mismatch wraps spool.ErrCorrupt.
func (st *State) Check(env *spool.Envelope) error {
	if st.ID != env.QueueID || len(st.Rcpts) != len(env.To) {
		return fmt.Errorf("%w: state does not match message %s", spool.ErrCorrupt, env.QueueID)
	}
	for i, r := range st.Rcpts {
		if r.Addr != env.To[i] {
			return fmt.Errorf("%w: state recipient %d does not match message %s", spool.ErrCorrupt, i, env.QueueID)
		}
	}
	return nil
}

// Name separators in state/: a queue id never contains '@'.
const (
	nameSep       = "@"
	journalSuffix = nameSep + "journal"
	holdSuffix    = nameSep + "hold"
	failedSuffix  = nameSep + "state"
)

// StateName is the file name in state/ of the state of message id due at
// next: "<id>@<next as Unix seconds>". A zero next gives "<id>@0".
func StateName(id string, next time.Time) string {
	var n int64
	if !next.IsZero() {
		n = next.Unix()
	}
	return id + nameSep + strconv.FormatInt(n, 10)
}

// JournalName is the file name in state/ of the journal of message id.
func JournalName(id string) string { return id + journalSuffix }

// HoldName is the file name in state/ of the hold marker of message id:
// an empty file whose presence keeps runs from delivering the message
// (Queue.Hold).
func HoldName(id string) string { return id + holdSuffix }

// nameKind is what a name in state/ holds.
type nameKind int

const (
	kindState   nameKind = iota // a state file, "<id>@<next>"
	kindJournal                 // a journal, "<id>@journal"
	kindHold                    // a hold marker, "<id>@hold"
)

// parseStateName splits a name in state/ into the queue id, its kind and,
// for a state file, the next attempt time. ok is false for any other name
// (temporary or foreign files).
func parseStateName(name string) (id string, next time.Time, kind nameKind, ok bool) {
	i := strings.LastIndex(name, nameSep)
	if i <= 0 || !spool.ValidQueueID(name[:i]) {
		return "", time.Time{}, 0, false
	}
	id, rest := name[:i], name[i+1:]
	switch rest {
	case "journal":
		return id, time.Time{}, kindJournal, true
	case "hold":
		return id, time.Time{}, kindHold, true
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n < 0 {
		return "", time.Time{}, 0, false
	}
	if n > 0 {
		next = time.Unix(n, 0).UTC()
	}
	return id, next, kindState, true
}

// ReadState reads state/<name>. A missing file wraps os.ErrNotExist; a
// name that is not a regular file wraps spool.ErrNotRegular (see
// spool.OpenFile); a file that does not decode, is longer than any state
// file a run can write, has another version or an invalid id wraps
// spool.ErrCorrupt.
func (q *Queue) ReadState(name string) (*State, error) {
	return readState(q.sp.Path(StateDir, name))
}

// LoadState reads the state files found for one message (normally one;
// two after a crash between writing the new name and removing the old)
// and returns the one with the highest Seq. Errors are ReadState's.
func (q *Queue) LoadState(names []string) (*State, error) {
	var best *State
	for _, n := range names {
		st, err := q.ReadState(n)
		if err != nil {
			return nil, err
		}
		if best == nil || st.Seq > best.Seq {
			best = st
		}
	}
	return best, nil
}

// ReadFailedState reads failed/<id>@state, the final state of a message
// that left the queue with a failed recipient. Errors are ReadState's.
func (q *Queue) ReadFailedState(id string) (*State, error) {
	return readState(q.sp.Path(FailedDir, id+failedSuffix))
}

func readState(path string) (*State, error) {
	f, err := spool.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(maxStateSize)+1))
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", path, err)
	}
	return decodeState(b, path, "")
}

// decodeState decodes the state file dir/name (joined for the errors
// only; name may be empty) from its bytes b, with ReadState's checks and
// errors.
func decodeState(b []byte, dir, name string) (*State, error) {
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("%w: state %s too large", spool.ErrCorrupt, filepath.Join(dir, name))
	}
	st, ok := decodeStateFast(b)
	if !ok {
		st = new(State)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(st); err != nil {
			return nil, fmt.Errorf("%w: state %s: %v", spool.ErrCorrupt, filepath.Join(dir, name), err)
		}
	}
	if st.Version != StateVersion {
		return nil, fmt.Errorf("%w: state %s: unknown version %d", spool.ErrCorrupt, filepath.Join(dir, name), st.Version)
	}
	if !spool.ValidQueueID(st.ID) {
		return nil, fmt.Errorf("%w: state %s: bad id", spool.ErrCorrupt, filepath.Join(dir, name))
	}
	return st, nil
}

// encode bounds st and returns its JSON line: free-text fields are cut
// to MaxText (in st too); a state with more than spool.MaxRecipients
// recipients or a longer address than spool.MaxAddrLen is an error, so
// every state written is one ReadState reads.
func (st *State) encode() ([]byte, error) {
	st.Version = StateVersion
	if !spool.ValidQueueID(st.ID) {
		return nil, fmt.Errorf("queue: state: invalid queue id %q", st.ID)
	}
	if len(st.Rcpts) > spool.MaxRecipients {
		return nil, fmt.Errorf("queue: state %s has %d recipients, more than %d", st.ID, len(st.Rcpts), spool.MaxRecipients)
	}
	for i := range st.Rcpts {
		if err := st.Rcpts[i].check(); err != nil {
			return nil, fmt.Errorf("%w (state %s)", err, st.ID)
		}
		st.Rcpts[i].clip()
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("queue: encode state %s: %w", st.ID, err)
	}
	b = append(b, '\n')
	if len(b) > maxStateSize {
		// Cannot happen: maxStateSize is derived from the limits above.
		return nil, fmt.Errorf("queue: state %s: %d bytes, more than the reader's limit %d", st.ID, len(b), maxStateSize)
	}
	return b, nil
}
