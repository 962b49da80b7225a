// Package dane authenticates SMTP servers with DANE (RFC 7672, RFC
// 6698): TLSA records looked up with DNSSEC through a validating
// resolver, and the match of a server's certificate chain against them.
//
// Only the usages that RFC 7672 section 3.1 gives SMTP are usable:
// DANE-TA(2), a trust anchor in the server's chain that its certificate
// must chain to, valid for the MX host's name; and DANE-EE(3), the
// server's own certificate or public key, with no name or date check.
// PKIX-TA(0) and PKIX-EE(1) records, and unknown selectors or matching
// types, are unusable.
//
// The AD bit of an answer says the resolver validated it; it is worth
// something only when the resolver is this machine's own (Trusted), as
// Postfix and maddy require.
package dane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Usages, selectors and matching types of TLSA records (RFC 6698
// section 2.1, RFC 7218 names).
const (
	UsageDANETA    = 2 // DANE-TA: a trust anchor
	UsageDANEEE    = 3 // DANE-EE: the end entity
	SelectorCert   = 0 // the whole certificate
	SelectorSPKI   = 1 // its SubjectPublicKeyInfo
	MatchFull      = 0 // the data itself
	MatchSHA256    = 1 // its SHA-256
	MatchSHA512    = 2 // its SHA-512
	maxTLSARecords = 100
)

// TLSA is one TLSA record.
type TLSA struct {
	Usage, Selector, MatchingType uint8
	// Data is the certificate association data.
	Data []byte
}

// Usable reports whether r can authenticate an SMTP server (RFC 7672
// section 3.1): usage 2 or 3, selector 0 or 1, matching type 0 to 2,
// and data of the length the matching type gives.
func (r TLSA) Usable() bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE || r.Selector > SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// String returns the record as in a zone file: "3 1 1 hex".
func (r TLSA) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, hex.EncodeToString(r.Data))
}

// matches reports whether c matches r's selector and matching type.
func (r TLSA) matches(c *x509.Certificate) bool {
	data := c.Raw
	if r.Selector == SelectorSPKI {
		data = c.RawSubjectPublicKeyInfo
	}
	switch r.MatchingType {
	case MatchSHA256:
		h := sha256.Sum256(data)
		data = h[:]
	case MatchSHA512:
		h := sha512.Sum512(data)
		data = h[:]
	}
	return bytes.Equal(data, r.Data)
}

// Verify checks the chain a server presented (leaf first) against the
// usable records in recs for the MX host name (RFC 7672 section 3): a
// DANE-EE record matching the leaf passes, whatever its name and dates;
// a DANE-TA record matching a certificate of the chain passes if the
// leaf chains to it (the rest of the chain as intermediates) and is
// valid for name at now, or for one of the names also (RFC 7672 section
// 3.2.2: the MX host name and the CNAME-expanded TLSA base domain are
// both reference identifiers). It returns an error saying why none
// passed.
func Verify(chain []*x509.Certificate, name string, recs []TLSA, now time.Time, also ...string) error {
	if len(chain) == 0 {
		return errors.New("dane: no certificate")
	}
	usable := 0
	for _, r := range recs {
		if !r.Usable() {
			continue
		}
		usable++
		switch r.Usage {
		case UsageDANEEE:
			if r.matches(chain[0]) {
				return nil
			}
		case UsageDANETA:
			for _, ta := range chain {
				if !r.matches(ta) {
					continue
				}
				roots, inter := x509.NewCertPool(), x509.NewCertPool()
				roots.AddCert(ta)
				for _, c := range chain[1:] {
					inter.AddCert(c)
				}
				if ta == chain[0] {
					return nil // the leaf is its own anchor
				}
				for _, n := range append([]string{name}, also...) {
					_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: n, CurrentTime: now})
					if err == nil {
						return nil
					}
				}
			}
		}
	}
	if usable == 0 {
		return errors.New("dane: no usable TLSA record")
	}
	return fmt.Errorf("dane: the certificate of %s matches none of its %d usable TLSA records", name, usable)
}

// TLSConfig returns a client configuration that authenticates the
// server by recs for name, or for the names also (Verify), instead of by
// the system's roots. The server name sent (SNI) is the last of also
// when there is one: the TLSA base domain (RFC 7672 section 8.1).
func TLSConfig(name string, recs []TLSA, also ...string) *tls.Config {
	sni := name
	if len(also) > 0 {
		sni = also[len(also)-1]
	}
	return &tls.Config{
		ServerName:         sni,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // Verify below replaces the PKIX check
		VerifyConnection: func(cs tls.ConnectionState) error {
			return Verify(cs.PeerCertificates, name, recs, time.Now(), also...)
		},
	}
}

// Trusted reports whether server ("host:port") is on loopback, the only
// place whose AD bit is believed: the path to any other resolver is
// open to forgery.
func Trusted(server string) bool {
	h, _, err := net.SplitHostPort(server)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// Resolver asks one validating resolver with the DO bit (RFC 4035
// section 3.2.1) and reads its AD bit.
type Resolver struct {
	// Server is "host:port" of the resolver.
	Server string
	// Timeout bounds each exchange; 0 is 5 seconds.
	Timeout time.Duration
}

// ErrBogus is returned when the resolver answers SERVFAIL, which a
// validating resolver does for an answer that fails validation: a
// destination with bogus TLSA records must wait (RFC 7672 section 2.1.1).
var ErrBogus = errors.New("dane: the resolver answered SERVFAIL (bogus or unreachable)")

// exchange asks for name's records of type qtype and returns the answer
// and whether it is authenticated (AD set). NXDOMAIN and NODATA are not
// errors: an empty answer.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, bool, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.SetEdns0(4096, true)
	t := r.Timeout
	if t <= 0 {
		t = 5 * time.Second
	}
	c := &dns.Client{Net: "udp", Timeout: t}
	in, _, err := c.ExchangeContext(ctx, m, r.Server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, r.Server)
	}
	if err != nil {
		return nil, false, fmt.Errorf("dane: asking %s for %s %s: %w", r.Server, name, dns.TypeToString[qtype], err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return in, in.AuthenticatedData, nil
	case dns.RcodeServerFailure:
		return nil, false, ErrBogus
	}
	return nil, false, fmt.Errorf("dane: %s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[in.Rcode])
}

// Secure reports whether the resolver validated name's records of type
// qtype ("MX", "A"): an authenticated answer, or an authenticated
// denial that there are none.
func (r *Resolver) Secure(ctx context.Context, name, qtype string) (bool, error) {
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return false, fmt.Errorf("dane: unknown type %q", qtype)
	}
	_, ad, err := r.exchange(ctx, name, t)
	return ad, err
}

// maxCNAME bounds the CNAME chain Expand follows.
const maxCNAME = 8

// Expand returns the name host's address records are at after the
// CNAME chain in the resolver's answer to its A question (host itself
// without one, the root dot dropped), whether that answer was
// authenticated (the whole chain validated), and whether there was a
// chain at all: for the TLSA base domain of RFC 7672 section 2.2.2. An
// error is the resolver's (ErrBogus for SERVFAIL).
func (r *Resolver) Expand(ctx context.Context, host string) (final string, secure, aliased bool, err error) {
	in, ad, err := r.exchange(ctx, host, dns.TypeA)
	if err != nil {
		return "", false, false, err
	}
	cur := dns.Fqdn(host)
	for range maxCNAME {
		next := ""
		for _, rr := range in.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = c.Target
				break
			}
		}
		if next == "" {
			break
		}
		cur, aliased = next, true
	}
	return strings.TrimSuffix(cur, "."), ad, aliased, nil
}

// LookupTLSA returns the TLSA records of host for TCP port port
// ("_port._tcp.host", RFC 7672 section 2.2.2) and whether the answer was
// authenticated. Records of an answer that is not are of no use. The
// records may sit behind a CNAME (RFC 7671 section 7): the resolver
// follows it, and the records of the answer are taken whatever their
// owner name.
func (r *Resolver) LookupTLSA(ctx context.Context, host string, port int) ([]TLSA, bool, error) {
	name := "_" + strconv.Itoa(port) + "._tcp." + strings.TrimSuffix(host, ".")
	in, ad, err := r.exchange(ctx, name, dns.TypeTLSA)
	if err != nil {
		return nil, false, err
	}
	var recs []TLSA
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TLSA); ok && len(recs) < maxTLSARecords {
			data, err := hex.DecodeString(t.Certificate)
			if err != nil {
				continue
			}
			recs = append(recs, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
		}
	}
	return recs, ad, nil
}
