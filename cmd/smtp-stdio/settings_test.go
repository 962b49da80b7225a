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
	sd := newSpool(t)
	out, stderr := pipeSession(t, sd, "QUIT\r\n",
		"SMTP_LOCAL_DOMAIN=example.net", "SMTP_SMARTHOST=relay.example:587", "SMTP_SEND_RUN_TIME=1m")
	if strings.Join(codes(out), " ") != "220 221" {
		t.Errorf("replies %q", out)
	}
	if n := strings.Count(stderr, `msg="unknown setting ignored"`); n != 1 || !strings.Contains(stderr, "name=SMTP_LOCAL_DOMAIN") {
		t.Errorf("log:\n%s", stderr)
	}
	_, stderr = pipeSession(t, sd, "QUIT\r\n", "SMTP_SMARTHOST=relay.example:587")
	if strings.Contains(stderr, "unknown setting") {
		t.Errorf("log:\n%s", stderr)
	}
}
