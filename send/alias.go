package send

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/alias"
	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/route"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Alias expansion (Config.Aliases, SMTP_SEND_ALIASES), before routing:
// a pending recipient that the route table sends to a local transport
// and whose local part is an alias becomes a new message in the queue,
// its expansion, from the same reverse-path to the addresses the alias
// stands for, which are routed like any recipient (queue.SpoolExpansion,
// ordering rule 7). The alias recipient itself is then done. An
// expansion is delivered by the same worker right after its original,
// and is never expanded again: its recipients are final.
//
// DSN (RFC 3461 section 5.2.7): an alias of several addresses is a
// "multiple-recipient alias" (section 5.2.7.3): the alias recipient is
// recorded with Action "expanded", so that a sender whose NOTIFY names
// SUCCESS gets one "expanded" success notice for it (Status 2.0.0, RFC
// 3464 section 2.3.3; none for the null reverse-path), spooled by queue
// ordering rules 7 and 8 (exactly once across a crash), and its
// addresses get its NOTIFY without SUCCESS (NEVER when nothing else is
// left), so that the sender is not told of each delivery. An alias of
// one address is a "single-recipient alias" (section 5.2.7.2), a
// forwarding treated as a relay: no notice at the alias, its NOTIFY
// passed on whole, so that the one address's own delivery (or the next
// hop) reports success, with the alias as its Original-Recipient.
// Postfix differs there: both its local(8) and its virtual aliases
// (cleanup(8)) report "expanded" for one address too, holding that the
// forwarding is "none of the sender's business"; but RFC 3464 section
// 2.3.3 defines "expanded" as forwarded to multiple addresses, a
// non-final action, where a final "delivered" or "relayed" tells the
// sender more. The cost: that notice names the one address the alias
// forwards to (an alias that must stay confidential, RFC 3461 section
// 5.2.7.4, is not supported). Both kinds pass the ORCPT on, or the
// alias's own address when the client gave none (section 4.2), so that
// a later notice names the address the sender used.

// ExpandedStage is the Stage recorded for an alias recipient handed to
// its expansion (queue.Rcpt.Stage), and the Action of one whose alias
// has several addresses: a notice of success reports it with Action:
// expanded (RFC 3464 section 2.3.3).
const ExpandedStage = "expanded"

// maxDeliveredToScan bounds the octets of the header section read to
// find the Delivered-To: fields of a message (loop detection).
const maxDeliveredToScan = 1 << 20

// expand hands the alias recipients among todo to their expansions and
// returns the other recipients, to deliver now, and the queue ids of the
// expansions it spooled (or found spooled by a crashed run), to deliver
// after the message. A recipient whose expansion fails (a loop, the
// depth or fan-out limit) is failed in x.results. An error means the
// message could not be read or an outcome not recorded: stop.
func (w *worker) expand(x *msg, todo []int) (rest []int, expansions []string, err error) {
	cfg := &w.r.cfg
	m := x.it.Message()
	_, _, isExpansion := queue.ExpansionOf(m.QueueID)
	aliasing := cfg.Aliases.Len() > 0 && !isExpansion
	if !aliasing && len(cfg.Users) == 0 {
		return todo, nil, nil
	}
	var looped map[string]bool // Delivered-To: addresses, read once
	var done []expanded        // spooled, to record at once (rule 7)
	var seen map[string]bool   // addresses getting a copy, made on the first alias
	for _, i := range todo {
		addr := m.To[i]
		r, sh := cfg.Route(addr)
		if sh || !r.Kind.Local() {
			rest = append(rest, i)
			continue
		}
		if f := cfg.unknownUser(r, addr); f != nil {
			x.results[i] = f
			continue
		}
		if !aliasing {
			rest = append(rest, i)
			continue
		}
		to, isAlias, xerr := cfg.Aliases.Expand(addr, cfg.isLocalDomain)
		if !isAlias {
			rest = append(rest, i)
			continue
		}
		local, _ := splitAddr(addr)
		where := cfg.Aliases.File() + " line " + strconv.Itoa(cfg.Aliases.Line(local))
		switch {
		case errors.Is(xerr, alias.ErrTooDeep):
			x.results[i] = localFailure("", "5.4.6", "alias loop or nesting too deep: "+xerr.Error()+" ("+where+")")
			continue
		case errors.Is(xerr, alias.ErrTooMany):
			x.results[i] = localFailure("", "5.5.3", xerr.Error()+" ("+where+")")
			continue
		case xerr != nil:
			x.results[i] = localFailure("", "4.3.0", xerr.Error())
			continue
		}
		if looped == nil {
			if looped, err = deliveredTo(m.Content()); err != nil {
				return nil, nil, err
			}
		}
		if looped[foldAddr(addr)] {
			// RFC 3463 5.4.6: a message that already went through this
			// alias came back (a forward to an address that forwards
			// here); delivering it again would loop for ever.
			x.results[i] = localFailure("", "5.4.6", "mail forwarding loop: "+addr+" is already in a Delivered-To: field of the message ("+where+")")
			continue
		}
		if seen == nil {
			seen = w.finalRecipients(m.To)
		}
		fresh := dedupe(to, seen)
		if len(fresh) == 0 {
			// Every address already gets this message: as a recipient
			// of its own or through an earlier alias.
			done = append(done, expanded{i: i, n: len(to), had: len(to)})
			continue
		}
		id, err := x.it.SpoolExpansion(queue.Expansion{Index: i, To: fresh, DSN: expansionDSN(m.RcptDSN(i), addr, len(to), len(fresh)),
			Header: "Delivered-To: " + addr + "\r\n"})
		if err != nil {
			w.r.setFatal(err)
			return nil, nil, err
		}
		done = append(done, expanded{i, id, len(to), len(to) - len(fresh)})
		expansions = append(expansions, id)
	}
	if len(done) > 0 {
		if err := x.recordExpanded(done); err != nil {
			return nil, nil, err
		}
	}
	return rest, expansions, nil
}

// finalRecipients returns the recipients among to that are not aliases,
// folded (foldAddr): the addresses that get the message as it is, which
// no alias expansion of it repeats.
func (w *worker) finalRecipients(to []string) map[string]bool {
	cfg := &w.r.cfg
	seen := make(map[string]bool, len(to))
	for _, a := range to {
		if r, sh := cfg.Route(a); !sh && r.Kind.Local() {
			if _, isAlias, _ := cfg.Aliases.Expand(a, cfg.isLocalDomain); isAlias {
				continue
			}
		}
		seen[foldAddr(a)] = true
	}
	return seen
}

// dedupe returns the addresses of to not in seen (folded, foldAddr) and
// adds them to it: one copy per address however many aliases of a
// message name it, and none for an address that is a recipient of the
// message itself, as Postfix's duplicate_filter_limit and sendmail do.
func dedupe(to []string, seen map[string]bool) []string {
	var fresh []string
	for _, a := range to {
		if k := foldAddr(a); !seen[k] {
			seen[k] = true
			fresh = append(fresh, a)
		}
	}
	return fresh
}

// expanded is an alias recipient handed to its expansion: its index, the
// expansion's queue id ("" when every address already had a copy), the
// alias's number of addresses and how many of them already had a copy
// (dedupe), left out of the expansion.
type expanded struct {
	i   int
	id  string
	n   int
	had int
}

// recordExpanded records the alias recipients of done as done, in one
// acceptance record (ordering rule 7: after their expansions are
// spooled). A recipient whose expansion has several addresses is
// recorded with Action "expanded": RecordAccepted then gives the
// recipients whose NOTIFY names SUCCESS one success notice (rule 8).
func (x *msg) recordExpanded(done []expanded) error {
	r, st := x.w.r, x.it.State
	now := r.now()
	set := make([]queue.Update, 0, len(done))
	for _, d := range done {
		text := fmt.Sprintf("alias expanded to %d address(es), queue id %s", d.n, d.id)
		switch {
		case d.id == "":
			text = fmt.Sprintf("alias expanded to %d address(es), each already getting the message", d.n)
		case d.n < 0:
			text = "alias expanded, queue id " + d.id
		case d.had > 0:
			text = fmt.Sprintf("alias expanded to %d address(es), %d already getting the message, queue id %s", d.n, d.had, d.id)
		}
		rc := queue.Rcpt{Addr: st.Rcpts[d.i].Addr, Status: queue.Done, Enhanced: "2.0.0", Stage: ExpandedStage, Text: text, At: now}
		if d.n != 1 || d.id == "" {
			rc.Action = actionExpanded // RFC 3461 section 5.2.7.3
		}
		set = append(set, queue.Update{Index: d.i, Rcpt: rc})
	}
	if err := x.it.RecordAccepted(now, set); err != nil {
		r.setFatal(err)
		return err
	}
	for _, d := range done {
		x.w.logRcpt(x, d.i, ExpandedStage, st.Rcpts[d.i])
	}
	return nil
}

// expansionDSN returns the DSN parameters of the count addresses of the
// expansion of an alias of n addresses (RFC 3461 section 5.2.7; count is
// less than n when some already had a copy, dedupe): for several, the
// alias's NOTIFY without SUCCESS (its success is the "expanded" notice;
// NEVER if nothing else is left, section 5.2.7.3), for one, the alias's
// NOTIFY as it is (section 5.2.7.2); and its ORCPT, or the alias's own
// address as the original recipient when the client gave none (section
// 4.2: an ORCPT the relaying MTA adds names the recipient it received).
func expansionDSN(p spool.RcptDSN, addr string, n, count int) []spool.RcptDSN {
	notify := p.Notify
	if n != 1 && notify != "" && notify != "NEVER" {
		var keep []string
		for _, k := range strings.Split(notify, ",") {
			if k != "SUCCESS" {
				keep = append(keep, k)
			}
		}
		notify = strings.Join(keep, ",")
		if notify == "" {
			notify = "NEVER"
		}
	}
	orcpt := p.ORcpt
	if orcpt == "" {
		orcpt = "rfc822;" + addr
		for j := 0; j < len(addr); j++ {
			if addr[j] >= 0x80 {
				orcpt = "utf-8;" + addr // RFC 6533
				break
			}
		}
	}
	dsn := make([]spool.RcptDSN, count)
	for j := range dsn {
		dsn[j] = spool.RcptDSN{Notify: notify, ORcpt: orcpt}
	}
	return dsn
}

// deliveredTo reads the header section of a message (at most
// maxDeliveredToScan octets) and returns the addresses of its
// Delivered-To: fields, folded (foldAddr). It returns the reader's
// error, wrapped.
func deliveredTo(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	br := bufio.NewReader(io.LimitReader(r, maxDeliveredToScan))
	var field string
	flush := func() {
		name, val, ok := strings.Cut(field, ":")
		if ok && ascii.EqualFold(strings.TrimSpace(name), "Delivered-To") {
			v := strings.TrimSpace(val)
			v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
			out[foldAddr(v)] = true
		}
		field = ""
	}
	for range maxDeliveredToScan {
		line, err := br.ReadString('\n')
		l := strings.TrimRight(line, "\r\n")
		if l == "" && line != "" || err != nil && line == "" {
			flush()
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("send: reading the header: %w", err)
			}
			return out, nil
		}
		if l[0] == ' ' || l[0] == '\t' {
			field += l
			continue
		}
		flush()
		field = l
		if err != nil {
			flush()
			return out, nil
		}
	}
	return out, nil
}

// splitAddr cuts an address at its last "@".
func splitAddr(addr string) (local, dom string) {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

// foldAddr is an address's comparison form for loop detection: ASCII
// lower case throughout.
func foldAddr(addr string) string { return ascii.Lower(addr) }

// expansionSize returns the number of addresses of expansion id, read
// from its envelope in queue/, or -1 when it cannot be read (which
// recordExpanded takes as several: an "expanded" notice, which claims
// the least).
func (w *worker) expansionSize(id string) int {
	m, err := w.r.q.Spool().OpenMessage(id)
	if err != nil {
		w.r.log.Warn("cannot read an alias expansion's envelope", "expansion", id, "err", err)
		return -1
	}
	defer m.Close()
	return len(m.To)
}

// recoverExpansion completes ordering rule 7 for expansion id, found in
// queue/ never tried: its original p, if still queued, records the
// alias recipient i as done when a crash came between the expansion's
// spooling and that record. It runs before any delivery, so the
// expansion cannot be delivered, and gone, while the original would
// spool it again.
func (w *worker) recoverExpansion(p *queue.Entry, i int, id string) {
	x := w.open(p)
	if x == nil {
		return
	}
	defer x.it.Close()
	st := x.it.State
	if i >= len(st.Rcpts) || st.Rcpts[i].Status != queue.Pending {
		return
	}
	w.r.log.Warn("recording an alias expansion a crash interrupted", "id", p.ID, "expansion", id)
	size := w.expansionSize(id)
	n, had := size, 0
	// The alias's own size, as the crashed run saw it, when the alias
	// still expands: its expansion lacks the addresses that already had
	// a copy (dedupe).
	cfg := &w.r.cfg
	if to, ok, err := cfg.Aliases.Expand(st.Rcpts[i].Addr, cfg.isLocalDomain); ok && err == nil && len(to) >= size {
		n = len(to)
		if size >= 0 {
			had = n - size
		}
	}
	if x.recordExpanded([]expanded{{i, id, n, had}}) != nil {
		return
	}
	if !x.it.Gone() {
		w.settle(x, false)
	}
}

// unknownUser returns the failure of recipient addr on local route r
// when the route has a users= file that does not name its local part
// (ASCII case ignored): 5.1.1, bad destination mailbox (RFC 3463), a
// notice to the sender. postmaster always passes (RFC 5321 section
// 4.5.1). It returns nil otherwise, and a deferral (4.3.0) when the file
// was not loaded (loadUsers).
func (c *Config) unknownUser(r route.Route, addr string) *Failure {
	if r.Users == "" {
		return nil
	}
	local, _ := splitAddr(addr)
	if ascii.EqualFold(local, "postmaster") {
		return nil
	}
	tb, ok := c.Users[r.Users]
	switch {
	case !ok:
		return localFailure("", "4.3.0", "users file "+r.Users+" not loaded")
	case tb.Has(local):
		return nil
	}
	return localFailure("", "5.1.1", "no such user here: "+local+" is not in "+r.Users+
		" (users= of "+r.File+" line "+strconv.Itoa(r.Line)+")")
}

// LoadUsers reads the users= file of every route of c.Routes not yet in
// c.Users (package alias), so that a run never reads one in the middle
// of a delivery. It returns an error naming the route's line and the
// file's error (a missing file, or a *alias.LineError).
func (c *Config) LoadUsers() error {
	for _, r := range c.Routes.Routes() {
		if r.Users == "" {
			continue
		}
		if _, ok := c.Users[r.Users]; ok {
			continue
		}
		tb, err := alias.Load(r.Users)
		if err != nil {
			return fmt.Errorf("%s line %d: users=: %w", r.File, r.Line, err)
		}
		if c.Users == nil {
			c.Users = map[string]*alias.Table{}
		}
		c.Users[r.Users] = tb
	}
	return nil
}

// isLocalDomain reports whether the route table sends domain dom (its
// postmaster) to a local transport: the domains aliases apply to.
func (c *Config) isLocalDomain(dom string) bool {
	r, sh := c.Route("postmaster@" + dom)
	return !sh && r.Kind.Local()
}

// explainLocal is the outcome --explain gives for recipient rcpt on the
// local route r, after users= and aliases, or "" when neither applies.
func (c *Config) explainLocal(r route.Route, rcpt string) string {
	if err := c.LoadUsers(); err != nil {
		return "defer: " + err.Error()
	}
	if f := c.unknownUser(r, rcpt); f != nil {
		return "bounce at once: " + f.Enhanced + " " + f.Text
	}
	to, isAlias, err := c.Aliases.Expand(rcpt, c.isLocalDomain)
	if !isAlias {
		return ""
	}
	local, _ := splitAddr(rcpt)
	where := c.Aliases.File() + " line " + strconv.Itoa(c.Aliases.Line(local))
	if err != nil {
		return "bounce at once: " + err.Error() + " (" + where + ")"
	}
	return fmt.Sprintf("alias (%s): queue an expansion to %s, each address routed on its own (smtp-send --explain each)",
		where, strings.Join(to, ", "))
}
