package spool

import (
	"os"
	"strings"
	"testing"
)

// TestReadVersion1 reads a version 1 file as smtp-stdio wrote them
// before DSN: it must keep opening, as a message without DSN
// parameters.
func TestReadVersion1(t *testing.T) {
	dir := t.TempDir()
	raw, err := os.ReadFile("testdata/version1.msg")
	if err != nil {
		t.Fatal(err)
	}
	p := dir + "/m"
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Version != Version1 || m.Ret != "" || m.EnvID != "" || m.DSN != nil || len(m.To) != 2 || m.RcptDSN(1) != (RcptDSN{}) {
		t.Errorf("version 1 file read as %+v", m.Envelope)
	}
}

// TestDSNFields: a message with DSN parameters is written as version 2,
// ret and envid once, notify and orcpt after the rcpt-to line of their
// recipient, and read back; one without any stays version 1, byte for
// byte what an old reader reads.
func TestDSNFields(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(env *Envelope) (string, *Message) {
		t.Helper()
		w, err := s.Create(env)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("x\r\n"))
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		p := s.Path(QueueDir, env.QueueID)
		raw, _ := os.ReadFile(p)
		m, err := Open(p)
		if err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		t.Cleanup(func() { m.Close() })
		return string(raw), m
	}

	env := testEnvelope(t)
	env.To = append(env.To, "d@example.com")
	env.Ret, env.EnvID = "HDRS", "QQ 314159+x"
	env.DSN = []RcptDSN{{Notify: "SUCCESS,DELAY", ORcpt: "rfc822;B@example.net"}, {}, {Notify: "NEVER"}}
	raw, m := write(env)
	if !strings.HasPrefix(raw, "smtp-spool 2\n") {
		t.Errorf("not version 2:\n%s", raw)
	}
	want := "ret: HDRS\nenvid: QQ 314159+x\nmail-from: <a@example.org>\n" +
		"rcpt-to: <b@example.net>\nnotify: SUCCESS,DELAY\norcpt: rfc822;B@example.net\n" +
		"rcpt-to: <c@example.com>\nrcpt-to: <d@example.com>\nnotify: NEVER\nmessage-size: "
	if !strings.Contains(raw, want) {
		t.Errorf("file:\n%s\nwant it to hold\n%s", raw, want)
	}
	if m.Version != VersionDSN || m.Ret != "HDRS" || m.EnvID != "QQ 314159+x" {
		t.Errorf("read %+v", m.Envelope)
	}
	for i := range env.To {
		if m.RcptDSN(i) != env.RcptDSN(i) {
			t.Errorf("recipient %d: read %+v, want %+v", i, m.RcptDSN(i), env.RcptDSN(i))
		}
	}

	env = testEnvelope(t)
	env.DSN = []RcptDSN{{}, {}}
	raw, m = write(env)
	if !strings.HasPrefix(raw, "smtp-spool 1\n") || strings.Contains(raw, "notify") || m.Version != Version1 {
		t.Errorf("a message without DSN parameters:\n%s", raw)
	}
}

// TestDSNValidate: the writer refuses DSN fields it could not write as
// one line each, or that no reader could take back.
func TestDSNValidate(t *testing.T) {
	for name, f := range map[string]func(*Envelope){
		"ret":          func(e *Envelope) { e.Ret = "ALL" },
		"envid LF":     func(e *Envelope) { e.EnvID = "a\nrcpt-to: <evil@example>" },
		"envid long":   func(e *Envelope) { e.EnvID = strings.Repeat("x", MaxEnvIDLen+1) },
		"notify":       func(e *Envelope) { e.DSN = []RcptDSN{{Notify: "NEVER,SUCCESS"}} },
		"orcpt LF":     func(e *Envelope) { e.DSN = []RcptDSN{{ORcpt: "rfc822;a\nrcpt-to: <evil@example>"}} },
		"orcpt type":   func(e *Envelope) { e.DSN = []RcptDSN{{ORcpt: "a@b"}} },
		"orcpt long":   func(e *Envelope) { e.DSN = []RcptDSN{{ORcpt: "rfc822;" + strings.Repeat("x", MaxORcptLen)}} },
		"too many DSN": func(e *Envelope) { e.DSN = make([]RcptDSN, 3) },
	} {
		env := testEnvelope(t)
		f(env)
		if err := env.Validate(); err == nil {
			t.Errorf("%s: Validate took %+v", name, env)
		}
	}
}

// TestDSNCorrupt: the reader refuses DSN fields out of place.
func TestDSNCorrupt(t *testing.T) {
	good, err := os.ReadFile("testdata/version1.msg")
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(string(good), "smtp-spool 1", "smtp-spool 2", 1)
	for name, data := range map[string]string{
		"DSN in version 1":   strings.Replace(string(good), "rcpt-to: <bob@example.org>\n", "rcpt-to: <bob@example.org>\nnotify: NEVER\n", 1),
		"notify before rcpt": strings.Replace(v2, "mail-from:", "notify: NEVER\nmail-from:", 1),
		"notify twice":       strings.Replace(v2, "rcpt-to: <bob@example.org>\n", "rcpt-to: <bob@example.org>\nnotify: NEVER\nnotify: NEVER\n", 1),
		"orcpt twice":        strings.Replace(v2, "rcpt-to: <bob@example.org>\n", "rcpt-to: <bob@example.org>\norcpt: rfc822;a\norcpt: rfc822;b\n", 1),
		"bad notify":         strings.Replace(v2, "rcpt-to: <bob@example.org>\n", "rcpt-to: <bob@example.org>\nnotify: ALWAYS\n", 1),
		"ret twice":          strings.Replace(v2, "mail-from:", "ret: FULL\nret: HDRS\nmail-from:", 1),
		"unknown version":    strings.Replace(string(good), "smtp-spool 1", "smtp-spool 3", 1),
		"empty orcpt":        strings.Replace(v2, "rcpt-to: <bob@example.org>\n", "rcpt-to: <bob@example.org>\norcpt: \n", 1),
		"orcpt without type": strings.Replace(v2, "rcpt-to: <bob@example.org>\n", "rcpt-to: <bob@example.org>\norcpt: bob\n", 1),
	} {
		p := t.TempDir() + "/m"
		os.WriteFile(p, []byte(data), 0o600)
		if m, err := Open(p); err == nil {
			m.Close()
			t.Errorf("%s: opened", name)
		}
	}
	p := t.TempDir() + "/m"
	os.WriteFile(p, []byte(strings.Replace(v2, "rcpt-to: <carol@example.org>\n", "rcpt-to: <carol@example.org>\norcpt: utf-8;j\u00e9r\u00f4me@example.org\nnotify: FAILURE\n", 1)), 0o600)
	m, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.RcptDSN(0) != (RcptDSN{}) || m.RcptDSN(1) != (RcptDSN{Notify: "FAILURE", ORcpt: "utf-8;j\u00e9r\u00f4me@example.org"}) {
		t.Errorf("read %+v", m.DSN)
	}
}
