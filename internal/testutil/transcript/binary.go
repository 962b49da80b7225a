package transcript

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// DefaultWait is how long Binary waits for each reply line, and for a
// session to end once the client has closed.
const DefaultWait = 20 * time.Second

// Binary runs sessions of the smtp-stdio binary, one process each, as
// inetd, tcpserver or systemd start it: standard input and output a pipe,
// or the server's end of a loopback TCP connection.
type Binary struct {
	// Path is the binary; "" for testutil.Program(t, "cmd/smtp-stdio"),
	// which needs the package's TestMain to call testutil.Main.
	Path string
	// Env is the whole environment each session starts from: nothing of
	// the test's own leaks in. SMTP_SPOOL_DIR is added.
	Env []string
	// Wait is for each reply line and for the end of the session; 0 is
	// DefaultWait.
	Wait time.Duration
}

// Setup is how one session starts.
type Setup struct {
	// Spool is the spool root; "" for a fresh one, mode 0700.
	Spool string
	// Env is added to Binary.Env; a later value of a name wins.
	Env []string
	// Socket serves a loopback TCP connection, as inetd, systemd and
	// tcpserver do, instead of a pipe.
	Socket bool
	// StderrOnSocket makes standard error the connection too, as inetd
	// and xinetd start a server.
	StderrOnSocket bool
	// Early is on the wire before the process starts: an early talker.
	Early string
	// Prepare, if set, changes the command before it starts (to run it
	// as another user, say).
	Prepare func(*exec.Cmd)
}

// Session is one process of the binary serving one client, which the
// test drives through the embedded Client.
type Session struct {
	*Client
	t     testing.TB
	Spool string
	// Conn is the client's end of the connection; nil on a pipe.
	Conn  net.Conn
	Cmd   *exec.Cmd
	wait  time.Duration
	start time.Time
	errs  testutil.LockedBuffer
	done  chan struct{} // closed once the process has exited
}

// Result is a session that has ended.
type Result struct {
	Spool string
	// Exit is the exit status, -1 when a signal ended the process.
	Exit   int
	Stderr string
	// Rest are the reply lines that came after the last the test read.
	Rest []string
	// Replies are all the reply lines, with their CRLF.
	Replies []string
	Took    time.Duration
}

// Start starts one session.
func (b Binary) Start(t testing.TB, su Setup) *Session {
	t.Helper()
	if b.Path == "" {
		b.Path = testutil.Program(t, "cmd/smtp-stdio")
	}
	if b.Wait == 0 {
		b.Wait = DefaultWait
	}
	if su.Spool == "" {
		su.Spool = NewSpool(t)
	}
	s := &Session{t: t, Spool: su.Spool, wait: b.Wait, done: make(chan struct{})}
	s.Cmd = exec.Command(b.Path)
	s.Cmd.Env = append(slices.Concat(b.Env, su.Env), "SMTP_SPOOL_DIR="+su.Spool)
	s.Cmd.Stderr = &s.errs
	var theirs []*os.File // the process's ends, closed here once it has them
	if su.Socket {
		conn, srv := socketPair(t)
		s.Conn = conn
		s.Client = NewClient(t, halfCloser{conn}, conn, b.Wait)
		s.Cmd.Stdin, s.Cmd.Stdout = srv, srv
		if su.StderrOnSocket {
			s.Cmd.Stderr = srv
		}
		theirs = append(theirs, srv)
		if _, err := conn.Write([]byte(su.Early)); err != nil {
			t.Fatal(err)
		}
		// A backstop for a test that reads the connection itself.
		conn.SetDeadline(time.Now().Add(3 * b.Wait))
	} else {
		inR, inW := pipe(t)
		outR, outW := pipe(t)
		s.Client = NewClient(t, inW, outR, b.Wait)
		s.Cmd.Stdin, s.Cmd.Stdout = inR, outW
		theirs = append(theirs, inR, outW)
		if su.Early != "" {
			s.Send(su.Early)
		}
	}
	if su.Prepare != nil {
		su.Prepare(s.Cmd)
	}
	s.start = time.Now()
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range theirs {
		f.Close()
	}
	go func() { s.Cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.Cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("smtp-stdio stderr:\n%s", s.errs.String())
		}
	})
	return s
}

// End closes the client's side and returns Wait's result.
func (s *Session) End() *Result {
	s.t.Helper()
	s.Close()
	return s.Wait()
}

// Wait reads the rest of the output and waits for the process to exit,
// with the client's side left as it is. A session that does not end
// within the wait is killed and fails the test.
func (s *Session) Wait() *Result {
	s.t.Helper()
	rest := s.Rest()
	select {
	case <-s.done:
	case <-time.After(s.wait):
		s.Cmd.Process.Kill()
		s.t.Fatalf("the process did not exit within %v of the end of its output", s.wait)
	}
	return &Result{Spool: s.Spool, Exit: s.Cmd.ProcessState.ExitCode(), Stderr: s.errs.String(),
		Rest: rest, Replies: s.Got(), Took: time.Since(s.start)}
}

// Run replays s against one session and checks how it ended (Finish).
// env is added to the environment after the script's own. The options Run
// knows are "! env NAME=value" and "! socket".
func (b Binary) Run(t testing.TB, s *Script, env ...string) *Result {
	t.Helper()
	return b.RunWith(t, s, Setup{Env: env})
}

// RunWith is Run with a setup of the test's (a spool it prepared, a
// command run as another user), to which the script's options add.
func (b Binary) RunWith(t testing.TB, s *Script, su Setup) *Result {
	t.Helper()
	var env []string
	for _, o := range s.Options {
		switch o.Key {
		case "env":
			env = append(env, o.Value)
		case "socket":
			su.Socket = true
		default:
			t.Fatalf("%s: unknown option %q for the binary", s.where(o.Line, 0), o.Key)
		}
	}
	su.Env = append(env, su.Env...)
	steps := s.Steps
	if su.Socket && len(steps) > 0 && steps[0].Send != nil {
		su.Early, steps = string(steps[0].Send), steps[1:]
	}
	sess := b.Start(t, su)
	sess.Play(s, steps)
	return sess.Finish(s)
}

// Finish ends the session (End) and checks how it ended as s says: no
// reply left over, the exit status of s's "=" line ("exit 0"), exactly
// s's messages in queue/, each named by the 250 reply that accepted it,
// and nothing left in tmp/. A test that does something in the middle of
// a dialog plays it in parts and finishes with the last.
func (s *Session) Finish(sc *Script) *Result {
	t := s.t
	t.Helper()
	var wantExit int
	if _, err := fmt.Sscanf(sc.Result, "exit %d", &wantExit); err != nil {
		t.Fatalf("%s: the \"=\" line is %q, want \"exit N\"", sc.File, sc.Result)
	}
	r := s.End()
	for _, l := range r.Rest {
		t.Errorf("unexpected reply %q", l)
	}
	if r.Exit != wantExit {
		t.Errorf("exit status %d, want %d; stderr:\n%s", r.Exit, wantExit, r.Stderr)
	}
	msgs := Spooled(t, r.Spool)
	sc.CheckMessages(t, msgs)
	CheckAcknowledged(t, r.Replies, msgs)
	if ents, _ := os.ReadDir(filepath.Join(r.Spool, spool.TmpDir)); len(ents) != 0 {
		t.Errorf("files left in tmp/: %v", ents)
	}
	return r
}

// queuedAs is the reply that accepts a message (protocol/replies.go).
var queuedAs = regexp.MustCompile(`^250 2\.0\.0 OK queued as (\S+)\r\n$`)

// CheckAcknowledged fails the test unless the messages in queue/ are
// exactly those that the replies accepted, each once.
func CheckAcknowledged(t testing.TB, replies []string, msgs []Committed) {
	t.Helper()
	var acked, queued []string
	for _, l := range replies {
		if m := queuedAs.FindStringSubmatch(l); m != nil {
			acked = append(acked, m[1])
		}
	}
	for _, m := range msgs {
		queued = append(queued, m.ID)
	}
	slices.Sort(acked)
	slices.Sort(queued)
	if !slices.Equal(acked, queued) {
		t.Errorf("replies accepted %v, queue/ holds %v", acked, queued)
	}
}

// Spooled returns the messages in the spool's queue/, in order of arrival:
// each
// opened with spool.Open, which checks its size and checksum, and with its
// envelope section as "name: value" lines. A queue/ that does not exist
// holds none.
func Spooled(t testing.TB, spoolDir string) []Committed {
	t.Helper()
	dir := filepath.Join(spoolDir, spool.QueueDir)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var ms []Committed
	arrived := map[string]time.Time{}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		// spool.Open checks the file: its size, its checksum.
		f, err := spool.Open(path)
		if err != nil {
			t.Fatalf("spool file %s: %v", e.Name(), err)
		}
		f.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		env, content, ok := bytes.Cut(b, []byte("\n\n"))
		if !ok {
			t.Fatalf("spool file %s has no envelope section", e.Name())
		}
		m := Committed{ID: e.Name(), Envelope: strings.Split(string(env), "\n"), Content: content}
		for _, l := range m.Envelope {
			if v, ok := strings.CutPrefix(l, "received: "); ok {
				arrived[m.ID], err = time.Parse(time.RFC3339Nano, v)
				if err != nil {
					t.Fatalf("spool file %s: %v", e.Name(), err)
				}
			}
		}
		ms = append(ms, m)
	}
	// Queue ids sort by arrival only to the second: the envelope has it
	// to the nanosecond.
	slices.SortStableFunc(ms, func(a, b Committed) int { return arrived[a.ID].Compare(arrived[b.ID]) })
	return ms
}

// NewSpool returns a fresh, empty spool root with mode 0700.
func NewSpool(t testing.TB) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// socketPair returns both ends of a loopback TCP connection: the client's,
// and the server's as a file for the process to inherit.
func socketPair(t testing.TB) (net.Conn, *os.File) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	srv, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f, err := srv.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	return conn, f
}

// pipe returns an os.Pipe whose ends are closed when the test ends.
func pipe(t testing.TB) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// halfCloser closes only the sending side of a TCP connection, so that the
// replies can still be read.
type halfCloser struct{ net.Conn }

func (h halfCloser) Close() error { return h.Conn.(*net.TCPConn).CloseWrite() }
