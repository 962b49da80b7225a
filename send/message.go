package send

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// worker delivers messages one at a time over its own session.
type worker struct {
	r    *run
	sess *session
}

// msg is one message in the hands of a worker.
type msg struct {
	m  *spool.Message
	e  *spool.Entry
	st *spool.State
	// results holds this run's non-final outcome per recipient index:
	// a refusal, a deferral or a local decision. Accepted recipients go
	// straight into st.
	results map[int]*Failure
	journal bool  // state/<id>@journal exists
	gone    bool  // the message left queue/
	abort   error // stop: the message cannot be read, or recording failed

	// What scan found, once per message: 8-bit bytes, lines longer than
	// maxLine, the size as sent (those lines broken).
	scanned, eight, long bool
	size                 int64

	hdr8     int8     // 0 unknown, 1 the header section has 8-bit bytes, -1 it has none
	down     *os.File // 7-bit version of the message, made on demand
	downN    int64
	downFail *Failure // the message cannot be converted to 7 bits
}

// process delivers the pending recipients of one due message and records
// the outcome.
func (w *worker) process(ctx context.Context, e *spool.Entry) {
	x := w.open(e)
	if x == nil {
		return
	}
	defer x.close()
	w.r.count(func(s *Stats) { s.Started++ })
	if p := x.st.Pending(); len(p) > 0 {
		w.attempt(context.WithoutCancel(ctx), x, p)
	}
	switch {
	case errors.Is(x.abort, spool.ErrCorrupt):
		w.corrupt(e, x.abort)
	case x.abort != nil || x.gone:
	default:
		w.finish(x, true)
	}
}

// recover folds a journal left by a crash and settles the message without
// delivering anything. It returns false if the message is no longer
// queued (finished, corrupt) or could not be read.
func (w *worker) recover(e *spool.Entry) bool {
	x := w.open(e)
	if x == nil {
		return false
	}
	defer x.close()
	w.settle(x, false)
	return !x.gone && x.abort == nil
}

// open opens, locks and loads message e (state and journal folded in). A
// corrupt message file or state, or one that is not a regular file (a
// FIFO, a symbolic link, ...: spool.ErrNotRegular), is moved to corrupt/;
// an unreadable or locked message is skipped. It returns nil when the
// message is not to be delivered now.
func (w *worker) open(e *spool.Entry) *msg {
	r := w.r
	m, err := r.sp.OpenMessage(e.ID)
	switch {
	case errors.Is(err, spool.ErrCorrupt), errors.Is(err, spool.ErrNotRegular):
		w.corrupt(e, err)
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		r.log.Error("message file unreadable; skipped", "id", e.ID, "err", err)
		r.count(func(s *Stats) { s.Unreadable++ })
		return nil
	}
	if err := lockMessage(m); err != nil {
		m.Close()
		r.log.Warn("message locked by another process; skipped", "id", e.ID)
		r.count(func(s *Stats) { s.Locked++ })
		return nil
	}
	x := &msg{m: m, e: e, results: map[int]*Failure{}}
	if err := w.load(x); err != nil {
		m.Close()
		if errors.Is(err, spool.ErrCorrupt) || errors.Is(err, spool.ErrNotRegular) {
			w.corrupt(e, err)
		} else {
			r.log.Error("state unreadable; message skipped", "id", e.ID, "err", err)
			r.count(func(s *Stats) { s.Unreadable++ })
		}
		return nil
	}
	return x
}

// lockMessage takes the per-message lock, waiting a little for a reader
// such as --list, which holds a shared lock only for an instant.
func lockMessage(m *spool.Message) error {
	var err error
	for range 5 {
		if err = spool.LockMessage(m.File(), true); !errors.Is(err, spool.ErrLocked) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// load reads the state (a message without one is new) and folds in the
// journal, spooling any notification whose intent the journal holds but
// which a crash kept from being spooled.
func (w *worker) load(x *msg) error {
	r, e := w.r, x.e
	if e.ID != x.m.QueueID {
		return fmt.Errorf("%w: file name %s differs from queue id %s", spool.ErrCorrupt, e.ID, x.m.QueueID)
	}
	st := spool.NewState(&x.m.Envelope)
	if len(e.States) > 0 {
		var err error
		if st, err = r.sp.LoadState(e.States); err != nil {
			return err
		}
		if err := st.Check(&x.m.Envelope); err != nil {
			return err
		}
	}
	x.st = st
	if !e.Journal {
		return nil
	}
	x.journal = true
	entries, torn, err := r.sp.ReadJournal(e.ID)
	if err != nil {
		return err
	}
	if torn {
		r.log.Warn("journal ends in a torn record (crash while appending); ignored", "id", e.ID)
	}
	dsns, err := st.Apply(entries)
	if err != nil {
		return err
	}
	for _, id := range dsns {
		if _, err := os.Lstat(r.sp.Path(spool.QueueDir, id)); err == nil {
			continue
		}
		r.log.Warn("spooling a notification a crash interrupted", "id", e.ID, "dsn", id)
		if err := w.spoolDSN(x, id); err != nil {
			return err
		}
	}
	return nil
}

// corrupt moves a message that does not parse to corrupt/, with its state.
func (w *worker) corrupt(e *spool.Entry, why error) {
	r := w.r
	r.log.Error("corrupt message moved to corrupt/; it is never bounced or deleted", "id", e.ID, "err", why)
	if err := r.sp.MoveCorrupt(e.ID, e.States); err != nil {
		r.setFatal(err)
		return
	}
	r.count(func(s *Stats) { s.Corrupt++ })
}

func (x *msg) close() {
	if x.down != nil {
		x.down.Close()
	}
	x.m.Close()
}

// attempt runs transactions until every recipient in todo has an outcome.
func (w *worker) attempt(ctx context.Context, x *msg, todo []int) {
	r := w.r
	tries := 0
	for len(todo) > 0 && x.abort == nil {
		if w.sess == nil {
			s, f := r.connect(ctx)
			if f != nil {
				for _, i := range todo {
					x.results[i] = f
				}
				return
			}
			w.sess = s
		}
		batch := todo[:min(len(todo), r.cfg.MaxRecipients)]
		rest := todo[len(batch):]
		carry, res := w.transaction(x, batch)
		if res.dead || res.conn != nil {
			w.sess.close()
			host := w.sess.host
			w.sess = nil
			if f := res.conn; f != nil {
				// RFC 5321 section 4.5.4.1: a failing host is not
				// retried at once; a reused connection the server had
				// closed is merely reopened.
				if (!res.reused || f.timeout) && r.hosts.markDown(host, f) {
					r.log.Warn("smarthost down for this run", "relay", f.Relay, "stage", f.Stage.String(),
						"code", f.Code, "enhanced", f.Enhanced, "reply", f.Text)
				}
				if tries++; tries <= len(r.cfg.Smarthosts)+1 {
					continue
				}
				for _, i := range batch {
					x.results[i] = f
				}
			}
		}
		todo = slices.Concat(carry, rest)
	}
	if r.cfg.NoReuse && w.sess != nil {
		w.sess.quit()
		w.sess = nil
	}
}
