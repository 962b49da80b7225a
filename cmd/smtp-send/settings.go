package main

import (
	"log/slog"
	"time"

	"github.com/smtp-stdio/smtp-stdio/send"
)

// envPrefix is the prefix of every variable: SMTP_SPOOL_DIR and
// SMTP_HOSTNAME are shared with smtp-stdio; SMTP_SMARTHOST* and
// SMTP_SEND_* are smtp-send's own. docs/send.md explains each.
const envPrefix = "smtp"

// settings is the environment, read once by envnames.Process: each
// field is named for its variable, never tagged with envconfig:"X".
type settings struct {
	SpoolDir string `split_words:"true" default:"/var/spool/smtp-stdio" desc:"spool root: queue/ and tmp/ from smtp-stdio; state/, failed/, corrupt/ of smtp-send"`
	Hostname string `desc:"our name in EHLO and the Reporting-MTA of notifications (default: the system's host name)"`

	Smarthost               string       `desc:"comma-separated host[:port] list, tried in order (required to send)"`
	SmarthostTLS            send.TLSMode `split_words:"true" default:"starttls" desc:"none, starttls (port 587) or tls (implicit, port 465); never a downgrade"`
	SmarthostUsername       string       `split_words:"true" desc:"AUTH PLAIN/LOGIN user; empty: no AUTH"`
	SmarthostPassword       string       `split_words:"true" desc:"AUTH password"`
	SmarthostPasswordFile   string       `split_words:"true" desc:"file holding the AUTH password (one line)"`
	SmarthostCAFile         string       `split_words:"true" desc:"PEM roots to verify the smarthost (default: the system's)"`
	SmarthostServerName     string       `split_words:"true" desc:"name the certificate must show (default: each smarthost's host)"`
	SmarthostAuthWithoutTLS bool         `split_words:"true" default:"false" desc:"allow AUTH over a clear-text connection"`

	SendQueueLifetime  time.Duration `split_words:"true" default:"120h" desc:"age after which a recipient the smarthost keeps deferring fails"`
	SendMinAttempts    int           `split_words:"true" default:"10" desc:"attempts required, besides the age, before expiry"`
	SendBackoffMin     time.Duration `split_words:"true" default:"5m" desc:"delay after the first deferral; doubles at each attempt"`
	SendBackoffMax     time.Duration `split_words:"true" default:"1h" desc:"longest delay between attempts"`
	SendRunTime        time.Duration `split_words:"true" default:"4m" desc:"budget of a run: no message is started after it"`
	SendConnections    int           `split_words:"true" default:"8" desc:"parallel connections to the smarthost"`
	SendReuse          bool          `split_words:"true" default:"true" desc:"send many messages per connection (RSET between them)"`
	SendMaxRecipients  int           `split_words:"true" default:"100" desc:"most RCPT per transaction"`
	SendConnectTimeout time.Duration `split_words:"true" default:"30s" desc:"TCP connection timeout"`
	SendCommandTimeout time.Duration `split_words:"true" default:"5m" desc:"greeting and command reply timeout (RFC 5321 4.5.3.2)"`
	SendDataTimeout    time.Duration `split_words:"true" default:"10m" desc:"timeout of the reply to the final dot (RFC 5321 4.5.3.2.6)"`
	SendBlockTimeout   time.Duration `split_words:"true" default:"3m" desc:"timeout of each write of message data (RFC 5321 4.5.3.2.5)"`
	SendTmpMaxAge      time.Duration `split_words:"true" default:"24h" desc:"age past which files in tmp/ are removed at the start of a run"`
	SendLogLevel       slog.Level    `split_words:"true" default:"info" desc:"debug, info, warn or error"`
}
