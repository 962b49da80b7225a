package send

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"os"
	"strings"

	"github.com/emersion/go-message/textproto"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// maxMIMEDepth bounds the nesting the downgrade follows; deeper entities
// are treated as leaves. Each level holds its converted body in memory,
// so this also bounds memory to a few times the message size.
const maxMIMEDepth = 8

// body returns the source of the message data for the current session
// and its size: the spooled bytes, or, when the smarthost lacks 8BITMIME
// (RFC 6152) and the message has 8-bit bytes, a 7-bit MIME version made
// once per message, as Postfix does, rather than raw 8-bit bytes the
// server did not agree to.
// A message that cannot be converted fails with 5.6.3 (RFC 3463:
// conversion required but not supported); an error reading the spool is
// returned as error.
func (w *worker) body(x *msg) (func() io.Reader, int64, *Failure, error) {
	if w.sess.eight {
		return x.m.Content, x.m.Size, nil, nil
	}
	if x.body8 == 0 {
		has, err := has8bit(x.m.Content())
		if err != nil {
			return nil, 0, nil, err
		}
		x.body8 = -1
		if has {
			x.body8 = 1
		}
	}
	if x.body8 < 0 {
		return x.m.Content, x.m.Size, nil, nil
	}
	if x.down == nil {
		f, err := os.CreateTemp(w.r.sp.Path(spool.TmpDir), "send-7bit-")
		if err != nil {
			return nil, 0, nil, err
		}
		os.Remove(f.Name()) // anonymous: nothing to clean up after a crash
		bw := bufio.NewWriter(f)
		err = downgrade(bw, x.m.Content())
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			f.Close()
			if errors.Is(err, spool.ErrCorrupt) {
				return nil, 0, nil, err
			}
			return nil, 0, localFailure(w.sess.relay, "5.6.3", fmt.Sprintf(
				"the smarthost lacks 8BITMIME and the message cannot be converted to 7 bits: %v", err)), nil
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, nil, err
		}
		x.down, x.downN = f, fi.Size()
		w.r.log.Info("smarthost lacks 8BITMIME; sending a 7-bit MIME version", "id", x.e.ID, "relay", w.sess.relay)
	}
	return func() io.Reader { return io.NewSectionReader(x.down, 0, x.downN) }, x.downN, nil, nil
}

// headers8bit reports whether the message's header section has 8-bit
// bytes (RFC 6532 UTF-8 headers).
func (x *msg) headers8bit() bool {
	if x.hdr8 == 0 {
		x.hdr8 = -1
		if h, err := readHeaderSection(x.m.Content(), 1<<20); err == nil && !isASCII(string(h)) {
			x.hdr8 = 1
		}
	}
	return x.hdr8 > 0
}

func has8bit(r io.Reader) (bool, error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c >= 0x80 {
				return true, nil
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// downgrade writes the message from r to w with every 8-bit leaf part
// re-encoded as quoted-printable (base64 for "binary"), recursing into
// multipart and message/rfc822 entities (RFC 2045, RFC 2046 section 5).
// Header fields are left as they are; a multipart preamble and epilogue
// are dropped (RFC 2046 section 5.1.1: to be ignored).
func downgrade(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return err
	}
	b, changed, err := convert(&h, br, "text/plain", 0)
	if err != nil {
		return err
	}
	// Fields convert set go at the end of the header section, below the
	// trace fields that must stay on top (RFC 5321 section 4.4).
	var extra []string
	if changed {
		if cte := h.Get("Content-Transfer-Encoding"); cte != "" {
			h.Del("Content-Transfer-Encoding")
			extra = append(extra, "Content-Transfer-Encoding: "+cte)
		}
		if !h.Has("Mime-Version") {
			extra = append(extra, "MIME-Version: 1.0")
		}
	}
	var hb bytes.Buffer
	if err := textproto.WriteHeader(&hb, h); err != nil {
		return err
	}
	hb.Truncate(hb.Len() - 2) // the blank line
	for _, f := range extra {
		hb.WriteString(f + "\r\n")
	}
	hb.WriteString("\r\n")
	if _, err := w.Write(hb.Bytes()); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// convert rewrites one entity's body to 7 bits, changing its header h in
// place, and returns the new body and whether anything changed.
func convert(h *textproto.Header, body io.Reader, defType string, depth int) ([]byte, bool, error) {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if mt == "" || err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		mt = defType
	}
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	relabel := func() {
		if cte == "8bit" || cte == "binary" {
			h.Set("Content-Transfer-Encoding", "7bit")
		}
	}
	switch {
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < maxMIMEDepth:
		child := "text/plain"
		if mt == "multipart/digest" {
			child = "message/rfc822"
		}
		var buf bytes.Buffer
		mr := textproto.NewMultipartReader(body, params["boundary"])
		mw := textproto.NewMultipartWriter(&buf)
		if err := mw.SetBoundary(params["boundary"]); err != nil {
			return nil, false, err
		}
		changed := false
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, false, err
			}
			ph := p.Header
			b, ch, err := convert(&ph, p, child, depth+1)
			if err != nil {
				return nil, false, err
			}
			changed = changed || ch
			pw, err := mw.CreatePart(ph)
			if err != nil {
				return nil, false, err
			}
			if _, err := pw.Write(b); err != nil {
				return nil, false, err
			}
		}
		if err := mw.Close(); err != nil {
			return nil, false, err
		}
		relabel()
		return buf.Bytes(), changed, nil
	case mt == "message/rfc822" && depth < maxMIMEDepth:
		br := bufio.NewReader(body)
		ih, err := textproto.ReadHeader(br)
		if err != nil {
			return nil, false, err
		}
		b, _, err := convert(&ih, br, "text/plain", depth+1)
		if err != nil {
			return nil, false, err
		}
		var buf bytes.Buffer
		textproto.WriteHeader(&buf, ih)
		buf.Write(b)
		relabel()
		return buf.Bytes(), true, nil
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, false, err
	}
	if isASCII(string(b)) {
		return b, false, nil
	}
	var buf bytes.Buffer
	switch cte {
	case "quoted-printable":
		// Raw 8-bit bytes in quoted-printable (invalid, but seen):
		// =XX decodes to the same byte.
		for _, c := range b {
			if c >= 0x80 {
				fmt.Fprintf(&buf, "=%02X", c)
			} else {
				buf.WriteByte(c)
			}
		}
		return buf.Bytes(), true, nil
	case "base64":
		// 8-bit bytes are not in the base64 alphabet; decoders skip them.
		for _, c := range b {
			if c < 0x80 {
				buf.WriteByte(c)
			}
		}
		return buf.Bytes(), true, nil
	}
	if cte == "binary" {
		h.Set("Content-Transfer-Encoding", "base64")
		enc := base64.StdEncoding.EncodeToString(b)
		for len(enc) > 76 {
			buf.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		buf.WriteString(enc + "\r\n")
		return buf.Bytes(), true, nil
	}
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	qw := quotedprintable.NewWriter(&buf)
	qw.Write(b)
	qw.Close()
	return buf.Bytes(), true, nil
}

// readHeaderSection returns the message's header section, through the
// blank line that ends it, or the first limit bytes cut at a line end.
func readHeaderSection(r io.Reader, limit int) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, int64(limit)))
	var out []byte
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			out = append(out, line...)
			continue
		}
		if err != nil {
			if err == io.EOF {
				if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
					out = out[:i+1]
				}
				return out, nil
			}
			return out, err
		}
		out = append(out, line...)
		if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" {
			return out, nil
		}
	}
}
