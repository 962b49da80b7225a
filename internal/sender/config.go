// Package sender wires one smtp-send run together: it reads the
// configuration from the environment, opens the spool, and either lists
// the queue or runs send.Sender over it, turning the outcome into an exit
// status. It is to smtp-send what internal/receiver is to smtp-stdio;
// cmd/smtp-send only calls Run.
package sender

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/alias"
	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/receiver"
	"github.com/smtp-stdio/smtp-stdio/route"
	"github.com/smtp-stdio/smtp-stdio/send"
)

// Config is smtp-send's configuration, read once from the environment by
// envnames.Process (Load). Each field is one setting: its variable is
// SMTP_ and the field's name (envnames.Names), its desc tag the line of
// --help, and README.md's table "Settings of smtp-send" has one row for
// it (TestREADMETables). SMTP_SPOOL_DIR and SMTP_HOSTNAME are shared with
// smtp-stdio; every other variable is in smtp-send's own space,
// SMTP_SMARTHOST* and SMTP_SEND_* (envnames.InSenderSpace). Durations are
// in Go syntax ("5m", "120h").
type Config struct {
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

	SendQueueLifetime          time.Duration `split_words:"true" default:"120h" desc:"age after which a recipient the smarthost keeps deferring fails"`
	SendMinAttempts            int           `split_words:"true" default:"10" desc:"attempts required, besides the age, before expiry"`
	SendDelayWarning           time.Duration `split_words:"true" default:"4h" desc:"age at which each recipient still deferred gets one delay notice (NOTIFY=DELAY or no NOTIFY); 0: no delay notices"`
	SendNoticeReturnMax        int64         `split_words:"true" default:"1048576" desc:"largest message, in bytes, a failure notice returns whole for RET=FULL; a larger one gets its headers only; 0: headers always"`
	SendBackoffMin             time.Duration `split_words:"true" default:"5m" desc:"delay after the first deferral; doubles at each attempt"`
	SendBackoffMax             time.Duration `split_words:"true" default:"1h" desc:"longest delay between attempts"`
	SendRunTime                time.Duration `split_words:"true" default:"4m" desc:"budget of a run: no message is started after it"`
	SendConnections            int           `split_words:"true" default:"8" desc:"parallel connections to the smarthost"`
	SendReuse                  bool          `split_words:"true" default:"true" desc:"send many messages per connection (RSET between them)"`
	SendDestinationConcurrency int           `split_words:"true" default:"0" desc:"most connections to one MX destination at a time; 0: a fifth of SMTP_SEND_CONNECTIONS, at least 2"`
	SendMaxRecipients          int           `split_words:"true" default:"100" desc:"most RCPT per transaction"`
	SendConnectTimeout         time.Duration `split_words:"true" default:"30s" desc:"TCP connection timeout"`
	SendCommandTimeout         time.Duration `split_words:"true" default:"5m" desc:"greeting and command reply timeout (RFC 5321 4.5.3.2)"`
	SendDataTimeout            time.Duration `split_words:"true" default:"10m" desc:"timeout of the reply to the final dot (RFC 5321 4.5.3.2.6)"`
	SendBlockTimeout           time.Duration `split_words:"true" default:"3m" desc:"timeout of each write of message data (RFC 5321 4.5.3.2.5)"`
	SendTmpMaxAge              time.Duration `split_words:"true" default:"24h" desc:"age past which files in tmp/ are removed at the start of a run"`
	SendLogLevel               slog.Level    `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	SendDropMaxSize            int64         `split_words:"true" default:"26214400" desc:"largest file taken from drop/ (sendmail's drop helper), in bytes; a larger one is set aside"`

	SendRoutes     string `split_words:"true" desc:"route table file (pattern transport:nexthop [options] per line); default: the smarthost, else every recipient's MX hosts"`
	SendAliases    string `split_words:"true" desc:"aliases(5) file (name: address, address) applied, before routing, to the recipients routed to a local transport; empty: none"`
	SendDNS        string `split_words:"true" desc:"host:port of the DNS server for MX and address lookups (default: those of /etc/resolv.conf)"`
	SendMXPort     int    `split_words:"true" default:"25" desc:"TCP port MX hosts are dialled on"`
	SendMXLoopback bool   `split_words:"true" default:"false" desc:"use MX hosts on loopback addresses (a test lab only)"`

	SendMetricsFile string `split_words:"true" desc:"file for node_exporter's textfile collector (name ending in .prom), rewritten atomically at the end of each run; empty: none"`
}

// Load reads the configuration from the environment. It returns
// envconfig's error, which names the variable at fault, or an error
// naming an SMTP_SMARTHOST* or SMTP_SEND_* variable that smtp-send does
// not read: in smtp-send's own space an unknown name is a typo that would
// leave a setting at its default, and smtp-stdio leaves those names to
// smtp-send. Load checks no value beyond its type: --list needs only the
// spool, and SendConfig checks the rest.
func Load() (*Config, error) {
	var c Config
	if err := envnames.Process(&c); err != nil {
		return nil, err
	}
	own, err := envnames.Known(&c)
	if err != nil {
		return nil, err
	}
	for _, k := range envnames.Unknown(os.Environ(), own.Has) {
		if envnames.InSenderSpace(k) {
			return nil, fmt.Errorf("unknown variable %s", k)
		}
	}
	return &c, nil
}

// unknownSettings returns the SMTP_* variables in environ that neither
// smtp-send nor smtp-stdio reads, in the order of environ, for a warning:
// both programs often share one environment file, so smtp-stdio's
// variables are known here too (by walking receiver.Config; none of the
// receiver's code runs). It returns an error only for a Config that
// envconfig cannot walk.
func unknownSettings(environ []string) ([]string, error) {
	known, err := envnames.Known(&Config{}, &receiver.Config{})
	if err != nil {
		return nil, err
	}
	return envnames.Unknown(environ, known.Has), nil
}

// SendConfig checks the settings and turns them into a send.Config,
// reading the password file and the CA file. It returns an error naming
// the setting at fault, or the file's error.
func (c *Config) SendConfig() (send.Config, error) {
	var sc send.Config
	var hosts []send.Host
	var err error
	if c.Smarthost != "" {
		if hosts, err = send.ParseSmarthosts(c.Smarthost, c.SmarthostTLS); err != nil {
			return sc, err
		}
	}
	var routes *route.Table
	if c.SendRoutes != "" {
		if routes, err = route.Load(c.SendRoutes); err != nil {
			return sc, fmt.Errorf("SMTP_SEND_ROUTES: %w", err)
		}
	}
	var aliases *alias.Table
	if c.SendAliases != "" {
		if aliases, err = alias.Load(c.SendAliases); err != nil {
			return sc, fmt.Errorf("SMTP_SEND_ALIASES: %w", err)
		}
	}
	users := send.Config{Routes: routes}
	if err := users.LoadUsers(); err != nil {
		return sc, fmt.Errorf("SMTP_SEND_ROUTES: %w", err)
	}
	if c.SendDNS != "" {
		if _, port, err := net.SplitHostPort(c.SendDNS); err != nil || port == "" {
			return sc, fmt.Errorf("SMTP_SEND_DNS: %q is not host:port", c.SendDNS)
		}
	}
	if c.SendMXPort < 1 || c.SendMXPort > 65535 {
		return sc, errors.New("SMTP_SEND_MX_PORT must be a TCP port, 1 to 65535")
	}
	pass := c.SmarthostPassword
	if c.SmarthostPasswordFile != "" {
		if pass != "" {
			return sc, errors.New("set SMTP_SMARTHOST_PASSWORD or SMTP_SMARTHOST_PASSWORD_FILE, not both")
		}
		b, err := os.ReadFile(c.SmarthostPasswordFile)
		if err != nil {
			return sc, err
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	if pass != "" && c.SmarthostUsername == "" {
		return sc, errors.New("a smarthost password without SMTP_SMARTHOST_USERNAME")
	}
	tc := &tls.Config{ServerName: c.SmarthostServerName, MinVersion: tls.VersionTLS12}
	if c.SmarthostCAFile != "" {
		pem, err := os.ReadFile(c.SmarthostCAFile)
		if err != nil {
			return sc, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return sc, fmt.Errorf("no certificate in %s", c.SmarthostCAFile)
		}
	}
	host := c.Hostname
	if host == "" {
		if host, err = os.Hostname(); err != nil {
			return sc, err
		}
	}
	if c.SendDropMaxSize < 1 {
		return sc, errors.New("SMTP_SEND_DROP_MAX_SIZE must be at least 1")
	}
	if c.SendNoticeReturnMax < 0 {
		return sc, errors.New("SMTP_SEND_NOTICE_RETURN_MAX must not be negative (0 returns headers only)")
	}
	if c.SendDelayWarning < 0 {
		return sc, errors.New("SMTP_SEND_DELAY_WARNING must not be negative (0 turns delay notices off)")
	}
	if c.SendDestinationConcurrency < 0 {
		return sc, errors.New("SMTP_SEND_DESTINATION_CONCURRENCY must not be negative")
	}
	if c.SendConnections < 1 || c.SendMaxRecipients < 1 || c.SendMinAttempts < 1 {
		return sc, errors.New("SMTP_SEND_CONNECTIONS, SMTP_SEND_MAX_RECIPIENTS and SMTP_SEND_MIN_ATTEMPTS must be at least 1")
	}
	for _, d := range []time.Duration{c.SendQueueLifetime, c.SendBackoffMin, c.SendBackoffMax, c.SendRunTime, c.SendConnectTimeout,
		c.SendCommandTimeout, c.SendDataTimeout, c.SendBlockTimeout, c.SendTmpMaxAge} {
		if d <= 0 {
			return sc, errors.New("every SMTP_SEND_* duration must be positive")
		}
	}
	return send.Config{
		Smarthosts: hosts, TLS: c.SmarthostTLS, TLSConfig: tc,
		Username: c.SmarthostUsername, Password: pass, AuthWithoutTLS: c.SmarthostAuthWithoutTLS,
		Hostname: host, QueueLifetime: c.SendQueueLifetime, MinAttempts: c.SendMinAttempts, DelayWarning: c.SendDelayWarning,
		NoticeReturnMax: c.SendNoticeReturnMax,
		BackoffMin:      c.SendBackoffMin, BackoffMax: c.SendBackoffMax, RunTime: c.SendRunTime,
		Connections: c.SendConnections, NoReuse: !c.SendReuse, MaxRecipients: c.SendMaxRecipients,
		DestinationConcurrency: c.SendDestinationConcurrency,
		ConnectTimeout:         c.SendConnectTimeout, CommandTimeout: c.SendCommandTimeout,
		DataTimeout: c.SendDataTimeout, BlockTimeout: c.SendBlockTimeout, TmpMaxAge: c.SendTmpMaxAge,
		Routes: routes, Aliases: aliases, Users: users.Users, DNS: c.SendDNS, MXPort: c.SendMXPort, MXLoopback: c.SendMXLoopback,
		MTASTSCache: filepath.Join(c.SpoolDir, "mta-sts"),
	}, nil
}
