package receiver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/internal/syslog"
)

// newLogger returns the logger chosen by c.Log. "auto" logs to syslog when
// standard error is the client's socket (inetd, xinetd: a log line there
// would reach the client) and to standard error otherwise (tcpserver with
// multilog, systemd with the journal, a terminal). The returned string
// names the destination, for the first log line.
func newLogger(c *Config, stderr io.Writer) (*slog.Logger, string) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	dest := c.Log
	if dest == "auto" {
		dest = "stderr"
		if stderrIsClient() {
			dest = "syslog"
		}
	}
	mk := func(w io.Writer) slog.Handler {
		if c.LogFormat == "json" {
			return slog.NewJSONHandler(w, opts)
		}
		return slog.NewTextHandler(w, opts)
	}
	switch dest {
	case "stderr":
		return slog.New(mk(stderr)), dest
	case "syslog":
		var paths []string // syslog.DefaultPaths
		if c.SyslogSocket != "" {
			paths = []string{c.SyslogSocket}
		}
		sw, err := syslog.Dial(syslog.FacilityMail, "smtp-stdio", paths...)
		if err != nil {
			// No syslog daemon: nowhere safe to log to. Standard error
			// may be the client's socket, so stay silent.
			return slog.New(slog.DiscardHandler), "off (syslog unavailable)"
		}
		return slog.New(&syslogHandler{w: sw, mk: mk, level: level}), dest
	}
	return slog.New(slog.DiscardHandler), "off"
}

// syslogHandler formats each record with a text or JSON handler and sends
// it as one syslog message at the record's severity.
type syslogHandler struct {
	w     *syslog.Writer
	level slog.Level
	mk    func(io.Writer) slog.Handler
	// inner handlers share one buffer per record; attrs and groups are
	// kept by re-deriving the handler chain.
	with []func(slog.Handler) slog.Handler
}

// Enabled implements slog.Handler.
func (h *syslogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *syslogHandler) build(w io.Writer) slog.Handler {
	inner := h.mk(w)
	for _, f := range h.with {
		inner = f(inner)
	}
	return inner
}

// Handle implements slog.Handler: one record, one syslog message.
func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	var buf bytes.Buffer
	if err := h.build(&buf).Handle(ctx, r); err != nil {
		return err
	}
	msg := strings.TrimSuffix(buf.String(), "\n")
	sev := syslog.Debug
	switch {
	case r.Level >= slog.LevelError:
		sev = syslog.Err
	case r.Level >= slog.LevelWarn:
		sev = syslog.Warning
	case r.Level >= slog.LevelInfo:
		sev = syslog.Info
	}
	return h.w.Log(sev, msg)
}

// WithAttrs implements slog.Handler.
func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.derive(func(in slog.Handler) slog.Handler { return in.WithAttrs(as) })
}

// WithGroup implements slog.Handler.
func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return h.derive(func(in slog.Handler) slog.Handler { return in.WithGroup(name) })
}

func (h *syslogHandler) derive(f func(slog.Handler) slog.Handler) slog.Handler {
	with := append(append([]func(slog.Handler) slog.Handler{}, h.with...), f)
	return &syslogHandler{w: h.w, mk: h.mk, level: h.level, with: with}
}
