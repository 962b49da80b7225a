package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// Transcripts in testdata/*.txt replay a dialog against a Session over
// pipes. One item per line:
//
//	# comment         ignored, as are blank lines
//	! option value    session setup, before the dialog (see setOption)
//	C: text           a client line; CRLF is added
//	R: "string"       raw client bytes, in Go string syntax
//	S: text           the next reply line, without its CRLF
//	M: text           a line of a committed message; consecutive M: lines
//	                  form one message, each line ended by CRLF
//	= result          how Serve ends: nil, eof, timeout, too-many-errors,
//	                  improper-pipelining, non-smtp or refused
//
// Consecutive C: and R: lines go out in one write, as a pipelining client
// sends them. Each S: line must arrive within replyWait, so a reply the
// session forgot to flush fails the test. After the last item the client
// closes its side; the session must then end as the "=" line says, with
// no reply left over, exactly the M: messages committed and every other
// message aborted.
type transcript struct {
	cfg      Config
	client   Client
	policy   relayPolicy
	delivery fakeDelivery
	steps    []step
	messages []string
	result   string
}

type step struct {
	send   []byte // client bytes, or
	expect string // a reply line
}

const replyWait = 5 * time.Second

func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runTranscript(t, readTranscript(t, f))
		})
	}
}

func readTranscript(t *testing.T, file string) *transcript {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tr := &transcript{cfg: testConfig(), client: testClient}
	var msg []string // M: lines of the message being read
	endMsg := func() {
		if msg != nil {
			tr.messages = append(tr.messages, strings.Join(msg, "\r\n")+"\r\n")
			msg = nil
		}
	}
	for n, line := range strings.Split(string(data), "\n") {
		where := fmt.Sprintf("%s:%d", file, n+1)
		kind, text, _ := strings.Cut(line, ":")
		text = strings.TrimPrefix(text, " ")
		if kind != "M" {
			endMsg()
		}
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '!':
			key, val, _ := strings.Cut(strings.TrimSpace(line[1:]), " ")
			if err := tr.setOption(key, val); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		case line[0] == '=':
			tr.result = strings.TrimSpace(line[1:])
		case kind == "C":
			tr.addSend([]byte(text + "\r\n"))
		case kind == "R":
			raw, err := strconv.Unquote(text)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			tr.addSend([]byte(raw))
		case kind == "S":
			tr.steps = append(tr.steps, step{expect: text})
		case kind == "M":
			msg = append(msg, text)
		default:
			t.Fatalf("%s: bad line %q", where, line)
		}
	}
	endMsg()
	if tr.result == "" {
		t.Fatalf("%s: no \"=\" line", file)
	}
	return tr
}

// addSend adds client bytes to the current write.
func (tr *transcript) addSend(b []byte) {
	if n := len(tr.steps); n > 0 && tr.steps[n-1].send != nil {
		tr.steps[n-1].send = append(tr.steps[n-1].send, b...)
		return
	}
	tr.steps = append(tr.steps, step{send: b})
}

// setOption applies one "!" line.
func (tr *transcript) setOption(key, val string) error {
	atoi := func() int { n, _ := strconv.Atoi(val); return n }
	dur := func() time.Duration { d, _ := time.ParseDuration(val); return d }
	switch key {
	case "max_errors":
		tr.cfg.MaxErrors = atoi()
	case "max_recipients":
		tr.cfg.MaxRecipients = atoi()
	case "max_message_size":
		tr.cfg.MaxMessageSize = int64(atoi())
	case "max_line_length":
		tr.cfg.MaxLineLength = atoi()
	case "max_received":
		tr.cfg.MaxReceived = atoi()
	case "greeting":
		tr.cfg.Greeting = val
	case "bare":
		tr.cfg.BareLineEndings = map[string]BareLineEndings{"reject": RejectBare, "normalize": NormalizeBare}[val]
	case "command_timeout":
		tr.cfg.CommandTimeout = dur()
	case "data_timeout":
		tr.cfg.DataTimeout = dur()
	case "local":
		tr.client = Client{Local: true}
	case "forbid_pipelining":
		tr.cfg.ForbidImproperPipelining = true
	case "check_header": // CheckHeader is checkHeaderForTests
		tr.cfg.CheckHeader = checkHeaderForTests
	case "max_header_size":
		tr.cfg.MaxHeaderSize = atoi()
	case "relay": // the Policy accepts only these domains
		tr.policy.domains = strings.Fields(val)
	case "begin_error": // Begin fails with a plain error
		tr.delivery.beginErr = errors.New(val)
	case "greet": // Config.Greet returns this reply ("-" for no enhanced code)
		r, err := parseReplyOption(val)
		tr.cfg.Greet = func(Client) *Reply { return r }
		return err
	case "refuse_helo": // Config.CheckHelo refuses this name, in any case
		tr.cfg.CheckHelo = func(_ Client, _ Verb, name string) *Reply {
			if strings.EqualFold(name, val) {
				return reply(550, "5.7.1", "HELO name refused")
			}
			return nil
		}
	case "refuse_sender": // Config.CheckSender refuses this reverse-path
		tr.cfg.CheckSender = func(env *Envelope) *Reply {
			if env.From == val {
				return reply(550, "5.7.1", "Sender refused")
			}
			return nil
		}
	case "software":
		tr.cfg.Software = val
	case "commit_reply": // Commit fails with this reply, wrapped
		r, err := parseReplyOption(val)
		tr.delivery.commitErr = fmt.Errorf("disk full: %w", r)
		return err
	default:
		return fmt.Errorf("unknown option %q", key)
	}
	return nil
}

// parseReplyOption parses "452 4.3.1 text", or "554 - text" for a reply
// without an enhanced code.
func parseReplyOption(s string) (*Reply, error) {
	f := strings.SplitN(s, " ", 3)
	if len(f) != 3 {
		return nil, fmt.Errorf("bad reply %q", s)
	}
	code, err := strconv.Atoi(f[0])
	r := &Reply{Code: code, Enhanced: f[1], Lines: []string{f[2]}}
	if r.Enhanced == "-" {
		r.Enhanced = ""
	}
	return r, err
}

func runTranscript(t *testing.T, tr *transcript) {
	var logs testutil.LockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	defer func() {
		if t.Failed() {
			t.Logf("session log:\n%s", logs.String())
		}
	}()
	inR, inW := io.Pipe()
	in := &deadlinePipe{PipeReader: inR, now: tr.cfg.Now}
	outR, outW := io.Pipe()
	s := NewSession(tr.cfg, tr.client, &tr.policy, &tr.delivery, log)
	done := make(chan error, 1)
	go func() {
		err := s.Serve(bufio.NewReader(in), outW, in)
		outW.Close()
		inR.CloseWithError(errors.New("session over"))
		done <- err
	}()
	replies := make(chan string)
	go func() {
		defer close(replies)
		br := bufio.NewReader(outR)
		for {
			l, err := br.ReadString('\n')
			if l != "" {
				replies <- l
			}
			if err != nil {
				return
			}
		}
	}()
	sends := make(chan []byte, len(tr.steps))
	go func() {
		for b := range sends {
			inW.Write(b)
		}
		inW.Close()
	}()

	for i, st := range tr.steps {
		if st.send != nil {
			sends <- st.send
			continue
		}
		select {
		case got, ok := <-replies:
			if !ok {
				t.Fatalf("step %d: session output ended, want %q", i, st.expect)
			}
			if got != st.expect+"\r\n" {
				t.Fatalf("step %d: got reply %q, want %q", i, got, st.expect+"\r\n")
			}
		case <-time.After(replyWait):
			t.Fatalf("step %d: no reply within %v, want %q", i, replyWait, st.expect)
		}
	}
	close(sends)
	var err error
	select {
	case err = <-done:
	case <-time.After(replyWait):
		t.Fatalf("session did not end after the client closed")
	}
	for l := range replies {
		t.Errorf("unexpected reply %q", l)
	}
	if !resultIs(err, tr.result) {
		t.Errorf("Serve returned %v, want %s", err, tr.result)
	}
	got := tr.delivery.committed()
	for i := range max(len(got), len(tr.messages)) {
		switch {
		case i >= len(got):
			t.Errorf("message %d not committed, want:\n%s", i+1, tr.messages[i])
		case i >= len(tr.messages):
			t.Errorf("unexpected message %s committed:\n%s", got[i].id, got[i].buf.String())
		case got[i].buf.String() != tr.messages[i]:
			t.Errorf("message %s:\n%q\nwant\n%q", got[i].id, got[i].buf.String(), tr.messages[i])
		}
	}
	if err := tr.delivery.checkFinished(); err != nil {
		t.Error(err)
	}
}

func resultIs(err error, want string) bool {
	switch want {
	case "nil":
		return err == nil
	case "eof":
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	case "timeout":
		return errors.Is(err, ErrTimeout)
	case "too-many-errors":
		return errors.Is(err, ErrTooManyErrors)
	case "improper-pipelining":
		return errors.Is(err, ErrImproperPipelining)
	case "non-smtp":
		return errors.Is(err, ErrNonSMTP)
	case "refused":
		return errors.Is(err, ErrRefused)
	}
	return false
}
