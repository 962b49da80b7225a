package queue

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// decodeStateJSON is what decodeState did before decodeStateFast:
// encoding/json with DisallowUnknownFields.
func decodeStateJSON(b []byte) (*State, error) {
	var st State
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// stateCorpus is state files as runs write them (json.Marshal of a
// State), with every field, none, and the strings encoding/json escapes.
func stateCorpus(t testing.TB) [][]byte {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC)
	full := &State{Version: StateVersion, ID: "20261121T100000.0123456789abcdef", Seq: 7, Arrival: t0, Attempts: 3,
		First: t0.Add(time.Minute), Last: t0.Add(time.Hour), Next: t0.Add(2 * time.Hour),
		Rcpts: []Rcpt{
			{Addr: "a@x.test", Status: Pending, Code: 451, Enhanced: "4.3.0", Text: "mailbox busy, try again later",
				Stage: "rcpt", Relay: "smtp.example.net:587", At: t0.Add(time.Hour), Delayed: "20261121T110000.0123456789abcdee"},
			{Addr: "b@y.test", Status: Done, Code: 250, Stage: "dot", DSN: "20261121T110000.0123456789abcded", Action: "relayed"},
			{Addr: "c@z.test", Status: Failed, Expired: true, Text: "queue lifetime passed"},
			{Addr: "d@z.test", Status: Failed, Code: 550, Text: `no "such" user \ here`},
			{Addr: "ü@bücher.test", Status: Pending, Text: "<tag> & \u2028 \x01 \xff"},
		}}
	var out [][]byte
	for _, st := range []*State{
		full,
		{Version: StateVersion, ID: full.ID, Arrival: t0, Rcpts: []Rcpt{}},
		{Version: StateVersion, ID: full.ID, Arrival: t0.In(time.FixedZone("x", 3600)), Rcpts: full.Rcpts[:2]},
	} {
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append(b, '\n'))
	}
	return append(out,
		[]byte(`{"version":1,"id":"20261202T014116.02186314fc6c23f0","seq":1,"arrival":"2026-12-02T01:57:56.32055435Z","attempts":1,"first_attempt":"2026-12-02T01:57:56.326705915Z","last_attempt":"2026-12-02T01:57:56.326705915Z","next_attempt":"2026-12-02T02:02:56.326705915Z","rcpts":[{"addr":"a@example.net","status":"pending","code":451,"enhanced":"4.3.0","text":"mailbox busy, try again later","stage":"rcpt","relay":"smtp.example.net:587","at":"2026-12-02T01:57:56.326705915Z"}]}`+"\n"),
		[]byte(" { \"version\" : 1 , \"rcpts\" : [ { \"addr\" : \"a@b\" , \"expired\" : false } ] }\r\n"),
		[]byte(`{"version":1,"ID":"x","seq":-1,"attempts":1.0,"code":1e2}`),
		[]byte(`{"version":1,"version":2}`),
		[]byte(`{"version":1,"rcpts":null}`),
		[]byte(`{"version":1} trailing`),
		[]byte(`{}`),
	)
}

// checkFast: whenever decodeStateFast takes b, encoding/json takes it too
// and gives the same State.
func checkFast(t testing.TB, b []byte) bool {
	fast, ok := decodeStateFast(b)
	if !ok {
		return false
	}
	slow, err := decodeStateJSON(b)
	if err != nil {
		t.Fatalf("decodeStateFast took %q, encoding/json refuses it: %v", b, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\nfast %+v\njson %+v", b, fast, slow)
	}
	return true
}

// TestDecodeStateFastAsJSON: the fast decoder of state files takes the
// files runs write (all but those with escaped strings) and gives the
// State encoding/json gives; on each of them damaged in every place (a
// byte dropped, a byte replaced by one that matters to JSON), it either
// agrees with encoding/json or leaves the file to it.
func TestDecodeStateFastAsJSON(t *testing.T) {
	corpus := stateCorpus(t)
	if !checkFast(t, corpus[1]) || !checkFast(t, corpus[3]) || !checkFast(t, corpus[4]) {
		t.Errorf("the fast decoder refuses the files runs write")
	}
	if checkFast(t, corpus[0]) {
		t.Errorf("the fast decoder took escaped strings")
	}
	taken := 0
	for _, b := range corpus {
		for i := range b {
			m := append(append([]byte(nil), b[:i]...), b[i+1:]...)
			if checkFast(t, m) {
				taken++
			}
			for _, c := range []byte(`"\{}[]:,-.0 9eEtfn` + "\x00\x80") {
				m := append([]byte(nil), b...)
				m[i] = c
				if checkFast(t, m) {
					taken++
				}
			}
		}
	}
	t.Logf("damaged files the fast decoder took: %d", taken)
}

// FuzzDecodeStateFast: go test -fuzz DecodeStateFast ./queue.
func FuzzDecodeStateFast(f *testing.F) {
	for _, b := range stateCorpus(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFast(t, b) })
}
