package protocol

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
)

// PolicyFunc adapts a function to Policy: it is CheckRecipient. It
// returns nil to accept the forward-path rcpt for env, or the refusal,
// such as 550 5.7.1 (RFC 5321 section 3.6.2: relaying denied).
type PolicyFunc func(env *Envelope, rcpt string) *Reply

// CheckRecipient implements Policy by calling f.
func (f PolicyFunc) CheckRecipient(env *Envelope, rcpt string) *Reply { return f(env, rcpt) }

// DeliveryFunc adapts a plain function to Delivery: for each message it
// is given the envelope and the message as a stream, and what it returns
// decides the reply to the end of DATA (RFC 5321 section 4.1.1.4). Nil
// means the function has taken responsibility for the message: 250. An
// error wrapping a *Reply refuses with that reply; any other error is
// answered 451 4.3.0.
//
// The message streams: f runs on a goroutine of its own from DATA on and
// reads the message through an io.Pipe as the client sends it, so that
// nothing holds the whole message in memory and nothing is written to
// disk. msg yields the Received: header the session adds, then the
// message, dot-unstuffed, with CRLF line endings, then io.EOF at the
// end of the data. When the session refuses the message instead (too
// big, bare line endings, a mail loop, Config.CheckHeader) or the client
// goes away, msg returns ErrAborted, and what f returns no longer
// matters. The session waits for f to return before it replies, and f
// must have read the whole message to accept it: a nil return with
// message text still unread refuses the message with 451 4.3.0, so that
// a message is never taken in part. f may keep env.
//
// Each message gets a random queue id of 16 hex digits, for the 250
// reply and the Received: header.
type DeliveryFunc func(env *Envelope, msg io.Reader) error

// ErrAborted is what the reader of a DeliveryFunc returns when the
// session gives the message up before its end.
var ErrAborted = errors.New("protocol: message aborted")

// errUnread refuses a message whose DeliveryFunc returned nil before
// reading all of it.
var errUnread = errors.New("protocol: delivery function returned before the end of the message")

// Begin implements Delivery: it starts f on the message's goroutine.
func (f DeliveryFunc) Begin(env *Envelope) (MessageWriter, error) {
	var id [8]byte
	rand.Read(id[:]) // never fails (crypto/rand)
	pr, pw := io.Pipe()
	m := &funcMessage{pw: pw, id: hex.EncodeToString(id[:]), done: make(chan error, 1)}
	go func() {
		err := f(env, pr)
		// Writes from now on fail: with f's refusal, or with errUnread
		// when f accepted without reading on.
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.CloseWithError(errUnread)
		}
		m.done <- err
	}()
	return m, nil
}

// funcMessage is the MessageWriter of a DeliveryFunc: the write end of
// the pipe that f reads.
type funcMessage struct {
	pw       *io.PipeWriter
	id       string
	done     chan error // f's result, sent once
	finished bool       // f's result was taken
}

// Write passes p to f; it returns when f has read all of it, or with
// f's error, or errUnread, when f has returned.
func (m *funcMessage) Write(p []byte) (int, error) { return m.pw.Write(p) }

// QueueID implements MessageWriter.
func (m *funcMessage) QueueID() string { return m.id }

// Commit implements MessageWriter: it ends the message (f reads io.EOF)
// and returns what f returns.
func (m *funcMessage) Commit() error {
	m.pw.Close()
	m.finished = true
	return <-m.done
}

// Abort implements MessageWriter: f reads ErrAborted. Abort waits for f
// to return; after Commit it does nothing.
func (m *funcMessage) Abort() error {
	if !m.finished {
		m.pw.CloseWithError(ErrAborted)
		m.finished = true
		<-m.done
	}
	return nil
}
