// Command sendmail is the sendmail-compatible command of smtp-stdio, for
// the local programs that run /usr/sbin/sendmail (cron, mail(1), git
// send-email, PHP's mail()). It queues the message on standard input
// into the spool smtp-stdio fills and smtp-send delivers; run as mailq it
// lists the queue, as newaliases it does nothing. It is configured by the
// environment (sendmail --help); every flag is in docs/sendmail.md.
//
// Usage:
//
//	sendmail [-t] [-i] [-f sender] [-F name] [recipient...] < message
//	sendmail -bs     an SMTP session on standard input and output
//	sendmail -bp     the queue (mailq)
//	sendmail -q      run smtp-send now
//
// Exit status: 0 once the message is durably queued, else a sysexits(3)
// code: 64 usage, 65 no recipients, 67 a bad recipient, 75 the spool
// could not take it.
package main

import (
	"os"

	"github.com/smtp-stdio/smtp-stdio/internal/sendmail"
)

func main() {
	os.Exit(sendmail.Run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
