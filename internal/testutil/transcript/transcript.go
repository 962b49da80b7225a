// Package transcript reads SMTP dialog transcripts and replays them against
// a session: a protocol.Session in the test's own process (package
// protocol's TestTranscripts, over pipes, with a fake clock) or the built
// smtp-stdio binary (Binary, over a pipe or a loopback TCP socket, with
// its spool checked afterward). It is for tests only.
//
// A transcript is a text file, one item per line:
//
//	# comment           ignored, as are blank lines
//	! option value      setup before the dialog; the runner says which
//	                    options it knows (Binary: "env NAME=value" and
//	                    "socket"; protocol: its Config fields)
//	C: text             a client line; CRLF is added
//	R: "string"         raw client bytes, in Go string syntax
//	S: text             the next reply line, without its CRLF
//	= result            how the session ends: for protocol, what Serve
//	                    returns (nil, eof, timeout, ...); for Binary, the
//	                    exit status ("exit 0")
//	E: name: value      an envelope line of a committed message, as in
//	                    spool/FORMAT.md ("rcpt-to: <bob@example.org>")
//	M: text             a line of a committed message, its CRLF left out
//
// For example, against the binary:
//
//	# A local domain is accepted from a remote client.
//	! env TCPREMOTEIP=198.51.100.7
//	S: 220 mx.test.example ESMTP ready
//	C: HELO c
//	S: 250 mx.test.example greets c
//	C: MAIL FROM:<a@example.net>
//	C: RCPT TO:<x@example.org>
//	C: DATA
//	S: 250 2.1.0 Sender OK
//	S: 250 2.1.5 Recipient OK
//	S: 354 Start mail input; end with <CRLF>.<CRLF>
//	C: Subject: t
//	C:
//	C: hello
//	C: .
//	C: QUIT
//	S: 250 2.0.0 OK queued as …
//	S: 221 2.0.0 mx.test.example closing connection
//	= exit 0
//
//	E: rcpt-to: <x@example.org>
//	M: Received: from c ([198.51.100.7])
//	M: 	by mx.test.example (smtp-stdio) with SMTP id …;
//	M: 	…
//	M: Subject: t
//	M:
//	M: hello
//
// Consecutive C: and R: lines go out in one write, as a pipelining client
// sends them; client bytes before the first S: line go out at once (for
// Binary on a socket, before the process starts: an early talker). Each
// S: line must arrive within the runner's wait, so a reply the session
// forgot to flush fails the test. After the last item the client closes
// its side; the session must then end as the "=" line says, with no reply
// left over.
//
// Consecutive E: and M: lines describe one committed message (an E: line
// after an M: line starts the next one); the session must commit exactly
// these messages, in order, and no others. The M: lines are the whole
// message, the receiver's Received: header first. When a message has E:
// lines, each envelope field they name must have exactly those values, in
// order (two "E: rcpt-to:" lines: exactly those two recipients); fields
// not named are not checked. Binary also checks that every message in the
// spool was named by a "250 ... queued as" reply, and that tmp/ is empty.
//
// In S:, E: and M: lines an ellipsis "…" (U+2026) stands for any run of
// characters within the line, for what changes from run to run: a queue
// id, a date, a port. Without one, a line must match byte for byte.
//
// A line may start with a count, "60 C: RCPT TO:<x@example.org>", for
// the same line 60 times over.
//
// A test can also build a transcript in a string (MustParse), replay it in
// parts around something it does to the session (Binary.Start,
// Client.Play, Session.Finish), or drive a session line by line with the
// same matching (Client.Expect).
package transcript

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Ellipsis stands for any run of characters in an S:, E: or M: line.
const Ellipsis = "…"

// Script is a parsed transcript.
type Script struct {
	// Name is the file's name without its directory and ".txt", the name
	// of the subtest that replays it.
	Name string
	// File is where the script came from, for error messages.
	File string
	// Options are the "!" lines, in order.
	Options []Option
	// Steps are the dialog: client writes and expected reply lines.
	Steps []Step
	// Result is the text of the "=" line; a runner fails a script without
	// one, except as the first part of a dialog it plays in parts.
	Result string
	// Messages are the committed messages, in order.
	Messages []Message
}

// Option is one "!" line: "! key value".
type Option struct {
	Key, Value string
	Line       int
}

// Step is one write of client bytes or one expected reply line.
type Step struct {
	Send   []byte // client bytes for one write, or
	Expect string // a reply line pattern, without CRLF
	Line   int    // where the step starts in the file (0: built by a test)
}

// Message is one committed message: its E: and M: lines.
type Message struct {
	Envelope []string // "name: value" patterns
	Content  []string // line patterns, without CRLF
	Line     int
}

// Read parses the transcript in file; an error fails the test.
func Read(t testing.TB, file string) *Script {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(file, string(data))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// MustParse parses a transcript that a test holds in a string, named
// name in errors; an error fails the test.
func MustParse(t testing.TB, name, text string) *Script {
	t.Helper()
	s, err := Parse(name, text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ReadAll parses every transcript that matches the pattern (as for
// filepath.Glob: "testdata/*.txt"); none at all fails the test.
func ReadAll(t testing.TB, pattern string) []*Script {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts match %s: %v", pattern, err)
	}
	var ss []*Script
	for _, f := range files {
		ss = append(ss, Read(t, f))
	}
	return ss
}

// Parse parses a transcript; file names it in errors and gives the
// script its Name.
func Parse(file, text string) (*Script, error) {
	s := &Script{Name: strings.TrimSuffix(filepath.Base(file), ".txt"), File: file}
	var msg *Message // the message being read
	for n, line := range strings.Split(text, "\n") {
		n++
		count, line, err := repeat(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", file, n, err)
		}
		kind, text, _ := strings.Cut(line, ":")
		text = strings.TrimPrefix(text, " ")
		if kind != "M" && kind != "E" {
			msg = nil
		}
		if count != 1 && (line == "" || line[0] == '#' || line[0] == '!' || line[0] == '=') {
			return nil, fmt.Errorf("%s:%d: a count before %q", file, n, line)
		}
		for range count {
			switch {
			case line == "" || line[0] == '#':
			case line[0] == '!':
				key, val, _ := strings.Cut(strings.TrimSpace(line[1:]), " ")
				s.Options = append(s.Options, Option{Key: key, Value: val, Line: n})
			case line[0] == '=':
				s.Result = strings.TrimSpace(line[1:])
			case kind == "C":
				s.send([]byte(text+"\r\n"), n)
			case kind == "R":
				raw, err := strconv.Unquote(text)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: %v", file, n, err)
				}
				s.send([]byte(raw), n)
			case kind == "S":
				s.Steps = append(s.Steps, Step{Expect: text, Line: n})
			case kind == "E" || kind == "M":
				if msg == nil || (kind == "E" && len(msg.Content) > 0) {
					s.Messages = append(s.Messages, Message{Line: n})
					msg = &s.Messages[len(s.Messages)-1]
				}
				if kind == "E" {
					msg.Envelope = append(msg.Envelope, text)
				} else {
					msg.Content = append(msg.Content, text)
				}
			default:
				return nil, fmt.Errorf("%s:%d: bad line %q", file, n, line)
			}
		}
	}
	return s, nil
}

// repeat splits a leading count ("60 C: ...") off line; without one the
// count is 1.
func repeat(line string) (int, string, error) {
	digits := len(line) - len(strings.TrimLeft(line, "0123456789"))
	if digits == 0 || digits == len(line) || line[digits] != ' ' {
		return 1, line, nil
	}
	n, err := strconv.Atoi(line[:digits])
	if err != nil || n < 1 {
		return 0, "", fmt.Errorf("bad count %q", line[:digits])
	}
	return n, line[digits+1:], nil
}

// send adds client bytes to the current write, or starts one.
func (s *Script) send(b []byte, line int) {
	if n := len(s.Steps); n > 0 && s.Steps[n-1].Send != nil {
		s.Steps[n-1].Send = append(s.Steps[n-1].Send, b...)
		return
	}
	s.Steps = append(s.Steps, Step{Send: b, Line: line})
}

// Send adds client bytes to the dialog, to the same write as the bytes
// just before them, as consecutive C: and R: lines go: for a test that
// builds a script in code.
func (s *Script) Send(p string) { s.send([]byte(p), 0) }

// Expect adds expected reply lines (patterns, without CRLF) to the
// dialog, as S: lines do.
func (s *Script) Expect(lines ...string) {
	for _, l := range lines {
		s.Steps = append(s.Steps, Step{Expect: l})
	}
}

// where names a line of the script for an error message: "file:line", or
// the step's index for a step a test built.
func (s *Script) where(line, step int) string {
	if line == 0 {
		return fmt.Sprintf("%s: step %d", s.File, step)
	}
	return fmt.Sprintf("%s:%d", s.File, line)
}

// Match reports whether got, a line without its CRLF, matches pattern:
// byte for byte, except that each Ellipsis in pattern stands for any run
// of characters other than CR and LF (none included).
func Match(pattern, got string) bool {
	parts := strings.Split(pattern, Ellipsis)
	if len(parts) == 1 {
		return got == pattern
	}
	if !strings.HasPrefix(got, parts[0]) {
		return false
	}
	rest := got[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		// The leftmost place for each part leaves the most room for the
		// rest, and the shortest run for the ellipsis before it.
		i := strings.Index(rest, p)
		if i < 0 || strings.ContainsAny(rest[:i], "\r\n") {
			return false
		}
		rest = rest[i+len(p):]
	}
	last := parts[len(parts)-1]
	if !strings.HasSuffix(rest, last) {
		return false
	}
	return !strings.ContainsAny(rest[:len(rest)-len(last)], "\r\n")
}
