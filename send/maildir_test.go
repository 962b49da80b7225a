package send

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/route"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// testRecorder is a Recorder that keeps what it is told; Delivered
// fails with fail when it is set.
type testRecorder struct {
	mu        sync.Mutex
	fail      error
	delivered map[int]Reply
	failed    map[int]*Failure
}

func newTestRecorder() *testRecorder {
	return &testRecorder{delivered: map[int]Reply{}, failed: map[int]*Failure{}}
}

func (r *testRecorder) Delivered(rcpts []int, rep Reply) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	for _, i := range rcpts {
		r.delivered[i] = rep
	}
	return nil
}

func (r *testRecorder) DeliveredEach(rcpts []int, reps []Reply) error {
	for n, i := range rcpts {
		if err := r.Delivered([]int{i}, reps[n]); err != nil {
			return err
		}
	}
	return nil
}

func (r *testRecorder) Failed(rcpts []int, f *Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range rcpts {
		r.failed[i] = f
	}
}

// maildirFiles returns the names in dir/sub.
func maildirFiles(t *testing.T, dir, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// testDelivery is a message to rcpts, as the spool gives it.
func testDelivery(rcpts ...string) *Delivery {
	data := "Subject: hi\r\nFrom: <a@b>\r\n\r\nline one\r\nbare\rCR\r\n"
	d := &Delivery{Envelope: &spool.Envelope{QueueID: "20261121T100000.0123456789abcdef", Received: time.Unix(1795000000, 0),
		From: "s@example.org", To: rcpts}, Size: int64(len(data))}
	d.Content = func() io.Reader { return strings.NewReader(data) }
	for i := range rcpts {
		d.Rcpts = append(d.Rcpts, i)
	}
	return d
}

// A maildir delivery: the file in new/ under the name derived from the
// queue id and the recipient, LF line ends (a bare CR kept),
// Return-Path: and Delivered-To: on top, mode 0600 in maildirs of mode
// 0700 made on the way, nothing left in tmp/; the path template lower-
// cases and makes the address safe.
func TestMaildirDelivery(t *testing.T) {
	root := t.TempDir()
	s := &maildirSession{cfg: &Config{Hostname: "mx/1:a"}, route: route.Route{Kind: route.Maildir, Path: root + "/%d/%u/"}}
	d := testDelivery("Bob@Example.ORG", "../x@example.org")
	rec := newTestRecorder()
	if err := s.Deliver(context.Background(), d, rec); err != nil {
		t.Fatal(err)
	}
	bob := filepath.Join(root, "example.org", "bob")
	name := "1795000000.Q20261121T100000_0123456789abcdefR0.mx\\0571\\072a"
	if got := maildirFiles(t, bob, "new"); len(got) != 1 || got[0] != name {
		t.Fatalf("new/ holds %q, want %q", got, name)
	}
	b, _ := os.ReadFile(filepath.Join(bob, "new", name))
	want := "Return-Path: <s@example.org>\nDelivered-To: Bob@Example.ORG\nSubject: hi\nFrom: <a@b>\n\nline one\nbare\rCR\n"
	if string(b) != want {
		t.Errorf("file:\n%q\nwant\n%q", b, want)
	}
	fi, _ := os.Stat(filepath.Join(bob, "new", name))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", fi.Mode())
	}
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		if fi, err := os.Stat(filepath.Join(bob, sub)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", sub, fi.Mode(), err)
		}
	}
	if got := maildirFiles(t, bob, "tmp"); len(got) != 0 {
		t.Errorf("tmp/ holds %q", got)
	}
	if got := maildirFiles(t, filepath.Join(root, "example.org", "_._x"), "new"); len(got) != 1 {
		t.Errorf("../x's maildir holds %q", got)
	}
	if len(rec.delivered) != 2 || rec.delivered[0].Enhanced != "2.0.0" || !strings.Contains(rec.delivered[0].Text, "delivered to "+bob) {
		t.Errorf("recorded %+v %+v", rec.delivered, rec.failed)
	}
}

// The crash window closed: a run that linked the file into new/ but
// died before the outcome was recorded (here: recording fails) leaves
// the delivery for the next run, which finds the file (in new/, or moved
// to cur/ by a reader) and records it delivered without a second copy.
// A run that died before the link leaves a tmp/ file that the next run
// replaces.
func TestMaildirExactlyOnce(t *testing.T) {
	for _, moved := range []bool{false, true} {
		root := t.TempDir()
		s := &maildirSession{cfg: &Config{Hostname: "mx"}, route: route.Route{Kind: route.Maildir, Path: root + "/%u/"}}
		d := testDelivery("bob@example.org")
		rec := newTestRecorder()
		rec.fail = errors.New("killed")
		if err := s.Deliver(context.Background(), d, rec); err == nil {
			t.Fatal("recording failed, Deliver did not say so")
		}
		bob := filepath.Join(root, "bob")
		if moved {
			name := maildirFiles(t, bob, "new")[0]
			if err := os.Rename(filepath.Join(bob, "new", name), filepath.Join(bob, "cur", name+":2,S")); err != nil {
				t.Fatal(err)
			}
		}
		rec = newTestRecorder()
		if err := s.Deliver(context.Background(), d, rec); err != nil {
			t.Fatal(err)
		}
		n := len(maildirFiles(t, bob, "new")) + len(maildirFiles(t, bob, "cur"))
		if n != 1 || !strings.Contains(rec.delivered[0].Text, "already delivered") || len(maildirFiles(t, bob, "tmp")) != 0 {
			t.Errorf("moved %v: %d copies, recorded %+v", moved, n, rec.delivered)
		}
	}

	root := t.TempDir()
	s := &maildirSession{cfg: &Config{Hostname: "mx"}, route: route.Route{Kind: route.Maildir, Path: root + "/%u/"}}
	d := testDelivery("bob@example.org")
	bob := filepath.Join(root, "bob")
	if err := makeMaildir(bob); err != nil {
		t.Fatal(err)
	}
	name := maildirName(d, 0, "mx")
	if err := os.WriteFile(filepath.Join(bob, "tmp", name), []byte("Return-Path: <s@ex"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := newTestRecorder()
	if err := s.Deliver(context.Background(), d, rec); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(bob, "new", name))
	if !strings.HasSuffix(string(b), "line one\nbare\rCR\n") || strings.Contains(rec.delivered[0].Text, "already") {
		t.Errorf("after a partial tmp/ file: %q, %+v", b, rec.delivered)
	}
}

// A maildir that cannot be written defers its recipient alone (4.3.0,
// never a bounce); an address with no domain for %d fails with 5.1.3.
func TestMaildirFailures(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &maildirSession{cfg: &Config{Hostname: "mx"}, route: route.Route{Kind: route.Maildir, Path: root + "/%u/%d"}}
	d := testDelivery("file@x.test", "ok@x.test", "nodomain")
	rec := newTestRecorder()
	if err := s.Deliver(context.Background(), d, rec); err != nil {
		t.Fatal(err)
	}
	if f := rec.failed[0]; f == nil || !f.Temporary() || f.Enhanced != "4.3.0" || f.Expires() {
		t.Errorf("unwritable maildir: %+v", f)
	}
	if _, ok := rec.delivered[1]; !ok {
		t.Errorf("ok@x.test not delivered: %+v", rec.failed[1])
	}
	if f := rec.failed[2]; f == nil || f.Temporary() || f.Enhanced != "5.1.3" {
		t.Errorf("no domain: %+v", f)
	}
}

// kill -9 of a run at each step of recording a local delivery (the
// helper process dies at the step; the next runs recover), over each
// local transport. maildir: every recipient has the message exactly
// once, even killed between the link and the record (queue.StepAccepted),
// where the others have their duplicate window: LMTP sends the
// transaction again, pipe runs the command again, mbox appends again. The notification of an
// error route, delivered into a maildir, exists once.
func TestKillLocalAtEachStep(t *testing.T) {
	scenarios := []struct {
		name  string
		rcpts []string
		steps []queue.Step
	}{
		{"failed", []string{"ok@m.test", "bad@err.test"},
			[]queue.Step{queue.StepAccepted, queue.StepRecorded, queue.StepBounceIntent, queue.StepBounceSpooled, queue.StepFinished}},
		{"done", []string{"ok@m.test", "ok2@m.test"}, []queue.Step{queue.StepAccepted, queue.StepRecorded}},
	}
	for _, tr := range []string{"maildir", "pipe", "lmtp", "mbox"} {
		for _, sc := range scenarios {
			for _, step := range sc.steps {
				t.Run(tr+"/"+sc.name+"/"+step.String(), func(t *testing.T) {
					killLocalAt(t, tr, sc.rcpts, step, sc.name == "failed")
				})
			}
		}
	}
}

func killLocalAt(t *testing.T, tr string, rcpts []string, step queue.Step, dsn bool) {
	mail := t.TempDir()
	var route0 string
	var count func(rcpt string) int
	switch tr {
	case "maildir":
		route0 = "maildir:" + mail + "/%d/%u/"
		count = func(rcpt string) int {
			local, dom, _ := strings.Cut(rcpt, "@")
			box := filepath.Join(mail, dom, local)
			// Killed after the record, the second link in tmp/ stays
			// (no space of its own; Dovecot removes tmp/ files after 36
			// hours).
			for _, n := range maildirFiles(t, box, "tmp") {
				fi, err := os.Stat(filepath.Join(box, "tmp", n))
				if step != queue.StepRecorded || err != nil || fi.Sys().(*syscall.Stat_t).Nlink != 2 {
					t.Errorf("%s has %s in tmp/", rcpt, n)
				}
			}
			return len(maildirFiles(t, box, "new"))
		}
	case "pipe":
		script := filepath.Join(mail, "deliver")
		log := filepath.Join(mail, "log")
		if err := os.WriteFile(script, []byte("#!/bin/sh\ncat >/dev/null\necho \"$1\" >> "+log+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		route0 = "pipe:" + script + " per=recipient ${recipient}"
		count = func(rcpt string) int {
			b, _ := os.ReadFile(log)
			return strings.Count(string(b), rcpt+"\n")
		}
	case "mbox":
		route0 = "mbox:" + mail + "/%d/%u"
		count = func(rcpt string) int {
			local, dom, _ := strings.Cut(rcpt, "@")
			b, _ := os.ReadFile(filepath.Join(mail, dom, local))
			return strings.Count(string(b), "\nDelivered-To: "+rcpt+"\n")
		}
	case "lmtp":
		ls, sock := startLMTP(t)
		route0 = "lmtp:unix:" + sock
		count = func(rcpt string) int {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			return ls.received[rcpt]
		}
	}
	table := "m.test " + route0 + "\nexample.org maildir:" + mail + "/%d/%u/\nerr.test error:5.1.1 no such user\n"
	routes := filepath.Join(t.TempDir(), "routes")
	if err := os.WriteFile(routes, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	tb, err := route.Load(routes)
	if err != nil {
		t.Fatal(err)
	}
	f.s.Config.Routes = tb
	f.queue("sender@example.org", rcpts, body("crash"))

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SEND_CRASH_STEP="+step.String(), "SEND_CRASH_DIR="+f.sp.Root(),
		"SEND_CRASH_ADDR=127.0.0.1:1", "SEND_CRASH_ROUTES="+routes,
		"SEND_CRASH_NOW="+strconv.FormatInt(f.clk.Now().UnixNano(), 10))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper not killed at %s: %v\n%s", step, err, out)
	}
	f.run(false)
	f.run(true)
	for _, r := range rcpts {
		if strings.HasSuffix(r, "@err.test") {
			continue
		}
		want := 1
		if step == queue.StepAccepted && (tr == "lmtp" || r == rcpts[0] && (tr == "pipe" || tr == "mbox")) {
			// The window: killed before the outcome was recorded, of the
			// transaction (LMTP) or of the first run of the command.
			want = 2
		}
		if n := count(r); n != want {
			t.Errorf("%s has %d copies, want %d", r, n, want)
		}
	}
	wantDSN := 0
	if dsn {
		wantDSN = 1
	}
	if n := len(maildirFiles(t, filepath.Join(mail, "example.org", "sender"), "new")); n != wantDSN {
		t.Errorf("%d notifications, want %d", n, wantDSN)
	}
	if q := f.names(spool.QueueDir); len(q) != 0 {
		t.Errorf("left in queue/: %v", q)
	}
}

// BenchmarkMaildir delivers 2 KiB messages round-robin into 100
// maildirs (made in the first round), one recipient each, and reports
// messages per second. Each costs the floor of durable delivery: one
// fsync of the file and one of new/ (go test -bench Maildir
// -benchtime 1000x ./send).
func BenchmarkMaildir(b *testing.B) {
	root := b.TempDir()
	s := &maildirSession{cfg: &Config{Hostname: "mx"}, route: route.Route{Kind: route.Maildir, Path: root + "/%d/%u/"}}
	data := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 2048/80)
	rec := newTestRecorder()
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n++ {
		d := &Delivery{Envelope: &spool.Envelope{QueueID: "20261121T100000." + strconv.Itoa(n), Received: time.Unix(1795000000, 0),
			From: "s@example.org", To: []string{"u" + strconv.Itoa(n%100) + "@bench.test"}}, Rcpts: []int{0}, Size: int64(len(data)),
			Content: func() io.Reader { return strings.NewReader(data) }}
		if err := s.Deliver(context.Background(), d, rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
	if len(rec.failed) > 0 {
		b.Fatalf("failures: %v", rec.failed)
	}
}
