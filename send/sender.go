package send

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// ErrBusy is returned by Run when another run holds the spool's run lock.
// An overlapping run from cron is not an error: the caller exits 0.
var ErrBusy = errors.New("send: another run holds the spool lock")

// Step names a point in recording an outcome, passed to Hooks.Step.
type Step int

const (
	// StepAccepted: the final 250 arrived; nothing recorded yet.
	StepAccepted Step = iota
	// StepRecorded: the 250 is durable (journal fsync'd, or the finished
	// message removed).
	StepRecorded
	// StepBounceIntent: the failed recipients and the DSN's queue id are
	// journalled; the DSN is not spooled yet.
	StepBounceIntent
	// StepBounceSpooled: the DSN is in queue/; the original is unchanged.
	StepBounceSpooled
	// StepStateWritten: the new state file is durable; the journal is
	// still there.
	StepStateWritten
	// StepFinished: the message left queue/ (removed or moved to failed/).
	StepFinished
)

var stepNames = [...]string{"accepted", "recorded", "bounce-intent", "bounce-spooled", "state-written", "finished"}

// String returns the step's name.
func (s Step) String() string {
	if s < 0 || int(s) >= len(stepNames) {
		return fmt.Sprintf("step(%d)", int(s))
	}
	return stepNames[s]
}

// Hooks are called at points of a run, for tests (a test kills its own
// process at a step to prove that every instant is safe). Nil fields are
// skipped.
type Hooks struct {
	// Step is called after each step of recording the outcome of message
	// id.
	Step func(step Step, id string)
}

// Sender delivers one spool. Set the fields, then call Run.
type Sender struct {
	Spool  *spool.Spool
	Config Config
	// Log receives one line per recipient per attempt and the run's
	// events; nil discards them.
	Log *slog.Logger
	// Now is the clock of queue times (arrival, attempts, expiry); nil is
	// time.Now. The run's time budget uses the monotonic clock instead.
	Now func() time.Time
	// Dial opens connections; nil is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Hooks are test hooks.
	Hooks Hooks
}

// Stats counts what a run did.
type Stats struct {
	Queued     int // messages in queue/ at the start
	Due        int // of which due
	Started    int // messages taken for delivery
	Left       int // due messages not started: budget spent or cancelled
	Delivered  int // recipients accepted (final 250)
	Deferred   int // recipients deferred
	Failed     int // recipients failed (permanent or expired)
	DSNs       int // notifications spooled
	Corrupt    int // message files moved to corrupt/
	Unreadable int // message files that could not be opened
	Locked     int // messages skipped: locked by another process
	// ScanTime is from Run's start until the ordered list of due messages
	// was ready (before any connection).
	ScanTime time.Duration
	// FirstDelivery is from Run's start to the first final 250; 0 if none.
	FirstDelivery time.Duration
}

// run is the state of one Run.
type run struct {
	sp    *spool.Spool
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	hooks Hooks
	hosts *hostList
	all   bool
	start time.Time

	mu     sync.Mutex
	stats  Stats
	fatal  error
	cancel context.CancelFunc
}

// Run delivers the due messages (all queued messages if all is true, as
// postqueue -f) and returns when they are done, the time budget is spent
// or ctx is cancelled; messages in flight are finished first. Deferrals
// are not errors. It returns ErrBusy when another run holds the spool, or
// an error when the spool cannot be read or written; a local write error
// stops the run, since continuing could only lose more outcomes.
func (s *Sender) Run(ctx context.Context, all bool) (Stats, error) {
	r := &run{sp: s.Spool, cfg: s.Config.withDefaults(), log: s.Log, now: s.Now, dial: s.Dial,
		hooks: s.Hooks, all: all, start: time.Now()}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.dial == nil {
		r.dial = (&net.Dialer{}).DialContext
	}
	if len(r.cfg.Smarthosts) == 0 {
		return Stats{}, errors.New("send: no smarthost configured")
	}
	r.hosts = newHostList(r.cfg.Smarthosts)
	if err := r.sp.InitQueue(); err != nil {
		return Stats{}, err
	}
	lock, err := r.sp.LockRun()
	if errors.Is(err, spool.ErrLocked) {
		return Stats{}, ErrBusy
	}
	if err != nil {
		return Stats{}, err
	}
	defer lock.Unlock()

	removed, err := r.sp.CleanTmp(r.cfg.TmpMaxAge, time.Now())
	for _, n := range removed {
		r.log.Info("removed stale temporary file", "file", n, "older_than", r.cfg.TmpMaxAge.String())
	}
	if err != nil {
		r.log.Warn("cleaning tmp/", "err", err)
	}
	due, err := r.prepare()
	if err != nil {
		return r.stats, err
	}
	r.stats.ScanTime = time.Since(r.start)
	r.log.Info("run started", "queued", r.stats.Queued, "due", len(due),
		"scan_ms", r.stats.ScanTime.Milliseconds(), "all", all)

	ctx, cancel := context.WithTimeout(ctx, r.cfg.RunTime)
	defer cancel()
	r.cancel = cancel
	r.deliver(ctx, due)
	return r.stats, r.fatal
}

// prepare scans the queue, removes orphaned state files, folds the
// journals left by a crash (before any delivery, so a notification a
// crashed run spooled cannot be delivered before its intent is settled)
// and returns the due messages, ordered by next attempt, then age.
func (r *run) prepare() ([]spool.Entry, error) {
	sc, err := r.sp.Scan()
	if err != nil {
		return nil, err
	}
	for _, n := range sc.Orphans {
		if err := r.sp.RemoveOrphan(n); err != nil {
			return nil, err
		}
		r.log.Info("removed orphaned state file", "file", n)
	}
	r.stats.Queued = len(sc.Entries)
	now := r.now()
	due := make([]spool.Entry, 0, len(sc.Entries))
	for i := range sc.Entries {
		e := &sc.Entries[i]
		if e.Journal {
			w := &worker{r: r}
			if !w.recover(e) {
				continue
			}
		}
		if r.fatal != nil {
			return nil, r.fatal
		}
		if r.all || r.isDue(e, now) {
			due = append(due, *e)
		}
	}
	r.stats.Due = len(due)
	type keyed struct {
		at time.Time
		e  *spool.Entry
	}
	keys := make([]keyed, len(due))
	for i := range due {
		keys[i] = keyed{dueTime(&due[i]), &due[i]}
	}
	slices.SortFunc(keys, func(a, b keyed) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.e.ID, b.e.ID))
	})
	sorted := make([]spool.Entry, len(due))
	for i, k := range keys {
		sorted[i] = *k.e
	}
	return sorted, nil
}

// isDue: never tried, or the next attempt has come, or it lies more than
// BackoffMax ahead, which only a clock set back can cause: such a message
// is due now rather than frozen until the clock catches up.
func (r *run) isDue(e *spool.Entry, now time.Time) bool {
	return len(e.States) == 0 || !now.Before(e.Next) || e.Next.Sub(now) > r.cfg.BackoffMax
}

// dueTime orders the due list: the next attempt, or for a message never
// tried the arrival second in its queue id (NewQueueID), so that waiting
// messages go in the order they became due.
func dueTime(e *spool.Entry) time.Time {
	if len(e.States) > 0 {
		return e.Next
	}
	if len(e.ID) >= 15 {
		if t, err := time.Parse("20060102T150405", e.ID[:15]); err == nil {
			return t
		}
	}
	return time.Time{}
}

// deliver feeds the due messages to Connections workers until the list
// ends or ctx is done.
func (r *run) deliver(ctx context.Context, due []spool.Entry) {
	ch := make(chan *spool.Entry)
	var wg sync.WaitGroup
	for range min(r.cfg.Connections, max(len(due), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{r: r}
			for e := range ch {
				w.process(ctx, e)
			}
			w.sess.quit()
		}()
	}
	sent := 0
feed:
	for i := range due {
		if ctx.Err() != nil {
			break
		}
		select {
		case ch <- &due[i]:
			sent++
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	r.stats.Left = len(due) - sent
	if r.stats.Left > 0 {
		r.log.Warn("run stopped before the end of the queue", "left", r.stats.Left, "reason", context.Cause(ctx).Error())
	}
}

// setFatal records the first local write error and stops the run.
func (r *run) setFatal(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fatal == nil {
		r.fatal = err
		r.log.Error("spool write failed; stopping the run", "err", err)
		if r.cancel != nil {
			r.cancel()
		}
	}
}

func (r *run) count(f func(*Stats)) {
	r.mu.Lock()
	f(&r.stats)
	r.mu.Unlock()
}

func (r *run) hook(step Step, id string) {
	if r.hooks.Step != nil {
		r.hooks.Step(step, id)
	}
}
