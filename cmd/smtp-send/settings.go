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

// settings is the environment, read once by envconfig.
type settings struct {
	SpoolDir string `envconfig:"SPOOL_DIR" default:"/var/spool/smtp-stdio" desc:"spool root: queue/ and tmp/ from smtp-stdio; state/, failed/, corrupt/ of smtp-send"`
	Hostname string `envconfig:"HOSTNAME" desc:"our name in EHLO and the Reporting-MTA of notifications (default: the system's host name)"`

	Smarthost               string       `envconfig:"SMARTHOST" desc:"comma-separated host[:port] list, tried in order (required to send)"`
	SmarthostTLS            send.TLSMode `envconfig:"SMARTHOST_TLS" default:"starttls" desc:"none, starttls (port 587) or tls (implicit, port 465); never a downgrade"`
	SmarthostUsername       string       `envconfig:"SMARTHOST_USERNAME" desc:"AUTH PLAIN/LOGIN user; empty: no AUTH"`
	SmarthostPassword       string       `envconfig:"SMARTHOST_PASSWORD" desc:"AUTH password"`
	SmarthostPasswordFile   string       `envconfig:"SMARTHOST_PASSWORD_FILE" desc:"file holding the AUTH password (one line)"`
	SmarthostCAFile         string       `envconfig:"SMARTHOST_CA_FILE" desc:"PEM roots to verify the smarthost (default: the system's)"`
	SmarthostServerName     string       `envconfig:"SMARTHOST_SERVER_NAME" desc:"name the certificate must show (default: each smarthost's host)"`
	SmarthostAuthWithoutTLS bool         `envconfig:"SMARTHOST_AUTH_WITHOUT_TLS" default:"false" desc:"allow AUTH over a clear-text connection"`

	QueueLifetime  time.Duration `envconfig:"SEND_QUEUE_LIFETIME" default:"120h" desc:"age after which a recipient the smarthost keeps deferring fails"`
	MinAttempts    int           `envconfig:"SEND_MIN_ATTEMPTS" default:"10" desc:"attempts required, besides the age, before expiry"`
	BackoffMin     time.Duration `envconfig:"SEND_BACKOFF_MIN" default:"5m" desc:"delay after the first deferral; doubles at each attempt"`
	BackoffMax     time.Duration `envconfig:"SEND_BACKOFF_MAX" default:"1h" desc:"longest delay between attempts"`
	RunTime        time.Duration `envconfig:"SEND_RUN_TIME" default:"4m" desc:"budget of a run: no message is started after it"`
	Connections    int           `envconfig:"SEND_CONNECTIONS" default:"8" desc:"parallel connections to the smarthost"`
	Reuse          bool          `envconfig:"SEND_REUSE" default:"true" desc:"send many messages per connection (RSET between them)"`
	MaxRecipients  int           `envconfig:"SEND_MAX_RECIPIENTS" default:"100" desc:"most RCPT per transaction"`
	ConnectTimeout time.Duration `envconfig:"SEND_CONNECT_TIMEOUT" default:"30s" desc:"TCP connection timeout"`
	CommandTimeout time.Duration `envconfig:"SEND_COMMAND_TIMEOUT" default:"5m" desc:"greeting and command reply timeout (RFC 5321 4.5.3.2)"`
	DataTimeout    time.Duration `envconfig:"SEND_DATA_TIMEOUT" default:"10m" desc:"timeout of the reply to the final dot (RFC 5321 4.5.3.2.6)"`
	BlockTimeout   time.Duration `envconfig:"SEND_BLOCK_TIMEOUT" default:"3m" desc:"timeout of each write of message data (RFC 5321 4.5.3.2.5)"`
	TmpMaxAge      time.Duration `envconfig:"SEND_TMP_MAX_AGE" default:"24h" desc:"age past which files in tmp/ are removed at the start of a run"`
	LogLevel       slog.Level    `envconfig:"SEND_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}
