package send

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"time"

	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// worker delivers messages one at a time through its own Session.
type worker struct {
	r    *run
	sess Session
}

// msg is one message in the hands of a worker: its queue item and this
// attempt's outcomes. It is the Recorder its Session reports to.
type msg struct {
	w  *worker
	it *queue.Item
	// results holds this run's non-final outcome per recipient index:
	// a refusal, a deferral or a local decision. Delivered recipients go
	// straight into the item's state.
	results map[int]*Failure
	// touched is set by the first outcome of this attempt.
	touched bool
	// postponed is the destination that had no free slot for some
	// recipients (destSlots), "" if none.
	postponed string
}

// process delivers the pending recipients of one due message and records
// the outcome; again is true when the run postponed it before (it is not
// counted as started twice). A message with recipients whose destination
// had no free slot (see sched) is handed back to the run to wait for
// it.
func (w *worker) process(ctx context.Context, e *queue.Entry, again bool) {
	// The alias expansions spooled for this message are delivered right
	// after it, once its record is durable (alias.go).
	exps, key := w.processOne(ctx, e, again)
	w.r.postpone(e, key)
	for _, id := range exps {
		if ctx.Err() != nil || w.r.failed() {
			return
		}
		x := &queue.Entry{ID: id}
		_, key := w.processOne(ctx, x, false)
		w.r.postpone(x, key)
	}
}

// processOne is process for one message; it returns the queue ids of
// the alias expansions it spooled, and the destination that had no slot
// for some recipients, "" when none: they wait for it, and when nothing
// else happened, the message is left as it was.
func (w *worker) processOne(ctx context.Context, e *queue.Entry, again bool) ([]string, string) {
	x := w.open(e)
	if x == nil {
		return nil, ""
	}
	defer x.it.Close()
	if !again {
		w.r.count(func(s *Stats) { s.Started++ })
	}
	if w.r.expire && w.r.only[e.ID] {
		for _, i := range x.it.State.Pending() {
			x.results[i] = expiredByAdmin
		}
		w.finish(x, false)
		return nil, ""
	}
	var abort error
	var expansions []string
	if p := x.it.State.Pending(); len(p) > 0 {
		p, expansions, abort = w.expand(x, p)
		if abort == nil && len(p) > 0 {
			abort = w.attempt(context.WithoutCancel(ctx), x, p)
		}
	}
	switch {
	case errors.Is(abort, spool.ErrCorrupt):
		w.corrupt(e.ID, abort, x.it.SetCorrupt)
		return expansions, ""
	case abort != nil || x.it.Gone():
		return expansions, ""
	case x.postponed != "" && !x.touched && len(x.results) == 0 && len(expansions) == 0:
		// Nothing happened: the message waits as it was.
	default:
		w.finish(x, true)
	}
	if x.it.Gone() {
		return expansions, ""
	}
	return expansions, x.postponed
}

// expiredByAdmin is the failure of every pending recipient of a message
// returned to its sender by smtp-send --expire (Sender.Expire): 5.4.7,
// delivery time expired (RFC 3463), as Postfix's postsuper -e.
var expiredByAdmin = localFailure("", "5.4.7", "message returned to the sender by the mail administrator before delivery (smtp-send --expire)")

// recover folds a journal left by a crash and settles the message without
// delivering anything. It returns false if the message is no longer
// queued (finished, corrupt) or could not be read.
func (w *worker) recover(e *queue.Entry) bool {
	x := w.open(e)
	if x == nil {
		return false
	}
	defer x.it.Close()
	return w.settle(x, false) && !x.it.Gone()
}

// open opens, locks and loads message e (state and journal folded in). A
// corrupt message file or state, or one that is not a regular file (a
// FIFO, a symbolic link, ...: spool.ErrNotRegular), is moved to corrupt/;
// an unreadable or locked message is skipped. It returns nil when the
// message is not to be delivered now.
func (w *worker) open(e *queue.Entry) *msg {
	r := w.r
	it, err := r.q.Open(e)
	switch {
	case errors.Is(err, spool.ErrCorrupt), errors.Is(err, spool.ErrNotRegular):
		w.corrupt(e.ID, err, func() error { return r.q.MoveCorrupt(*e) })
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, queue.ErrLocked):
		r.log.Warn("message locked by another process; skipped", "id", e.ID)
		r.count(func(s *Stats) { s.Locked++ })
		return nil
	case err != nil:
		r.log.Error("message file unreadable; skipped", "id", e.ID, "err", err)
		r.count(func(s *Stats) { s.Unreadable++ })
		return nil
	}
	if err := it.Load(r.now()); err != nil {
		if errors.Is(err, spool.ErrCorrupt) || errors.Is(err, spool.ErrNotRegular) {
			w.corrupt(e.ID, err, it.SetCorrupt)
		} else {
			r.log.Error("state unreadable; message skipped", "id", e.ID, "err", err)
			r.count(func(s *Stats) { s.Unreadable++ })
		}
		it.Close()
		return nil
	}
	return &msg{w: w, it: it, results: map[int]*Failure{}}
}

// corrupt sets aside a message that does not parse: move moves it to
// corrupt/, with its state files.
func (w *worker) corrupt(id string, why error, move func() error) {
	r := w.r
	r.log.Error("corrupt message moved to corrupt/; it is never bounced or deleted", "id", id, "err", why)
	if err := move(); err != nil {
		r.setFatal(err)
		return
	}
	r.count(func(s *Stats) { s.Corrupt++ })
}

// attempt hands the recipients todo to the worker's session. It returns
// the error that stopped the delivery: the message could not be read, or
// an outcome not recorded.
func (w *worker) attempt(ctx context.Context, x *msg, todo []int) error {
	if w.sess == nil {
		w.sess = w.r.transport.NewSession()
	}
	m := x.it.Message()
	d := &Delivery{Envelope: &m.Envelope, Rcpts: todo, Size: m.Size, Content: m.Content}
	return w.sess.Deliver(ctx, d, x)
}

// Delivered implements Recorder: the recipients are done, durably, before
// the session sends anything else (queue.Item.RecordAccepted). A failure
// to record stops the run.
func (x *msg) Delivered(rcpts []int, rep Reply) error {
	reps := make([]Reply, len(rcpts))
	for n := range reps {
		reps[n] = rep
	}
	return x.DeliveredEach(rcpts, reps)
}

// DeliveredEach implements Recorder: Delivered with a reply for each
// recipient, in one durable record.
func (x *msg) DeliveredEach(rcpts []int, reps []Reply) error {
	r, st := x.w.r, x.it.State
	now := r.now()
	set := make([]queue.Update, 0, len(rcpts))
	for n, i := range rcpts {
		rep := reps[n]
		set = append(set, queue.Update{Index: i, Rcpt: queue.Rcpt{Addr: st.Rcpts[i].Addr, Status: queue.Done,
			Code: rep.Code, Enhanced: rep.Enhanced, Text: rep.Text, Stage: rep.Stage.String(), Relay: rep.Relay, At: now,
			Action: rep.Action, Delayed: st.Rcpts[i].Delayed}})
	}
	x.touched = true
	// A recipient with NOTIFY=SUCCESS gets its success notice here, in
	// the same durable record (queue ordering rule 8).
	if err := x.it.RecordAccepted(now, set); err != nil {
		r.setFatal(err)
		return err
	}
	r.mu.Lock()
	if slices.ContainsFunc(set, func(u queue.Update) bool { return u.DSN != "" }) {
		r.stats.DSNs++
	}
	r.stats.Delivered += len(rcpts)
	if r.stats.FirstDelivery == 0 {
		r.stats.FirstDelivery = time.Since(r.start)
	}
	r.mu.Unlock()
	for _, i := range rcpts {
		x.w.logRcpt(x, i, "sent", st.Rcpts[i])
	}
	return nil
}

// Failed implements Recorder: the outcome waits for the end of the
// attempt (finish).
func (x *msg) Failed(rcpts []int, f *Failure) {
	x.touched = true
	for _, i := range rcpts {
		x.results[i] = f
	}
}

// acquire implements destSlots: a slot of destination key, if free.
func (x *msg) acquire(key string) bool {
	return x.w.r.sched == nil || x.w.r.sched.acquire(key)
}

// release implements destSlots.
func (x *msg) release(key string) {
	if x.w.r.sched != nil {
		x.w.r.sched.release(key)
	}
}

// postpone implements destSlots: the recipients of key wait, without an
// outcome, for a slot in this run.
func (x *msg) postpone(key string) { x.postponed = key }

// postpone hands message e back to the scheduler to wait for a slot of
// destination key (none when key is ""), once the worker has let go of
// it.
func (r *run) postpone(e *queue.Entry, key string) {
	if key != "" && r.sched != nil {
		r.sched.wait(e, key)
	}
}

// finish records an attempt's outcome for the recipients not delivered:
// it decides, per recipient, deferral, permanent failure or expiry and the
// next attempt; the queue item then spools the notification (Bounce) and
// writes the new state or takes the message out of the queue (Settle), in
// the order that makes every crash safe (see package queue).
func (w *worker) finish(x *msg, attempted bool) {
	r, st := w.r, x.it.State
	now := r.now()
	if attempted {
		if r.firstTry(st.ID) {
			// A message postponed (sched) and taken again is
			// one attempt of the run, not two.
			st.Attempts++
		}
		st.Last = now
		if st.First.IsZero() {
			st.First = now
		}
	}
	expire := attempted && now.Sub(st.Arrival) >= r.cfg.QueueLifetime && st.Attempts >= r.cfg.MinAttempts
	var failed []int
	ix := make([]int, 0, len(x.results))
	for i := range x.results {
		ix = append(ix, i)
	}
	slices.Sort(ix)
	for _, i := range ix {
		f := x.results[i]
		if st.Rcpts[i].Status != queue.Pending {
			continue
		}
		rc := queue.Rcpt{Addr: st.Rcpts[i].Addr, Code: f.Code, Enhanced: f.Enhanced, Text: f.Text,
			Stage: f.Stage.String(), Relay: f.Relay, At: now, Delayed: st.Rcpts[i].Delayed}
		switch {
		case !f.Temporary():
			rc.Status = queue.Failed
		case expire && f.Expires():
			rc.Status, rc.Expired = queue.Failed, true
		}
		st.Rcpts[i] = rc
		if rc.Status == queue.Failed {
			failed = append(failed, i)
		}
	}
	if len(failed) > 0 {
		dsn, err := x.it.Bounce(now, failed)
		switch {
		case err != nil:
			r.setFatal(err)
			return
		case dsn != "":
			r.count(func(s *Stats) { s.DSNs++ })
		case x.it.Message().From == "":
			r.log.Warn("no notification for a message from <>", "id", st.ID)
		default:
			// RFC 3461 section 4.1: NOTIFY without FAILURE.
			r.log.Info("no notification: the sender asked for none (NOTIFY)", "id", st.ID)
		}
	}
	if attempted && len(st.Pending()) > 0 {
		st.Next = now.Add(r.cfg.backoff(st.Attempts))
		if r.cfg.DelayWarning > 0 && now.Sub(st.Arrival) >= r.cfg.DelayWarning {
			// One delay notice per recipient, made durable with its
			// intent before Settle (queue ordering rule 8).
			dsn, err := x.it.Delay(now, st.Pending(), true)
			if err != nil {
				r.setFatal(err)
				return
			}
			if dsn != "" {
				r.count(func(s *Stats) { s.DSNs++ })
			}
		}
	}
	for _, i := range ix {
		rc := st.Rcpts[i]
		switch rc.Status {
		case queue.Pending:
			w.logRcpt(x, i, "deferred", rc)
		case queue.Failed:
			status := "failed"
			if rc.Expired {
				status = "expired"
			}
			w.logRcpt(x, i, status, rc)
		}
	}
	if !w.settle(x, true) {
		return
	}
	r.count(func(s *Stats) {
		for _, i := range ix {
			switch st.Rcpts[i].Status {
			case queue.Pending:
				s.Deferred++
			case queue.Failed:
				s.Failed++
			}
		}
	})
}

// settle makes the item's state durable (queue.Item.Settle) and logs a
// message that left the queue. It returns false if writing failed, which
// stops the run.
func (w *worker) settle(x *msg, logExit bool) bool {
	left, err := x.it.Settle()
	if err != nil {
		w.r.setFatal(err)
		return false
	}
	if left != queue.Stayed && logExit {
		w.r.log.Info("message left the queue", "id", x.it.State.ID, "outcome", left)
	}
	return true
}

// logRcpt writes the one line per recipient per attempt: queue id,
// recipient, outcome, relay, stage, reply code, enhanced code, reply text,
// delay since arrival and, for a deferral, the next attempt.
func (w *worker) logRcpt(x *msg, i int, status string, rc queue.Rcpt) {
	st := x.it.State
	args := []any{"id", st.ID, "rcpt", rc.Addr, "status", status, "relay", rc.Relay,
		"stage", rc.Stage, "code", rc.Code, "enhanced", rc.Enhanced, "reply", rc.Text,
		"delay", rc.At.Sub(st.Arrival).Round(time.Millisecond).String(), "attempts", st.Attempts + boolInt(status == "sent" && !w.r.counted(st.ID))}
	if status == "deferred" {
		args = append(args, "next", st.Next.UTC().Format(time.RFC3339))
	}
	if rc.DSN != "" {
		args = append(args, "dsn", rc.DSN)
	}
	switch status {
	case "sent", ExpandedStage:
		w.r.log.Info("delivery", args...)
	case "deferred":
		w.r.log.Warn("delivery", args...)
	default:
		w.r.log.Error("delivery", args...)
	}
}

// firstTry reports whether the message id has its first attempt of the
// run, and notes that it had it.
func (r *run) firstTry(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tried == nil {
		r.tried = map[string]bool{}
	}
	first := !r.tried[id]
	r.tried[id] = true
	return first
}

// counted reports whether the message id's attempt of this run is
// counted already (firstTry): a message postponed and taken again.
func (r *run) counted(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tried[id]
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
