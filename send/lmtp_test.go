package send

import (
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/route"
)

// lmtpServer is go-smtp's LMTP server with a script: at most two
// recipients per transaction (452 4.5.3 past them), unknown* refused at
// RCPT, and after the data quota* refused for good (552 5.2.2), later*
// for now (451 4.2.0), the others taken. It counts transactions and what
// each recipient received.
type lmtpServer struct {
	mu       sync.Mutex
	txs      int
	received map[string]int
}

type lmtpTestSession struct {
	s     *lmtpServer
	rcpts []string
}

func (s *lmtpTestSession) Reset()                               { s.rcpts = nil }
func (s *lmtpTestSession) Logout() error                        { return nil }
func (s *lmtpTestSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *lmtpTestSession) Data(r io.Reader) error               { return nil }
func (s *lmtpTestSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "unknown"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case len(s.rcpts) == 2:
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "too many recipients"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *lmtpTestSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	io.Copy(io.Discard, r)
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	s.s.txs++
	for _, to := range s.rcpts {
		switch {
		case strings.HasPrefix(to, "quota"):
			st.SetStatus(to, &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full"})
		case strings.HasPrefix(to, "later"):
			st.SetStatus(to, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "locked"})
		default:
			s.s.received[to]++
			st.SetStatus(to, nil)
		}
	}
	s.rcpts = nil
	return nil
}

// startLMTP serves the script on a unix socket and returns its path.
func startLMTP(t *testing.T) (*lmtpServer, string) {
	ls := &lmtpServer{received: map[string]int{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &lmtpTestSession{s: ls}, nil }))
	srv.LMTP, srv.Domain = true, "lmtp.test"
	sock := filepath.Join(t.TempDir(), "lmtp")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ls, sock
}

// LMTP's replies after the data are recorded one by one: taken,
// refused for good (a notification), deferred; a refusal at RCPT is the
// recipient's own; 452 carries the rest to a second transaction; an
// address given twice goes in a transaction of its own and is delivered
// twice, as over SMTP.
func TestLMTPPerRecipientReplies(t *testing.T) {
	ls, sock := startLMTP(t)
	f := newFixture(t)
	tb, err := route.Parse(strings.NewReader("l.test lmtp:unix:"+sock+"\n"), "routes")
	if err != nil {
		t.Fatal(err)
	}
	f.s.Config.Routes = tb
	id := f.queue("sender@example.org", []string{"a@l.test", "quota@l.test", "unknown@l.test", "later@l.test", "b@l.test", "a@l.test"}, body("lmtp"))
	f.run(false)
	st := f.state(id)
	if got := rcptStatus(st); got != "a@l.test=done quota@l.test=failed unknown@l.test=failed later@l.test=pending b@l.test=done a@l.test=done" {
		t.Fatalf("state %s", got)
	}
	for i, want := range []string{"dot 250 2.0.0", "dot 552 5.2.2", "rcpt 550 5.1.1", "dot 451 4.2.0", "dot 250 2.0.0"} {
		r := st.Rcpts[i]
		if got := strings.Join([]string{r.Stage, strconv.Itoa(r.Code), r.Enhanced}, " "); got != want || r.Relay != "unix:"+sock {
			t.Errorf("%s: %s (relay %s), want %s", r.Addr, got, r.Relay, want)
		}
	}
	if ls.txs != 3 || ls.received["a@l.test"] != 2 || ls.received["b@l.test"] != 1 {
		t.Errorf("%d transactions, received %v", ls.txs, ls.received)
	}
	if n := len(f.queuedFrom("")); n != 1 {
		t.Errorf("%d notifications", n)
	}
}
