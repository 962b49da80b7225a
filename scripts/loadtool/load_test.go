package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// TestLoadQuick is CI's short load run: 500 messages over 50 concurrent
// sessions, the same code path as scripts/load (5,000). It fails unless
// every message accepted is delivered exactly once and intact.
func TestLoadQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, tool := range []string{"tcpserver", "/usr/sbin/smtp-source", "/usr/sbin/smtp-sink"} {
		testutil.Need(t, tool)
	}
	c := config{messages: 500, sessions: 50, size: 2048,
		stdio: testutil.Program(t, "cmd/smtp-stdio"), send: testutil.Program(t, "cmd/smtp-send")}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var report strings.Builder
	r, err := run(ctx, c, &report)
	t.Log("\n" + report.String())
	if err != nil {
		t.Fatal(err)
	}
	if r.accepted != 500 || r.delivered != 500 {
		t.Errorf("accepted %d, delivered %d", r.accepted, r.delivered)
	}
}

// The invariant check finds a message delivered twice, one never
// delivered, one delivered changed, and one delivered but never accepted.
func TestCheckFindsEachFault(t *testing.T) {
	spoolDir := t.TempDir()
	for _, sub := range []string{"queue", "tmp"} {
		os.Mkdir(filepath.Join(spoolDir, sub), 0o700)
	}
	queued := map[string][]byte{"a": []byte("A\r\n"), "b": []byte("B\r\n"), "c": []byte("C\r\n")}
	dump := func(id, body string) dumped {
		return dumped{file: "msg." + id, id: id, data: []byte("X-Rcpt-Args: <r>\n" + body + "\n")}
	}
	if err := check(queued, []dumped{dump("a", "A\n"), dump("b", "B\n"), dump("c", "C\n")}, spoolDir); err != nil {
		t.Fatalf("a clean run: %v", err)
	}
	err := check(queued, []dumped{dump("a", "A\n"), dump("a", "A\n"), dump("b", "b\n"), dump("z", "Z\n")}, spoolDir)
	for _, want := range []string{"a delivered more than once", "b (msg.b): delivered bytes differ", "c accepted but never delivered", "msg.z: delivered a message that was never accepted"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
