package send

import (
	"fmt"
	"strconv"

	"github.com/smtp-stdio/smtp-stdio/route"
)

// The local transports of the route table: LMTP (lmtp.go), a maildir
// (maildir.go), an mbox file (mbox.go) and a command (pipe.go). Each is a Session of its own,
// which a worker's routedSession keeps per table line, so that an LMTP
// connection is reused across messages as an SMTP one is. Local delivery
// is final delivery: what the message becomes after it is no longer our
// queue's business, and every outcome is recorded exactly as for SMTP
// (Recorder.Delivered before anything else is sent or written).

// localKey names the destination of a local route: its table line, so
// that two lines with one next hop (two pipe lines with other arguments)
// stay apart.
func localKey(r route.Route) string {
	return "local " + r.File + ":" + strconv.Itoa(r.Line) + " " + r.Nexthop()
}

// newLocalSession returns a session delivering over the local route r.
func (t *router) newLocalSession(r route.Route) Session {
	switch r.Kind {
	case route.LMTP:
		d, _ := t.lmtpDown.LoadOrStore(localKey(r), &serverDown{})
		return &lmtpSession{cfg: t.cfg, log: t.log, dial: t.dial, route: r, down: d.(*serverDown)}
	case route.Maildir:
		return &maildirSession{cfg: t.cfg, route: r}
	case route.Pipe:
		return &pipeSession{cfg: t.cfg, log: t.log, route: r}
	case route.Mbox:
		return &mboxSession{cfg: t.cfg, route: r, now: t.now}
	}
	return nil
}

// localTarget says in words where local route r delivers rcpt, and what
// a run would do, for --explain.
func localTarget(r route.Route, rcpt string) (target, outcome string) {
	switch r.Kind {
	case route.LMTP:
		return "LMTP (RFC 2033) to " + lmtpAddr(r), "deliver over LMTP; the server answers for each recipient after the data"
	case route.Maildir:
		p, err := r.Expand(rcpt)
		if err != nil {
			return "a maildir (" + r.Nexthop() + ")", "bounce at once: 5.1.3 " + err.Error()
		}
		return "the maildir " + p, "write the message into " + p + "new/ (tmp/, fsync, link)"
	case route.Mbox:
		p, err := r.Expand(rcpt)
		if err != nil {
			return "an mbox file (" + r.Nexthop() + ")", "bounce at once: 5.1.3 " + err.Error()
		}
		return "the mbox file " + p, "append the message to " + p + " (fcntl and dot-lock, fsync)"
	case route.Pipe:
		per := "once per message"
		if r.Pipe.PerRecipient {
			per = "once per recipient"
		}
		return fmt.Sprintf("the command %s %q", r.Pipe.Path, r.Pipe.Args(route.Vars{Sender: "${sender}", QueueID: "${queue_id}", Rcpts: []string{rcpt}})),
			"run the command " + per + ", the message on its standard input, at most " + r.Pipe.Timeout.String()
	}
	return r.Nexthop(), ""
}
