package sendmail

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/receiver"
	"github.com/smtp-stdio/smtp-stdio/internal/sender"
	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// Config is sendmail's configuration, read once from the environment by
// envnames.Process (Load). Each field is one setting: its variable is
// SMTP_ and the field's name (envnames.Names), its desc tag the line of
// --help, and README.md's table "Settings of sendmail" has one row for it
// (TestREADMETables in internal/envnames). SMTP_SPOOL_DIR and
// SMTP_HOSTNAME are smtp-stdio's; every other variable is in sendmail's
// own space, SMTP_SENDMAIL_* (envnames.InSendmailSpace), which
// smtp-stdio and smtp-send leave alone. -bs reads smtp-stdio's whole
// configuration (receiver.Load) and -bp and -q smtp-send's.
type Config struct {
	SpoolDir string `split_words:"true" default:"/var/spool/smtp-stdio" desc:"spool root: messages go to its queue/ through tmp/, as smtp-stdio's"`
	Hostname string `desc:"this host's name in the Received: header and Message-ID: (default: the system host name)"`

	SendmailDomain string `split_words:"true" desc:"domain of the From: address and envelope sender made from the login name, and of bare recipients (default: SMTP_HOSTNAME)"`

	SendmailMaxMessageSize int64 `split_words:"true" default:"26214400" desc:"largest message queued, in bytes as written to the spool (Received: and added fields included); larger is exit 65 (0: no limit)"`

	SendmailTrustedUsers []string `split_words:"true" desc:"comma-separated login names that may set any sender with -f without an X-Authentication-Warning: field (root and the spool's user always may)"`
}

// Load reads the configuration from environ (as os.Environ gives it,
// and as the process's environment holds it: envconfig reads the
// latter). It returns envconfig's error naming the variable at fault, or
// an error naming an SMTP_SENDMAIL_* variable that sendmail does not
// read (a typo that would leave a setting at its default), and the other
// SMTP_* variables that none of sendmail, smtp-stdio and smtp-send reads,
// for a warning. Hostname and SendmailDomain are filled in with their
// defaults; a SendmailDomain that is set must be a domain name.
func Load(environ []string) (*Config, []string, error) {
	var c Config
	if err := envnames.Process(&c); err != nil {
		return nil, nil, err
	}
	own, err := envnames.Known(&c)
	if err != nil {
		return nil, nil, err
	}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if envnames.InSendmailSpace(k) && !own.Has(k) {
			return nil, nil, fmt.Errorf("unknown variable %s", k)
		}
	}
	known, err := envnames.Known(&c, &receiver.Config{}, &sender.Config{})
	if err != nil {
		return nil, nil, err
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	if c.SendmailMaxMessageSize < 0 {
		return nil, nil, errors.New("SMTP_SENDMAIL_MAX_MESSAGE_SIZE must be a number of bytes, 0 for no limit")
	}
	if c.SendmailDomain == "" {
		c.SendmailDomain = c.Hostname
	} else if !protocol.ValidDomain(c.SendmailDomain) {
		return nil, nil, errors.New("SMTP_SENDMAIL_DOMAIN must be a domain name (RFC 5321 section 4.1.2)")
	}
	return &c, envnames.Unknown(environ, known.Has), nil
}

// Usage writes sendmail's help to w: the command line and the table of
// every setting with its type and default (envnames.Usage, generated from
// Config). It returns w's error.
func Usage(w io.Writer) error {
	fmt.Fprintf(w, "Usage: sendmail [-t] [-i] [-f sender] [-F name] [-B 7BIT|8BITMIME] [-N dsn] [-R ret] [-V envid] [-v] [recipient...]\n")
	fmt.Fprintf(w, "       sendmail -bs | -bp | -q | -bi;  mailq;  newaliases\n\n")
	fmt.Fprintf(w, "Queues the message on standard input into $SMTP_SPOOL_DIR/queue for smtp-send.\nEvery flag is in docs/sendmail.md.\n\n")
	return envnames.Usage(w, &Config{})
}
