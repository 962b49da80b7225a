package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// The order of writes.
//
// This file (and expand.go, for rule 7) is the only one that writes,
// renames or removes a file of the queue: state files, journals, notifications spooled into queue/, a
// message on its way out of queue/, orphans, and dropped messages on their
// way from drop/ into queue/ (pickup.go checks them, this file moves them). Every step below ends with the fsyncs
// that make it durable before the next step starts, and the steps are
// ordered so that a run killed at any instant (SIGKILL, a power cut)
// leaves what the next run reads as "before the step" or "after it":
//
//  1. An outcome is durable before the run acts on it. A transaction's
//     final 250 is recorded (RecordAccepted) before the transport sends
//     anything else: a journal line is appended and fsync'd (and state/
//     too when the journal is new, so that its name survives), or, when
//     the 250 leaves the message nothing to do, queue/<id> is removed and
//     queue/ fsync'd, which is cheaper and final. A crash thus re-sends at
//     most the one transaction whose 250 was not yet recorded: the server
//     may have taken it (RFC 5321 section 6.1), and no order of writes can
//     close that window.
//  2. A notification is spooled once, and before its original leaves the
//     queue. Bounce first journals the failed recipients with the
//     notification's queue id (the intent), then spools the notification
//     (spool.Writer.Commit: fsync, rename, fsync of queue/); only after
//     that may Settle write a state that names it, or let the original
//     go. Load, in the next run, spools a notification that a journal
//     names and queue/ lacks: a crash between intent and spool completes
//     the intent instead of losing it. A run folds every journal (Load,
//     then Settle) before it delivers anything, so a notification is never
//     delivered, and gone from queue/, while an intent naming it is still
//     unsettled; it is therefore never spooled twice.
//  3. The message file leaves first, its state after. queue/<id> is
//     removed (or renamed to failed/ or corrupt/) and queue/ fsync'd
//     before state/ is touched: a state file without its message is an
//     orphan that the next Scan removes; a message without its state would
//     look new and be sent again to every recipient.
//  4. A state file is replaced, never edited: written in tmp/, fsync'd,
//     renamed to its name (which carries the next attempt), the old names
//     removed, state/ fsync'd; only then is the journal it folded in
//     removed. A crash leaves the old state or both (the higher Seq wins),
//     and the journal, which folds again to the same result.
//  5. Deferrals and failures without a notification are recorded with the
//     state (Settle) when the attempt ends; a crash before that loses only
//     the attempt, which the next run repeats.
//  6. A dropped message (Pickup) is in queue/ before it leaves drop/:
//     its copy is written in tmp/, fsync'd, renamed into queue/ under a
//     new queue id and queue/ fsync'd (spool.Writer.Commit); only then is
//     drop/<name> removed and drop/ fsync'd. A crash between the two
//     leaves it in both, and the next run queues it again: delivered
//     twice, never lost (as Postfix's pickup). A dropped file that fails
//     a check is renamed to corrupt/, never copied.
//  7. An alias expansion is in queue/ before its alias recipient is
//     recorded. The expansion of recipient i of message P is spooled as
//     queue/<P>-a<i> (ExpansionID: derived, never random), fsync'd and
//     renamed (spool.Writer.Commit), unless that file is already there;
//     only then is recipient i recorded done (RecordAccepted). A crash in
//     between leaves P with i pending and the expansion in queue/: before
//     it delivers anything, the next run records i in P for each
//     expansion never tried (send's prepare), so the expansion cannot be
//     delivered, and gone, while P would still spool it again. An
//     expansion is never expanded again. Each expanded address is thus
//     queued exactly once.
//  8. A success or delay notice (RFC 3461 sections 4.1 and 5.2) is spooled once,
//     in rule 2's order: its intent, in the journal, names its queue id
//     before it is spooled, and Load completes an intent whose notice
//     queue/ lacks. A success notice's intent is the acceptance record
//     itself: RecordAccepted's journal line sets the recipients Done with
//     the notice's id (Rcpt.DSN, Rcpt.Action), never the cheaper removal
//     of rule 1, which Settle does once the notice is in queue/. A delay
//     notice's intent (Delay) leaves the recipients pending with the
//     notice's id in Rcpt.Delayed; Settle then writes the state that
//     names it, and a recipient whose state names a delay notice never
//     gets another. Apply reports a Delayed id only from a pending
//     update, so a delay notice delivered long ago is never spooled
//     again when the same recipient's final record is folded. An
//     "expanded" notice (RFC 3461 section 5.2.7.3) follows rule 7 then
//     this rule: the expansion is spooled, then the alias recipient's
//     acceptance record names the notice, then the notice is spooled;
//     a crash before the record leaves the alias pending with its
//     expansion never tried, and the next run's record (rule 7's
//     recovery) is the one that names the notice.
//  9. A hold (Hold, smtp-send --hold) is one empty file, state/<id>@hold,
//     made with O_EXCL and then state/ fsync'd; Release removes it and
//     fsyncs state/. A crash leaves it made or not, never half: the
//     message and its state are not touched. Runs leave a held message
//     alone (but fold a journal a killed run left, rule 2). A marker
//     whose message left the queue is an orphan, which the next Scan
//     removes.
//
// The tests kill a run at each Step (send's TestKillAtEachStep) and at
// random instants (cmd/smtp-send's TestKillSendAnywhere) and check exactly
// this; docs/send.md, "The duplicate window", says it for administrators.

// Step names a point in the crash ordering, passed to Queue.Hook just
// after it. The zero value is the first step of recording a delivery.
type Step int

const (
	// StepAccepted: the final 250 arrived; nothing recorded yet.
	StepAccepted Step = iota
	// StepRecorded: the 250 is durable (journal fsync'd, or the finished
	// message removed).
	StepRecorded
	// StepBounceIntent: the failed recipients and the notification's
	// queue id are journalled; the notification is not spooled yet.
	StepBounceIntent
	// StepBounceSpooled: the notification is in queue/; the original is
	// unchanged.
	StepBounceSpooled
	// StepStateWritten: the new state file is durable; the journal is
	// still there.
	StepStateWritten
	// StepFinished: the message left queue/ (removed or moved to
	// failed/).
	StepFinished
	// StepPickedUp: a dropped message is in queue/ under its new id;
	// drop/ still holds it.
	StepPickedUp
	// StepExpansionSpooled: an alias expansion is in queue/ (rule 7);
	// the alias recipient is not recorded yet.
	StepExpansionSpooled
	// StepSuccessSpooled: the success notice of the recipients just
	// recorded (StepRecorded) is in queue/.
	StepSuccessSpooled
	// StepDelayIntent: the recipients given a delay notice and its queue
	// id are journalled; the notice is not spooled yet.
	StepDelayIntent
	// StepDelaySpooled: the delay notice is in queue/; the state does
	// not name it yet.
	StepDelaySpooled
)

var stepNames = [...]string{"accepted", "recorded", "bounce-intent", "bounce-spooled", "state-written", "finished", "picked-up",
	"expansion-spooled", "success-spooled", "delay-intent", "delay-spooled"}

// String returns the step's name.
func (s Step) String() string {
	if s < 0 || int(s) >= len(stepNames) {
		return "step(" + strconv.Itoa(int(s)) + ")"
	}
	return stepNames[s]
}

func (q *Queue) hook(step Step, id string) {
	if q.Hook != nil {
		q.Hook(step, id)
	}
}

// Item is one queued message in the hands of a run: its message file, open
// and locked, its delivery state, and the names of its files in state/.
// Its steps (RecordAccepted, Bounce, Settle, SetCorrupt) change those
// files in the order described above. The first step that fails leaves
// the item broken: every later step returns the same error, so a step can
// never run on a state the files do not hold. An Item is used by one
// goroutine.
type Item struct {
	// State is the delivery state, with the journal folded in (see
	// Load). The caller changes it in memory; the steps make it durable.
	State *State

	q       *Queue
	e       *Entry // the names in state/, kept current
	msg     *spool.Message
	journal bool  // state/<id>@journal exists
	gone    bool  // the message left queue/
	err     error // the first step that failed
}

// Open opens queue/<e.ID> and takes its lock, exclusive, waiting a little
// for a reader such as List, which holds a shared lock only for an
// instant. The item has no state until Load. It keeps e current: after
// Settle, e names the new state file and next attempt, so that a run that
// opens the message again (as after folding a journal) finds them. It
// returns the errors of
// spool.Open (wrapping spool.ErrCorrupt, spool.ErrNotRegular,
// fs.ErrNotExist, ...), or one wrapping ErrLocked when another process
// holds the message.
func (q *Queue) Open(e *Entry) (*Item, error) {
	m, err := q.sp.OpenMessage(e.ID)
	if err != nil {
		return nil, err
	}
	for range 5 {
		if err = LockMessage(m.File(), true); !errors.Is(err, ErrLocked) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return &Item{q: q, e: e, msg: m}, nil
}

// Message returns the open message file: its envelope and content. The
// item closes it.
func (it *Item) Message() *spool.Message { return it.msg }

// Gone reports whether the message has left queue/ (removed, or moved to
// failed/).
func (it *Item) Gone() bool { return it.gone }

// Close closes the message file, which releases its lock, and returns the
// error of close(2).
func (it *Item) Close() error { return it.msg.Close() }

// Load reads the item's state (a message without one was never tried:
// every recipient pending) and folds in its journal, then spools each
// notification that the journal names and queue/ lacks (rule 2 above);
// now is the notifications' arrival time. Errors wrapping
// spool.ErrCorrupt or spool.ErrNotRegular mean the message is to be set
// aside (SetCorrupt); other errors (an unreadable state file, a failed
// spool write) leave it where it is.
func (it *Item) Load(now time.Time) error {
	q, e, env := it.q, it.e, &it.msg.Envelope
	if e.ID != env.QueueID {
		return fmt.Errorf("%w: file name %s differs from queue id %s", spool.ErrCorrupt, e.ID, env.QueueID)
	}
	st := NewState(env)
	if len(e.States) > 0 {
		var err error
		if st, err = q.LoadState(e.States); err != nil {
			return err
		}
		if err := st.Check(env); err != nil {
			return err
		}
	}
	it.State = st
	if !e.Journal {
		return nil
	}
	it.journal = true
	entries, torn, err := q.ReadJournal(e.ID)
	if err != nil {
		return err
	}
	if torn {
		q.log().Warn("journal ends in a torn record (crash while appending); ignored", "id", e.ID)
	}
	dsns, err := st.Apply(entries)
	if err != nil {
		return err
	}
	for _, id := range dsns {
		if _, err := os.Lstat(q.sp.Path(spool.QueueDir, id)); err == nil {
			continue
		}
		q.log().Warn("spooling a notification a crash interrupted", "id", e.ID, "dsn", id)
		if err := it.spoolNotice(id, now); err != nil {
			return err
		}
	}
	return nil
}

// RecordAccepted sets the recipients of set, accepted by one
// transaction's final 250, and makes that durable before it returns
// (rule 1): the transport must send nothing more until then. When no
// recipient is left pending and none failed, the record is the removal
// of the message; otherwise a journal line.
//
// An update whose Rcpt.Action the transport set ("relayed",
// "delivered", or "expanded" for an alias) gets a success notice when
// the sender asked for one (wantSuccessNotice): those recipients are
// recorded with the notice's queue id in Rcpt.DSN, by a journal line
// even when nothing is left to do, and the notice is spooled before
// RecordAccepted returns (rule 8); the other updates lose their Action.
// set is changed accordingly. now is the notice's arrival time. An error
// (the broken item's, or a write's) means the outcome may not be
// recorded: stop the run.
func (it *Item) RecordAccepted(now time.Time, set []Update) error {
	if it.err != nil {
		return it.err
	}
	st, id := it.State, it.e.ID
	var dsn string
	for n := range set {
		if !it.wantSuccessNotice(set[n]) {
			set[n].Action = ""
			continue
		}
		if dsn == "" {
			var err error
			if dsn, err = spool.NewQueueID(now); err != nil {
				it.err = err
				return err
			}
		}
		set[n].DSN = dsn
	}
	for _, u := range set {
		st.Rcpts[u.Index] = u.Rcpt
	}
	it.q.hook(StepAccepted, id)
	var err error
	if dsn == "" && len(st.Pending()) == 0 && !st.AnyFailed() {
		err = it.remove()
		it.gone = true
	} else {
		err = it.appendJournal(JournalEntry{Set: set})
		it.journal = true
	}
	if err != nil {
		it.err = err
		return err
	}
	it.q.hook(StepRecorded, id)
	if dsn != "" {
		if err := it.spoolNotice(dsn, now); err != nil {
			it.err = err
			return err
		}
		it.q.hook(StepSuccessSpooled, id)
	}
	return nil
}

// wantSuccessNotice reports whether the accepted recipient of u gets a
// success notice from us: the transport offered one (Rcpt.Action: the
// next hop will not report success, or this was the final delivery), the
// reverse-path is not null (RFC 5321 section 4.5.5: never a notice for
// a notice) and the recipient's NOTIFY names SUCCESS (section 4.1; without
// NOTIFY, no success notice). The same holds for an alias recipient
// recorded with Action "expanded".
func (it *Item) wantSuccessNotice(u Update) bool {
	return u.Status == Done && u.Action != "" && it.msg.From != "" &&
		strings.Contains(it.msg.RcptDSN(u.Index).Notify, "SUCCESS")
}

// Delay spools one delay notice (RFC 3464 Action: delayed) for those of
// the recipients idxs, pending in State, that have none yet and whose
// sender wants one (wantDelayNotice; byDefault answers for a recipient
// without NOTIFY), and returns its queue id; State names it in each of
// them (Rcpt.Delayed). Their updates and the id are journalled first,
// then the notice is spooled (rule 8); Settle must follow. A message from
// the null sender gets none (RFC 5321 section 4.5.5): Delay then does
// nothing and returns "", as when no recipient is left. now is the
// notice's arrival time. An error leaves the item broken: stop the run.
func (it *Item) Delay(now time.Time, idxs []int, byDefault bool) (string, error) {
	if it.err != nil {
		return "", it.err
	}
	if it.msg.From == "" {
		return "", nil
	}
	var keep []int
	for _, i := range idxs {
		if rc := it.State.Rcpts[i]; rc.Status == Pending && rc.Delayed == "" && it.wantDelayNotice(i, byDefault) {
			keep = append(keep, i)
		}
	}
	if len(keep) == 0 {
		return "", nil
	}
	id, err := it.delay(now, keep)
	if err != nil {
		it.err = err
		return "", err
	}
	return id, nil
}

// wantDelayNotice reports whether the sender of recipient i wants to hear
// of a delay: its NOTIFY names DELAY, or it has no NOTIFY and byDefault
// (RFC 3461 section 4.1 leaves that to the MTA). NOTIFY=NEVER, or a list
// without DELAY, means no delay notice.
func (it *Item) wantDelayNotice(i int, byDefault bool) bool {
	n := it.msg.RcptDSN(i).Notify
	return strings.Contains(n, "DELAY") || n == "" && byDefault
}

func (it *Item) delay(now time.Time, idxs []int) (string, error) {
	id, err := spool.NewQueueID(now)
	if err != nil {
		return "", err
	}
	set := make([]Update, 0, len(idxs))
	for _, i := range idxs {
		it.State.Rcpts[i].Delayed = id
		set = append(set, Update{Index: i, Rcpt: it.State.Rcpts[i]})
	}
	if err := it.appendJournal(JournalEntry{Set: set}); err != nil {
		return "", err
	}
	it.journal = true
	it.q.hook(StepDelayIntent, it.e.ID)
	if err := it.spoolNotice(id, now); err != nil {
		return "", err
	}
	it.q.hook(StepDelaySpooled, it.e.ID)
	return id, nil
}

// Bounce spools one delivery status notification for the recipients
// failed, which the caller has set to Failed in State, and returns its
// queue id; State names it in each of them (Rcpt.DSN). The failed
// recipients and the id are journalled first, then the notification is
// spooled (rule 2); Settle must follow. A message from the null sender is
// never bounced (RFC 5321 section 4.5.5; a notification about a
// notification could loop), and recipients whose NOTIFY excludes FAILURE
// are left out (wantFailureNotice): when none is left, Bounce does
// nothing and returns "". now is the notification's arrival time. An
// error leaves the item broken: stop the run.
func (it *Item) Bounce(now time.Time, failed []int) (string, error) {
	if it.err != nil {
		return "", it.err
	}
	failed = it.wantFailureNotice(failed)
	if len(failed) == 0 || it.msg.From == "" {
		return "", nil
	}
	id, err := it.bounce(now, failed)
	if err != nil {
		it.err = err
		return "", err
	}
	return id, nil
}

// wantFailureNotice keeps of failed the recipients whose sender wants to
// hear of a failure: those without NOTIFY and those whose NOTIFY names
// FAILURE (RFC 3461 section 4.1). NOTIFY=NEVER, or SUCCESS and DELAY
// without FAILURE, means no notification of failure: such a recipient
// is failed in silence (its message still goes to failed/, and the log
// says so).
func (it *Item) wantFailureNotice(failed []int) []int {
	keep := failed[:0:0]
	for _, i := range failed {
		n := it.msg.RcptDSN(i).Notify
		if n == "" || strings.Contains(n, "FAILURE") {
			keep = append(keep, i)
		}
	}
	return keep
}

func (it *Item) bounce(now time.Time, failed []int) (string, error) {
	id, err := spool.NewQueueID(now)
	if err != nil {
		return "", err
	}
	set := make([]Update, 0, len(failed))
	for _, i := range failed {
		it.State.Rcpts[i].DSN = id
		set = append(set, Update{Index: i, Rcpt: it.State.Rcpts[i]})
	}
	if err := it.appendJournal(JournalEntry{Set: set}); err != nil {
		return "", err
	}
	it.journal = true
	it.q.hook(StepBounceIntent, it.e.ID)
	if err := it.spoolNotice(id, now); err != nil {
		return "", err
	}
	it.q.hook(StepBounceSpooled, it.e.ID)
	return id, nil
}

// Notice is what a delivery status notification reports, as Queue.Notify
// receives it: the failure, the delay or the success of its recipients,
// one kind a notice (see Rcpt.NoticeAction).
type Notice struct {
	// ID is the notification's own queue id.
	ID string
	// Now is when it is made: its Date.
	Now time.Time
	// Envelope is the original message's.
	Envelope *spool.Envelope
	// Content returns a new reader of the original message data from its
	// start at each call; it is streamed from the spool, never held in
	// memory.
	Content func() io.Reader
	// Size is the length of the original message data, in octets.
	Size int64
	// Arrival and Attempts are the original's, from its state.
	Arrival  time.Time
	Attempts int
	// Rcpts are the recipients it reports, in envelope order: failed
	// ones, pending ones (a delay notice) or done ones (a success
	// notice).
	Rcpts []Rcpt
	// RetryUntil is when a delayed recipient will be given up (RFC 3464
	// Will-Retry-Until): the queue leaves it zero, Queue.Notify's owner
	// knows the queue lifetime and sets it.
	RetryUntil time.Time
	// ReturnFull is the most octets of message data a failure notice
	// returns whole for RET=FULL (RFC 3461 section 4.3); a larger message
	// gets its header section only. The queue leaves it zero (headers
	// only); Queue.Notify's owner sets it.
	ReturnFull int64
}

// NoticeAction is the RFC 3464 Action (section 2.3.3) with which a notice
// reports r: "failed" for a failed recipient, "delayed" for a pending
// one, r.Action ("relayed", "delivered" or "expanded") for a done one.
func (r Rcpt) NoticeAction() string {
	switch r.Status {
	case Failed:
		return "failed"
	case Pending:
		return "delayed"
	}
	return r.Action
}

// spoolNotice spools, durably and under queue id id, the notification for
// the recipients of the item whose state names id, from the null sender
// <> (RFC 5321 section 4.5.5) to the original sender, through the same
// queue. Queue.Notify writes its body.
func (it *Item) spoolNotice(id string, now time.Time) error {
	q, env, st := it.q, &it.msg.Envelope, it.State
	if q.Notify == nil {
		return errors.New("queue: no Notify function to write a notification")
	}
	n := &Notice{ID: id, Now: now, Envelope: env, Content: it.msg.Content, Size: it.msg.Size, Arrival: st.Arrival, Attempts: st.Attempts}
	for _, rc := range st.Rcpts {
		if rc.Status == Pending && rc.Delayed == id || rc.Status != Pending && rc.DSN == id {
			n.Rcpts = append(n.Rcpts, rc)
		}
	}
	dsn := &spool.Envelope{QueueID: id, Received: now, Helo: q.Hostname, Protocol: "local",
		From: "", To: []string{env.From}, SMTPUTF8: !isASCII(env.From)}
	if dsn.SMTPUTF8 {
		dsn.Body = "8BITMIME" // the To: field is UTF-8 (RFC 6532)
	}
	wr, err := q.sp.Create(dsn)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(wr)
	err = q.Notify(bw, n)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		wr.Abort()
		return err
	}
	if err := wr.Commit(); err != nil {
		return err
	}
	kind := ""
	if len(n.Rcpts) > 0 {
		kind = n.Rcpts[0].NoticeAction()
	}
	q.log().Info("notification spooled", "id", env.QueueID, "dsn", id, "action", kind, "to", env.From, "recipients", len(n.Rcpts))
	return nil
}

// What Settle did with the message.
const (
	Stayed      = ""                 // still queued, with its new state
	Removed     = "removed"          // every recipient done
	MovedFailed = "moved to failed/" // a recipient failed
)

// Settle makes State durable and ends the item's attempt. With no
// recipient pending, the message leaves the queue (rule 3): to failed/
// beside its final state if a recipient failed, else removed. Otherwise
// its state file is replaced and the journal, now folded in, removed
// (rule 4). Failed recipients must have had their Bounce first. It
// returns Stayed, Removed or MovedFailed; an error leaves the item
// broken: stop the run.
func (it *Item) Settle() (string, error) {
	if it.err != nil {
		return "", it.err
	}
	left, err := it.settle()
	if err != nil {
		it.err = err
		return "", err
	}
	return left, nil
}

func (it *Item) settle() (string, error) {
	st, e := it.State, it.e
	if len(st.Pending()) == 0 {
		left, err := Removed, error(nil)
		if st.AnyFailed() {
			left, err = MovedFailed, it.moveFailed()
		} else {
			err = it.remove()
		}
		if err != nil {
			return "", err
		}
		it.gone = true
		it.q.hook(StepFinished, e.ID)
		return left, nil
	}
	name, err := it.writeState()
	if err != nil {
		return "", err
	}
	e.States, e.Next = []string{name}, st.Next
	it.q.hook(StepStateWritten, e.ID)
	if it.journal {
		if err := it.removeJournal(); err != nil {
			return "", err
		}
		it.journal, e.Journal = false, false
	}
	return Stayed, nil
}

// errSetAside breaks an item whose message was moved to corrupt/.
var errSetAside = errors.New("queue: message set aside in corrupt/")

// SetCorrupt moves the message to corrupt/ with its state files (see
// Queue.MoveCorrupt), for a message found damaged while it was open: its
// content failed its CRC, or Load found it or its state corrupt. The item
// is broken afterwards. It returns MoveCorrupt's error.
func (it *Item) SetCorrupt() error {
	err := it.q.MoveCorrupt(*it.e)
	it.err = errSetAside
	if err != nil {
		it.err = err
	}
	return err
}

// MoveCorrupt moves queue/<e.ID>, which does not parse or is not a regular
// file, to corrupt/ unchanged, then its state files and journal beside it,
// and fsyncs the directories. The message file moves first (rule 3): a
// crash in between must not leave a message without its state in queue/,
// where it would look new and be sent again to every recipient. It
// returns the wrapped error of the first rename or fsync that failed.
// What corrupt/ already holds under the same name is kept: the newcomer
// takes a free name (see setAside).
func (q *Queue) MoveCorrupt(e Entry) error {
	if err := q.setAside(q.sp.Path(spool.QueueDir, e.ID), e.ID); err != nil {
		return err
	}
	if err := spool.SyncDir(q.sp.Path(spool.QueueDir)); err != nil {
		return err
	}
	for _, n := range append(e.States[:len(e.States):len(e.States)], JournalName(e.ID)) {
		err := q.setAside(q.sp.Path(StateDir, n), n)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := spool.SyncDir(q.sp.Path(CorruptDir)); err != nil {
		return err
	}
	return spool.SyncDir(q.sp.Path(StateDir))
}

// maxAsideSuffix bounds the names setAside tries for one file.
const maxAsideSuffix = 1000

// setAside renames path to corrupt/<name>, or to corrupt/<name>.1, .2 and
// so on when that name is taken, so that nothing already set aside for
// inspection is replaced and a directory whose name is taken cannot stop
// the run. The run lock is held, and nothing else writes corrupt/, so a
// name found free stays free until the rename. It returns an error
// wrapping os.ErrNotExist when path does not exist, and the wrapped error
// of a failed rename.
func (q *Queue) setAside(path, name string) error {
	for i := 0; i <= maxAsideSuffix; i++ {
		target := name
		if i > 0 {
			target = name + "." + strconv.Itoa(i)
		}
		dst := q.sp.Path(CorruptDir, target)
		if _, err := os.Lstat(dst); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("queue: %w", err)
		}
		if err := os.Rename(path, dst); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		return nil
	}
	return fmt.Errorf("queue: corrupt/ holds %s and %d more of that name: clear it", name, maxAsideSuffix)
}

// appendJournal appends e to the item's journal and fsyncs it; when the
// journal is new, it also fsyncs state/ so that its name survives a crash.
// Only after a nil return is the outcome recorded. A journal that would
// grow past what ReadJournal reads (which a run that folds its journals
// never makes) is an error.
func (it *Item) appendJournal(e JournalEntry) error {
	return it.q.appendJournal(it.e.ID, e)
}

func (q *Queue) appendJournal(id string, e JournalEntry) error {
	line, err := encodeRecord(id, e)
	if err != nil {
		return err
	}
	path := q.sp.Path(StateDir, JournalName(id))
	created := true
	f, err := spool.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, spool.FileMode)
	if errors.Is(err, os.ErrExist) {
		created = false
		f, err = spool.OpenFile(path, os.O_WRONLY|os.O_APPEND, spool.FileMode)
	}
	if err != nil {
		return fmt.Errorf("queue: journal: %w", err)
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
		return fmt.Errorf("queue: journal %s: %w", id, err)
	}
	if created {
		return spool.SyncDir(q.sp.Path(StateDir))
	}
	return nil
}

// removeJournal removes the item's journal, if any. The removal is not
// fsync'd: a journal that reappears after a crash is folded again, which
// changes nothing.
func (it *Item) removeJournal() error {
	return it.q.removeJournal(it.e.ID)
}

func (q *Queue) removeJournal(id string) error {
	err := os.Remove(q.sp.Path(StateDir, JournalName(id)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

// writeState makes State durable as state/StateName(id, Next) (rule 4):
// it bumps Seq, writes a temporary file in tmp/, fsyncs it, renames it
// into place, removes the item's other state names and fsyncs state/. On
// error the previous state file is intact, though a second name may
// remain (the higher Seq wins when loading). It returns the new name.
func (it *Item) writeState() (string, error) {
	return it.q.writeState(it.State, it.e.States)
}

func (q *Queue) writeState(st *State, old []string) (string, error) {
	st.Seq++
	name := StateName(st.ID, st.Next)
	b, err := st.encode()
	if err != nil {
		return "", err
	}
	if err := q.writeFile(q.sp.Path(StateDir, name), b); err != nil {
		return "", err
	}
	for _, o := range old {
		if o != name {
			if err := os.Remove(q.sp.Path(StateDir, o)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("queue: %w", err)
			}
		}
	}
	return name, spool.SyncDir(q.sp.Path(StateDir))
}

// remove deletes a message whose recipients are all done (rule 3): first
// queue/<id>, made durable by an fsync of queue/ (from then on the
// message is finished, whatever else a crash leaves), then its state
// files and journal, which a later Scan would otherwise report as
// orphans.
func (it *Item) remove() error {
	q, e := it.q, it.e
	if err := os.Remove(q.sp.Path(spool.QueueDir, e.ID)); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := spool.SyncDir(q.sp.Path(spool.QueueDir)); err != nil {
		return err
	}
	return it.removeStates()
}

// moveFailed moves a finished message with failed recipients out of the
// queue (rule 3): its final state, bounded as a state file, is written to
// failed/<id>@state, then queue/<id> is renamed to failed/<id> and both
// directories are fsync'd; its state files and journal are removed last.
func (it *Item) moveFailed() error {
	q, e := it.q, it.e
	b, err := it.State.encode()
	if err != nil {
		return err
	}
	if err := q.writeFile(q.sp.Path(FailedDir, e.ID+failedSuffix), b); err != nil {
		return err
	}
	if err := os.Rename(q.sp.Path(spool.QueueDir, e.ID), q.sp.Path(FailedDir, e.ID)); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := spool.SyncDir(q.sp.Path(FailedDir)); err != nil {
		return err
	}
	if err := spool.SyncDir(q.sp.Path(spool.QueueDir)); err != nil {
		return err
	}
	return it.removeStates()
}

// removeStates removes the state files and journal of a message that left
// queue/. The removals are not fsync'd: what a crash brings back is an
// orphan, which the next Scan finds.
func (it *Item) removeStates() error {
	q, e := it.q, it.e
	var first error
	for _, n := range append(e.States[:len(e.States):len(e.States)], JournalName(e.ID), HoldName(e.ID)) {
		if err := os.Remove(q.sp.Path(StateDir, n)); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = fmt.Errorf("queue: %w", err)
		}
	}
	return first
}

// ErrJournal is the error of Delete for a message whose journal, left by
// a run that was killed, is not folded into its state yet: the journal
// may name a notification still to be spooled (rule 2), which deleting
// the message would lose. The next run folds it.
var ErrJournal = errors.New("queue: the message has a journal left by an interrupted run; run smtp-send once, then delete it")

// Delete takes message e out of queue/ at an administrator's request
// (smtp-send --delete, as Postfix's postsuper -d), without delivering it
// or telling its sender: it takes the message's lock (Open), reads its
// state (Load), then removes queue/<id>, fsyncs queue/, and removes its
// state files (rule 3). It returns the message's envelope and state, for
// the log, and the errors of Open (one wrapping ErrLocked while a run
// delivers it, fs.ErrNotExist when it is gone), ErrJournal, Load's, or
// the wrapped error of the removal.
func (q *Queue) Delete(e *Entry, now time.Time) (*spool.Envelope, *State, error) {
	if e.Journal {
		return nil, nil, ErrJournal
	}
	it, err := q.Open(e)
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	if err := it.Load(now); err != nil {
		return nil, nil, err
	}
	if _, err := os.Lstat(q.sp.Path(StateDir, JournalName(e.ID))); err == nil {
		// Left between the caller's Scan and the lock.
		return nil, nil, ErrJournal
	}
	env := it.msg.Envelope
	if err := it.remove(); err != nil {
		return nil, nil, err
	}
	it.gone = true
	q.hook(StepFinished, e.ID)
	return &env, it.State, nil
}

// ErrHeld is the error of Hold for a message already held.
var ErrHeld = errors.New("queue: message already held")

// Hold keeps runs from delivering message id (smtp-send --hold, as
// Postfix's postsuper -h) until Release: it makes state/<id>@hold with
// O_EXCL and fsyncs state/ (rule 9). A run delivering the message at
// that moment finishes its attempt; the next ones leave it. It returns
// fs.ErrNotExist (wrapped) when queue/<id> does not exist, ErrHeld when
// the message is held already, or the wrapped error of the create or
// fsync.
func (q *Queue) Hold(id string) error {
	if _, err := os.Lstat(q.sp.Path(spool.QueueDir, id)); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	f, err := spool.OpenFile(q.sp.Path(StateDir, HoldName(id)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, spool.FileMode)
	if errors.Is(err, fs.ErrExist) {
		return ErrHeld
	}
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := spool.SyncDir(q.sp.Path(StateDir)); err != nil {
		return err
	}
	if _, err := os.Lstat(q.sp.Path(spool.QueueDir, id)); errors.Is(err, fs.ErrNotExist) {
		// Delivered or removed meanwhile: the marker is an orphan.
		os.Remove(q.sp.Path(StateDir, HoldName(id)))
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

// Release undoes Hold (smtp-send --release, as postsuper -H): it removes
// state/<id>@hold and fsyncs state/. The message is due as its state
// says, as if never held. It returns an error wrapping fs.ErrNotExist
// when the message is not held, or the wrapped error of the removal or
// fsync.
func (q *Queue) Release(id string) error {
	if err := os.Remove(q.sp.Path(StateDir, HoldName(id))); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return spool.SyncDir(q.sp.Path(StateDir))
}

// RemoveOrphan removes state/<name> found by Scan as an orphan. The
// removal is not fsync'd: an orphan that reappears after a crash is found
// and removed again. It returns the wrapped error of unlink(2), if not
// ENOENT.
func (q *Queue) RemoveOrphan(name string) error {
	if err := os.Remove(q.sp.Path(StateDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

// writeFile atomically replaces path with data: a temporary file in tmp/,
// fsync'd, renamed into place. It does not fsync the destination
// directory; the caller does, once it has made all its changes there.
func (q *Queue) writeFile(path string, data []byte) error {
	pf, err := renameio.NewPendingFile(path,
		renameio.WithTempDir(q.sp.Path(spool.TmpDir)),
		renameio.WithStaticPermissions(spool.FileMode))
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer pf.Cleanup()
	if _, err := pf.Write(data); err != nil {
		return fmt.Errorf("queue: write %s: %w", path, err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("queue: commit %s: %w", path, err)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// queueDropped copies the checked dropped message m into queue/ under
// the new envelope env, the Received: field rcvd first (ordering rule 6),
// then removes drop/<name> and fsyncs drop/. The copy is checked as it
// is read: a CRC-32C that does not match aborts it and returns an error
// wrapping spool.ErrCorrupt, with nothing in queue/ and the drop file
// left for the caller to set aside. Other errors are the writer's or
// unlink's, wrapped.
func (q *Queue) queueDropped(m *spool.Message, env *spool.Envelope, rcvd, name string) error {
	w, err := q.sp.Create(env)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if _, err := io.WriteString(w, rcvd); err != nil {
		w.Abort()
		return fmt.Errorf("queue: %w", err)
	}
	if _, err := io.Copy(w, m.Content()); err != nil {
		w.Abort()
		return fmt.Errorf("queue: %w", err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	q.hook(StepPickedUp, env.QueueID)
	if err := os.Remove(q.sp.Path(DropDir, name)); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return spool.SyncDir(q.sp.Path(DropDir))
}

// setAsideDropped renames drop/<name> to corrupt/ (as drop.<name>, see
// setAside) and fsyncs corrupt/ and drop/.
func (q *Queue) setAsideDropped(name string) error {
	if err := q.setAside(q.sp.Path(DropDir, name), "drop."+name); err != nil {
		return err
	}
	if err := spool.SyncDir(q.sp.Path(CorruptDir)); err != nil {
		return err
	}
	return spool.SyncDir(q.sp.Path(DropDir))
}

// removeStaleDrop removes drop/<name>, a temporary file left by a killed
// drop helper. The removal is not fsync'd: one that reappears after a
// crash is removed again.
func (q *Queue) removeStaleDrop(name string) error {
	if err := os.Remove(q.sp.Path(DropDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}
