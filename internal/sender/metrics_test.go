package sender

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/smtp-stdio/smtp-stdio/send"
)

// byAddress is a send.Transport whose outcome depends on the recipient's
// local part: ok delivered, later deferred (451), no refused (550).
type byAddress struct{}

func (byAddress) NewSession() send.Session { return byAddress{} }
func (byAddress) Close() error             { return nil }

func (byAddress) Deliver(_ context.Context, d *send.Delivery, rec send.Recorder) error {
	var ok []int
	for _, i := range d.Rcpts {
		switch local, _, _ := strings.Cut(d.Envelope.To[i], "@"); local {
		case "later":
			rec.Failed([]int{i}, &send.Failure{Stage: send.StageRcpt, Code: 451, Enhanced: "4.2.1", Text: "busy", Relay: relay})
		case "no":
			rec.Failed([]int{i}, &send.Failure{Stage: send.StageRcpt, Code: 550, Enhanced: "5.1.1", Text: "no such user", Relay: relay})
		default:
			ok = append(ok, i)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	return rec.Delivered(ok, send.Reply{Stage: send.StageDot, Code: 250, Enhanced: "2.0.0", Text: "OK", Relay: relay})
}

// parseMetrics parses the file at path with Prometheus's own parser of
// the text format and checks that every family has HELP and the type
// its name implies (_total: counter, else gauge).
func parseMetrics(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the metrics file does not parse: %v\n%s", err, b)
	}
	for name, f := range fams {
		want := dto.MetricType_GAUGE
		if strings.HasSuffix(name, "_total") {
			want = dto.MetricType_COUNTER
		}
		if !strings.HasPrefix(name, "smtp_send_") || f.GetHelp() == "" || f.GetType() != want {
			t.Errorf("family %s: help %q, type %v, want %v", name, f.GetHelp(), f.GetType(), want)
		}
	}
	return fams
}

// value is the sample of family name with the label pairs in labels
// ("outcome", "delivered"), or fails the test.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
metrics:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue metrics
			}
		}
		if f.GetType() == dto.MetricType_COUNTER {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

// TestMetricsOfRuns: two delivery runs over a queue whose recipients are
// delivered, deferred and refused, and whose oldest message has waited
// 6 days and expires; the file after each parses, holds the run's
// figures and the queue's, and the _total counters add up over the runs.
func TestMetricsOfRuns(t *testing.T) {
	sp, q := testQueue(t)
	path := filepath.Join(t.TempDir(), "smtp-send.prom")
	start := time.Now()
	spoolMessage(t, sp, start, "s@example.org", []string{"ok@x.test", "later@x.test"})                  // deferred
	spoolMessage(t, sp, start, "s@example.org", []string{"ok@x.test", "ok2@y.test"})                    // delivered
	spoolMessage(t, sp, start, "s@example.org", []string{"no@x.test", "ok@y.test"})                     // bounced
	oldest := spoolMessage(t, sp, start.Add(-144*time.Hour), "s@example.org", []string{"later@z.test"}) // expired
	runs := 0
	run := func() {
		t.Helper()
		runs++
		var logb bytes.Buffer
		m := startMetrics(path, time.Now(), slog.New(slog.NewTextHandler(&logb, &slog.HandlerOptions{Level: slog.LevelError})))
		s := &send.Sender{Spool: sp, Config: send.Config{Hostname: "client.test", Connections: 2, MinAttempts: 1},
			Log: m.Logger(nil), Transport: byAddress{}}
		_, err := s.Run(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.write(q, time.Now(), err); err != nil {
			t.Fatal(err)
		}
		// The counting handler passes on only what the log level takes.
		if strings.Contains(logb.String(), "level=INFO") || strings.Contains(logb.String(), "level=WARN") {
			t.Errorf("records below the log level were written:\n%s", logb.String())
		}
		if runs == 1 && !strings.Contains(logb.String(), "status=failed") {
			t.Errorf("the error records are missing:\n%s", logb.String())
		}
	}
	run()
	fams := parseMetrics(t, path)
	for _, c := range []struct {
		name, label, val string
		want             float64
	}{
		{"smtp_send_last_run_recipients", "outcome", "delivered", 4},
		{"smtp_send_last_run_recipients", "outcome", "deferred", 1},
		{"smtp_send_last_run_recipients", "outcome", "bounced", 1},
		{"smtp_send_last_run_recipients", "outcome", "expired", 1},
		{"smtp_send_last_run_messages", "outcome", "delivered", 1},
		{"smtp_send_last_run_messages", "outcome", "deferred", 1},
		{"smtp_send_last_run_messages", "outcome", "bounced", 1},
		{"smtp_send_last_run_messages", "outcome", "expired", 1},
		{"smtp_send_recipients_total", "outcome", "delivered", 4},
		{"smtp_send_messages_total", "outcome", "expired", 1},
		{"smtp_send_set_aside_messages", "area", "failed", 2},
		{"smtp_send_hosts_down_total", "kind", "smarthost", 0},
	} {
		if got := value(t, fams, c.name, c.label, c.val); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.val, got, c.want)
		}
	}
	// Left: the deferred message and the two notifications to
	// s@example.org (delivered by the next run); oldest went to failed/.
	if got := value(t, fams, "smtp_send_queue_messages"); got != 3 {
		t.Errorf("queue_messages %v", got)
	}
	if age := value(t, fams, "smtp_send_queue_oldest_message_age_seconds"); age > 60 {
		t.Errorf("oldest age %v s: %s expired and left the queue", age, oldest)
	}
	if got := value(t, fams, "smtp_send_last_run_success"); got != 1 {
		t.Errorf("last_run_success %v", got)
	}
	if d := value(t, fams, "smtp_send_last_run_duration_seconds"); d <= 0 || d > 60 {
		t.Errorf("duration %v s", d)
	}
	if ts := value(t, fams, "smtp_send_last_run_timestamp_seconds"); ts < float64(start.Unix()) {
		t.Errorf("timestamp %v before the start %v", ts, start.Unix())
	}

	queued := value(t, fams, "smtp_send_queue_messages")
	run()
	fams = parseMetrics(t, path)
	if got := value(t, fams, "smtp_send_runs_total"); got != 2 {
		t.Errorf("runs_total %v, want 2", got)
	}
	runDelivered := value(t, fams, "smtp_send_last_run_recipients", "outcome", "delivered")
	if got := value(t, fams, "smtp_send_recipients_total", "outcome", "delivered"); got != 4+runDelivered {
		t.Errorf("recipients_total delivered %v, want 4 + %v", got, runDelivered)
	}
	if got := value(t, fams, "smtp_send_recipients_total", "outcome", "deferred"); got != 2 {
		t.Errorf("recipients_total deferred %v, want 2 (one a run)", got)
	}
	if queued < 1 || value(t, fams, "smtp_send_last_run_messages", "outcome", "deferred") != 1 {
		t.Errorf("second run: %v queued before, deferred %v", queued, value(t, fams, "smtp_send_last_run_messages", "outcome", "deferred"))
	}
}

// TestMetricsOldest: the oldest message's age comes from its queue id;
// an empty queue shows 0.
func TestMetricsOldest(t *testing.T) {
	sp, q := testQueue(t)
	path := filepath.Join(t.TempDir(), "m.prom")
	now := time.Now()
	m := startMetrics(path, now, slog.New(slog.DiscardHandler))
	if err := m.write(q, now, nil); err != nil {
		t.Fatal(err)
	}
	if got := value(t, parseMetrics(t, path), "smtp_send_queue_oldest_message_age_seconds"); got != 0 {
		t.Errorf("empty queue: oldest %v", got)
	}
	spoolMessage(t, sp, now.Add(-90*time.Minute), "s@example.org", []string{"a@x.test"})
	spoolMessage(t, sp, now.Add(-time.Minute), "s@example.org", []string{"a@x.test"})
	if err := m.write(q, now, nil); err != nil {
		t.Fatal(err)
	}
	fams := parseMetrics(t, path)
	if got := value(t, fams, "smtp_send_queue_oldest_message_age_seconds"); got < 5399 || got > 5401 {
		t.Errorf("oldest %v s, want 5400 (to the second)", got)
	}
	if got := value(t, fams, "smtp_send_queue_messages"); got != 2 {
		t.Errorf("queue_messages %v", got)
	}
}

// TestMetricsBadPreviousFile: a previous file whose counters do not
// parse is replaced, the counters starting again, with a warning.
func TestMetricsBadPreviousFile(t *testing.T) {
	_, q := testQueue(t)
	path := filepath.Join(t.TempDir(), "m.prom")
	if err := os.WriteFile(path, []byte("smtp_send_runs_total{} banana\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logb bytes.Buffer
	m := startMetrics(path, time.Now(), slog.New(slog.NewTextHandler(&logb, nil)))
	if err := m.write(q, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if got := value(t, parseMetrics(t, path), "smtp_send_runs_total"); got != 1 {
		t.Errorf("runs_total %v, want 1", got)
	}
	if !strings.Contains(logb.String(), "counters start again") {
		t.Errorf("no warning:\n%s", logb.String())
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
	logb.Reset()
	startMetrics(path+".txt", time.Now(), slog.New(slog.NewTextHandler(&logb, nil)))
	if !strings.Contains(logb.String(), "*.prom") {
		t.Errorf("no warning for a name without .prom:\n%s", logb.String())
	}
}

// TestMetricsThroughRun: smtp-send with SMTP_SEND_METRICS_FILE and a
// smarthost that refuses connections (a closed port on loopback) writes
// the file: the smarthost down, the recipient deferred, the run a
// success; --list writes nothing.
func TestMetricsThroughRun(t *testing.T) {
	sp, _ := testQueue(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // now nothing listens there
	path := filepath.Join(t.TempDir(), "smtp-send.prom")
	t.Setenv("SMTP_SPOOL_DIR", sp.Root())
	t.Setenv("SMTP_SMARTHOST", addr)
	t.Setenv("SMTP_SMARTHOST_TLS", "none")
	t.Setenv("SMTP_HOSTNAME", "client.test")
	t.Setenv("SMTP_SEND_METRICS_FILE", path)
	spoolMessage(t, sp, time.Now(), "s@example.org", []string{"a@x.test", "b@x.test"})
	var out, errb bytes.Buffer
	if code := Run([]string{"smtp-send", "--list"}, &out, &errb); code != 0 {
		t.Fatalf("--list: exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("--list wrote the metrics file: %v", err)
	}
	if code := Run([]string{"smtp-send"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	fams := parseMetrics(t, path)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"smtp_send_last_run_hosts_down", []string{"kind", "smarthost"}, 1},
		{"smtp_send_hosts_down_total", []string{"kind", "smarthost"}, 1},
		{"smtp_send_last_run_recipients", []string{"outcome", "deferred"}, 2},
		{"smtp_send_last_run_messages", []string{"outcome", "deferred"}, 1},
		{"smtp_send_last_run_success", nil, 1},
		{"smtp_send_queue_messages", nil, 1},
		{"smtp_send_queue_deferred_messages", nil, 1},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if !strings.Contains(errb.String(), `msg="smarthost down for this run"`) {
		t.Errorf("the log lacks the line the metric counts:\n%s", errb.String())
	}
}
