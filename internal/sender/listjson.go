package sender

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/smtp-stdio/smtp-stdio/queue"
)

// appendEntryJSON appends e as encoding/json's Encoder writes it (field
// order, omitempty and omitzero, HTML-safe escaping, the newline), for
// --list --json: with 100,000 messages encoding/json's reflection was a
// fifth of the listing's CPU time. Strings with nothing to escape are
// copied; any other is encoded by json.Marshal, as the Encoder would. It
// returns false, with b unchanged, for what encoding/json would refuse
// (an unknown recipient status, a time outside years 0-9999): the caller
// encodes e with encoding/json, which returns the error.
func appendEntryJSON(b []byte, e *queue.ListEntry) ([]byte, bool) {
	start := len(b)
	b = append(b, `{"id":`...)
	b = appendJSONString(b, e.ID)
	b = append(b, `,"area":`...)
	b = appendJSONString(b, e.Area)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, e.Status)
	var ok bool
	if !e.Arrival.IsZero() {
		b = append(b, `,"arrival":`...)
		if b, ok = appendJSONTime(b, e.Arrival); !ok {
			return b[:start], false
		}
	}
	if e.Age != "" {
		b = append(b, `,"age":`...)
		b = appendJSONString(b, e.Age)
	}
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, e.Size, 10)
	b = append(b, `,"from":`...)
	b = appendJSONString(b, e.From)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	if !e.Next.IsZero() {
		b = append(b, `,"next_attempt":`...)
		if b, ok = appendJSONTime(b, e.Next); !ok {
			return b[:start], false
		}
	}
	if e.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, e.Error)
	}
	b = append(b, `,"recipients":`...)
	if e.Rcpts == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range e.Rcpts {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendRcptJSON(b, &e.Rcpts[i]); !ok {
				return b[:start], false
			}
		}
		b = append(b, ']')
	}
	if e.Ret != "" {
		b = append(b, `,"ret":`...)
		b = appendJSONString(b, e.Ret)
	}
	if e.EnvID != "" {
		b = append(b, `,"envid":`...)
		b = appendJSONString(b, e.EnvID)
	}
	if len(e.DSN) > 0 {
		b = append(b, `,"dsn":[`...)
		for i, d := range e.DSN {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if d.Notify != "" {
				b = append(b, `"notify":`...)
				b = appendJSONString(b, d.Notify)
			}
			if d.ORcpt != "" {
				if d.Notify != "" {
					b = append(b, ',')
				}
				b = append(b, `"orcpt":`...)
				b = appendJSONString(b, d.ORcpt)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...), true
}

// appendRcptJSON appends r as encoding/json writes a queue.Rcpt, false
// for an unknown status.
func appendRcptJSON(b []byte, r *queue.Rcpt) ([]byte, bool) {
	st, err := r.Status.MarshalText()
	if err != nil {
		return b, false
	}
	b = append(b, `{"addr":`...)
	b = appendJSONString(b, r.Addr)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(st))
	if r.Code != 0 {
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(r.Code), 10)
	}
	str := func(key, v string) {
		if v != "" {
			b = append(b, key...)
			b = appendJSONString(b, v)
		}
	}
	str(`,"enhanced":`, r.Enhanced)
	str(`,"text":`, r.Text)
	str(`,"stage":`, r.Stage)
	str(`,"relay":`, r.Relay)
	if !r.At.IsZero() {
		b = append(b, `,"at":`...)
		var ok bool
		if b, ok = appendJSONTime(b, r.At); !ok {
			return b, false
		}
	}
	if r.Expired {
		b = append(b, `,"expired":true`...)
	}
	str(`,"dsn":`, r.DSN)
	str(`,"action":`, r.Action)
	str(`,"delayed":`, r.Delayed)
	return append(b, '}'), true
}

// appendJSONTime appends t as time.Time's MarshalJSON writes it, false
// when it refuses t.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	q, err := t.MarshalJSON()
	if err != nil {
		return b, false
	}
	return append(b, q...), true
}

// appendJSONString appends s as a JSON string as encoding/json writes it
// (HTML-safe): printable ASCII other than '"', '\\', '<', '>' and '&' is
// copied, anything else is left to json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil {
				// Not reached: encoding/json encodes every string.
				return append(b, `""`...)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
