// Command smtp-send delivers the spool that smtp-stdio fills, to a
// smarthost, to the recipients' MX hosts or by the routes of a route
// table (local transports included), then exits. Run it from cron or a systemd timer, or right
// after a session. It is configured by the environment (smtp-send --help
// lists every variable and its default) and logs to stderr.
//
// Usage:
//
//	smtp-send            deliver the due messages
//	smtp-send --all      deliver every queued message, ignoring retry times
//	smtp-send --list     print the queue (--json: one JSON object per line;
//	                     --all: include failed/ and corrupt/; --from TEXT,
//	                     --to TEXT, --older-than DURATION: only those)
//	smtp-send --explain ADDRESS...
//	                     print each address's delivery plan (route, MX
//	                     hosts, TLS policy) without sending
//
// Exit status: 0 for a completed run, deferrals included, and when another
// run holds the spool; otherwise a sysexits(3) code: 78 (EX_CONFIG) among
// others for a spool directory that other users could change.
package main

import (
	"os"

	"github.com/smtp-stdio/smtp-stdio/internal/sender"
)

func main() {
	os.Exit(sender.Run(os.Args, os.Stdout, os.Stderr))
}
