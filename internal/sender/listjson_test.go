package sender

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/queue"
)

// encodeJSON is what --list --json wrote before appendEntryJSON.
func encodeJSON(e *queue.ListEntry) ([]byte, error) {
	var b bytes.Buffer
	err := json.NewEncoder(&b).Encode(e)
	return b.Bytes(), err
}

// checkEntryJSON: appendEntryJSON writes e byte for byte as
// encoding/json, or leaves it to encoding/json when that refuses it.
func checkEntryJSON(t *testing.T, e *queue.ListEntry) {
	t.Helper()
	want, err := encodeJSON(e)
	got, ok := appendEntryJSON([]byte("prefix"), e)
	switch {
	case err != nil && ok:
		t.Errorf("encoding/json refuses %+v (%v), appendEntryJSON wrote %s", e, err, got)
	case err == nil && !ok:
		t.Errorf("appendEntryJSON refuses %+v, encoding/json wrote %s", e, want)
	case ok && !bytes.Equal(got, append([]byte("prefix"), want...)):
		t.Errorf("appendEntryJSON:\n got %s\nwant prefix%s", got, want)
	case !ok && string(got) != "prefix":
		t.Errorf("appendEntryJSON refused and left %q", got)
	}
}

// hostile are strings that encoding/json escapes, or that a naive copy
// would get wrong.
var hostile = []string{"", "plain", `q"uote`, `back\slash`, "<b>&amp;</b>", "nl\nnul\x00tab\tesc\x1bdel\x7f",
	"\u2028\u2029", "bidi\u202eevil", "bad\xffutf8\xc3", "ünïcödé 日本", "\b\f\r"}

// TestEntryJSONAsEncoding: --list --json's encoder writes entries as
// encoding/json does, byte for byte: every field set and none, hostile
// strings in every string field, nil and empty lists, times in other
// zones; and leaves to encoding/json (which fails) an unknown recipient
// status and a time past year 9999.
func TestEntryJSONAsEncoding(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 123000000, time.UTC)
	full := queue.ListEntry{ID: "20261121T100000.0123456789abcdef", Area: "queue", Status: "deferred", Arrival: t0,
		Age: "1h0m0s", Size: 2048, From: "s@example.org", Attempts: 3, Next: t0.Add(time.Hour).In(time.FixedZone("x", -5*3600)),
		Error: "spool: something", Ret: "HDRS", EnvID: "E1",
		Rcpts: []queue.Rcpt{
			{Addr: "a@x.test", Status: queue.Pending, Code: 451, Enhanced: "4.3.0", Text: "busy", Stage: "rcpt", Relay: "r:25",
				At: t0, Expired: true, DSN: "d", Action: "relayed", Delayed: "l"},
			{Addr: "b@x.test", Status: queue.Done},
			{Addr: "c@x.test", Status: queue.Failed, Code: -1},
		},
		DSN: []queue.ListDSN{{Notify: "NEVER"}, {ORcpt: "rfc822;b@x.test"}, {Notify: "SUCCESS", ORcpt: "rfc822;c@x.test"}, {}},
	}
	checkEntryJSON(t, &full)
	checkEntryJSON(t, &queue.ListEntry{})
	checkEntryJSON(t, &queue.ListEntry{Rcpts: []queue.Rcpt{}, DSN: []queue.ListDSN{}})
	for _, s := range hostile {
		e := full
		e.ID, e.Area, e.Status, e.Age, e.From, e.Error, e.Ret, e.EnvID = s, s, s, s, s, s, s, s
		e.Rcpts = []queue.Rcpt{{Addr: s, Enhanced: s, Text: s, Stage: s, Relay: s, DSN: s, Action: s, Delayed: s}}
		e.DSN = []queue.ListDSN{{Notify: s, ORcpt: s}}
		checkEntryJSON(t, &e)
	}
	bad := full
	bad.Rcpts = []queue.Rcpt{{Addr: "a@x.test", Status: 7}}
	checkEntryJSON(t, &bad)
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		t0.In(time.FixedZone("far", 24*3600))} {
		bad = full
		bad.Next = tm
		checkEntryJSON(t, &bad)
		bad = full
		bad.Rcpts = []queue.Rcpt{{Addr: "a", At: tm}}
		checkEntryJSON(t, &bad)
	}
}

// FuzzEntryJSON: go test -fuzz EntryJSON ./internal/sender.
func FuzzEntryJSON(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, int64(len(s)), 1)
	}
	f.Fuzz(func(t *testing.T, s string, n int64, code int) {
		e := queue.ListEntry{ID: s, Area: s, Status: s, Age: s, Size: n, From: s, Attempts: code, Error: s,
			Arrival: time.Unix(n, n).UTC(), Next: time.Unix(-n, 0).In(time.FixedZone(s, code%100000)),
			Rcpts: []queue.Rcpt{{Addr: s, Status: queue.RcptStatus(code % 4), Code: code, Text: s, At: time.Unix(n, 0)}},
			Ret:   s, EnvID: s, DSN: []queue.ListDSN{{Notify: s}}}
		checkEntryJSON(t, &e)
	})
}
