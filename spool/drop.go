package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
)

// This file is the drop stream: how a message file of this format
// travels through a pipe, from sendmail run by an ordinary user to the
// setgid drop helper (cmd/smtp-drop), which writes it into drop/ for
// smtp-send's pickup (package queue). A pipe cannot be patched in place
// as Writer patches the message size and CRC, so the stream is the
// message file with both fields still zero, then a trailer that gives
// them and where they go:
//
//	smtp-drop-end SIZEOFF CRCOFF SIZE CRC\n
//
// SIZEOFF, CRCOFF and SIZE are 20 decimal digits, CRC 8 hex digits: 86
// bytes in all (DropTrailerLen). The helper copies everything before the
// trailer, then writes SIZE and CRC at their offsets (CopyDrop). A stream
// without a trailer (sendmail killed, input cut short) is refused, and the
// helper leaves nothing. The helper checks only the trailer's form: the
// file it leaves is untrusted, and the pickup reads it with Open, which
// checks everything (format, envelope, size and CRC-32C).

// dropMagic starts the trailer of a drop stream.
const dropMagic = "smtp-drop-end "

// DropTrailerLen is the length in bytes of a drop stream's trailer.
const DropTrailerLen = len(dropMagic) + 3*sizeWidth + crcWidth + 4

// ErrDropTooBig is wrapped by CopyDrop's error when the stream is longer
// than its limit.
var ErrDropTooBig = errors.New("spool: message file over the size limit")

// ErrDropTruncated is wrapped by CopyDrop's error when the stream does not
// end with a well-formed trailer: its writer did not finish.
var ErrDropTruncated = errors.New("spool: drop stream ends without its trailer")

// DropWriter writes one message file as a drop stream into a pipe: the
// envelope at once (NewDropWriter), the message bytes by Write, the
// trailer by Close. It is not safe for concurrent use.
type DropWriter struct {
	bw      *bufio.Writer
	crc     hash.Hash32
	size    int64
	sizeOff int64
	crcOff  int64
	err     error
}

// NewDropWriter validates env and writes its envelope section to w. It
// returns Validate's error, or w's.
func NewDropWriter(w io.Writer, env *Envelope) (*DropWriter, error) {
	if err := env.Validate(); err != nil {
		return nil, err
	}
	hdr := encodeEnvelope(env)
	d := &DropWriter{bw: bufio.NewWriterSize(w, 64<<10), crc: newCRC()}
	d.sizeOff = int64(len(hdr.prefix))
	d.crcOff = d.sizeOff + sizeWidth + int64(len(hdr.middle))
	if _, err := io.WriteString(d.bw, hdr.prefix+zeros(sizeWidth)+hdr.middle+zeros(crcWidth)+hdr.suffix); err != nil {
		return nil, fmt.Errorf("spool: write envelope: %w", err)
	}
	return d, nil
}

// Write appends message bytes (CRLF line endings). Errors are sticky.
func (d *DropWriter) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.bw.Write(p)
	d.crc.Write(p[:n])
	d.size += int64(n)
	if err != nil {
		d.err = fmt.Errorf("spool: write: %w", err)
	}
	return n, d.err
}

// Close writes the trailer and flushes; it does not close the pipe. Only
// a stream whose trailer was written is taken by CopyDrop. It returns the
// first write error.
func (d *DropWriter) Close() error {
	if d.err != nil {
		return d.err
	}
	fmt.Fprintf(d.bw, "%s%0*d %0*d %0*d %08x\n", dropMagic, sizeWidth, d.sizeOff, sizeWidth, d.crcOff,
		sizeWidth, d.size, d.crc.Sum32())
	if err := d.bw.Flush(); err != nil {
		d.err = fmt.Errorf("spool: write: %w", err)
	}
	return d.err
}

// CopyDrop copies the drop stream src into dst, a new empty file opened
// for reading and writing, and writes the size and CRC its trailer gives
// at the offsets it gives. It writes at most limit bytes into dst and
// stops reading there: a longer stream returns an error wrapping
// ErrDropTooBig. A stream that ends without a well-formed trailer, or
// whose offsets do not point at zero placeholders inside what was
// written, returns an error wrapping ErrDropTruncated. Other errors are
// src's or dst's, wrapped. On error dst holds a partial copy: the caller
// removes it. dst is not synced.
func CopyDrop(dst *os.File, src io.Reader, limit int64) error {
	buf := make([]byte, 64<<10)
	var held []byte // the last DropTrailerLen bytes read, not yet written
	var written int64
	for {
		n, rerr := src.Read(buf)
		held = append(held, buf[:n]...)
		if over := len(held) - DropTrailerLen; over > 0 {
			if written+int64(over) > limit {
				return fmt.Errorf("%w: more than %d bytes", ErrDropTooBig, limit)
			}
			if _, err := dst.Write(held[:over]); err != nil {
				return fmt.Errorf("spool: write: %w", err)
			}
			written += int64(over)
			held = append(held[:0], held[over:]...)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("spool: read: %w", rerr)
		}
	}
	t, ok := parseTrailer(held)
	if !ok || t.sizeOff+sizeWidth > t.crcOff || t.crcOff+crcWidth > written {
		return ErrDropTruncated
	}
	for _, p := range []struct {
		off int64
		val string
	}{{t.sizeOff, fmt.Sprintf("%0*d", sizeWidth, t.size)}, {t.crcOff, fmt.Sprintf("%08x", t.crc)}} {
		old := make([]byte, len(p.val))
		if _, err := dst.ReadAt(old, p.off); err != nil {
			return fmt.Errorf("spool: read back: %w", err)
		}
		if !bytes.Equal(old, []byte(zeros(len(p.val)))) {
			return fmt.Errorf("%w: no placeholder at offset %d", ErrDropTruncated, p.off)
		}
		if _, err := dst.WriteAt([]byte(p.val), p.off); err != nil {
			return fmt.Errorf("spool: write: %w", err)
		}
	}
	return nil
}

type trailer struct {
	sizeOff, crcOff, size int64
	crc                   uint32
}

// parseTrailer reads b as a trailer, strictly: the magic, three fields of
// sizeWidth digits, one of crcWidth hex digits, single spaces, LF.
func parseTrailer(b []byte) (trailer, bool) {
	var t trailer
	rest, ok := bytes.CutPrefix(b, []byte(dropMagic))
	if !ok || len(b) != DropTrailerLen || b[len(b)-1] != '\n' {
		return t, false
	}
	var nums [3]int64
	for i := range nums {
		f := rest[:sizeWidth]
		if rest[sizeWidth] != ' ' {
			return t, false
		}
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil || n < 0 || f[0] == '+' || f[0] == '-' {
			return t, false
		}
		nums[i] = n
		rest = rest[sizeWidth+1:]
	}
	c, err := strconv.ParseUint(string(rest[:crcWidth]), 16, 32)
	if err != nil || rest[0] == '+' {
		return t, false
	}
	return trailer{nums[0], nums[1], nums[2], uint32(c)}, true
}
