package send

import (
	"slices"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// finish records an attempt's outcome for the recipients not accepted:
// deferrals, permanent failures and expiry, then the notification, then
// the new state or the message's exit from the queue.
//
// The order makes every crash safe. Accepted recipients are already
// durable (see accepted). A notification's recipients and queue id are
// journalled before it is spooled, and the message leaves the queue (or
// its state names the notification) only after it is spooled; a run
// finding such a journal spools the notification if it is missing, before
// delivering anything, so it is neither lost nor sent twice. Deferrals are
// durable with the state; a crash before that loses only the attempt,
// which the next run repeats.
func (w *worker) finish(x *msg, attempted bool) {
	r, st, env := w.r, x.st, &x.m.Envelope
	now := r.now()
	if attempted {
		st.Attempts++
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
		if st.Rcpts[i].Status != spool.Pending {
			continue
		}
		rc := spool.Rcpt{Addr: st.Rcpts[i].Addr, Code: f.Code, Enhanced: f.Enhanced, Text: f.Text,
			Stage: f.Stage.String(), Relay: f.Relay, At: now}
		switch {
		case !f.Temporary():
			rc.Status = spool.Failed
		case expire && f.Expires():
			rc.Status, rc.Expired = spool.Failed, true
		}
		st.Rcpts[i] = rc
		if rc.Status == spool.Failed {
			failed = append(failed, i)
		}
	}
	if len(failed) > 0 && env.From != "" {
		id, err := spool.NewQueueID(now)
		if err != nil {
			r.setFatal(err)
			return
		}
		set := make([]spool.JournalRcpt, 0, len(failed))
		for _, i := range failed {
			st.Rcpts[i].DSN = id
			set = append(set, spool.JournalRcpt{Index: i, Rcpt: st.Rcpts[i]})
		}
		if err := r.sp.AppendJournal(env.QueueID, spool.JournalEntry{Set: set}); err != nil {
			r.setFatal(err)
			return
		}
		x.journal = true
		r.hook(StepBounceIntent, env.QueueID)
		if err := w.spoolDSN(x, id); err != nil {
			r.setFatal(err)
			return
		}
		r.hook(StepBounceSpooled, env.QueueID)
		r.count(func(s *Stats) { s.DSNs++ })
	} else if len(failed) > 0 {
		r.log.Warn("no notification for a message from <>", "id", env.QueueID)
	}
	if attempted && len(st.Pending()) > 0 {
		st.Next = now.Add(r.cfg.backoff(st.Attempts))
	}
	for _, i := range ix {
		rc := st.Rcpts[i]
		switch rc.Status {
		case spool.Pending:
			w.logRcpt(x, i, "deferred", rc)
		case spool.Failed:
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
			case spool.Pending:
				s.Deferred++
			case spool.Failed:
				s.Failed++
			}
		}
	})
}

// settle makes the in-memory state durable: a message with no pending
// recipient leaves the queue (to failed/ if any recipient failed), else
// its state file is replaced and the journal, now folded in, removed. It
// returns false if writing failed, which stops the run.
func (w *worker) settle(x *msg, logExit bool) bool {
	r, st, e := w.r, x.st, x.e
	if len(st.Pending()) == 0 {
		var err error
		where := "removed"
		if anyFailed(st) {
			where = "moved to failed/"
			err = r.sp.MoveFailed(e.ID, st, e.States)
		} else {
			err = r.sp.Remove(e.ID, e.States)
		}
		if err != nil {
			x.abort = err
			r.setFatal(err)
			return false
		}
		x.gone = true
		r.hook(StepFinished, e.ID)
		if logExit {
			r.log.Info("message left the queue", "id", e.ID, "outcome", where)
		}
		return true
	}
	name, err := r.sp.WriteState(st, e.States)
	if err != nil {
		x.abort = err
		r.setFatal(err)
		return false
	}
	e.States, e.Next = []string{name}, st.Next
	r.hook(StepStateWritten, e.ID)
	if x.journal {
		if err := r.sp.RemoveJournal(e.ID); err != nil {
			x.abort = err
			r.setFatal(err)
			return false
		}
		x.journal, e.Journal = false, false
	}
	return true
}

// logRcpt writes the one line per recipient per attempt: queue id,
// recipient, outcome, relay, stage, reply code, enhanced code, reply text,
// delay since arrival and, for a deferral, the next attempt.
func (w *worker) logRcpt(x *msg, i int, status string, rc spool.Rcpt) {
	st := x.st
	args := []any{"id", st.ID, "rcpt", rc.Addr, "status", status, "relay", rc.Relay,
		"stage", rc.Stage, "code", rc.Code, "enhanced", rc.Enhanced, "reply", rc.Text,
		"delay", rc.At.Sub(st.Arrival).Round(time.Millisecond).String(), "attempts", st.Attempts + boolInt(status == "sent")}
	if status == "deferred" {
		args = append(args, "next", st.Next.UTC().Format(time.RFC3339))
	}
	if rc.DSN != "" {
		args = append(args, "dsn", rc.DSN)
	}
	switch status {
	case "sent":
		w.r.log.Info("delivery", args...)
	case "deferred":
		w.r.log.Warn("delivery", args...)
	default:
		w.r.log.Error("delivery", args...)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
