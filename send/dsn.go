package send

import (
	"bufio"
	"fmt"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// maxReturnedHeaders bounds the original header section copied into a
// notification.
const maxReturnedHeaders = 256 << 10

// spoolDSN spools, durably and under queue id id, the delivery status
// notification (RFC 3464) for the recipients of x whose state names id:
// multipart/report with a human-readable part, message/delivery-status and
// the original header section, from the null sender <> (RFC 5321 section
// 4.5.5) to the original sender, through the same queue. With UTF-8
// addresses or headers it uses the RFC 6533 types.
func (w *worker) spoolDSN(x *msg, id string) error {
	r, env, st := w.r, &x.m.Envelope, x.st
	var rcpts []spool.Rcpt
	for _, rc := range st.Rcpts {
		if rc.Status == spool.Failed && rc.DSN == id {
			rcpts = append(rcpts, rc)
		}
	}
	hdr, err := readHeaderSection(x.m.Content(), maxReturnedHeaders)
	if err != nil {
		return err
	}
	utf8 := !isASCII(env.From) || !isASCII(string(hdr))
	for _, rc := range rcpts {
		utf8 = utf8 || !isASCII(rc.Addr)
	}
	now := r.now()
	host := r.cfg.Hostname
	boundary := id + "/" + host
	var b strings.Builder
	line := func(format string, a ...any) {
		fmt.Fprintf(&b, format, a...)
		b.WriteString("\r\n")
	}
	line("Date: %s", now.Format(time.RFC1123Z))
	line("From: Mail Delivery System <MAILER-DAEMON@%s>", host)
	line("To: <%s>", env.From)
	line("Subject: Undelivered Mail Returned to Sender")
	line("Message-ID: <%s@%s>", id, host)
	line("Auto-Submitted: auto-replied")
	line("MIME-Version: 1.0")
	line("Content-Type: multipart/report; report-type=delivery-status;")
	line("\tboundary=\"%s\"", boundary)
	line("")
	line("This is a MIME-encapsulated message.")
	line("")
	line("--%s", boundary)
	line("Content-Description: Notification")
	if utf8 {
		line("Content-Type: text/plain; charset=utf-8")
		line("Content-Transfer-Encoding: 8bit")
	} else {
		line("Content-Type: text/plain; charset=us-ascii")
	}
	line("")
	line("This is the mail system at host %s.", host)
	line("")
	line("Your message could not be delivered to one or more recipients.")
	line("The details are below; the headers of your message follow.")
	line("")
	for _, rc := range rcpts {
		why := rc.Text
		if rc.Code != 0 {
			why = strings.TrimSpace(fmt.Sprintf("%d %s %s", rc.Code, rc.Enhanced, rc.Text))
		}
		if rc.Expired {
			why = fmt.Sprintf("still undeliverable after %s (%d attempts); last error: %s",
				now.Sub(st.Arrival).Round(time.Minute), st.Attempts, why)
		}
		line("<%s>: %s", rc.Addr, why)
	}
	line("")
	line("--%s", boundary)
	line("Content-Description: Delivery report")
	addrType := "rfc822"
	if utf8 {
		line("Content-Type: message/global-delivery-status")
		addrType = "utf-8"
	} else {
		line("Content-Type: message/delivery-status")
	}
	line("")
	line("Reporting-MTA: dns; %s", host)
	line("X-Original-Queue-ID: %s", env.QueueID)
	line("Arrival-Date: %s", st.Arrival.Format(time.RFC1123Z))
	for _, rc := range rcpts {
		line("")
		line("Final-Recipient: %s; %s", addrType, rc.Addr)
		line("Action: failed")
		line("Status: %s", (&Failure{Code: rc.Code, Enhanced: rc.Enhanced}).status())
		if relay := relayName(rc.Relay); relay != "" {
			line("Remote-MTA: dns; %s", relay)
		}
		if rc.Code != 0 {
			line("Diagnostic-Code: smtp; %s", strings.TrimSpace(fmt.Sprintf("%d %s %s", rc.Code, rc.Enhanced, rc.Text)))
		}
		if !rc.At.IsZero() {
			line("Last-Attempt-Date: %s", rc.At.Format(time.RFC1123Z))
		}
	}
	line("")
	line("--%s", boundary)
	line("Content-Description: Undelivered Message Headers")
	if utf8 {
		line("Content-Type: message/global-headers")
	} else {
		line("Content-Type: text/rfc822-headers")
	}
	line("")
	b.WriteString(strings.TrimRight(crlf(string(hdr)), "\r\n") + "\r\n")
	line("")
	line("--%s--", boundary)

	dsn := &spool.Envelope{QueueID: id, Received: now, Helo: host, Protocol: "local",
		From: "", To: []string{env.From}, SMTPUTF8: !isASCII(env.From)}
	if utf8 {
		dsn.Body = "8BITMIME"
	}
	wr, err := r.sp.Create(dsn)
	if err != nil {
		return err
	}
	if _, err := wr.Write([]byte(b.String())); err != nil {
		wr.Abort()
		return err
	}
	if err := wr.Commit(); err != nil {
		return err
	}
	r.log.Info("notification spooled", "id", env.QueueID, "dsn", id, "to", env.From, "recipients", len(rcpts))
	return nil
}

// relayName is the host part of a relay address, for Remote-MTA.
func relayName(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		addr = addr[:i]
	}
	return strings.Trim(addr, "[]")
}

// crlf makes every line end in CRLF.
func crlf(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), len(s)+1)
	for sc.Scan() {
		b.WriteString(strings.TrimRight(sc.Text(), "\r"))
		b.WriteString("\r\n")
	}
	return b.String()
}
