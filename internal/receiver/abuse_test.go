package receiver

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"golang.org/x/sys/unix"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// defaults returns the configuration with every default, as Load reads
// it from an empty environment.
func defaults(t *testing.T) *Config {
	t.Helper()
	var c Config
	if err := envconfig.Process("SMTP_TEST_NOTHING_SET", &c); err != nil {
		t.Fatal(err)
	}
	c.Hostname = "mx.example.net"
	if err := c.check(); err != nil {
		t.Fatalf("defaults do not pass the check: %v", err)
	}
	return &c
}

func TestCheckAbuse(t *testing.T) {
	for _, c := range []struct {
		set  func(*Config)
		want string // in the error; "" for none
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.GreetPause = 6 * time.Second }, ""},
		{func(c *Config) { c.GreetPause = maxGreetPause }, "SMTP_GREET_PAUSE"},
		{func(c *Config) { c.GreetPause = -time.Second }, "SMTP_GREET_PAUSE"},
		{func(c *Config) { c.MinDataRate = 0 }, ""},
		{func(c *Config) { c.MinDataRate = -1 }, "SMTP_MIN_DATA_RATE"},
		{func(c *Config) { c.MaxHeaderSize = 999 }, "SMTP_MAX_HEADER_SIZE"},
		{func(c *Config) { c.HeaderChecks = "STRICT" }, ""},
		{func(c *Config) { c.HeaderChecks = "off" }, ""},
		{func(c *Config) { c.HeaderChecks = "" }, "SMTP_HEADER_CHECKS"},
	} {
		cfg := defaults(t)
		c.set(cfg)
		err := cfg.check()
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", cfg, err, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := defaults(t)
	if !c.RejectEarlyTalkers || c.GreetPause != 0 || !c.ForbidImproperPipelining || c.MinDataRate != 500 ||
		c.HeaderChecks != "lenient" || c.MaxHeaderSize != 64<<10 || c.AddMissingHeaders {
		t.Errorf("defaults: %+v", c)
	}
	pc := c.Protocol(time.Now())
	if pc.MinDataRate != 500 || pc.MaxHeaderSize != 64<<10 || pc.CheckHeader == nil {
		t.Errorf("protocol config: %+v", pc)
	}
	// The pipelining check is the socket's business (socketChecks).
	if pc.ForbidImproperPipelining || pc.InputPending != nil {
		t.Error("pipelining check on before socketChecks")
	}
}

var (
	remote = protocol.Client{}
	local  = protocol.Client{Local: true}
)

func TestHeaderCheck(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 11, 21, 11, 18, 25, 0, time.UTC) }
	const (
		corrupt = "Subject: x\r\nno colon\r\n"
		noDate  = "From: a@example.net\r\n"
	)
	for _, c := range []struct {
		mode   string
		add    bool
		client protocol.Client
		header string
		reply  string // "" when accepted
		added  string // a prefix of what is added
	}{
		{"lenient", false, remote, noDate, "", ""},
		{"lenient", false, remote, corrupt, "550 5.6.0 Header line 2 has no colon (RFC 5322 section 2.2)", ""},
		{"strict", false, remote, noDate, "550 5.6.0 Message has no Date: field (RFC 5322 section 3.6)", ""},
		{"strict", true, local, noDate, "", "Date: Sat, 21 Nov 2026 11:18:25 +0000\r\nMessage-ID: <20261121111825."},
		{"strict", true, remote, noDate, "550 5.6.0 Message has no Date: field (RFC 5322 section 3.6)", ""},
		{"lenient", true, remote, noDate, "", ""},
		{"off", true, local, corrupt, "", "Date: "},
		{"off", true, remote, corrupt, "", ""},
	} {
		cfg := defaults(t)
		cfg.HeaderChecks, cfg.AddMissingHeaders = c.mode, c.add
		check := cfg.headerCheck(now)
		add, r := check(&protocol.Envelope{Client: c.client}, []byte(c.header))
		got := ""
		if r != nil {
			got = r.Error()
		}
		if got != c.reply || !strings.HasPrefix(string(add), c.added) || c.added == "" && add != nil {
			t.Errorf("%s, add %v, %+v, %q: reply %q, added %q", c.mode, c.add, c.client, c.header, got, add)
		}
		if strings.Contains(string(add), "Message-ID") && !strings.HasSuffix(string(add), "@mx.example.net>\r\n") {
			t.Errorf("Message-ID: %q", add)
		}
	}
	cfg := defaults(t)
	cfg.HeaderChecks = "off"
	if cfg.headerCheck(now) != nil {
		t.Error("off without additions: the session should hold nothing back")
	}
}

func TestEarlyTalkerAndSocketChecks(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	srv, cli := fds[0], fds[1]
	log := slog.New(slog.DiscardHandler)
	cfg := defaults(t)
	if earlyTalker(cfg, srv, log) {
		t.Error("silent client taken for an early talker")
	}
	var pc protocol.Config
	socketChecks(cfg, &pc, srv)
	if !pc.ForbidImproperPipelining || pc.InputPending == nil || pc.InputPending() {
		t.Errorf("socket checks: %+v", pc)
	}
	unix.Write(cli, []byte("EHLO x\r\n"))
	if !earlyTalker(cfg, srv, log) || !pc.InputPending() {
		t.Error("early bytes not seen")
	}
	cfg.RejectEarlyTalkers = false
	if earlyTalker(cfg, srv, log) {
		t.Error("SMTP_REJECT_EARLY_TALKERS=false still refuses")
	}
	cfg.ForbidImproperPipelining = false
	pc = protocol.Config{}
	socketChecks(cfg, &pc, srv)
	if pc.ForbidImproperPipelining || pc.InputPending != nil {
		t.Errorf("setting off, socket checks: %+v", pc)
	}
}
