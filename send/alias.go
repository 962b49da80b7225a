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

// ExpandedStage is the Stage recorded for an alias recipient handed to
// its expansion (queue.Rcpt.Stage): a notice of success reports such a
// recipient with Action: expanded (RFC 3464 section 2.3.3).
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
	if cfg.Aliases.Len() == 0 {
		return todo, nil, nil
	}
	if _, _, ok := queue.ExpansionOf(m.QueueID); ok {
		return todo, nil, nil
	}
	isLocal := func(dom string) bool {
		r, sh := cfg.Route("postmaster@" + dom)
		return !sh && r.Kind.Local()
	}
	var looped map[string]bool // Delivered-To: addresses, read once
	for _, i := range todo {
		addr := m.To[i]
		r, sh := cfg.Route(addr)
		if sh || !r.Kind.Local() {
			rest = append(rest, i)
			continue
		}
		to, isAlias, xerr := cfg.Aliases.Expand(addr, isLocal)
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
		id, err := x.it.SpoolExpansion(queue.Expansion{Index: i, To: to, DSN: expansionDSN(m.RcptDSN(i), addr, len(to)),
			Header: "Delivered-To: " + addr + "\r\n"})
		if err != nil {
			w.r.setFatal(err)
			return nil, nil, err
		}
		if err := x.recordExpanded(i, id, len(to)); err != nil {
			return nil, nil, err
		}
		expansions = append(expansions, id)
	}
	return rest, expansions, nil
}

// recordExpanded records alias recipient i as done, handed to expansion
// id of n addresses, n < 0 when not known (ordering rule 7: after the
// expansion is spooled).
func (x *msg) recordExpanded(i int, id string, n int) error {
	r, st := x.w.r, x.it.State
	text := fmt.Sprintf("alias expanded to %d address(es), queue id %s", n, id)
	if n < 0 {
		text = "alias expanded, queue id " + id
	}
	rc := queue.Rcpt{Addr: st.Rcpts[i].Addr, Status: queue.Done, Enhanced: "2.0.0", Stage: ExpandedStage, Text: text, At: r.now()}
	if err := x.it.RecordAccepted(rc.At, []queue.Update{{Index: i, Rcpt: rc}}); err != nil {
		r.setFatal(err)
		return err
	}
	x.w.logRcpt(x, i, ExpandedStage, st.Rcpts[i])
	return nil
}

// expansionDSN returns the DSN parameters of the n addresses of an
// alias's expansion (RFC 3461 section 6.2.7): the alias's NOTIFY without
// SUCCESS (its success is the expansion itself; NEVER if nothing else is
// left), and its ORCPT, or the alias's own address as the original
// recipient when the client gave none (RFC 3461 section 4.2).
func expansionDSN(p spool.RcptDSN, addr string, n int) []spool.RcptDSN {
	notify := p.Notify
	if notify != "" && notify != "NEVER" {
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
	dsn := make([]spool.RcptDSN, n)
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
	if x.recordExpanded(i, id, -1) != nil {
		return
	}
	if !x.it.Gone() {
		w.settle(x, false)
	}
}
