package send

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/renameio/v2"
)

// downFor is how long an MX address that timed out is not tried again,
// across runs: a run every few minutes from cron would otherwise wait for
// a dead host's timeout at each run, one per worker (qmail's tcpto keeps
// such a host out for an hour; the queue's backoff already spaces the
// attempts of each message).
const downFor = 10 * time.Minute

// maxDownEntries bounds the file of timed-out addresses.
const maxDownEntries = 10000

// downMemory remembers the MX addresses ("ip:port") that timed out, in a
// small JSON file of the spool (Config.DownFile), read when a run starts
// and written when it ends. Only timeouts are remembered: a refused
// connection costs nothing to try again.
type downMemory struct {
	file, tmp string // the file, and the directory of its temporary files
	now       func() time.Time

	mu    sync.Mutex
	until map[string]time.Time
	dirty bool
}

// loadDown reads the file; a missing or damaged one is an empty memory.
// tmp is where its new versions are written before they replace it.
func loadDown(file, tmp string, now func() time.Time) *downMemory {
	m := &downMemory{file: file, tmp: tmp, now: now, until: map[string]time.Time{}}
	if file == "" {
		return m
	}
	b, err := os.ReadFile(file)
	if err == nil {
		if json.Unmarshal(b, &m.until) != nil {
			m.until = map[string]time.Time{}
		}
	}
	t := now()
	for a, u := range m.until {
		if !t.Before(u) || u.Sub(t) > downFor {
			delete(m.until, a) // passed, or from a clock set back
		}
	}
	return m
}

// down returns the failure to report for addr while it is remembered
// down, or nil.
func (m *downMemory) down(addr string) *Failure {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.until[addr]
	if !ok || !m.now().Before(u) {
		return nil
	}
	return &Failure{Stage: StageConnect, Relay: addr, Enhanced: "4.4.1", timeout: true, setup: true,
		Text: fmt.Sprintf("timed out in an earlier run; not tried again before %s", u.UTC().Format(time.RFC3339))}
}

// note remembers addr when f is a timeout before the host was ready for
// MAIL.
func (m *downMemory) note(addr string, f *Failure) {
	if !f.timeout || f.Stage > StageHello {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.until) < maxDownEntries {
		m.until[addr] = m.now().Add(downFor)
		m.dirty = true
	}
}

// save writes the memory back when it changed. It returns the error of
// writing it, which a run logs: the memory only saves time.
func (m *downMemory) save() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirty || m.file == "" {
		return nil
	}
	b, err := json.Marshal(m.until)
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(m.file, b, 0o600, renameio.WithTempDir(m.tmp)); err != nil {
		return errors.Join(errors.New("saving the MX hosts that timed out"), err)
	}
	m.dirty = false
	return nil
}
