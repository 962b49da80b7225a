package sender

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"github.com/smtp-stdio/smtp-stdio/queue"
)

// The metrics file (SMTP_SEND_METRICS_FILE) is for node_exporter's
// textfile collector: Prometheus's text exposition format, rewritten
// atomically (renameio: a temporary file in the same directory, fsync'd,
// renamed over the old one) at the end of each delivery run, so the
// collector never reads half a file. A run that finds another holding the
// spool leaves it alone; --list and --explain never write it.
//
// The run's figures are counted from the run's own log records (the
// "delivery" line per recipient and attempt, the "down for this run" and
// "no MX host" lines), so the metrics say exactly what the log says. The
// _total counters carry on from the values in the previous file: each run
// adds its figures, so rate() and increase() work; a lost or unreadable
// file starts them again at zero, which Prometheus takes as a counter
// reset.

// Outcomes of a recipient or a message in one run, the outcome label.
const (
	outDelivered = iota // final 250
	outDeferred         // temporary failure: stays queued
	outBounced          // permanent failure: a notification
	outExpired          // deferred past SMTP_SEND_QUEUE_LIFETIME: a notification
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"delivered", "deferred", "bounced", "expired"}

// deliveryOutcome maps the status attribute of a "delivery" log line
// (send's logRcpt) to an outcome.
var deliveryOutcome = map[string]int{"sent": outDelivered, "deferred": outDeferred, "failed": outBounced, "expired": outExpired}

// Kinds of next hop whose failures are counted, the kind label: the
// "<what> down for this run" log line of package send.
var hostKinds = []struct{ what, label string }{{"smarthost", "smarthost"}, {"MX host", "mx"}}

// runCounts are one run's figures, counted by countingHandler.
type runCounts struct {
	mu         sync.Mutex
	rcpts      [numOutcomes]int
	msgs       map[string]uint8 // queue id → bit set of the outcomes of its recipients
	hostsDown  map[string]int   // kind label → hosts taken out of the run
	noMXHosts  int              // destinations without a usable MX host
	unreadable int              // messages skipped: unreadable file or state
}

// countingHandler is a slog.Handler that counts the records of a run
// into c and passes them on to inner when inner takes their level.
type countingHandler struct {
	inner slog.Handler
	c     *runCounts
}

// Enabled implements slog.Handler: every record at Info or above is
// counted, whatever the log level.
func (h countingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.inner.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.c.count(&r)
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{inner: h.inner.WithAttrs(as), c: h.c}
}

// WithGroup implements slog.Handler.
func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{inner: h.inner.WithGroup(name), c: h.c}
}

func (c *runCounts) count(r *slog.Record) {
	switch {
	case r.Message == "delivery":
		var id, status string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "id":
				id = a.Value.String()
			case "status":
				status = a.Value.String()
			}
			return true
		})
		o, ok := deliveryOutcome[status]
		if !ok {
			return
		}
		c.mu.Lock()
		c.rcpts[o]++
		c.msgs[id] |= 1 << o
		c.mu.Unlock()
	case strings.HasSuffix(r.Message, " down for this run"):
		what := strings.TrimSuffix(r.Message, " down for this run")
		for _, k := range hostKinds {
			if k.what == what {
				c.mu.Lock()
				c.hostsDown[k.label]++
				c.mu.Unlock()
			}
		}
	case r.Message == "no MX host to deliver to":
		c.mu.Lock()
		c.noMXHosts++
		c.mu.Unlock()
	case strings.HasPrefix(r.Message, "message file unreadable") || strings.HasPrefix(r.Message, "state unreadable"):
		c.mu.Lock()
		c.unreadable++
		c.mu.Unlock()
	}
}

// messages returns the number of messages per outcome: each message the
// run tried is counted once, under the worst outcome among its
// recipients (expired, then bounced, deferred, delivered).
func (c *runCounts) messages() [numOutcomes]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n [numOutcomes]int
	for _, bits := range c.msgs {
		for o := numOutcomes - 1; o >= 0; o-- {
			if bits&(1<<o) != 0 {
				n[o]++
				break
			}
		}
	}
	return n
}

// runMetrics gathers the figures of one run for the metrics file.
type runMetrics struct {
	path  string
	start time.Time
	c     *runCounts
	log   *slog.Logger
}

// startMetrics begins the figures of a run that started at start, to be
// written to path; log is the run's log. A nil *runMetrics, returned for
// an empty path, counts nothing and writes nothing.
func startMetrics(path string, start time.Time, log *slog.Logger) *runMetrics {
	if path == "" {
		return nil
	}
	if !strings.HasSuffix(path, ".prom") {
		log.Warn("node_exporter's textfile collector reads only files named *.prom", "file", path)
	}
	c := &runCounts{msgs: map[string]uint8{}, hostsDown: map[string]int{}}
	return &runMetrics{path: path, start: start, c: c,
		log: slog.New(countingHandler{inner: log.Handler(), c: c})}
}

// Logger returns the logger the run logs to: log itself when m is nil,
// else one that also counts the records.
func (m *runMetrics) Logger(log *slog.Logger) *slog.Logger {
	if m == nil {
		return log
	}
	return m.log
}

// queueFigures are the queue's state at the end of a run.
type queueFigures struct {
	messages, deferred int     // in queue/; of which tried at least once
	held               int     // of which held (smtp-send --hold)
	oldest             float64 // age in seconds of the oldest, by its queue id; 0 when empty
	failed, corrupt    int     // message files set aside in failed/ and corrupt/
}

// figures reads the state of q's directories (names only: no message is
// opened) at now. It returns the error of reading a directory.
func figures(q *queue.Queue, now time.Time) (queueFigures, error) {
	var f queueFigures
	sc, err := q.Scan()
	if err != nil {
		return f, err
	}
	f.messages = len(sc.Entries)
	var oldest time.Time
	for i := range sc.Entries {
		e := &sc.Entries[i]
		if len(e.States) > 0 {
			f.deferred++
		}
		if e.Held {
			f.held++
		}
		if t, ok := queue.ArrivalSecond(e.ID); ok && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if !oldest.IsZero() {
		f.oldest = max(now.Sub(oldest).Seconds(), 0)
	}
	for _, a := range []struct {
		dir string
		n   *int
	}{{queue.FailedDir, &f.failed}, {queue.CorruptDir, &f.corrupt}} {
		names, err := q.Area(a.dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		*a.n = len(names)
	}
	return f, nil
}

// write writes the metrics file for a run that ended at end, with runErr
// its error (nil for a completed run). It returns the error of reading
// the queue's directories or of writing the file; a previous file that
// cannot be read or parsed only restarts the counters.
func (m *runMetrics) write(q *queue.Queue, end time.Time, runErr error) error {
	if m == nil {
		return nil
	}
	qf, err := figures(q, end)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	prev, err := readCounters(m.path)
	if err != nil {
		m.log.Warn("metrics file unreadable; counters start again from zero", "file", m.path, "err", err)
		prev = map[string]float64{}
	}
	b := m.render(qf, prev, end, runErr == nil)
	// 0644: node_exporter runs as another user and only reads it.
	if err := renameio.WriteFile(m.path, b, 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// expo writes the text exposition format: one family at a time, its HELP
// and TYPE lines, then its samples.
type expo struct {
	b    bytes.Buffer
	prev map[string]float64 // counters of the previous file, by series
}

func (e *expo) family(name, typ, help string) {
	fmt.Fprintf(&e.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (e *expo) sample(series string, v float64) {
	fmt.Fprintf(&e.b, "%s %s\n", series, strconv.FormatFloat(v, 'g', -1, 64))
}

// counter writes a _total series: the previous file's value plus v.
func (e *expo) counter(series string, v float64) {
	e.sample(series, e.prev[series]+v)
}

// render returns the file's contents.
func (m *runMetrics) render(qf queueFigures, prev map[string]float64, end time.Time, ok bool) []byte {
	e := &expo{prev: prev}
	msgs := m.c.messages()
	m.c.mu.Lock()
	defer m.c.mu.Unlock()

	e.family("smtp_send_queue_messages", "gauge", "Messages in queue/ at the end of the last run.")
	e.sample("smtp_send_queue_messages", float64(qf.messages))
	e.family("smtp_send_queue_deferred_messages", "gauge", "Messages in queue/ tried at least once, at the end of the last run.")
	e.sample("smtp_send_queue_deferred_messages", float64(qf.deferred))
	e.family("smtp_send_queue_held_messages", "gauge", "Messages in queue/ held by the administrator (smtp-send --hold), at the end of the last run.")
	e.sample("smtp_send_queue_held_messages", float64(qf.held))
	e.family("smtp_send_queue_oldest_message_age_seconds", "gauge", "Age of the oldest message in queue/ at the end of the last run, from its queue id; 0 when the queue is empty.")
	e.sample("smtp_send_queue_oldest_message_age_seconds", qf.oldest)
	e.family("smtp_send_set_aside_messages", "gauge", "Message files in failed/ and corrupt/.")
	e.sample(`smtp_send_set_aside_messages{area="failed"}`, float64(qf.failed))
	e.sample(`smtp_send_set_aside_messages{area="corrupt"}`, float64(qf.corrupt))

	e.family("smtp_send_last_run_timestamp_seconds", "gauge", "Unix time at which the last run ended.")
	e.sample("smtp_send_last_run_timestamp_seconds", float64(end.UnixMilli())/1000)
	e.family("smtp_send_last_run_duration_seconds", "gauge", "Duration of the last run.")
	e.sample("smtp_send_last_run_duration_seconds", end.Sub(m.start).Seconds())
	e.family("smtp_send_last_run_success", "gauge", "1 when the last run completed (deferrals included), 0 when a spool error stopped it.")
	e.sample("smtp_send_last_run_success", float64(boolNum(ok)))
	e.family("smtp_send_last_run_messages", "gauge", "Messages tried in the last run, each under the worst outcome of its recipients (expired, bounced, deferred, delivered).")
	for o, n := range outcomeNames {
		e.sample(`smtp_send_last_run_messages{outcome="`+n+`"}`, float64(msgs[o]))
	}
	e.family("smtp_send_last_run_recipients", "gauge", "Recipient outcomes in the last run.")
	for o, n := range outcomeNames {
		e.sample(`smtp_send_last_run_recipients{outcome="`+n+`"}`, float64(m.c.rcpts[o]))
	}
	e.family("smtp_send_last_run_hosts_down", "gauge", "Smarthosts and MX hosts taken out of the last run after a failure (connection, greeting, TLS, timeout).")
	for _, k := range hostKinds {
		e.sample(`smtp_send_last_run_hosts_down{kind="`+k.label+`"}`, float64(m.c.hostsDown[k.label]))
	}
	e.family("smtp_send_last_run_destinations_unreachable", "gauge", "Recipient domains without a usable MX host in the last run.")
	e.sample("smtp_send_last_run_destinations_unreachable", float64(m.c.noMXHosts))
	e.family("smtp_send_last_run_unreadable_messages", "gauge", "Messages the last run skipped: message file or state unreadable.")
	e.sample("smtp_send_last_run_unreadable_messages", float64(m.c.unreadable))

	e.family("smtp_send_runs_total", "counter", "Delivery runs that wrote this file.")
	e.counter("smtp_send_runs_total", 1)
	e.family("smtp_send_messages_total", "counter", "Messages tried, by the worst outcome of their recipients in each run.")
	for o, n := range outcomeNames {
		e.counter(`smtp_send_messages_total{outcome="`+n+`"}`, float64(msgs[o]))
	}
	e.family("smtp_send_recipients_total", "counter", "Recipient outcomes.")
	for o, n := range outcomeNames {
		e.counter(`smtp_send_recipients_total{outcome="`+n+`"}`, float64(m.c.rcpts[o]))
	}
	e.family("smtp_send_hosts_down_total", "counter", "Smarthosts and MX hosts taken out of a run after a failure.")
	for _, k := range hostKinds {
		e.counter(`smtp_send_hosts_down_total{kind="`+k.label+`"}`, float64(m.c.hostsDown[k.label]))
	}
	e.family("smtp_send_destinations_unreachable_total", "counter", "Recipient domains without a usable MX host, once per run.")
	e.counter("smtp_send_destinations_unreachable_total", float64(m.c.noMXHosts))
	return e.b.Bytes()
}

func boolNum(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readCounters returns the series of the _total counters in the metrics
// file at path, as this program writes them ("name{labels} value"), keyed
// by the series. A missing file is no counters. It returns an error for
// a file that cannot be read or a counter line that does not parse.
func readCounters(path string) (map[string]float64, error) {
	out := map[string]float64{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		series, val, ok := strings.Cut(line, " ")
		name, _, _ := strings.Cut(series, "{")
		if !strings.HasSuffix(name, "_total") {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if !ok || err != nil || v < 0 {
			return nil, fmt.Errorf("%s: bad counter line %q", path, line)
		}
		out[series] = v
	}
	return out, sc.Err()
}
