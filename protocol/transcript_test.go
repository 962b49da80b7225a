package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
)

// Transcripts in testdata/*.txt replay a dialog against a Session over
// pipes, in the format of package transcript (its package comment has
// it all): C: and R: lines are the client's, S: lines the replies, "="
// how Serve ends (nil, eof, timeout, too-many-errors, improper-pipelining,
// non-smtp, refused or chunk-size), M: lines the committed messages, and "!" lines
// set the session up (see setOption). The session runs on testConfig's
// fake clock, so that Received: headers compare exactly. Besides the
// replies, every message the session began must be committed or aborted.
type replay struct {
	*transcript.Script
	cfg      Config
	client   Client
	policy   relayPolicy
	delivery fakeDelivery
}

const replyWait = 5 * time.Second

func TestTranscripts(t *testing.T) {
	for _, s := range transcript.ReadAll(t, "testdata/*.txt") {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			runReplay(t, newReplay(t, s))
		})
	}
}

// newReplay sets a session up as s's options say.
func newReplay(t *testing.T, s *transcript.Script) *replay {
	if s.Result == "" {
		t.Fatalf("%s: no \"=\" line", s.File)
	}
	tr := &replay{Script: s, cfg: testConfig(), client: testClient}
	for _, o := range s.Options {
		if err := tr.setOption(o.Key, o.Value); err != nil {
			t.Fatalf("%s:%d: %v", s.File, o.Line, err)
		}
	}
	return tr
}

// setOption applies one "!" line.
func (tr *replay) setOption(key, val string) error {
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

func runReplay(t *testing.T, tr *replay) {
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
	c := transcript.NewClient(t, inW, outR, replyWait)
	c.Play(tr.Script, tr.Steps)
	c.Close()
	// The output ends when Serve has returned.
	for _, l := range c.Rest() {
		t.Errorf("unexpected reply %q", l)
	}
	if err := <-done; !resultIs(err, tr.Result) {
		t.Errorf("Serve returned %v, want %s", err, tr.Result)
	}
	var got []transcript.Committed
	for _, w := range tr.delivery.committed() {
		got = append(got, transcript.Committed{ID: w.id, Content: w.buf.Bytes()})
	}
	tr.CheckMessages(t, got)
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
	case "chunk-size":
		return errors.Is(err, ErrChunkSize)
	}
	return false
}
