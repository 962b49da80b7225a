package main

import (
	"strings"
	"testing"
)

// TestUnknownSettingLogged: a misspelt SMTP_* variable is named in a
// warning, since envconfig alone would ignore it without a word; the
// session still runs. smtp-send's variables in the same environment are
// not reported.
func TestUnknownSettingLogged(t *testing.T) {
	quit := script(t, `C: QUIT
S: 220 mx.test.example ESMTP ready
S: 221 2.0.0 mx.test.example closing connection
= exit 0
`)
	r := stdio.Run(t, quit, "SMTP_LOCAL_DOMAIN=example.net", "SMTP_SMARTHOST=relay.example:587", "SMTP_SEND_RUN_TIME=1m")
	if n := strings.Count(r.Stderr, `msg="unknown setting ignored"`); n != 1 || !strings.Contains(r.Stderr, "name=SMTP_LOCAL_DOMAIN") {
		t.Errorf("log:\n%s", r.Stderr)
	}
	r = stdio.Run(t, quit, "SMTP_SMARTHOST=relay.example:587")
	if strings.Contains(r.Stderr, "unknown setting") {
		t.Errorf("log:\n%s", r.Stderr)
	}
}
