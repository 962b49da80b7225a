package send

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// ErrBusy is returned by Run when another run holds the spool's run lock.
// An overlapping run from cron is not an error: the caller exits 0.
var ErrBusy = errors.New("send: another run holds the spool lock")

// Hooks are called at points of a run, for tests (a test kills its own
// process at a step to prove that every instant is safe). Nil fields are
// skipped.
type Hooks struct {
	// Step is called after each step of recording the outcome of message
	// id (see queue.Step).
	Step func(step queue.Step, id string)
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
	// Dial opens the smarthost transport's connections, and those to MX
	// hosts; nil is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolver answers the DNS questions of MX delivery; nil is
	// NewResolver(Config.DNS).
	Resolver Resolver
	// Transport delivers the messages; nil is the smarthost transport of
	// Config (Smarthosts, TLS, AUTH, ...), made anew for each run so that
	// a host down in one run is tried again in the next.
	Transport Transport
	// Only, when not empty, restricts a run to the messages with these
	// queue ids, due or not, as Postfix's postqueue -i (smtp-send
	// --deliver and --expire); the alias expansions they spool are
	// delivered with them. Ids not in queue/, and held ones except with
	// Expire, are logged and counted in Stats.Missing.
	Only []string
	// Expire returns the messages of Only to their senders instead of
	// delivering them (smtp-send --expire, as postsuper -e): every
	// pending recipient fails with 5.4.7 (RFC 3463: delivery time
	// expired) and its sender gets a failure notice as for any failure
	// (RFC 3464), then the message moves to failed/. Without Only it
	// does nothing.
	Expire bool
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
	Held       int // messages skipped: held by the administrator (queue.Queue.Hold)
	Missing    int // ids of Sender.Only not in queue/, or held (without Expire)
	// ScanTime is from Run's start until the ordered list of due messages
	// was ready (before any connection).
	ScanTime time.Duration
	// FirstDelivery is from Run's start to the first final 250; 0 if none.
	FirstDelivery time.Duration
}

// run is the state of one Run.
type run struct {
	q         *queue.Queue
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	transport Transport
	all       bool
	only      map[string]bool // Sender.Only; nil: every due message
	expire    bool            // Sender.Expire
	start     time.Time

	sched *sched

	mu     sync.Mutex
	stats  Stats
	fatal  error
	cancel context.CancelFunc
	tried  map[string]bool // queue ids whose attempt this run counted
}

// Run delivers the due messages (all queued messages if all is true, as
// postqueue -f) and returns when they are done, the time budget is spent
// or ctx is cancelled; messages in flight are finished first. Deferrals
// are not errors. It returns ErrBusy when another run holds the spool, or
// an error when the spool cannot be read or written; a local write error
// stops the run, since continuing could only lose more outcomes.
func (s *Sender) Run(ctx context.Context, all bool) (Stats, error) {
	r := &run{cfg: s.Config.withDefaults(), log: s.Log, now: s.Now, transport: s.Transport,
		all: all, start: time.Now()}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if len(s.Only) > 0 {
		r.only = make(map[string]bool, len(s.Only))
		for _, id := range s.Only {
			r.only[id] = true
		}
		r.expire = s.Expire
	}
	r.cfg.Users = maps.Clone(r.cfg.Users)
	if err := r.cfg.LoadUsers(); err != nil {
		return Stats{}, err
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.transport == nil {
		dial := s.Dial
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		if r.cfg.direct() {
			if r.cfg.MTASTSCache == "" {
				r.cfg.MTASTSCache = s.Spool.Path("mta-sts")
			}
			if r.cfg.DownFile == "" {
				r.cfg.DownFile = s.Spool.Path("mx-down")
			}
			res := s.Resolver
			if res == nil {
				res = NewResolver(r.cfg.DNS)
			}
			r.transport = newRouter(&r.cfg, r.log, dial, s.Spool.Path(spool.TmpDir), res, r.now)
		} else {
			r.transport = newSmarthost(&r.cfg, r.log, dial, s.Spool.Path(spool.TmpDir))
		}
	}
	q, err := queue.Open(s.Spool)
	if err != nil {
		return Stats{}, err
	}
	q.Notify = func(w io.Writer, n *queue.Notice) error {
		// A delayed recipient is retried at least until it may expire.
		n.RetryUntil = n.Arrival.Add(r.cfg.QueueLifetime)
		n.ReturnFull = r.cfg.NoticeReturnMax
		return WriteNotice(w, r.cfg.Hostname, n)
	}
	q.Hostname, q.Hook, q.Log = r.cfg.Hostname, s.Hooks.Step, r.log
	r.q = q
	lock, err := q.LockRun()
	if errors.Is(err, queue.ErrLocked) {
		return Stats{}, ErrBusy
	}
	if err != nil {
		return Stats{}, err
	}
	defer lock.Unlock()

	removed, err := q.CleanTmp(r.cfg.TmpMaxAge, time.Now())
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
func (r *run) prepare() ([]queue.Entry, error) {
	sc, err := r.q.Scan()
	if err != nil {
		return nil, err
	}
	for _, n := range sc.Orphans {
		if err := r.q.RemoveOrphan(n); err != nil {
			return nil, err
		}
		r.log.Info("removed orphaned state file", "file", n)
	}
	r.stats.Queued = len(sc.Entries)
	r.recoverExpansions(sc.Entries)
	if r.fatal != nil {
		return nil, r.fatal
	}
	now := r.now()
	due := make([]queue.Entry, 0, len(sc.Entries))
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
		if e.Held && !(r.expire && r.only[e.ID]) {
			// smtp-send --hold: left alone, even by --all and
			// --deliver, until --release; --expire may return it.
			r.stats.Held++
			if r.only[e.ID] {
				r.log.Error("message held; not delivered: release it first (smtp-send --release)", "id", e.ID)
				r.stats.Missing++
			}
			continue
		}
		switch {
		case r.only != nil:
			if r.only[e.ID] {
				due = append(due, *e)
			}
		case r.all || r.isDue(e, now):
			due = append(due, *e)
		}
	}
	if r.only != nil {
		r.missing(sc.Entries)
	}
	r.stats.Due = len(due)
	type keyed struct {
		at time.Time
		e  *queue.Entry
	}
	keys := make([]keyed, len(due))
	for i := range due {
		keys[i] = keyed{dueTime(&due[i]), &due[i]}
	}
	slices.SortFunc(keys, func(a, b keyed) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.e.ID, b.e.ID))
	})
	sorted := make([]queue.Entry, len(due))
	for i, k := range keys {
		sorted[i] = *k.e
	}
	return sorted, nil
}

// missing logs each id of Sender.Only that entries (the scan of queue/)
// lack, and counts it in Stats.Missing.
func (r *run) missing(entries []queue.Entry) {
	left := maps.Clone(r.only)
	for i := range entries {
		delete(left, entries[i].ID)
	}
	for id := range left {
		r.log.Error("no such message in queue/", "id", id)
		r.stats.Missing++
	}
}

// recoverExpansions completes ordering rule 7 of package queue before
// anything is delivered: for each alias expansion in entries never tried,
// its original, if queued, records the alias recipient (recoverExpansion).
func (r *run) recoverExpansions(entries []queue.Entry) {
	var byID map[string]*queue.Entry
	for i := range entries {
		e := &entries[i]
		orig, idx, ok := queue.ExpansionOf(e.ID)
		if !ok || len(e.States) > 0 || e.Journal {
			continue
		}
		if byID == nil {
			byID = make(map[string]*queue.Entry, len(entries))
			for j := range entries {
				byID[entries[j].ID] = &entries[j]
			}
		}
		if p := byID[orig]; p != nil {
			(&worker{r: r}).recoverExpansion(p, idx, e.ID)
		}
	}
}

// failed reports whether a local write error stopped the run.
func (r *run) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fatal != nil
}

// isDue: never tried, or the next attempt has come, or it lies more than
// BackoffMax ahead, which only a clock set back can cause: such a message
// is due now rather than frozen until the clock catches up.
func (r *run) isDue(e *queue.Entry, now time.Time) bool {
	return len(e.States) == 0 || !now.Before(e.Next) || e.Next.Sub(now) > r.cfg.BackoffMax
}

// dueTime orders the due list: the next attempt, or for a message never
// tried the arrival second in its queue id (NewQueueID), so that waiting
// messages go in the order they became due.
func dueTime(e *queue.Entry) time.Time {
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

// deliver hands the due messages to Connections workers (sched) until
// the list ends or ctx is done.
func (r *run) deliver(ctx context.Context, due []queue.Entry) {
	s, unwatch := newSched(ctx, due, r.cfg.DestinationConcurrency)
	defer unwatch()
	r.sched = s
	var wg sync.WaitGroup
	for range min(r.cfg.Connections, max(len(due), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{r: r}
			for {
				e, again := s.take()
				if e == nil {
					break
				}
				w.process(ctx, e, again)
				s.done()
			}
			if w.sess != nil {
				w.sess.Close()
			}
		}()
	}
	wg.Wait()
	if f, ok := r.transport.(interface{ finish() error }); ok {
		if err := f.finish(); err != nil {
			r.log.Warn("ending the transport", "err", err)
		}
	}
	r.stats.Left = s.left()
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
