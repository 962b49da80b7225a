// Command smtp-stdio is an SMTP server for one connection on standard
// input and output, started by inetd, xinetd, systemd socket activation
// (Accept=yes) or ucspi-tcp's tcpserver. It spools each accepted message
// durably before answering 250. Run it with --help for its settings.
package main

import (
	"os"

	"github.com/smtp-stdio/smtp-stdio/internal/receiver"
)

func main() {
	os.Exit(receiver.Run(os.Args))
}
