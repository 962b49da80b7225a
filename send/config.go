// Package send delivers the spool: one run takes the due messages, hands
// each pending recipient to a Transport (by default the smarthost of
// Config, over SMTP (RFC 5321) with github.com/emersion/go-smtp), records
// every outcome durably through package queue, has delivery status
// notifications (RFC 3464, WriteNotice) spooled for permanent failures,
// and returns. Retries, expiry and notifications are the same for every
// Transport. It knows nothing of the receiving session or of the
// environment: internal/sender reads the configuration and passes a
// Config.
package send

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/alias"
	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// TLSMode is how the connection to a smarthost is protected. The zero value
// is STARTTLS, so a Config left empty never sends in clear text.
type TLSMode int

const (
	// TLSStartTLS requires STARTTLS (RFC 3207) after the greeting; a
	// server that does not offer it is a failure, never a silent
	// fallback to clear text. Default port 587.
	TLSStartTLS TLSMode = iota
	// TLSImplicit opens TLS before the greeting (RFC 8314 section 3.3).
	// Default port 465.
	TLSImplicit
	// TLSNone sends in clear text. Default port 25.
	TLSNone
)

var tlsModeNames = [...]string{TLSStartTLS: "starttls", TLSImplicit: "tls", TLSNone: "none"}

// String returns "starttls", "tls" or "none", the spelling of
// SMTP_SMARTHOST_TLS.
func (m TLSMode) String() string {
	if m < 0 || int(m) >= len(tlsModeNames) {
		return fmt.Sprintf("TLSMode(%d)", int(m))
	}
	return tlsModeNames[m]
}

// UnmarshalText parses "none", "starttls" or "tls" (case-insensitive); it
// lets envconfig read SMTP_SMARTHOST_TLS.
func (m *TLSMode) UnmarshalText(b []byte) error {
	for i, n := range tlsModeNames {
		if ascii.EqualFold(b, n) {
			*m = TLSMode(i)
			return nil
		}
	}
	return fmt.Errorf("unknown TLS mode %q (want none, starttls or tls)", b)
}

func (m TLSMode) defaultPort() string {
	switch m {
	case TLSImplicit:
		return "465"
	case TLSNone:
		return "25"
	}
	return "587"
}

// Host is one smarthost.
type Host struct {
	// Addr is "host:port" for net.Dial.
	Addr string
	// Name is the host part: the TLS server name unless Config.TLSConfig
	// sets one, and the Remote-MTA of delivery status notifications.
	Name string
}

// ParseSmarthosts parses SMTP_SMARTHOST: a comma-separated list of host or
// host:port ("[::1]:25" for an IPv6 address), tried in order. A host
// without a port gets the default port of mode. It returns an error for an
// empty list or an empty element.
func ParseSmarthosts(list string, mode TLSMode) ([]Host, error) {
	var hosts []Host
	for _, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("smarthost list %q has an empty element", list)
		}
		name, port, err := net.SplitHostPort(h)
		if err != nil {
			name, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), mode.defaultPort()
		}
		if name == "" || port == "" {
			return nil, fmt.Errorf("bad smarthost %q", h)
		}
		hosts = append(hosts, Host{Addr: net.JoinHostPort(name, port), Name: name})
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no smarthost")
	}
	return hosts, nil
}

// Config is what a run needs to know. Zero durations and counts take the
// defaults named on each field (see docs/send.md for the environment
// variables that set them).
type Config struct {
	// Smarthosts are tried in order; one that fails to connect, times
	// out, or fails TLS or AUTH is not tried again in the run (RFC 5321
	// section 4.5.4.1).
	Smarthosts []Host
	// TLS is the protection of every connection.
	TLS TLSMode
	// TLSConfig holds the roots (nil: the system's) and an optional
	// ServerName overriding Host.Name. Certificates are always verified.
	TLSConfig *tls.Config
	// Username and Password enable AUTH PLAIN or LOGIN (RFC 4954), only
	// over TLS unless AuthWithoutTLS.
	Username, Password string
	AuthWithoutTLS     bool
	// Hostname is our name in EHLO and the Reporting-MTA of notifications.
	Hostname string
	// QueueLifetime is the age at which a recipient still deferred by the
	// smarthost's replies fails, provided MinAttempts were made. Default
	// 5 days.
	QueueLifetime time.Duration
	// MinAttempts is the least number of attempts before expiry, so that a
	// clock jumping forward cannot expire mail early. Default 10.
	MinAttempts int
	// DelayWarning is the age of a message (since its arrival) at which
	// each recipient still deferred gets one delay notice (RFC 3461
	// section 4.1, RFC 3464 Action: delayed): when its NOTIFY names
	// DELAY, or when it has no NOTIFY (section 4.1 leaves that to the
	// MTA; Postfix's delay_warning_time and sendmail's Timeout.queuewarn
	// do the same). Zero, the default here, means no delay notices at
	// all, NOTIFY=DELAY included, as a zero delay_warning_time does in
	// Postfix: the setting is the only measure of "delayed" the MTA has.
	// smtp-send's SMTP_SEND_DELAY_WARNING defaults to 4 hours.
	DelayWarning time.Duration
	// NoticeReturnMax is the largest message, in octets, that a failure
	// notice returns whole when its sender asked for RET=FULL (RFC 3461
	// section 4.3); a larger one gets its header section only, as
	// Postfix's bounce_size_limit does. Zero, the default here, returns
	// the header section always. smtp-send's
	// SMTP_SEND_NOTICE_RETURN_MAX defaults to 1 MiB.
	NoticeReturnMax int64
	// BackoffMin and BackoffMax bound the delay after a deferral: it
	// doubles from BackoffMin at each attempt up to BackoffMax. A message
	// whose next attempt is more than BackoffMax away (the clock went
	// back) is due at once. Defaults 5 minutes and 1 hour.
	BackoffMin, BackoffMax time.Duration
	// RunTime is the budget of a run: no message is started after it.
	// Default 4 minutes.
	RunTime time.Duration
	// Connections is the number of parallel connections (workers).
	// Default 8.
	Connections int
	// DestinationConcurrency is the most workers delivering to one MX
	// destination at a time (see sched); 0 is a fifth of Connections,
	// rounded up, at least 2: Postfix's default_destination_concurrency_limit
	// (20) is a fifth of its default_process_limit (100).
	DestinationConcurrency int
	// NoReuse sends one message per connection.
	NoReuse bool
	// MaxRecipients is the most RCPT per transaction; more go to further
	// transactions. Default 100, the least a server must accept (RFC 5321
	// section 4.5.3.1.8).
	MaxRecipients int
	// ConnectTimeout bounds the TCP connection. Default 30 seconds.
	ConnectTimeout time.Duration
	// CommandTimeout bounds the greeting and each command's reply (RFC
	// 5321 section 4.5.3.2: 5 minutes).
	CommandTimeout time.Duration
	// DataTimeout bounds the reply to the final dot (RFC 5321 section
	// 4.5.3.2.6: 10 minutes).
	DataTimeout time.Duration
	// BlockTimeout bounds each write of the message data (RFC 5321 section
	// 4.5.3.2.5: 3 minutes).
	BlockTimeout time.Duration
	// TmpMaxAge is the age past which a file in tmp/ was left by a killed
	// process and is removed. Default 24 hours.
	TmpMaxAge time.Duration

	// Routes is the route table (SMTP_SEND_ROUTES), nil for none. Without
	// it, Smarthosts take every recipient; with neither, every recipient
	// goes to its domain's MX hosts (RFC 5321 section 5.1). With both,
	// the table decides and the smarthosts take what no line matches.
	Routes *route.Table
	// Aliases is the alias file (SMTP_SEND_ALIASES), nil for none. It
	// applies, before routing, to the recipients that Routes sends to a
	// local transport (alias.go).
	Aliases *alias.Table
	// Users are the users= files of Routes' local routes, by path (see
	// LoadUsers; Run loads any missing).
	Users map[string]*alias.Table
	// DNS is the "host:port" of the DNS server that MX delivery asks
	// (SMTP_SEND_DNS), "" for those of /etc/resolv.conf.
	DNS string
	// MXPort is the TCP port MX hosts are dialled on, and bracketed route
	// hosts without a port. Default 25, the SMTP port; a test lab on
	// loopback sets another.
	MXPort int
	// MXLoopback lets MX hosts of a recipient domain be on loopback
	// addresses (SMTP_SEND_MX_LOOPBACK), for a test lab; otherwise they
	// are not used (dropLoopback).
	MXLoopback bool
	// DownFile is the file where MX addresses that timed out are
	// remembered across runs (downMemory); "" is the spool's mx-down.
	DownFile string
	// MTASTSCache is the directory where MTA-STS policies are kept
	// between runs; "" is the spool's mta-sts/ for a run, and no cache
	// for Explain.
	MTASTSCache string
}

// direct reports whether the run delivers by itself (routes, MX hosts)
// rather than only to the smarthosts, exactly as before routes existed.
func (c *Config) direct() bool { return c.Routes != nil || len(c.Smarthosts) == 0 }

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.QueueLifetime, 5*24*time.Hour)
	def(&c.BackoffMin, 5*time.Minute)
	def(&c.BackoffMax, time.Hour)
	def(&c.RunTime, 4*time.Minute)
	def(&c.ConnectTimeout, 30*time.Second)
	def(&c.CommandTimeout, 5*time.Minute)
	def(&c.DataTimeout, 10*time.Minute)
	def(&c.BlockTimeout, 3*time.Minute)
	def(&c.TmpMaxAge, 24*time.Hour)
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.MinAttempts <= 0 {
		c.MinAttempts = 10
	}
	if c.Connections <= 0 {
		c.Connections = 8
	}
	if c.DestinationConcurrency <= 0 {
		c.DestinationConcurrency = max(2, (c.Connections+4)/5)
	}
	if c.MXPort <= 0 {
		c.MXPort = 25
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = 100
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	return c
}

// backoff returns the delay after the given number of attempts (at least
// 1): BackoffMin doubled attempts-1 times, at most BackoffMax.
func (c *Config) backoff(attempts int) time.Duration {
	d := c.BackoffMin
	for i := 1; i < attempts && d < c.BackoffMax; i++ {
		d *= 2
	}
	return min(d, c.BackoffMax)
}
