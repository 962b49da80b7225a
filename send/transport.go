package send

import (
	"context"
	"io"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Transport is how a run delivers: the smarthost over SMTP (the default,
// built from Config), and in time direct MX, LMTP, a maildir or a pipe.
// The run does not know which: it hands each due message to a Session and
// gets one outcome per recipient back; retries, expiry, notifications and
// the queue's state are its own, and the same for every Transport
// (chasquid's Courier and maddy's Target play this part).
//
// Each worker of a run (Config.Connections of them) asks for one Session
// and delivers its messages through it one after the other, so a
// Transport can keep a connection across messages. A Transport is shared
// by the workers and must be safe for concurrent use; a Session is not.
type Transport interface {
	// NewSession returns a session for one worker.
	NewSession() Session
}

// Session delivers the messages of one worker, one at a time.
type Session interface {
	// Deliver delivers the message d to its recipients d.Rcpts,
	// splitting them into transactions as the destination requires, and
	// reports exactly one outcome for each recipient to rec, unless it
	// returns an error first: Delivered as soon as the destination has
	// taken the message for them (for SMTP, the final 250 after the
	// data), Failed when it has not. A recipient left without an outcome
	// counts as deferred, with its previous result.
	//
	// Delivered records the outcome durably before it returns, and the
	// session sends nothing more, neither this message's next
	// transaction nor another message, until then: that bounds what a
	// crash can deliver twice to one transaction. If it returns an
	// error, Deliver stops and returns that error.
	//
	// Deliver also returns the error of reading the message (one
	// wrapping spool.ErrCorrupt when the data fails its CRC, which the
	// run sets aside in corrupt/) and of any local resource it needs;
	// the message then stays queued as it was. Failures of the
	// destination are never errors: they are reported to rec.Failed.
	// ctx bounds the delivery; the run does not cancel a message in
	// flight.
	Deliver(ctx context.Context, d *Delivery, rec Recorder) error
	// Close ends the session (for SMTP, QUIT), after its last message.
	// It returns the error of ending it, which a run ignores.
	Close() error
}

// Delivery is one message as a Transport sees it.
type Delivery struct {
	// Envelope is the message's envelope as spooled (FORMAT.md): sender,
	// every recipient, BODY= and SMTPUTF8.
	Envelope *spool.Envelope
	// Rcpts are the recipients to deliver to, indexes into Envelope.To
	// in envelope order: those still pending.
	Rcpts []int
	// Size is the length of the message data, in octets.
	Size int64
	// Content returns a new reader of the message data from its start at
	// each call: dot-unstuffed, CRLF line ends, streamed from the spool,
	// never held in memory. At its end it returns io.EOF, or an error
	// wrapping spool.ErrCorrupt if the data does not match its CRC-32C.
	Content func() io.Reader
}

// Recorder takes a Session's outcomes for the recipients of one message.
// Recipients are indexes into Delivery.Envelope.To.
type Recorder interface {
	// Delivered records that the recipients rcpts were delivered, with
	// the reply that took them, and returns once that is durable; an
	// error means it could not be recorded (see Session.Deliver).
	Delivered(rcpts []int, r Reply) error
	// DeliveredEach is Delivered with a reply of its own for each
	// recipient, reps[n] for rcpts[n], recorded in one durable write: the
	// replies of LMTP after the data (RFC 2033 section 4.2), so that a
	// crash cannot record some of one transaction's recipients and not
	// the others.
	DeliveredEach(rcpts []int, reps []Reply) error
	// Failed notes f for the recipients rcpts: deferred if
	// f.Temporary(), else failed for good (a notification follows). It
	// is recorded when the attempt ends; a later outcome for the same
	// recipient in the same Deliver replaces it.
	Failed(rcpts []int, f *Failure)
}

// Reply is the answer that took a message for its recipients: for SMTP
// the reply to the final dot (RFC 5321 section 4.1.1.4).
type Reply struct {
	// Stage is the step whose reply it was: StageDot for SMTP.
	Stage Stage
	// Code is the reply code (RFC 5321 section 4.2), 250 for SMTP.
	Code int
	// Enhanced is the RFC 3463 code of the reply, "" if it had none.
	Enhanced string
	// Text is the reply text on one line.
	Text string
	// Relay is the destination's address, as in Failure.Relay.
	Relay string
	// Action is the RFC 3464 Action of the success notice that a
	// recipient with NOTIFY=SUCCESS gets from us (RFC 3461 section
	// 5.2): "delivered" for a final delivery (section 5.2.3; the local transports:
	// maildir, mbox, pipe, LMTP), "relayed" when the next hop does not
	// offer DSN and so will not report success itself (section 5.2.2),
	// "" when it does: NOTIFY was passed on, the notice is its to give.
	Action string
}

// The RFC 3464 actions of Reply.Action.
const (
	actionDelivered = "delivered"
	actionRelayed   = "relayed"
)
