package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/postfixtest"
)

// The end-to-end proof of DANE (RFC 7672), once, with the real
// components of the delivery notes' lab (section 0.2): the zone
// dane.test, signed for this test with ldns-signzone (fresh keys and
// signatures each run, so they never expire), served by nsd and
// validated by unbound, both on 127.0.0.1 (SMTP_SEND_DNS names unbound,
// whose answers carry the AD bit); a private Postfix instance is the MX
// host of dane.test and of wrong.dane.test, with STARTTLS and a
// self-signed certificate, on 127.0.0.71.
//
// dane.test's MX has a TLSA record "3 1 1" (DANE-EE, the SHA-256 of the
// certificate's public key) that matches: the mail is delivered over
// TLS. wrong.dane.test's MX name (the same Postfix) has one that does
// not: its mail is deferred, never sent in clear text or over an
// unauthenticated TLS connection, though Postfix would take it. The
// same twice more behind CNAMEs (RFC 7672 section 2.2.2): an MX host
// name that is an alias, whose TLSA records are at the expanded name
// (alias.dane.test matches, badalias.dane.test does not); and a TLSA
// name that is an alias of the records' owner (tlsalias.dane.test).

// daneLab is the lab's DNS: nsd and unbound, started for one test.
type daneLab struct {
	dir      string
	resolver string // unbound's "127.0.0.1:port", for SMTP_SEND_DNS
}

// freePort returns a port free for TCP and UDP on 127.0.0.1 now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startDANELab signs zone (the records of dane.test, zone-file lines
// relative to it) with new keys and serves it: nsd authoritative,
// unbound validating with the key-signing key's DS as its trust anchor.
// It waits until unbound answers dane.test's SOA with the AD bit.
func startDANELab(t *testing.T, zone string) *daneLab {
	t.Helper()
	nsd := testutil.Need(t, "nsd", "/usr/sbin/nsd")
	unbound := testutil.Need(t, "unbound", "/usr/sbin/unbound")
	keygen := testutil.Need(t, "ldns-keygen")
	signzone := testutil.Need(t, "ldns-signzone")
	dir := t.TempDir()
	l := &daneLab{dir: dir}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v %s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	head := "$ORIGIN dane.test.\n$TTL 300\n@ IN SOA ns.dane.test. admin.dane.test. 1 3600 600 86400 300\n" +
		"@ IN NS ns.dane.test.\nns IN A 127.0.0.1\n"
	if err := os.WriteFile(filepath.Join(dir, "dane.test.zone"), []byte(head+zone), 0o644); err != nil {
		t.Fatal(err)
	}
	ksk := run(keygen, "-a", "ECDSAP256SHA256", "-k", "dane.test")
	zsk := run(keygen, "-a", "ECDSAP256SHA256", "dane.test")
	run(signzone, "-n", "dane.test.zone", ksk, zsk)

	nsdPort, unboundPort := freePort(t), freePort(t)
	nsdConf := fmt.Sprintf(`server:
  ip-address: 127.0.0.1@%d
  database: ""
  zonelistfile: %[2]s/zone.list
  pidfile: %[2]s/nsd.pid
  logfile: %[2]s/nsd.log
  xfrdfile: %[2]s/xfrd.state
  xfrdir: %[2]s
  zonesdir: %[2]s
  username: ""
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: dane.test
  zonefile: %[2]s/dane.test.zone.signed
`, nsdPort, dir)
	// Unbound answers test. itself (RFC 6761) unless told not to; it
	// asks nsd on loopback only with do-not-query-localhost off.
	unboundConf := fmt.Sprintf(`server:
  interface: 127.0.0.1@%d
  port: %[1]d
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: %[2]s
  pidfile: %[2]s/unbound.pid
  use-syslog: no
  logfile: %[2]s/unbound.log
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  trust-anchor-file: %[2]s/%[3]s.ds
  local-zone: "test." nodefault
remote-control:
  control-enable: no
stub-zone:
  name: "dane.test"
  stub-addr: 127.0.0.1@%[4]d
`, unboundPort, dir, ksk, nsdPort)
	for name, conf := range map[string]string{"nsd.conf": nsdConf, "unbound.conf": unboundConf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{nsd, "-d", "-c", filepath.Join(dir, "nsd.conf")}, {unbound, "-d", "-c", filepath.Join(dir, "unbound.conf")}} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		StartMX(t, cmd) // killed by its PID at the end
	}
	l.resolver = "127.0.0.1:" + strconv.Itoa(unboundPort)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"nsd.log", "unbound.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	c := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion("dane.test.", dns.TypeSOA)
	m.SetEdns0(1232, true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		in, _, err := c.Exchange(m, l.resolver)
		if err == nil && in.Rcode == dns.RcodeSuccess && in.AuthenticatedData {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound gives no validated answer for dane.test after 20s: %v %v", in, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// spkiSHA256 returns the hex SHA-256 of the public key of the PEM
// certificate in file: the data of a TLSA "3 1 1" record.
func spkiSHA256(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM in " + file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// postfixMX is a private Postfix instance (postfixtest) that is an MX
// host: smtpd on addr with STARTTLS (cert, key), virtual mailboxes (mbox
// files under mail/) for the addresses of boxes.
type postfixMX struct {
	dir string
}

// startPostfixMX starts the instance and waits until addr accepts
// connections.
func startPostfixMX(t *testing.T, addr, name, cert, key string, domains []string, boxes ...string) *postfixMX {
	t.Helper()
	var dir string
	p := postfixtest.Start(t, func(conf string) []string {
		// The mailboxes belong to nobody, who must reach them.
		dir = filepath.Dir(conf)
		mail := filepath.Join(dir, "mail")
		var maps strings.Builder
		for _, b := range boxes {
			local, _, _ := strings.Cut(b, "@")
			fmt.Fprintf(&maps, "%s %s\n", b, local)
		}
		for _, err := range []error{os.MkdirAll(mail, 0o755), os.Chown(mail, 65534, 65534),
			os.WriteFile(filepath.Join(conf, "vmailbox"), []byte(maps.String()), 0o644)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		return []string{
			"myhostname = " + name,
			"mydomain = example.invalid",
			"mydestination =",
			"inet_interfaces = loopback-only", // smtpd: the address of its master.cf line
			"smtpd_peername_lookup = no",
			"smtpd_tls_security_level = may",
			"smtpd_tls_cert_file = " + cert,
			"smtpd_tls_key_file = " + key,
			"smtpd_tls_received_header = yes",
			"smtpd_tls_loglevel = 1",
			"virtual_mailbox_domains = " + strings.Join(domains, " "),
			"virtual_mailbox_base = " + mail,
			"virtual_mailbox_maps = texthash:" + filepath.Join(conf, "vmailbox"),
			"virtual_uid_maps = static:65534",
			"virtual_gid_maps = static:65534",
		}
	}, addr+" inet n - n - - smtpd")
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return &postfixMX{dir: p.Dir}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix does not listen on %s after 20s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mailbox waits up to 20 seconds for the mbox of local part box to hold
// a message, and returns it ("" if none came).
func (p *postfixMX) mailbox(box string, wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		b, err := os.ReadFile(filepath.Join(p.dir, "mail", box))
		if err == nil && len(b) > 0 || time.Now().After(deadline) {
			return string(b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDANEEndToEnd(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the DANE end-to-end test needs root (Postfix), which CI has")
		}
		t.Skip("the DANE end-to-end test needs root (a private Postfix)")
	}
	start := time.Now()
	const ip = "127.0.0.71"
	port := freePort(t)
	cert, key := selfSigned(t, "mx.dane.test")
	os.Chmod(filepath.Dir(cert), 0o755)
	os.Chmod(key, 0o644) // Postfix reads it as root, but its checks want it readable
	good := spkiSHA256(t, cert)
	bad := strings.Repeat("ab", 32)
	lab := startDANELab(t, fmt.Sprintf(`@ IN MX 10 mx.dane.test.
mx IN A %[1]s
_%[2]d._tcp.mx IN TLSA 3 1 1 %[3]s
wrong IN MX 10 mxbad.dane.test.
mxbad IN A %[1]s
_%[2]d._tcp.mxbad IN TLSA 3 1 1 %[4]s
alias IN MX 10 mxalias.dane.test.
mxalias IN CNAME mxhost.dane.test.
mxhost IN A %[1]s
_%[2]d._tcp.mxhost IN TLSA 3 1 1 %[3]s
badalias IN MX 10 mxbadalias.dane.test.
mxbadalias IN CNAME mxbadhost.dane.test.
mxbadhost IN A %[1]s
_%[2]d._tcp.mxbadhost IN TLSA 3 1 1 %[4]s
tlsalias IN MX 10 mxtl.dane.test.
mxtl IN A %[1]s
_%[2]d._tcp.mxtl IN CNAME keys.dane.test.
keys IN TLSA 3 1 1 %[3]s
`, ip, port, good, bad))
	pf := startPostfixMX(t, net.JoinHostPort(ip, strconv.Itoa(port)), "mx.dane.test", cert, key,
		[]string{"dane.test", "wrong.dane.test", "alias.dane.test", "badalias.dane.test", "tlsalias.dane.test"},
		"rcpt@dane.test", "x@wrong.dane.test", "y@alias.dane.test", "z@badalias.dane.test", "w@tlsalias.dane.test")

	spoolDir := t.TempDir()
	env := []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=sender.test", "SMTP_SEND_DNS=" + lab.resolver,
		"SMTP_SEND_MX_PORT=" + strconv.Itoa(port), "SMTP_SEND_MX_LOOPBACK=true", "SMTP_SEND_LOG_LEVEL=debug",
		"SMTP_SEND_CONNECT_TIMEOUT=5s", "SMTP_SEND_COMMAND_TIMEOUT=20s"}
	ex := runBinary(t, env, "--explain", "rcpt@dane.test", "y@alias.dane.test")
	if ex.code != 0 || !strings.Contains(ex.stdout, "DANE: TLSA 3 1 1 "+good+"\n") ||
		!strings.Contains(ex.stdout, "DANE: TLSA 3 1 1 "+good+" (at mxhost.dane.test, the CNAME-expanded name)\n") {
		t.Errorf("--explain: exit %d\n%s%s", ex.code, ex.stdout, ex.stderr)
	}
	id := queue(t, spoolDir, "rcpt@dane.test", "x@wrong.dane.test", "y@alias.dane.test", "z@badalias.dane.test", "w@tlsalias.dane.test")
	r := runWithin(t, 40*time.Second, env)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	got := pf.mailbox("rcpt", 20*time.Second)
	if !strings.Contains(got, "Subject: test") || !strings.Contains(got, "(using TLS") ||
		!strings.Contains(r.stderr, `msg="connected to MX host" relay=`+ip+`:`+strconv.Itoa(port)+` mx=mx.dane.test tls=true verified=true`) {
		t.Errorf("rcpt@dane.test's mailbox:\n%s\nsmtp-send:\n%s", got, r.stderr)
	}
	// TLSA records behind CNAMEs (RFC 7672 section 2.2.2, RFC 7671
	// section 7): the MX host an alias, the records at the expanded
	// name; the TLSA name an alias of the records' owner.
	for _, c := range []struct{ box, mx string }{{"y", "mxalias"}, {"w", "mxtl"}} {
		got := pf.mailbox(c.box, 20*time.Second)
		if !strings.Contains(got, "Subject: test") ||
			!strings.Contains(r.stderr, `msg="connected to MX host" relay=`+ip+`:`+strconv.Itoa(port)+` mx=`+c.mx+`.dane.test tls=true verified=true`) {
			t.Errorf("%s: mailbox:\n%s\nsmtp-send:\n%s", c.mx, got, r.stderr)
		}
	}
	for _, box := range []string{"x", "z"} {
		if b := pf.mailbox(box, 0); b != "" {
			t.Errorf("mail for %s delivered despite its TLSA mismatch:\n%s", box, b)
		}
	}
	list := runBinary(t, env, "--list")
	if !strings.Contains(list.stdout, id+"  deferred") || !strings.Contains(list.stdout, "pending  <x@wrong.dane.test>") ||
		!strings.Contains(list.stdout, "done     <rcpt@dane.test>") ||
		!strings.Contains(list.stdout, "pending  <z@badalias.dane.test>  tls: TLS handshake: dane: the certificate of mxbadalias.dane.test matches none") {
		t.Errorf("--list:\n%s\nsmtp-send:\n%s", list.stdout, r.stderr)
	}
	t.Logf("DANE end to end in %v", time.Since(start).Round(time.Millisecond))
}
