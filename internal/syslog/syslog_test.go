package syslog

import (
	"net"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

func TestLogToDatagramSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w, err := Dial(FacilityMail, "smtp-stdio", filepath.Join(t.TempDir(), "missing"), p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Log(Warning, "hello world"); err != nil {
		t.Fatal(err)
	}
	l.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	n, err := l.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	// Facility mail (2) * 8 + warning (4) = 20.
	re := regexp.MustCompile(`^<20>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d smtp-stdio\[\d+\]: hello world$`)
	if !re.Match(buf[:n]) {
		t.Errorf("got %q", buf[:n])
	}
}

func TestDialFails(t *testing.T) {
	if _, err := Dial(FacilityMail, "x", filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Dial succeeded with no socket")
	}
}
