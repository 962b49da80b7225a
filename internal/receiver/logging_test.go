package receiver

import (
	"bytes"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	cases := []struct {
		log, format, level string
		want               string // substring of the output; "" for none
	}{
		{"stderr", "text", "info", `level=INFO msg=hello k=v`},
		{"stderr", "json", "info", `"msg":"hello","k":"v"`},
		{"stderr", "text", "warn", ""},
		{"off", "text", "debug", ""},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		log, dest := newLogger(&Config{Log: c.log, LogFormat: c.format, LogLevel: c.level}, &buf)
		log.Info("hello", "k", "v")
		got := buf.String()
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%+v: dest %s, output %q, want %q", c, dest, got, c.want)
		}
	}
}
