// Package relay decides which recipients a receiving session may use: the
// relay control of RFC 5321 section 3.6.2 (and NetServer::SMTP's
// "allowed"). Recipients in a local domain are accepted from anyone; any
// other domain only from a trusted client. With no settings at all, only
// loopback clients and local pipe sessions may relay, so the default can
// never be an open relay.
package relay

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/smtp-stdio/smtp-stdio/alias"
	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/domain"
	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// ReplyDenied is the reply to a recipient the client may not relay to
// (RFC 5321 section 3.6.2; RFC 3463 5.7.1).
var ReplyDenied = &protocol.Reply{Code: 550, Enhanced: "5.7.1", Lines: []string{"Relaying denied"}}

// ReplyUnknownUser is the reply to a recipient in a local domain whose
// local part the local recipients file does not list (RFC 5321 section
// 3.6.2's "550 no such user"; RFC 3463 5.1.1, bad destination mailbox).
var ReplyUnknownUser = &protocol.Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"No such user here"}}

// ReplyUsersUnavailable is the reply to a recipient in a local domain
// when the local recipients file cannot be read or parsed: the client
// tries again later (RFC 3463 4.3.0, a system error of ours).
var ReplyUsersUnavailable = &protocol.Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"Recipient list unavailable, try again later"}}

// Policy implements protocol.Policy.
type Policy struct {
	local    map[string]bool // domain.Canonical forms
	clients  []netip.Prefix
	trustAll bool // this session's client may relay (RELAYCLIENT, local pipe)

	usersFile string      // SetLocalRecipients; "" accepts any local part
	onError   func(error) // told once when usersFile fails
	// The file, read at the first local recipient. In one-process mode
	// the sessions share the Policy: once guards the read.
	once     sync.Once
	users    *alias.Table
	usersErr error
}

// New returns a Policy for the given local domains and relay client
// networks. A local domain may be given in ASCII in any case, as a
// U-label or as its A-label, with or without a trailing dot: each is kept
// in the one form domain.Canonical gives, and matches a recipient domain
// in any of those forms. A network is in CIDR notation ("127.0.0.0/8",
// "::1/128"; a bare address means one host). New returns an error naming
// the first local domain without an IDNA A-label (it could never match)
// or the first network that does not parse.
func New(localDomains, relayClients []string) (*Policy, error) {
	p := &Policy{local: map[string]bool{}}
	for _, d := range localDomains {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		c, err := domain.Canonical(d)
		if err != nil {
			return nil, fmt.Errorf("relay: bad local domain %q: %w", d, err)
		}
		p.local[c] = true
	}
	for _, c := range relayClients {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("relay: bad relay client network %q: %w", c, err)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		p.clients = append(p.clients, pfx.Masked())
	}
	return p, nil
}

// Trust marks the session's client as allowed to relay whatever its
// address, as qmail's RELAYCLIENT does.
func (p *Policy) Trust() { p.trustAll = true }

// MayRelay reports whether client may send to non-local domains: a local
// pipe session, a trusted session, or an address inside a relay network.
func (p *Policy) MayRelay(client protocol.Client) bool {
	if p.trustAll || client.Local {
		return true
	}
	if !client.Addr.IsValid() {
		return false
	}
	a := client.Addr.Addr().Unmap()
	for _, pfx := range p.clients {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// IsLocal reports whether the forward-path rcpt is for a local domain:
// whether the canonical form of its domain (domain.Canonical: ASCII case
// folding, the IDNA A-label of a non-ASCII domain) is that of a local
// domain. A domain without a canonical form is not local. "postmaster"
// without a domain is always local (RFC 5321 section 4.5.1).
func (p *Policy) IsLocal(rcpt string) bool {
	if ascii.EqualFold(rcpt, "postmaster") {
		return true
	}
	d, ok := domain.Of(rcpt)
	if !ok {
		return false
	}
	c, err := domain.Canonical(d)
	return err == nil && p.local[c]
}

// CheckRecipient implements protocol.Policy: nil for a client that may
// relay, a client that authenticated with AUTH (RFC 4954; RFC 6409
// submission: that is all AUTH grants, for that session only), or a
// plain local recipient; ReplyDenied otherwise. A local
// recipient whose local part holds '%', '!' or '@' is refused to clients
// that may not relay: a smarthost that honours the percent hack or a bang
// path would otherwise relay it onwards (RFC 1123 section 5.2.16).
//
// With SetLocalRecipients, a recipient in a local domain, whoever the
// client, must also be a known user (checkUser).
func (p *Policy) CheckRecipient(env *protocol.Envelope, rcpt string) *protocol.Reply {
	if p.MayRelay(env.Client) || env.AuthUser != "" {
		return p.checkUser(rcpt)
	}
	if p.IsLocal(rcpt) && !routedLocalPart(rcpt) {
		return p.checkUser(rcpt)
	}
	return ReplyDenied
}

// SetLocalRecipients makes the policy refuse, with ReplyUnknownUser, a
// recipient in a local domain whose local part is not a name in the
// alias file path (package alias: the syntax of smtp-send's
// SMTP_SEND_ALIASES, usually that very file, where "alice: alice" lists
// a mailbox). postmaster is always accepted (RFC 5321 section 4.5.1).
// The file is read at the first recipient in a local domain, not before:
// a session that has none (most, on a relay) never reads it. When it
// cannot be read or parsed, such recipients get ReplyUsersUnavailable and
// onError, if not nil, is called once with the error. A process reads it
// once: in one-process mode (sessions sharing the Policy), a changed file
// takes effect at the next start.
func (p *Policy) SetLocalRecipients(path string, onError func(error)) {
	p.usersFile, p.onError = path, onError
}

// checkUser returns nil for rcpt unless SetLocalRecipients was called,
// rcpt is in a local domain, and its local part is neither postmaster
// nor a name of the file; ReplyUsersUnavailable when the file fails.
func (p *Policy) checkUser(rcpt string) *protocol.Reply {
	if p.usersFile == "" || !p.IsLocal(rcpt) {
		return nil
	}
	local := rcpt
	if i := strings.LastIndexByte(rcpt, '@'); i >= 0 {
		local = rcpt[:i]
	}
	if ascii.EqualFold(local, "postmaster") {
		return nil
	}
	p.once.Do(func() {
		p.users, p.usersErr = alias.Load(p.usersFile)
		if p.usersErr != nil && p.onError != nil {
			p.onError(p.usersErr)
		}
	})
	switch {
	case p.usersErr != nil:
		return ReplyUsersUnavailable
	case !p.users.Has(local):
		return ReplyUnknownUser
	}
	return nil
}

func routedLocalPart(rcpt string) bool {
	i := strings.LastIndexByte(rcpt, '@')
	if i < 0 {
		return false
	}
	return strings.ContainsAny(rcpt[:i], "%!@")
}
