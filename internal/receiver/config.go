// Package receiver wires one smtp-stdio session together: it reads the
// configuration from the environment, finds the client, sets up logging,
// the relay policy and the spool, and runs a protocol.Session over the
// process's standard input and output.
package receiver

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/velocity"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Prefix is envnames.Prefix without its underscore, as the configuration
// errors build the names of variables.
const Prefix = "SMTP"

// Config is smtp-stdio's configuration, read once from the environment by
// envnames.Process (Load). Each field is one setting: its variable is
// SMTP_ and the field's name (envnames.Names), its desc tag the line of
// --help, and README.md's table "Settings of smtp-stdio" has one row for
// it (TestREADMETables). Sizes are in bytes, durations in Go syntax
// ("5m", "90s").
type Config struct {
	SpoolDir        string        `split_words:"true" default:"/var/spool/smtp-stdio" desc:"spool root directory (owned by the receiving user, mode 0700 or 0750)"`
	Hostname        string        `desc:"this host's name in the greeting, EHLO reply and Received: header (default: the system host name)"`
	LocalDomains    []string      `split_words:"true" desc:"comma-separated domains whose recipients are accepted from any client"`
	RelayClients    []string      `split_words:"true" default:"127.0.0.0/8,::1/128" desc:"comma-separated CIDRs of clients that may send to any domain"`
	MaxMessageSize  int64         `split_words:"true" default:"26214400" desc:"largest message accepted, in bytes (advertised as SIZE)"`
	MaxRecipients   int           `split_words:"true" default:"100" desc:"most RCPT TO per message (RFC 5321 4.5.3.1.8); more get 452 4.5.3; at most 1000"`
	MaxLineLength   int           `split_words:"true" default:"2048" desc:"longest command line in bytes, CRLF included; longer lines get 500 5.5.2"`
	MaxErrors       int           `split_words:"true" default:"20" desc:"refusals (4xx and 5xx replies but 452 4.5.3) before 421 and disconnect (0: no limit)"`
	MaxReceived     int           `split_words:"true" default:"50" desc:"Received: headers a message may carry; more is a mail loop, 554 5.4.6"`
	BareLineEndings string        `split_words:"true" default:"reject" desc:"bare CR or LF in DATA: reject (550 5.5.2) or normalize (to CRLF)"`
	CommandTimeout  time.Duration `split_words:"true" default:"5m" desc:"wait for each command line (RFC 5321 4.5.3.2.7)"`
	DataTimeout     time.Duration `split_words:"true" default:"3m" desc:"wait for each block of message data (RFC 5321 4.5.3.2.6)"`
	SessionTimeout  time.Duration `split_words:"true" default:"1h" desc:"longest whole session, whatever the client does"`
	Greeting        string        `desc:"text after the host name in the 220 greeting (default: ready)"`
	Log             string        `default:"auto" desc:"where logs go: auto (syslog when stderr is the client's socket, else stderr), stderr, syslog, off"`
	LogLevel        string        `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	LogFormat       string        `split_words:"true" default:"text" desc:"text (logfmt) or json"`
	SyslogSocket    string        `split_words:"true" desc:"local syslog socket when logging to syslog (default: /dev/log, else /var/run/syslog or /var/run/log)"`

	// RFC 5321 4.5.1: the domain a bare RCPT TO:<postmaster> is given.
	PostmasterDomain string `split_words:"true" desc:"domain given to a bare RCPT TO:<postmaster> (RFC 5321 4.5.1), so the spool holds postmaster@domain (default: SMTP_HOSTNAME)"`

	// Unknown local recipients (internal/relay, SetLocalRecipients).
	LocalRecipientsFile string `split_words:"true" desc:"aliases(5) file (as SMTP_SEND_ALIASES; alice: alice lists a mailbox) naming the local parts of SMTP_LOCAL_DOMAINS; others get 550 5.1.1 at RCPT (postmaster always accepted); read at the first local recipient; empty: any"`

	// Abuse handling and message checks (abuse.go, checks.go).
	RejectEarlyTalkers       bool          `split_words:"true" default:"true" desc:"on a socket, answer 554 5.5.0 and close when the client sends before the 220 greeting"`
	GreetPause               time.Duration `split_words:"true" default:"0s" desc:"on a socket, wait this long for an early talker before the greeting (delays every session; 0: look once)"`
	ForbidImproperPipelining bool          `split_words:"true" default:"true" desc:"on a socket, answer 554 5.5.0 and close when the client pipelines where RFC 2920 forbids it"`
	MinDataRate              int64         `split_words:"true" default:"500" desc:"slowest average DATA rate in bytes/s after the first SMTP_DATA_TIMEOUT; slower gets 421 4.4.2 (0: off)"`
	HeaderChecks             string        `split_words:"true" default:"lenient" desc:"message header checks: lenient (reject corrupt headers), strict (RFC 5322 3.6 too) or off; rejects get 550 5.6.0"`
	MaxHeaderSize            int           `split_words:"true" default:"65536" desc:"largest header section in bytes when header checks are on; longer gets 550 5.6.0"`
	AddMissingHeaders        bool          `split_words:"true" default:"false" desc:"add Date: and Message-ID: when missing, for local (pipe) sessions only (RFC 6409 8)"`

	// Velocity limits (internal/velocity), shared by all sessions through
	// $SMTP_SPOOL_DIR/velocity. Off by default.
	RateWindow       time.Duration `split_words:"true" default:"60s" desc:"sliding window of SMTP_RATE_MAX_SESSIONS, whole seconds up to 5m"`
	RateMaxSessions  int           `split_words:"true" default:"0" desc:"new sessions per SMTP_RATE_WINDOW from all untrusted clients; more get 421 4.7.0 (0: off)"`
	RateMaxPerClient int           `split_words:"true" default:"0" desc:"new sessions per minute from one untrusted client (IPv6: per /64), up to 255; more get 421 4.7.0 (0: off)"`

	// TLS (tls.go): the key pair is read at every session, so a renewed
	// certificate serves the next connection.
	TLSCert    string `split_words:"true" desc:"PEM certificate file (the chain may follow); with SMTP_TLS_KEY, STARTTLS is offered (RFC 3207)"`
	TLSKey     string `split_words:"true" desc:"PEM private key file of SMTP_TLS_CERT, readable only by the service user"`
	TLSMode    string `split_words:"true" default:"starttls" desc:"starttls (offer STARTTLS) or implicit (TLS before the greeting, RFC 8314, port 465)"`
	RequireTLS bool   `split_words:"true" default:"false" desc:"refuse MAIL before TLS with 530 5.7.0 (needs SMTP_TLS_CERT and SMTP_TLS_KEY)"`

	// One process for many connections (server.go): only when the
	// launcher hands over listening sockets (systemd Accept=no, inetd
	// wait).
	MaxConnections          int           `split_words:"true" default:"100" desc:"one-process mode: most sessions at once; more get 421 4.3.2 and are closed"`
	MaxConnectionsPerClient int           `split_words:"true" default:"10" desc:"one-process mode: most sessions at once from one untrusted client (IPv6: one /64); more get 421 4.7.0"`
	ShutdownGrace           time.Duration `split_words:"true" default:"30s" desc:"one-process mode: after SIGTERM, how long sessions may go on before 421 4.3.2"`
	IdleExit                time.Duration `split_words:"true" default:"0s" desc:"one-process mode: exit after this long without a session, so socket activation frees the memory (0: never)"`
	GroupCommit             bool          `split_words:"true" default:"true" desc:"one-process mode: messages committed at the same time share the queue directory's fsync (no 250 before the sync that covers it)"`

	// AUTH (auth.go; RFC 4954): one of the two checkers, read at every
	// session.
	AuthPasswordFile   string        `split_words:"true" desc:"file of user:hash lines (bcrypt or argon2id, from --hash-password), mode 0600 or 0640; offers AUTH PLAIN LOGIN over TLS"`
	AuthCheckpassword  string        `split_words:"true" desc:"absolute path of a checkpassword program (qmail interface) and its arguments; offers AUTH PLAIN LOGIN over TLS"`
	AuthTimeout        time.Duration `split_words:"true" default:"10s" desc:"longest run of the SMTP_AUTH_CHECKPASSWORD program; past it 454 4.7.0"`
	AuthFailureDelay   time.Duration `split_words:"true" default:"1s" desc:"wait before each 535 5.7.8 for bad credentials (each also counts toward SMTP_MAX_ERRORS and SMTP_RATE_MAX_PER_CLIENT)"`
	AuthRequired       bool          `split_words:"true" default:"false" desc:"refuse MAIL before AUTH with 530 5.7.0, as a submission service (RFC 6409, port 587 or 465)"`
	AuthAllowPlaintext bool          `split_words:"true" default:"false" desc:"offer AUTH without TLS on a network session (else 538 5.7.11); local pipe sessions always may"`
}

// Velocity returns the session rate limits.
func (c *Config) Velocity() velocity.Limits {
	return velocity.Limits{Window: c.RateWindow, MaxSessions: c.RateMaxSessions, MaxPerClient: c.RateMaxPerClient}
}

// Load reads the configuration from the environment and checks it. It
// returns an error naming the bad variable.
func Load() (*Config, error) {
	// envconfig reads Config's generated mirror, whose field names need
	// no word splitting, over the defaults it parsed when the mirror was
	// generated (settings_gen.go).
	e := configDefaults()
	if err := envnames.Process(&e); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := e.config()
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) check() error {
	bad := func(name, why string) error {
		return fmt.Errorf("config: %s_%s %s", Prefix, name, why)
	}
	if strings.ContainsAny(c.Hostname, " \t\r\n()[]\\\"") {
		return bad("HOSTNAME", "must be a plain host name")
	}
	if c.PostmasterDomain != "" && !protocol.ValidDomain(c.PostmasterDomain) {
		return bad("POSTMASTER_DOMAIN", "must be a domain name (RFC 5321 4.1.2) with an IDNA A-label")
	}
	if c.MaxMessageSize <= 0 {
		return bad("MAX_MESSAGE_SIZE", "must be positive")
	}
	if c.MaxRecipients < 1 || c.MaxRecipients > spool.MaxRecipients {
		// A spool file holds at most spool.MaxRecipients forward-paths.
		return bad("MAX_RECIPIENTS", fmt.Sprintf("must be from 1 to %d (RFC 5321 4.5.3.1.8 asks for at least 100)", spool.MaxRecipients))
	}
	if c.MaxLineLength < 512 {
		return bad("MAX_LINE_LENGTH", "must be at least 512 (RFC 5321 4.5.3.1.4)")
	}
	if c.MaxErrors < 0 || c.MaxReceived < 1 {
		return bad("MAX_ERRORS/MAX_RECEIVED", "out of range")
	}
	if c.CommandTimeout <= 0 || c.DataTimeout <= 0 || c.SessionTimeout <= 0 {
		return bad("*_TIMEOUT", "must be positive")
	}
	if _, err := c.bareMode(); err != nil {
		return err
	}
	if err := c.checkAbuse(); err != nil {
		return err
	}
	if err := c.Velocity().Validate(); err != nil {
		return fmt.Errorf("config: %s_RATE_*: %w", Prefix, err)
	}
	switch c.Log {
	case "auto", "stderr", "syslog", "off":
	default:
		return bad("LOG", "must be auto, stderr, syslog or off")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return bad("LOG_FORMAT", "must be text or json")
	}
	if err := c.checkTLS(); err != nil {
		return err
	}
	if c.MaxConnections < 1 || c.MaxConnectionsPerClient < 1 || c.ShutdownGrace < 0 || c.IdleExit < 0 {
		return bad("MAX_CONNECTIONS/MAX_CONNECTIONS_PER_CLIENT/SHUTDOWN_GRACE/IDLE_EXIT", "out of range (connections at least 1, durations not negative)")
	}
	return c.checkAuth()
}

func (c *Config) bareMode() (protocol.BareLineEndings, error) {
	switch ascii.Lower(c.BareLineEndings) {
	case "reject":
		return protocol.RejectBare, nil
	case "normalize":
		return protocol.NormalizeBare, nil
	}
	return 0, fmt.Errorf("config: %s_BARE_LINE_ENDINGS must be reject or normalize", Prefix)
}

// Protocol returns the session configuration for a session starting at
// now.
func (c *Config) Protocol(now time.Time) protocol.Config {
	mode, _ := c.bareMode()
	return protocol.Config{
		Hostname:        c.Hostname,
		Greeting:        c.Greeting,
		MaxMessageSize:  c.MaxMessageSize,
		MaxRecipients:   c.MaxRecipients,
		MaxLineLength:   c.MaxLineLength,
		MaxErrors:       c.MaxErrors,
		MaxReceived:     c.MaxReceived,
		BareLineEndings: mode,
		CommandTimeout:  c.CommandTimeout,
		DataTimeout:     c.DataTimeout,
		Deadline:        now.Add(c.SessionTimeout),
		MinDataRate:     c.MinDataRate,
		CheckHeader:     c.headerCheck(time.Now),
		MaxHeaderSize:   c.MaxHeaderSize,

		PostmasterDomain: c.PostmasterDomain,

		AllowPlaintextAuth: c.AuthAllowPlaintext,
		RequireAuth:        c.AuthRequired,
		AuthFailureDelay:   c.AuthFailureDelay,
	}
}

// Usage writes smtp-stdio's help to w: how it is run, and the table of
// every setting with its type and default (envnames.Usage, generated from
// Config). name is the program's name as invoked. It returns w's error.
func Usage(w io.Writer, name string) error {
	fmt.Fprintf(w, "Usage: %s (no arguments; started by inetd, xinetd, systemd or tcpserver)\n\n", name)
	fmt.Fprintf(w, "Reads SMTP commands on standard input, writes replies on standard output,\nand spools each accepted message into $SMTP_SPOOL_DIR/queue.\n\n")
	return envnames.Usage(w, &Config{})
}

// unknownSettings returns the SMTP_* variables in environ that smtp-stdio
// does not read, in the order of environ, for a warning: a typo would
// leave a setting at its default without a word. smtp-send's own
// variables (envnames.InSenderSpace) are smtp-send's to check.
func unknownSettings(environ []string) []string {
	return envnames.Unknown(environ, isSetting, envnames.InSenderSpace)
}

// isSetting reports whether name is one of the variables envconfig reads
// into Config. The names come from settingNames, which TestSettingNames
// derives from Config with envnames.Names and keeps in step: walking the
// struct by reflection at every session cost 0.4 ms of CPU, 7% of a
// session.
func isSetting(name string) bool {
	_, ok := slices.BinarySearch(settingNames[:], name)
	return ok
}
