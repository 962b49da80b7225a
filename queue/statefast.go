package queue

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// decodeStateFast decodes a state file as encoding/json decodes it into a
// State (with DisallowUnknownFields), for the files that smtp-send writes
// (json.Marshal of a State): a listing of 100,000 messages reads 50,000
// of them, and encoding/json spends tens of microseconds on each. It
// takes the subset of JSON that it can decode to exactly the State that
// encoding/json would: the field names as State's tags spell them, each
// once; strings without escapes, control characters or invalid UTF-8;
// integers without fraction or exponent; times as time.Time's
// UnmarshalJSON reads them, statuses as RcptStatus.UnmarshalText. Anything
// else (an escape, a null, an unknown or repeated field, a value of the
// wrong type, a damaged file) returns false, and the caller decodes the
// file with encoding/json, which gives the same State or the error.
func decodeStateFast(b []byte) (*State, bool) {
	// One string for the whole file: the fields are parts of it.
	d := fastDec{b: b, s: string(b)}
	st := new(State)
	var seen uint16
	ok := d.object(func(key []byte) bool {
		bit, ok := stateKeys[string(key)]
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		switch string(key) {
		case "version":
			n, ok := d.int()
			st.Version = n
			return ok
		case "id":
			s, ok := d.string()
			st.ID = s
			return ok
		case "seq":
			n, ok := d.int()
			st.Seq = uint64(n)
			return ok && n >= 0
		case "arrival":
			return d.time(&st.Arrival)
		case "attempts":
			n, ok := d.int()
			st.Attempts = n
			return ok
		case "first_attempt":
			return d.time(&st.First)
		case "last_attempt":
			return d.time(&st.Last)
		case "next_attempt":
			return d.time(&st.Next)
		case "rcpts":
			return d.rcpts(st)
		}
		return false
	})
	if !ok {
		return nil, false
	}
	d.ws()
	if d.i != len(d.b) {
		return nil, false
	}
	return st, true
}

// stateKeys and rcptKeys are the field names of State and Rcpt, each
// with a bit to find a repeated one.
var (
	stateKeys = map[string]uint16{"version": 1, "id": 2, "seq": 4, "arrival": 8, "attempts": 16,
		"first_attempt": 32, "last_attempt": 64, "next_attempt": 128, "rcpts": 256}
	rcptKeys = map[string]uint16{"addr": 1, "status": 2, "code": 4, "enhanced": 8, "text": 16, "stage": 32,
		"relay": 64, "at": 128, "expired": 256, "dsn": 512, "action": 1024, "delayed": 2048}
)

// fastDec is decodeStateFast's position in the file.
type fastDec struct {
	b []byte
	s string // b as a string
	i int
}

// ws skips JSON white space.
func (d *fastDec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (d *fastDec) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// object reads an object, calling field with each key when the decoder
// is at its value; field reads the value and reports whether all went
// well.
func (d *fastDec) object(field func(key []byte) bool) bool {
	if d.peek() != '{' {
		return false
	}
	d.i++
	if d.peek() == '}' {
		d.i++
		return true
	}
	for {
		key, ok := d.raw()
		if !ok || d.peek() != ':' {
			return false
		}
		d.i++
		d.ws()
		if !field(key) {
			return false
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return true
		default:
			return false
		}
	}
}

// raw reads a string without escapes, control characters or invalid
// UTF-8, and returns its bytes between the quotes.
func (d *fastDec) raw() ([]byte, bool) {
	if d.peek() != '"' {
		return nil, false
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			s := d.b[start:j]
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

func (d *fastDec) string() (string, bool) {
	s, ok := d.raw()
	if !ok {
		return "", false
	}
	start := d.i - 1 - len(s) // after the opening quote
	return d.s[start : start+len(s)], true
}

// int reads an integer as JSON writes it: -?(0|[1-9][0-9]*), in int's
// range, followed by neither a fraction nor an exponent.
func (d *fastDec) int() (int, bool) {
	start := d.i
	j := d.i
	if j < len(d.b) && d.b[j] == '-' {
		j++
	}
	digits := j
	for j < len(d.b) && d.b[j] >= '0' && d.b[j] <= '9' {
		j++
	}
	if j == digits || d.b[digits] == '0' && j-digits > 1 {
		return 0, false
	}
	if j < len(d.b) && (d.b[j] == '.' || d.b[j] == 'e' || d.b[j] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(d.b[start:j]), 10, 0)
	if err != nil {
		return 0, false
	}
	d.i = j
	return int(n), true
}

// time reads a time string with time.Time's UnmarshalJSON, as
// encoding/json does.
func (d *fastDec) time(t *time.Time) bool {
	start := d.i
	if _, ok := d.raw(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.b[start:d.i]) == nil
}

// rcpts reads the array of recipients.
func (d *fastDec) rcpts(st *State) bool {
	if d.peek() != '[' {
		return false
	}
	d.i++
	st.Rcpts = []Rcpt{}
	if d.peek() == ']' {
		d.i++
		return true
	}
	for {
		var r Rcpt
		if !d.rcpt(&r) {
			return false
		}
		st.Rcpts = append(st.Rcpts, r)
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return true
		default:
			return false
		}
	}
}

// rcpt reads one recipient's object.
func (d *fastDec) rcpt(r *Rcpt) bool {
	var seen uint16
	return d.object(func(key []byte) bool {
		bit, ok := rcptKeys[string(key)]
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		var s string
		switch string(key) {
		case "status":
			b, ok := d.raw()
			return ok && r.Status.UnmarshalText(b) == nil
		case "code":
			n, ok := d.int()
			r.Code = n
			return ok
		case "at":
			return d.time(&r.At)
		case "expired":
			switch {
			case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
				r.Expired, d.i = true, d.i+4
			case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
				r.Expired, d.i = false, d.i+5
			default:
				return false
			}
			return true
		}
		s, ok = d.string()
		switch string(key) {
		case "addr":
			r.Addr = s
		case "enhanced":
			r.Enhanced = s
		case "text":
			r.Text = s
		case "stage":
			r.Stage = s
		case "relay":
			r.Relay = s
		case "dsn":
			r.DSN = s
		case "action":
			r.Action = s
		case "delayed":
			r.Delayed = s
		}
		return ok
	})
}
