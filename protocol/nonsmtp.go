package protocol

import (
	"bytes"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// foreignVerbs are first words of other protocols' requests that no SMTP
// client sends: an HTTP request or proxy CONNECT aimed at the mail port,
// often by a web page abusing a browser (cross-protocol attack). The list
// is Postfix's smtpd_forbidden_commands default.
var foreignVerbs = []string{"GET", "POST", "CONNECT"}

// nonSMTP reports whether a command line is not SMTP at all: its first
// word is an HTTP method from foreignVerbs (in any case), or looks like a
// header field ("Host:", "Subject:x"): a field name of printable ASCII
// followed by a colon (RFC 5322 section 2.2). Header lines as commands
// come from an HTTP client's request or from a client that sends message
// text without waiting for 354. Postfix (is_header in smtpd.c) and this
// server end such a session at once. It allocates nothing.
func nonSMTP(line []byte) bool {
	word, _, _ := bytes.Cut(line, []byte{' '})
	for _, v := range foreignVerbs {
		if ascii.EqualFold(word, v) {
			return true
		}
	}
	name, _, found := bytes.Cut(word, []byte{':'})
	if !found || len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
