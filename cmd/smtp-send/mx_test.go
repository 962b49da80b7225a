package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/dnstest"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// The tests of MX delivery drive the built smtp-send against real SMTP
// servers (aiosmtpd, testdata/aiosmtpd_mx.py) listening on 127.0.0.2 to
// 127.0.0.254, all on one port (SMTP_SEND_MX_PORT), and a DNS server of
// the test (internal/dnstest, miekg/dns) on 127.0.0.1 (SMTP_SEND_DNS):
// the offline lab of the delivery notes, without root.

// mxLab is one test's DNS server, MX hosts and spool.
type mxLab struct {
	t     *testing.T
	dns   *dnstest.Server
	port  int
	dir   string // where the MX hosts write what they take
	spool string
}

// newLab starts the DNS server with records rrs; the MX hosts are
// started by mx. It skips the test when python3-aiosmtpd is missing,
// except in CI.
func newLab(t *testing.T, rrs ...string) *mxLab {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import aiosmtpd").Run(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("python3-aiosmtpd missing (apt-get install python3-aiosmtpd, or scripts/install-test-deps)")
		}
		t.Fatal("python3-aiosmtpd missing in CI")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return &mxLab{t: t, dns: dnstest.Start(t, rrs...), port: port, dir: t.TempDir(), spool: t.TempDir()}
}

// mx starts an MX host on ip with the options of aiosmtpd_mx.py.
func (l *mxLab) mx(ip string, opts ...string) {
	l.t.Helper()
	args := append([]string{"testdata/aiosmtpd_mx.py", l.dir, ip, strconv.Itoa(l.port)}, opts...)
	cmd := exec.Command("/usr/bin/python3", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	StartMX(l.t, cmd)
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			l.t.Fatalf("MX host %s: %v", ip, err)
		}
	case <-time.After(20 * time.Second):
		l.t.Fatalf("MX host %s not ready after 20s", ip)
	}
}

// env is smtp-send's environment in the lab, plus extra.
func (l *mxLab) env(extra ...string) []string {
	return append([]string{"SMTP_SPOOL_DIR=" + l.spool, "SMTP_HOSTNAME=sender.test",
		"SMTP_SEND_DNS=" + l.dns.Addr, "SMTP_SEND_MX_PORT=" + strconv.Itoa(l.port),
		"SMTP_SEND_CONNECTIONS=1", "SMTP_SEND_CONNECT_TIMEOUT=5s", "SMTP_SEND_COMMAND_TIMEOUT=20s",
		"SMTP_SEND_LOG_LEVEL=debug", "SMTP_SEND_MX_LOOPBACK=true"}, extra...)
}

// routes writes a route table and returns its SMTP_SEND_ROUTES setting.
func (l *mxLab) routes(table string) string {
	p := filepath.Join(l.t.TempDir(), "routes")
	if err := os.WriteFile(p, []byte(table), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return "SMTP_SEND_ROUTES=" + p
}

// mxReceived is one message an MX host took.
type mxReceived struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	Host string   `json:"host"`
	TLS  bool     `json:"tls"`
	Helo string   `json:"helo"`
	Data string   `json:"-"`
}

// received returns what the MX hosts took, by host then order.
func (l *mxLab) received() []mxReceived {
	l.t.Helper()
	files, _ := filepath.Glob(filepath.Join(l.dir, "*.json"))
	slices.Sort(files)
	var out []mxReceived
	for _, f := range files {
		var r mxReceived
		b, _ := os.ReadFile(f)
		if err := json.Unmarshal(b, &r); err != nil {
			l.t.Fatal(err)
		}
		d, _ := os.ReadFile(strings.TrimSuffix(f, ".json") + ".eml")
		r.Data = string(d)
		out = append(out, r)
	}
	return out
}

// bounces returns the notifications in the queue (from <>), as text.
func (l *mxLab) bounces() []string {
	l.t.Helper()
	sp, err := spool.New(l.spool)
	if err != nil {
		l.t.Fatal(err)
	}
	names, _ := os.ReadDir(sp.Path(spool.QueueDir))
	var out []string
	for _, n := range names {
		m, err := sp.OpenMessage(n.Name())
		if err != nil {
			l.t.Fatal(err)
		}
		b, err := io.ReadAll(m.Content())
		m.Close()
		if err != nil {
			l.t.Fatal(err)
		}
		if m.From == "" {
			out = append(out, string(b))
		}
	}
	return out
}

// queued returns the names in queue/ and state/.
func (l *mxLab) queued() []string {
	var out []string
	for _, d := range []string{"queue", "state"} {
		ents, _ := os.ReadDir(filepath.Join(l.spool, d))
		for _, e := range ents {
			out = append(out, d+"/"+e.Name())
		}
	}
	return out
}

// StartMX starts an MX host process, killed by its PID when the test
// ends.
func StartMX(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// MX order and failover, end to end: the best MX refuses connections,
// the next defers MAIL, the third takes both recipients of the domain in
// one transaction, and the fourth gets nothing; another domain's first
// MX greets with 554 and its second takes the mail. The queue is empty
// afterwards.
func TestMXOrderAndFailover(t *testing.T) {
	l := newLab(t,
		"a.test. MX 10 mx1.a.test.", "a.test. MX 20 mx2.a.test.", "a.test. MX 30 mx3.a.test.", "a.test. MX 40 mx4.a.test.",
		"mx1.a.test. A 127.0.0.2", "mx2.a.test. A 127.0.0.3", "mx3.a.test. A 127.0.0.4", "mx4.a.test. A 127.0.0.5",
		"b.test. MX 5 mx1.b.test.", "b.test. MX 7 mx2.b.test.",
		"mx1.b.test. A 127.0.0.6", "mx2.b.test. A 127.0.0.7")
	l.mx("127.0.0.3", "--mail-reply", "451 4.3.2 busy, try another MX")
	l.mx("127.0.0.4")
	l.mx("127.0.0.5")
	l.mx("127.0.0.6", "--greeting", "554 5.3.2 no service here")
	l.mx("127.0.0.7")
	queue(t, l.spool, "x@a.test", "z@b.test", "y@A.TEST")
	r := runBinary(t, l.env())
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	got := l.received()
	if len(got) != 2 || got[0].Host != "127.0.0.4" || !slices.Equal(got[0].To, []string{"x@a.test", "y@A.TEST"}) ||
		got[1].Host != "127.0.0.7" || !slices.Equal(got[1].To, []string{"z@b.test"}) {
		t.Fatalf("received %+v\n%s", got, r.stderr)
	}
	for _, m := range got {
		if m.From != "s@example.org" || m.Helo != "sender.test" || !strings.HasSuffix(m.Data, "Subject: test\r\n\r\nbody\r\n") {
			t.Errorf("message %+v %q", m, m.Data)
		}
	}
	if q := l.queued(); len(q) != 0 {
		t.Errorf("left in the queue: %v", q)
	}
	for _, want := range []string{
		`msg="MX host down for this run" relay=127.0.0.2:` + strconv.Itoa(l.port) + " stage=connect",
		`msg="MX host down for this run" relay=127.0.0.3:` + strconv.Itoa(l.port) + " stage=mail code=451",
		`msg="MX host down for this run" relay=127.0.0.6:` + strconv.Itoa(l.port) + " stage=ehlo code=554",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("log lacks %s\n%s", want, r.stderr)
		}
	}
}

// An implicit MX (no MX records: the domain's address) takes its mail; a
// null MX (RFC 7505) bounces at once with 556 5.1.10 and nothing is
// dialled; a SERVFAIL defers without a bounce.
func TestMXImplicitNullServfail(t *testing.T) {
	l := newLab(t, "c.test. A 127.0.0.8", "c.test. TXT \"v=spf1 -all\"", "null.test. MX 0 .")
	l.dns.ServFail("down.test")
	l.mx("127.0.0.8")
	id := queue(t, l.spool, "a@c.test", "b@null.test", "c@down.test")
	r := runBinary(t, l.env())
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if got := l.received(); len(got) != 1 || got[0].Host != "127.0.0.8" || !slices.Equal(got[0].To, []string{"a@c.test"}) {
		t.Fatalf("received %+v\n%s", got, r.stderr)
	}
	b := l.bounces()
	if len(b) != 1 || !strings.Contains(b[0], "Final-Recipient: rfc822; b@null.test") ||
		!strings.Contains(b[0], "Status: 5.1.10") || !strings.Contains(b[0], "null MX") ||
		strings.Contains(b[0], "c@down.test") {
		t.Fatalf("bounces %q", b)
	}
	l2 := runBinary(t, l.env(), "--list")
	if !strings.Contains(l2.stdout, id+"  deferred") || !strings.Contains(l2.stdout, "pending  <c@down.test>  local: 4.4.3") ||
		!strings.Contains(l2.stdout, "failed   <b@null.test>") {
		t.Errorf("--list:\n%s", l2.stdout)
	}
}

// The route table: the most specific pattern wins whatever the line
// order; a bracketed host is dialled without an MX lookup; smtp:host
// uses that host's MX records; error: bounces with its status and text;
// "*" takes the rest.
func TestRouteTable(t *testing.T) {
	l := newLab(t,
		"d.test. MX 10 mx.d.test.", "mx.d.test. A 127.0.0.10",
		"vip.test. MX 10 mx.vip.test.", "mx.vip.test. A 127.0.0.11",
		"f.test. MX 10 mx.f.test.", "mx.f.test. A 127.0.0.12")
	for _, ip := range []string{"127.0.0.9", "127.0.0.10", "127.0.0.11", "127.0.0.12"} {
		l.mx(ip)
	}
	routes := l.routes(`# most specific first, whatever the order
*             smtp:
.d.test       error:5.7.1 subdomains of d.test take no mail
vip@d.test    smtp:vip.test
d.test        smtp:[127.0.0.9]
e.test        error:5.1.1 no mail for e.test
`)
	queue(t, l.spool, "a@d.test", "x@sub.d.test", "VIP@d.test", "y@e.test", "z@f.test")
	r := runBinary(t, l.env(routes))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	want := map[string][]string{"127.0.0.9": {"a@d.test"}, "127.0.0.11": {"VIP@d.test"}, "127.0.0.12": {"z@f.test"}}
	got := l.received()
	if len(got) != len(want) {
		t.Fatalf("received %+v\n%s", got, r.stderr)
	}
	for _, m := range got {
		if !slices.Equal(want[m.Host], m.To) {
			t.Errorf("%s took %v, want %v", m.Host, m.To, want[m.Host])
		}
	}
	b := l.bounces()
	if len(b) != 1 {
		t.Fatalf("bounces %q", b)
	}
	for _, s := range []string{"Final-Recipient: rfc822; x@sub.d.test", "Status: 5.7.1", "subdomains of d.test take no mail",
		"Final-Recipient: rfc822; y@e.test", "Status: 5.1.1", "no mail for e.test"} {
		if !strings.Contains(b[0], s) {
			t.Errorf("bounce lacks %q:\n%s", s, b[0])
		}
	}
	if strings.Contains(b[0], "a@d.test") || strings.Contains(b[0], "z@f.test") {
		t.Errorf("bounce names a delivered recipient:\n%s", b[0])
	}
}

// A bad route table is a configuration error (exit 78) naming the file
// and the line, before anything is sent.
func TestRouteTableBad(t *testing.T) {
	l := newLab(t)
	routes := l.routes("* smtp:\nexample.org smtp:[x.example:25\n")
	queue(t, l.spool, "a@example.org")
	r := runBinary(t, l.env(routes))
	if r.code != exConfig || !strings.Contains(r.stderr, "routes line 2: next hop") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
	if e := runBinary(t, l.env(routes), "--explain", "a@example.org"); e.code != exConfig || e.stdout != "" {
		t.Errorf("--explain: exit %d\n%s%s", e.code, e.stdout, e.stderr)
	}
}

// --explain prints the plan without sending: the route and its table
// line, the MX hosts in order with their addresses, the port, the TLS
// policy and where it came from, and the outcome.
func TestExplain(t *testing.T) {
	l := newLab(t,
		"a.test. MX 20 mx2.a.test.", "a.test. MX 10 mx1.a.test.", "mx1.a.test. A 127.0.0.2", "mx1.a.test. AAAA fd00::2",
		"mx2.a.test. A 127.0.0.3", "null.test. MX 0 .", "c.test. A 127.0.0.8", "gone.test. MX 10 mx.gone.test.")
	l.mx("127.0.0.2")
	routes := l.routes("* smtp:\nb.test smtp:[127.0.0.9]:2525 tls=encrypt\nerr.test error:5.7.1 closed\n")
	r := runBinary(t, l.env(routes), "--explain", "u@a.test", "u@b.test", "u@err.test", "u@null.test", "u@c.test", "u@gone.test")
	port := strconv.Itoa(l.port)
	file := strings.TrimPrefix(routes, "SMTP_SEND_ROUTES=")
	def := "may (the default: opportunistic STARTTLS (RFC 7435), certificates not verified)"
	want := `<u@a.test>
  route:   smtp:
  why:     ` + file + ` line 1: pattern *
  to:      the MX hosts of a.test (smtp:)
  hosts:   MX 10 mx1.a.test  ADDRS
           MX 20 mx2.a.test  127.0.0.3
  port:    ` + port + `
  mta-sts: no policy (no _mta-sts TXT record)
  tls:     ` + def + `
  limit:   2 connections at once to this destination (SMTP_SEND_DESTINATION_CONCURRENCY)
  outcome: deliver to the first host that takes it, in the order above

<u@b.test>
  route:   smtp:[127.0.0.9]:2525
  why:     ` + file + ` line 2: pattern b.test
  to:      127.0.0.9 itself, no MX lookup (smtp:[127.0.0.9]:2525)
  hosts:   127.0.0.9  127.0.0.9
  port:    2525
  tls:     encrypt (tls=encrypt on ` + file + ` line 2)
  limit:   2 connections at once to this destination (SMTP_SEND_DESTINATION_CONCURRENCY)
  outcome: deliver to the first host that takes it, in the order above

<u@err.test>
  route:   error:5.7.1
  why:     ` + file + ` line 3: pattern err.test
  to:      refused by the route table
  outcome: bounce at once: 5.7.1 closed

<u@null.test>
  route:   smtp:
  why:     ` + file + ` line 1: pattern *
  to:      the MX hosts of null.test (smtp:)
  port:    ` + port + `
  tls:     ` + def + `
  outcome: bounce at once: 556 5.1.10 domain null.test does not accept mail (null MX, RFC 7505)

<u@c.test>
  route:   smtp:
  why:     ` + file + ` line 1: pattern *
  to:      the MX hosts of c.test (smtp:)
  hosts:   c.test (no MX records: the domain's own addresses, RFC 5321 5.1)  127.0.0.8
  port:    ` + port + `
  mta-sts: no policy (no _mta-sts TXT record)
  tls:     ` + def + `
  limit:   2 connections at once to this destination (SMTP_SEND_DESTINATION_CONCURRENCY)
  outcome: deliver to the first host that takes it, in the order above

<u@gone.test>
  route:   smtp:
  why:     ` + file + ` line 1: pattern *
  to:      the MX hosts of gone.test (smtp:)
  hosts:   MX 10 mx.gone.test  (no address: mx.gone.test.: no such host)
  port:    ` + port + `
  tls:     ` + def + `
  outcome: bounce at once: 5.4.4 no MX host of gone.test has an address: mx.gone.test.: no such host
`
	// Go orders one host's addresses itself (RFC 6724).
	out := strings.Replace(r.stdout, "fd00::2, 127.0.0.2", "ADDRS", 1)
	out = strings.Replace(out, "127.0.0.2, fd00::2", "ADDRS", 1)
	if r.code != 0 || out != want {
		t.Errorf("exit %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.code, r.stdout, want, r.stderr)
	}
	if got := l.received(); len(got) != 0 {
		t.Errorf("--explain sent mail: %+v", got)
	}
	// By default an MX on loopback is not used: mail would loop.
	r = runBinary(t, l.env("SMTP_SEND_MX_LOOPBACK=false"), "--explain", "u@c.test")
	if !strings.Contains(r.stdout, "  hosts:   c.test (no MX records: the domain's own addresses, RFC 5321 5.1)  (no address: loopback or unspecified addresses not used: 127.0.0.8)\n") ||
		!strings.Contains(r.stdout, "  outcome: bounce at once: 554 5.4.6 the MX hosts of c.test are on loopback addresses") {
		t.Errorf("loopback MX:\n%s", r.stdout)
	}
	// Without a table or a smarthost: the domain's MX hosts.
	r = runBinary(t, l.env(), "--explain", "u@c.test")
	if !strings.Contains(r.stdout, "why:     no route table (SMTP_SEND_ROUTES) and no SMTP_SMARTHOST: the domain's MX hosts\n") {
		t.Errorf("no table:\n%s", r.stdout)
	}
	// With a smarthost and no table: the smarthost, as before.
	r = runBinary(t, l.env("SMTP_SMARTHOST=relay.test:587"), "--explain", "u@c.test")
	if !strings.Contains(r.stdout, "route:   smarthost\n") || !strings.Contains(r.stdout, "tls:     starttls, certificate verified (SMTP_SMARTHOST_TLS)\n") {
		t.Errorf("smarthost:\n%s", r.stdout)
	}
	if r := runBinary(t, l.env(), "--explain"); r.code != exUsage {
		t.Errorf("--explain without an address: exit %d", r.code)
	}
}

// selfSigned writes a self-signed certificate for name and its key as
// PEM files and returns their paths.
func selfSigned(t *testing.T, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

// Opportunistic TLS against a real server: an MX offering STARTTLS with
// a self-signed certificate gets the mail encrypted by default and with
// tls=encrypt; tls=verify defers it (the certificate is not trusted)
// without falling back to clear text; an MX without STARTTLS gets the
// mail in clear text by default, and tls=encrypt defers it.
func TestMXOpportunisticTLS(t *testing.T) {
	l := newLab(t, "tls.test. MX 10 mx.tls.test.", "mx.tls.test. A 127.0.0.13",
		"plain.test. MX 10 mx.plain.test.", "mx.plain.test. A 127.0.0.14",
		"verify.test. MX 10 mx.tls.test.", "enc-plain.test. MX 10 mx.plain.test.")
	cert, key := selfSigned(t, "mx.tls.test")
	l.mx("127.0.0.13", "--tls", cert, key)
	l.mx("127.0.0.14")
	routes := l.routes("* smtp:\nverify.test smtp: tls=verify\nenc-plain.test smtp: tls=encrypt\n")
	id := queue(t, l.spool, "a@tls.test", "b@plain.test", "c@verify.test", "d@enc-plain.test")
	r := runBinary(t, l.env(routes))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	got := l.received()
	if len(got) != 2 || got[0].Host != "127.0.0.13" || !got[0].TLS || !slices.Equal(got[0].To, []string{"a@tls.test"}) ||
		got[1].Host != "127.0.0.14" || got[1].TLS || !slices.Equal(got[1].To, []string{"b@plain.test"}) {
		t.Fatalf("received %+v\n%s", got, r.stderr)
	}
	list := runBinary(t, l.env(routes), "--list").stdout
	for _, want := range []string{id + "  deferred", "pending  <c@verify.test>  tls:", "pending  <d@enc-plain.test>  tls: 4.7.10 STARTTLS not offered"} {
		if !strings.Contains(list, want) {
			t.Errorf("--list lacks %q:\n%s", want, list)
		}
	}
	if len(l.bounces()) != 0 {
		t.Error("a TLS failure bounced")
	}
}
