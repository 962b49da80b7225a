package spool

import (
	"bufio"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrCorrupt is wrapped by every error that means a message file exists and
// was read but is not a valid message file of a version this package
// knows: bad magic, unknown version, malformed or missing envelope field,
// truncated or extended message bytes, or a CRC-32C mismatch. Such a file
// must be set aside, never bounced or deleted.
var ErrCorrupt = errors.New("spool: corrupt message file")

// Limits on what a reader accepts in the envelope section, so that a
// damaged file cannot make the reader allocate without bound.
const (
	maxEnvelopeLine  = 64 << 10 // bytes per envelope line
	maxEnvelopeLines = 1 << 20  // lines in the envelope section
)

// Field names of the envelope section, one "name: value" per line.
const (
	fQueueID  = "queue-id"
	fReceived = "received"
	fClient   = "client"
	fHelo     = "helo"
	fProtocol = "protocol"
	fBody     = "body"
	fUTF8     = "smtputf8"
	fFrom     = "mail-from"
	fTo       = "rcpt-to"
	fTLSVer   = "tls-version" // optional: only for a message over TLS
	fTLSCiph  = "tls-cipher"  // optional: only for a message over TLS
	fAuthUser = "auth-user"   // optional: only for a message after AUTH
	fRet      = "ret"         // version 2, optional: MAIL FROM RET=
	fEnvID    = "envid"       // version 2, optional: MAIL FROM ENVID=
	fNotify   = "notify"      // version 2, optional, after its rcpt-to: NOTIFY=
	fORcpt    = "orcpt"       // version 2, optional, after its rcpt-to: ORCPT=
	fSize     = "message-size"
	fCRC      = "message-crc32c"
)

type encodedEnvelope struct {
	prefix string // everything before the message-size digits
	middle string // between the size digits and the crc digits
	suffix string // after the crc digits, through the blank line
}

func encodeEnvelope(e *Envelope) encodedEnvelope {
	var b strings.Builder
	version := Version1
	if e.hasDSN() {
		version = VersionDSN
	}
	fmt.Fprintf(&b, "%s %d\n", Magic, version)
	line := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	line(fQueueID, e.QueueID)
	line(fReceived, e.Received.UTC().Format(time.RFC3339Nano))
	client := e.Client
	if client == "" {
		client = "local"
	}
	line(fClient, client)
	line(fHelo, e.Helo)
	line(fProtocol, e.Protocol)
	line(fBody, e.Body)
	utf8 := "no"
	if e.SMTPUTF8 {
		utf8 = "yes"
	}
	line(fUTF8, utf8)
	if e.TLSVersion != "" || e.TLSCipher != "" {
		line(fTLSVer, e.TLSVersion)
		line(fTLSCiph, e.TLSCipher)
	}
	if e.AuthUser != "" {
		line(fAuthUser, e.AuthUser)
	}
	if e.Ret != "" {
		line(fRet, e.Ret)
	}
	if e.EnvID != "" {
		line(fEnvID, e.EnvID)
	}
	line(fFrom, "<"+e.From+">")
	for i, r := range e.To {
		line(fTo, "<"+r+">")
		d := e.RcptDSN(i)
		if d.Notify != "" {
			line(fNotify, d.Notify)
		}
		if d.ORcpt != "" {
			line(fORcpt, d.ORcpt)
		}
	}
	b.WriteString(fSize + ": ")
	prefix := b.String()
	return encodedEnvelope{
		prefix: prefix,
		middle: "\n" + fCRC + ": ",
		suffix: "\n\n",
	}
}

// Message is an open message file: its envelope, and the message bytes as a
// section of the file. Close it when done.
type Message struct {
	Envelope
	// Size is the length of the message bytes, in bytes.
	Size int64
	// Version is the file's format version: Version1 or VersionDSN.
	Version int
	// CRC32C is the Castagnoli CRC of the message bytes.
	CRC32C uint32

	f       *os.File
	bodyOff int64
}

// Open opens and parses the message file at path. The message bytes are
// not read; they are checked against the recorded size (the file's length
// must match exactly) and, as they are read, the CRC. The file is opened
// by OpenFile: a name that is not a regular file (a FIFO, a symbolic
// link, ...) is never read and returns an error wrapping ErrNotRegular.
// An error from opening the file (not found, permission) is returned
// wrapped as is; a file that does not parse, or whose envelope
// Envelope.Validate refuses, returns an error wrapping ErrCorrupt.
func Open(path string) (*Message, error) {
	f, err := OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	m, err := parse(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// OpenMessage opens queue/<id> (see Open).
func (s *Spool) OpenMessage(id string) (*Message, error) {
	return Open(s.Path(QueueDir, id))
}

// Parse reads the envelope of a message file from f (positioned at its
// start). It returns an error wrapping ErrCorrupt if the file is not a
// valid message file.
func parse(f *os.File) (*Message, error) {
	br := bufio.NewReaderSize(f, 4096)
	readLine := func() (string, error) {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Long line: gather it, within the limit.
			buf := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull && len(buf) <= maxEnvelopeLine {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if err != nil {
			if err == io.EOF {
				return "", errTruncated
			}
			if err == bufio.ErrBufferFull {
				return "", fmt.Errorf("%w: envelope line too long", ErrCorrupt)
			}
			return "", fmt.Errorf("spool: read: %w", err)
		}
		return string(line), nil
	}
	m, off, err := parseEnvelope(readLine)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: stat: %w", err)
	}
	if err := m.setBody(off, fi.Size()); err != nil {
		return nil, err
	}
	m.f = f
	return m, nil
}

// errTruncated is the error of an envelope that ends before its blank
// line; it wraps ErrCorrupt.
var errTruncated error = corruptError("truncated envelope")

// corruptError is an error that wraps ErrCorrupt with its reason. It is
// made without fmt, so that a package variable of it costs nothing at
// start-up (fmt.Errorf there cost a one-message session about 1 % of its
// CPU).
type corruptError string

func (e corruptError) Error() string { return ErrCorrupt.Error() + ": " + string(e) }
func (e corruptError) Unwrap() error { return ErrCorrupt }

// setBody records that the message bytes start at off in a file of size
// bytes, which must hold exactly m.Size of them after the envelope; else
// it returns an error wrapping ErrCorrupt.
func (m *Message) setBody(off, size int64) error {
	m.bodyOff = off
	if size-off != m.Size {
		return fmt.Errorf("%w: message is %d bytes, envelope says %d",
			ErrCorrupt, size-off, m.Size)
	}
	return nil
}

// parseEnvelope parses the envelope section from its lines, which
// readLine returns one at a time with their '\n' (errTruncated at the end
// of the file), through the blank line that ends it. It returns the
// message without its file, and the length of the envelope section in
// bytes. A file that does not parse, or whose envelope Envelope.Validate
// refuses, returns an error wrapping ErrCorrupt.
func parseEnvelope(readLine func() (string, error)) (*Message, int64, error) {
	var off int64
	next := func() (string, error) {
		line, err := readLine()
		off += int64(len(line))
		if err != nil {
			return "", err
		}
		return line[:len(line)-1], nil
	}
	first, err := next()
	if err != nil {
		return nil, 0, err
	}
	magic, ver, ok := strings.Cut(first, " ")
	if !ok || magic != Magic {
		return nil, 0, fmt.Errorf("%w: not a spool file", ErrCorrupt)
	}
	if ver != version1 && ver != versionDSN {
		return nil, 0, fmt.Errorf("%w: unknown version %q", ErrCorrupt, ver)
	}
	m := &Message{Version: Version1}
	if ver != version1 {
		m.Version = VersionDSN
	}
	var seen fieldSet
	for n := 0; ; n++ {
		if n > maxEnvelopeLines {
			return nil, 0, fmt.Errorf("%w: envelope too long", ErrCorrupt)
		}
		line, err := next()
		if err != nil {
			return nil, 0, err
		}
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			// A field with an empty value is written as "name: " and
			// may have lost its trailing space to an editor.
			k, ok = strings.CutSuffix(line, ":")
			if !ok {
				return nil, 0, fmt.Errorf("%w: bad envelope line %q", ErrCorrupt, line)
			}
		}
		if seen.add(k) && k != fTo && k != fNotify && k != fORcpt {
			return nil, 0, fmt.Errorf("%w: duplicate field %s", ErrCorrupt, k)
		}
		if err := m.set(k, v); err != nil {
			return nil, 0, err
		}
	}
	for _, k := range []string{fQueueID, fReceived, fFrom, fTo, fSize, fCRC} {
		if !seen.has(k) {
			return nil, 0, fmt.Errorf("%w: missing field %s", ErrCorrupt, k)
		}
	}
	// The reader accepts exactly the envelopes the writer can write, so
	// every message read has a state that smtp-send can write.
	if err := m.Envelope.Validate(); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if m.hasDSN() && m.Version == Version1 {
		return nil, 0, fmt.Errorf("%w: DSN fields in a version 1 file", ErrCorrupt)
	}
	return m, off, nil
}

// The versions as the magic line writes them.
var (
	version1   = strconv.Itoa(Version1)
	versionDSN = strconv.Itoa(VersionDSN)
)

// fieldSet is the set of envelope field names seen, without a map: a bit
// for each known field, a list for the others.
type fieldSet struct {
	known uint32
	other []string
}

// knownFields are the fields with a bit in fieldSet, at their index.
var knownFields = [...]string{fQueueID, fReceived, fClient, fHelo, fProtocol, fBody, fUTF8, fFrom, fTo,
	fTLSVer, fTLSCiph, fAuthUser, fRet, fEnvID, fNotify, fORcpt, fSize, fCRC}

func (s *fieldSet) bit(k string) uint32 {
	for i, f := range knownFields {
		if f == k {
			return 1 << i
		}
	}
	return 0
}

func (s *fieldSet) has(k string) bool {
	if b := s.bit(k); b != 0 {
		return s.known&b != 0
	}
	return slices.Contains(s.other, k)
}

// add adds k to the set and reports whether it was there already.
func (s *fieldSet) add(k string) bool {
	if b := s.bit(k); b != 0 {
		seen := s.known&b != 0
		s.known |= b
		return seen
	}
	if slices.Contains(s.other, k) {
		return true
	}
	s.other = append(s.other, k)
	return false
}

func (m *Message) set(k, v string) error {
	bad := func() error { return fmt.Errorf("%w: bad %s %q", ErrCorrupt, k, v) }
	switch k {
	case fQueueID:
		if !ValidQueueID(v) {
			return bad()
		}
		m.QueueID = v
	case fReceived:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return bad()
		}
		m.Received = t
	case fClient:
		if v != "local" {
			m.Client = v
		}
	case fHelo:
		m.Helo = v
	case fProtocol:
		m.Protocol = v
	case fBody:
		m.Body = v
	case fTLSVer:
		m.TLSVersion = v
	case fTLSCiph:
		m.TLSCipher = v
	case fAuthUser:
		m.AuthUser = v
	case fRet:
		m.Ret = v
	case fEnvID:
		m.EnvID = v
	case fNotify, fORcpt:
		// Per recipient: of the rcpt-to line before, once each.
		i := len(m.To) - 1
		if i < 0 {
			return fmt.Errorf("%w: %s before any rcpt-to", ErrCorrupt, k)
		}
		for len(m.DSN) <= i {
			m.DSN = append(m.DSN, RcptDSN{})
		}
		d := &m.DSN[i]
		if k == fNotify && d.Notify != "" || k == fORcpt && d.ORcpt != "" || v == "" {
			return bad()
		}
		if k == fNotify {
			d.Notify = v
		} else {
			d.ORcpt = v
		}
	case fUTF8:
		switch v {
		case "yes":
			m.SMTPUTF8 = true
		case "no":
		default:
			return bad()
		}
	case fFrom, fTo:
		if len(v) < 2 || v[0] != '<' || v[len(v)-1] != '>' {
			return bad()
		}
		// Checked here as well as by Validate, so that a damaged file
		// cannot make the reader gather a million recipients first.
		if len(v)-2 > MaxAddrLen || k == fTo && len(m.To) >= MaxRecipients {
			return bad()
		}
		if k == fFrom {
			m.From = v[1 : len(v)-1]
		} else {
			m.To = append(m.To, v[1:len(v)-1])
		}
	case fSize:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return bad()
		}
		m.Size = n
	case fCRC:
		n, err := strconv.ParseUint(v, 16, 32)
		if err != nil {
			return bad()
		}
		m.CRC32C = uint32(n)
	default:
		// Unknown fields are ignored so that a minor addition does not
		// need a version bump; a reader that must understand a field
		// gets a new Version.
	}
	return nil
}

// Content returns a new reader of the message bytes from their start. Each
// call starts again from the beginning. At the end it returns io.EOF if the
// bytes match the recorded CRC-32C, else an error wrapping ErrCorrupt.
func (m *Message) Content() io.Reader {
	return &crcReader{
		r:    io.NewSectionReader(m.f, m.bodyOff, m.Size),
		h:    crc32.New(castagnoli()),
		want: m.CRC32C,
	}
}

// File returns the open file, for flock and fstat. Do not read from it or
// close it directly.
func (m *Message) File() *os.File { return m.f }

// Close closes the message file.
func (m *Message) Close() error { return m.f.Close() }

// crcReader passes the message bytes through and, at their end, fails
// with ErrCorrupt unless their CRC-32C is want.
type crcReader struct {
	r    io.Reader
	h    hash.Hash32
	want uint32
}

// Read implements io.Reader.
func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF && c.h.Sum32() != c.want {
		return n, fmt.Errorf("%w: CRC-32C mismatch", ErrCorrupt)
	}
	return n, err
}
