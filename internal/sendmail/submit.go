package sendmail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/internal/msgcheck"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// MaxHeaderSize is the largest header section read, in bytes, CRLF
// endings included: the header is held in memory to find the recipients
// of -t and the fields a submission agent adds before the envelope is
// written; the body streams. A larger one is EX_DATAERR. It is sixteen
// times smtp-stdio's default SMTP_MAX_HEADER_SIZE.
const MaxHeaderSize = 1 << 20

// User is the local user who submits the message, recorded in the
// Received: header and the default sender.
type User struct {
	// Uid is the real user id.
	Uid int
	// Login is the login name of Uid, or "" when it has none; then the
	// address is made of "uid" and the number.
	Login string
}

// Submission is one message being queued by a sendmail run.
type Submission struct {
	// Opts is the command line (Parse).
	Opts *Options
	// Cfg is the configuration (Load), with its defaults filled in.
	Cfg *Config
	// User is the submitting user (the real uid).
	User User
	// Trusted is a user who may set any envelope sender without a
	// warning: root, the spool's user, or one named in
	// SMTP_SENDMAIL_TRUSTED_USERS (sendmail's class t). Anyone else who
	// sets a sender with -f or -r that is not their own gets an
	// X-Authentication-Warning: field (authWarning).
	Trusted bool
	// Now is the clock; Received, Date: and the queue id use it.
	Now func() time.Time

	// unsent is what a failed queue still holds of the message, for
	// ReturnError; nil when it failed before the header was read.
	unsent *unsent
}

// Failure is a message that could not be queued, with its exit status
// (sysexits.h): EX_DATAERR (65), EX_NOUSER (67), EX_IOERR (74) or
// EX_TEMPFAIL (75).
type Failure struct {
	// Status is the exit status.
	Status int
	// Err is the cause, written on standard error.
	Err error
}

// Error returns the cause.
func (f *Failure) Error() string { return f.Err.Error() }

// Unwrap returns the cause.
func (f *Failure) Unwrap() error { return f.Err }

func fail(status int, format string, a ...any) *Failure {
	return &Failure{Status: status, Err: fmt.Errorf(format, a...)}
}

// Exit statuses (sysexits.h).
const (
	exitOK       = 0
	exitUsage    = 64 // EX_USAGE
	exitDataErr  = 65 // EX_DATAERR: no recipients, a bad header
	exitNoUser   = 67 // EX_NOUSER: a recipient that is no address
	exitIOErr    = 74 // EX_IOERR: standard input could not be read
	exitTempFail = 75 // EX_TEMPFAIL: the spool could not take it
	exitConfig   = 78 // EX_CONFIG
)

// localName is the login name as the local part of an address: the
// login when it is a dot-atom (RFC 5322 section 3.2.3), else uid and the
// number.
func (u User) localName() string {
	if u.Login != "" && dotAtom(u.Login) {
		return u.Login
	}
	return "uid" + strconv.Itoa(u.Uid)
}

// field is one header field as read: its name and its whole text, name,
// colon, value and continuation lines, each ended by CRLF.
type field struct {
	name string
	raw  []byte
}

// Queue reads the message from in, completes it as a submission agent
// (RFC 6409 section 8) and queues it durably in sp: the header section
// is read whole (at most MaxHeaderSize), the envelope built, then the
// Received: field, the header and the streaming body written through
// the spool writer, which is committed (file and queue/ fsync'd) before
// Queue returns the queue id. On any error the writer is aborted:
// nothing is left in queue/. The error is a *Failure.
func (s *Submission) Queue(sp *spool.Spool, in io.Reader) (string, error) {
	return s.queue(func(env *spool.Envelope) (sink, error) { return sp.Create(env) }, in)
}

// sink is where a message file goes: the spool's writer (Queue), or the
// drop helper's standard input (Drop).
type sink interface {
	io.Writer
	Commit() error
	Abort() error
}

func (s *Submission) queue(create func(*spool.Envelope) (sink, error), in io.Reader) (string, error) {
	lr := newLineReader(in, s.Opts.IgnoreDots)
	fields, first, err := readHeader(lr)
	if err != nil {
		return "", err
	}
	env, hdr, err := s.envelope(fields)
	if err != nil {
		s.unsent = &unsent{fields: fields, first: first, rest: lr}
		return "", err
	}
	w, err := create(env)
	if err != nil {
		s.unsent = &unsent{fields: fields, first: first, rest: lr}
		var f *Failure
		if errors.As(err, &f) {
			return "", err
		}
		return "", &Failure{Status: exitTempFail, Err: err}
	}
	g := &guarded{w: w}
	defer g.onSignal()()
	if err := s.write(g, env, hdr, first, lr); err != nil {
		g.abort()
		s.unsent = &unsent{fields: fields}
		return "", err
	}
	if err := g.commit(); err != nil {
		s.unsent = &unsent{fields: fields}
		var f *Failure
		if errors.As(err, &f) {
			return "", err
		}
		return "", &Failure{Status: exitTempFail, Err: err}
	}
	return env.QueueID, nil
}

// guarded is the spool writer of one message, shared with the handler
// of SIGTERM, SIGINT and SIGHUP: a signal before the commit aborts the
// message (its temporary file is removed) and exits EX_TEMPFAIL; one
// during or after the commit lets the run end as it would have, so that
// a queued message is never reported as failed (the caller would send
// it again).
type guarded struct {
	mu        sync.Mutex
	w         sink
	committed bool
}

// Write writes p to the message under the lock the signal handler takes,
// so an abort never interleaves with a write.
func (g *guarded) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.w.Write(p)
}

func (g *guarded) commit() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.committed = true
	return g.w.Commit()
}

func (g *guarded) abort() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.w.Abort()
}

// onSignal installs the handler and returns the function that removes
// it.
func (g *guarded) onSignal() (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			g.mu.Lock()
			if g.committed {
				g.mu.Unlock()
				return
			}
			g.w.Abort()
			fmt.Fprintf(os.Stderr, "sendmail: message not queued: killed by %v\n", s)
			os.Exit(exitTempFail)
		case <-done:
		}
	}()
	return func() { signal.Stop(sigs); close(done) }
}

// readHeader reads the header section: fields and their continuation
// lines up to the empty line, the end of the input, or the first line
// that is neither (which then begins the body, returned as first, and
// gets an empty line before it, as Postfix does). A first line "From "
// (an mbox separator) is dropped.
func readHeader(lr *lineReader) (fields []field, first []byte, err error) {
	size := 0
	for {
		p, complete, err := lr.next()
		if errors.Is(err, io.EOF) {
			return fields, nil, nil
		}
		if err != nil {
			return nil, nil, &Failure{Status: exitIOErr, Err: fmt.Errorf("reading the message: %w", err)}
		}
		size += len(p)
		if size > MaxHeaderSize {
			return nil, nil, fail(exitDataErr, "the header section is over %d bytes", MaxHeaderSize)
		}
		switch {
		case complete && len(p) == 2: // the empty line
			return fields, nil, nil
		case size == len(p) && complete && bytes.HasPrefix(p, []byte("From ")):
			// An mbox "From " line before the header (old mail(1)s
			// and scripts write one) is no field: dropped, as
			// Postfix's sendmail does, rather than made the body.
			continue
		case (p[0] == ' ' || p[0] == '\t') && len(fields) > 0:
			fields[len(fields)-1].raw = append(fields[len(fields)-1].raw, p...)
		case fieldName(p) != "":
			fields = append(fields, field{name: fieldName(p), raw: append([]byte(nil), p...)})
		default:
			return fields, append([]byte("\r\n"), p...), nil
		}
		for !complete { // the rest of a long field line
			if p, complete, err = lr.next(); err != nil && !errors.Is(err, io.EOF) {
				return nil, nil, &Failure{Status: exitIOErr, Err: fmt.Errorf("reading the message: %w", err)}
			} else if err != nil {
				return fields, nil, nil
			}
			if size += len(p); size > MaxHeaderSize {
				return nil, nil, fail(exitDataErr, "the header section is over %d bytes", MaxHeaderSize)
			}
			fields[len(fields)-1].raw = append(fields[len(fields)-1].raw, p...)
		}
	}
}

// fieldName returns the name of the field that line starts, or "" when
// it starts none: printable US-ASCII but the colon, then a colon (RFC
// 5322 section 2.2; whitespace before the colon is the obsolete syntax of
// section 4.5, taken too).
func fieldName(line []byte) string {
	i := 0
	for i < len(line) && line[i] > 32 && line[i] < 127 && line[i] != ':' {
		i++
	}
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if i == 0 || j == len(line) || line[j] != ':' {
		return ""
	}
	return string(line[:i])
}

// value returns a field's unfolded value.
func (f field) value() string {
	_, v, _ := strings.Cut(string(f.raw), ":")
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.TrimSpace(v)
}

func isField(f field, names ...string) bool {
	for _, n := range names {
		if strings.EqualFold(f.name, n) { // ASCII: fieldName took nothing else
			return true
		}
	}
	return false
}

// envelope builds the envelope from the options and the header fields,
// and the header section to write after the Received: field: the fields
// without Bcc: (RFC 5322 section 3.6.3), then From:, Date:, Message-ID:
// and To: when missing (RFC 6409 sections 8.1 to 8.3; the To: as
// Postfix's undisclosed_recipients_header).
func (s *Submission) envelope(fields []field) (*spool.Envelope, []byte, error) {
	now := s.Now()
	id, err := spool.NewQueueID(now)
	if err != nil {
		return nil, nil, &Failure{Status: exitTempFail, Err: err}
	}
	dom := s.Cfg.SendmailDomain
	env := &spool.Envelope{QueueID: id, Received: now, Protocol: "local", Body: s.Opts.Body}
	if s.Opts.FromSet {
		if env.From, err = qualify(s.Opts.From, dom); err != nil && s.Opts.From != "" {
			return nil, nil, &Failure{Status: exitUsage, Err: fmt.Errorf("-f %q: %w", s.Opts.From, err)}
		}
	} else {
		env.From = s.User.localName() + "@" + dom
	}
	seen := map[string]bool{}
	add := func(list string, status int) error {
		addrs, err := parseList(list, dom)
		if err != nil {
			return &Failure{Status: status, Err: err}
		}
		for _, a := range addrs {
			if !seen[a] {
				seen[a] = true
				env.To = append(env.To, a)
			}
		}
		return nil
	}
	for _, r := range s.Opts.Recipients {
		if err := add(r, exitNoUser); err != nil {
			return nil, nil, err
		}
	}
	// -t takes the recipients from To:, Cc: and Bcc:; or, when the
	// message has any Resent-To:, Resent-Cc: or Resent-Bcc:, from those
	// alone, since they name the recipients of this resending (RFC 5322
	// section 3.6.6), as Postfix's cleanup does. Bcc: and Resent-Bcc:
	// are removed either way.
	rcptFields := []string{"To", "Cc", "Bcc"}
	for _, f := range fields {
		if isField(f, resentFields...) {
			rcptFields = resentFields
			break
		}
	}
	var hdr bytes.Buffer
	hdr.WriteString(s.authWarning(env.From))
	var hasFrom, hasTo bool
	for _, f := range fields {
		if s.Opts.Extract && isField(f, rcptFields...) {
			if err := add(f.value(), exitDataErr); err != nil {
				return nil, nil, err
			}
		}
		hasFrom = hasFrom || isField(f, "From")
		hasTo = hasTo || isField(f, "To", "Cc")
		if !isField(f, "Bcc", "Resent-Bcc") {
			hdr.Write(f.raw)
		}
	}
	if len(env.To) == 0 {
		return nil, nil, fail(exitDataErr, "no recipients (give them as arguments, or use -t and To:, Cc: or Bcc:)")
	}
	// A UTF-8 address needs SMTPUTF8 on the way out (RFC 6531 section
	// 3.4).
	env.SMTPUTF8 = !isASCII(env.From)
	for _, a := range env.To {
		env.SMTPUTF8 = env.SMTPUTF8 || !isASCII(a)
	}
	sum, _ := msgcheck.Check(hdr.Bytes(), msgcheck.Options{Mode: msgcheck.Off})
	if !hasFrom {
		a := env.From
		if a == "" {
			a = s.User.localName() + "@" + dom
		}
		fmt.Fprintf(&hdr, "From: %s\r\n", (&mail.Address{Name: s.Opts.FullName, Address: a}).String())
	}
	hdr.Write(msgcheck.Missing(sum, now, id, s.Cfg.Hostname))
	if !hasTo {
		hdr.WriteString("To: undisclosed-recipients:;\r\n")
	}
	return env, hdr.Bytes(), nil
}

// resentFields are the recipient fields of a resent message (RFC 5322
// section 3.6.6).
var resentFields = []string{"Resent-To", "Resent-Cc", "Resent-Bcc"}

// authWarning returns the X-Authentication-Warning: field, CRLF ended,
// that sendmail adds when a user who is not trusted sets with -f or -r
// an envelope sender that is not their own (a local part other than
// their login name, or another domain than SMTP_SENDMAIL_DOMAIN or
// SMTP_HOSTNAME; the null sender too), in sendmail's words: "HOST: USER
// set sender to ADDR using -f". Otherwise "". from is the envelope
// sender, "" for <>. The field tells the recipient who chose the
// sender; it is no proof (a user may avoid sendmail), the pickup's
// Received: naming the uid is.
func (s *Submission) authWarning(from string) string {
	if s.Trusted || s.Opts.FromFlag == 0 {
		return ""
	}
	local, dom, _ := strings.Cut(from, "@")
	if from != "" && local == s.User.localName() &&
		(ascii.EqualFold(dom, s.Cfg.SendmailDomain) || ascii.EqualFold(dom, s.Cfg.Hostname)) {
		return ""
	}
	if from == "" {
		from = "<>"
	}
	who := s.User.localName()
	return fmt.Sprintf("X-Authentication-Warning: %s: %s set sender to %s using -%c\r\n",
		s.Cfg.Hostname, who, from, s.Opts.FromFlag)
}

// write writes the message into w: the Received: field naming the
// submitting user (RFC 5321 section 4.4; the uid and login name as
// Postfix's "from userid"), the header section, first (the body's first
// line when no empty line ended the header), and the rest of the input,
// a piece at a time: at most SMTP_SENDMAIL_MAX_MESSAGE_SIZE bytes in all,
// else EX_DATAERR (the caller aborts the file).
func (s *Submission) write(w io.Writer, env *spool.Envelope, hdr, first []byte, lr *lineReader) error {
	who := "from userid " + strconv.Itoa(s.User.Uid)
	if s.User.Login != "" && dotAtom(s.User.Login) {
		who += " login " + s.User.Login
	}
	rcvd := fmt.Sprintf("Received: by %s (smtp-stdio sendmail, %s)\r\n\tid %s; %s\r\n",
		s.Cfg.Hostname, who, env.QueueID, env.Received.Format(time.RFC1123Z))
	w = &limitWriter{w: w, limit: s.Cfg.SendmailMaxMessageSize}
	for _, b := range [][]byte{[]byte(rcvd), hdr} {
		if _, err := w.Write(b); err != nil {
			return writeFailure(err)
		}
	}
	if first == nil {
		if _, err := w.Write([]byte("\r\n")); err != nil {
			return writeFailure(err)
		}
	} else if _, err := w.Write(first); err != nil {
		return writeFailure(err)
	}
	for {
		p, _, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &Failure{Status: exitIOErr, Err: fmt.Errorf("reading the message: %w", err)}
		}
		if _, err := w.Write(p); err != nil {
			return writeFailure(err)
		}
	}
}

// limitWriter passes at most limit bytes to w (0: any number); the
// write that would pass more fails with EX_DATAERR and writes nothing.
type limitWriter struct {
	w       io.Writer
	limit   int64
	written int64
}

// Write implements io.Writer.
func (l *limitWriter) Write(p []byte) (int, error) {
	if l.limit > 0 && l.written+int64(len(p)) > l.limit {
		return 0, fail(exitDataErr, "the message is over SMTP_SENDMAIL_MAX_MESSAGE_SIZE (%d bytes)", l.limit)
	}
	n, err := l.w.Write(p)
	l.written += int64(n)
	return n, err
}

// parseList returns the addresses of an address list (RFC 5322 section
// 3.4: names, angle brackets, groups and comments allowed), each given
// the domain dom when it is a bare local part, as sendmail qualifies
// "root". It returns an error naming the item it cannot read.
func parseList(list, dom string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	if as, err := mail.ParseAddressList(list); err == nil {
		out := make([]string, 0, len(as))
		for _, a := range as {
			q, err := qualify(a.Address, dom)
			if err != nil {
				return nil, err
			}
			out = append(out, q)
		}
		return out, nil
	}
	// Bare local parts ("root, alice") are no RFC 5322 addresses: one
	// item at a time.
	var out []string
	for _, item := range splitList(list) {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		addr := item
		if !dotAtom(item) {
			a, err := mail.ParseAddress(item)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address: %w", item, err)
			}
			addr = a.Address
		}
		q, err := qualify(addr, dom)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

// qualify returns addr with "@dom" added when it has no domain, after
// checking that it can go into the envelope: no control characters,
// spaces or angle brackets, at most spool.MaxAddrLen octets.
func qualify(addr, dom string) (string, error) {
	if addr == "" {
		return "", errors.New("an empty address")
	}
	if !strings.Contains(addr, "@") {
		addr += "@" + dom
	}
	if len(addr) > spool.MaxAddrLen {
		return "", fmt.Errorf("%q is longer than %d octets", addr, spool.MaxAddrLen)
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return "", fmt.Errorf("%q is not an address", addr)
		}
	}
	if strings.HasPrefix(addr, "@") || strings.HasSuffix(addr, "@") {
		return "", fmt.Errorf("%q is not an address", addr)
	}
	return addr, nil
}

// dotAtom reports whether s is dot-atom-text (RFC 5322 section 3.2.3).
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isASCII reports whether s is all US-ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// splitList splits an address list at the commas that are outside
// quoted strings, angle brackets and comments (RFC 5322 sections 3.2.2,
// 3.2.4 and 3.4), so that "Doe, John" <j@x>, root is two items.
func splitList(list string) []string {
	var items []string
	quoted, angle, depth, start := false, false, 0, 0
	for i := 0; i < len(list); i++ {
		switch c := list[i]; {
		case c == '\\' && (quoted || depth > 0):
			i++ // a quoted-pair
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && !angle:
			items = append(items, list[start:i])
			start = i + 1
		}
	}
	return append(items, list[start:])
}

// writeFailure is EX_TEMPFAIL for an error writing the message file, or
// the *Failure it already is (the drop helper's own status).
func writeFailure(err error) error {
	var f *Failure
	if errors.As(err, &f) {
		return err
	}
	return &Failure{Status: exitTempFail, Err: err}
}
