// Command smtp-send delivers the spool that smtp-stdio fills to a
// smarthost, then exits. Run it from cron or a systemd timer, or right
// after a session. It is configured by the environment (smtp-send --help
// lists every variable and its default) and logs to stderr.
//
// Usage:
//
//	smtp-send            deliver the due messages
//	smtp-send --all      deliver every queued message, ignoring retry times
//	smtp-send --list     print the queue (--json: one JSON object per line;
//	                     --all: include failed/ and corrupt/)
//
// Exit status: 0 for a completed run, deferrals included, and when another
// run holds the spool; otherwise a sysexits(3) code: 78 (EX_CONFIG) among
// others for a spool directory that other users could change.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/send"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Exit codes from sysexits(3).
const (
	exOK     = 0
	exUsage  = 64 // EX_USAGE: bad flags or arguments
	exIOErr  = 74 // EX_IOERR: the spool could not be read or written
	exConfig = 78 // EX_CONFIG: bad or missing setting, no or unsafe spool directory
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtp-send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	list := fs.Bool("list", false, "print the queue instead of delivering")
	asJSON := fs.Bool("json", false, "with --list: one JSON object per message per line")
	all := fs.Bool("all", false, "deliver every queued message now, ignoring retry times; with --list: include failed/ and corrupt/")
	fs.Usage = func() { usage(stderr, fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exOK
		}
		return exUsage
	}
	if fs.NArg() > 0 || *asJSON && !*list {
		fmt.Fprintln(stderr, "smtp-send: unexpected arguments; see --help")
		return exUsage
	}

	var set settings
	unknown, err := loadSettings(&set)
	if err != nil {
		// The message may quote a value from the environment.
		fmt.Fprintf(stderr, "smtp-send: configuration: %s\n", textsafe.Escape(err.Error()))
		return exConfig
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: set.SendLogLevel}))
	for _, k := range unknown {
		log.Warn("unknown setting ignored", "name", k)
	}
	// The spool's safety is checked before anything in it is read: the
	// root and every subdirectory this program uses (spool.ErrUnsafe).
	sp, err := spool.New(set.SpoolDir)
	if err == nil {
		err = sp.InitQueue()
	}
	if err != nil {
		log.Error("cannot open the spool", "dir", set.SpoolDir, "err", err)
		return exConfig
	}
	if *list {
		entries, err := send.List(sp, time.Now(), *all)
		if err == nil {
			err = send.WriteList(stdout, entries, time.Now(), *asJSON)
		}
		if err != nil {
			log.Error("listing the queue", "err", err)
			return exIOErr
		}
		return exOK
	}
	cfg, err := set.config()
	if err != nil {
		log.Error("configuration", "err", err)
		return exConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s := &send.Sender{Spool: sp, Config: cfg, Log: log}
	st, err := s.Run(ctx, *all)
	switch {
	case errors.Is(err, send.ErrBusy):
		log.Info("another smtp-send run holds the spool; nothing to do", "dir", set.SpoolDir)
		return exOK
	case errors.Is(err, spool.ErrUnsafe):
		log.Error("cannot open the spool", "dir", set.SpoolDir, "err", err)
		return exConfig
	case err != nil:
		log.Error("run failed", "err", err)
		return exIOErr
	}
	log.Info("run finished", "queued", st.Queued, "due", st.Due, "started", st.Started, "left", st.Left,
		"delivered", st.Delivered, "deferred", st.Deferred, "failed", st.Failed, "dsns", st.DSNs,
		"corrupt", st.Corrupt, "unreadable", st.Unreadable, "locked", st.Locked,
		"scan_ms", st.ScanTime.Milliseconds(), "first_delivery_ms", st.FirstDelivery.Milliseconds())
	return exOK
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: smtp-send [--all] [--list [--json]]\n\n")
	fs.PrintDefaults()
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 1, 0, 2, ' ', 0)
	if err := envconfig.Usagef(envPrefix, &settings{}, tw, envconfig.DefaultTableFormat); err == nil {
		tw.Flush()
	}
	fmt.Fprintln(w, "\nExit status: 0 for a completed run (deferrals included) or when another run holds the spool;")
	fmt.Fprintln(w, "64 bad usage, 74 spool I/O error, 78 configuration error, no spool directory or an unsafe one.")
}

// loadSettings reads the environment, rejecting unknown SMTP_SEND_* and
// SMTP_SMARTHOST_* variables (typos). It returns the other SMTP_*
// variables that neither smtp-send nor smtp-stdio reads, which share the
// environment file, for a warning.
func loadSettings(s *settings) (unknown []string, err error) {
	if err := envnames.Process(s); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := envconfig.Usagef(envPrefix, s, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, k := range strings.Fields(b.String()) {
		known[k] = true
	}
	isKnown := func(k string) bool { return known[k] }
	for _, k := range envnames.Unknown(os.Environ(), isKnown) {
		if envnames.InSenderSpace(k) {
			return nil, fmt.Errorf("unknown variable %s", k)
		}
		if !envnames.IsReceiver(k) {
			unknown = append(unknown, k)
		}
	}
	return unknown, nil
}

// config turns the settings into a send.Config, reading the password and
// CA files.
func (s *settings) config() (send.Config, error) {
	var c send.Config
	if s.Smarthost == "" {
		return c, errors.New("SMTP_SMARTHOST is not set")
	}
	hosts, err := send.ParseSmarthosts(s.Smarthost, s.SmarthostTLS)
	if err != nil {
		return c, err
	}
	pass := s.SmarthostPassword
	if s.SmarthostPasswordFile != "" {
		if pass != "" {
			return c, errors.New("set SMTP_SMARTHOST_PASSWORD or SMTP_SMARTHOST_PASSWORD_FILE, not both")
		}
		b, err := os.ReadFile(s.SmarthostPasswordFile)
		if err != nil {
			return c, err
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	if pass != "" && s.SmarthostUsername == "" {
		return c, errors.New("a smarthost password without SMTP_SMARTHOST_USERNAME")
	}
	tc := &tls.Config{ServerName: s.SmarthostServerName, MinVersion: tls.VersionTLS12}
	if s.SmarthostCAFile != "" {
		pem, err := os.ReadFile(s.SmarthostCAFile)
		if err != nil {
			return c, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return c, fmt.Errorf("no certificate in %s", s.SmarthostCAFile)
		}
	}
	host := s.Hostname
	if host == "" {
		if host, err = os.Hostname(); err != nil {
			return c, err
		}
	}
	if s.SendConnections < 1 || s.SendMaxRecipients < 1 || s.SendMinAttempts < 1 {
		return c, errors.New("SMTP_SEND_CONNECTIONS, SMTP_SEND_MAX_RECIPIENTS and SMTP_SEND_MIN_ATTEMPTS must be at least 1")
	}
	for _, d := range []time.Duration{s.SendQueueLifetime, s.SendBackoffMin, s.SendBackoffMax, s.SendRunTime, s.SendConnectTimeout,
		s.SendCommandTimeout, s.SendDataTimeout, s.SendBlockTimeout, s.SendTmpMaxAge} {
		if d <= 0 {
			return c, errors.New("every SMTP_SEND_* duration must be positive")
		}
	}
	return send.Config{
		Smarthosts: hosts, TLS: s.SmarthostTLS, TLSConfig: tc,
		Username: s.SmarthostUsername, Password: pass, AuthWithoutTLS: s.SmarthostAuthWithoutTLS,
		Hostname: host, QueueLifetime: s.SendQueueLifetime, MinAttempts: s.SendMinAttempts,
		BackoffMin: s.SendBackoffMin, BackoffMax: s.SendBackoffMax, RunTime: s.SendRunTime,
		Connections: s.SendConnections, NoReuse: !s.SendReuse, MaxRecipients: s.SendMaxRecipients,
		ConnectTimeout: s.SendConnectTimeout, CommandTimeout: s.SendCommandTimeout,
		DataTimeout: s.SendDataTimeout, BlockTimeout: s.SendBlockTimeout, TmpMaxAge: s.SendTmpMaxAge,
	}, nil
}
