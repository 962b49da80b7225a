package protocol

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// BDAT (RFC 3030, CHUNKING): the message comes in chunks, each counted in
// octets, so no byte of it is special: no dot-stuffing, no end-of-data
// line. The chunks feed the same body path as DATA (message.go, body.go),
// so every rule on the content (bare CR/LF, the header check, the
// Received: header, the hop count, the size limit) is DATA's.
//
// Framing is all: the octets of a chunk are read whatever the reply to
// its BDAT, even when the command is refused (out of sequence, bad
// arguments after the size, the message refused), so that they are never
// read as commands (emersion/go-smtp#315; the smuggling of CVE-2023-51764
// and kin). When the size itself cannot be read, where the chunk ends is
// unknown: the session replies 501 and ends (ErrChunkSize).

// maxChunkDigits bounds the digits of a chunk size: 18 always fit in an
// int64. A longer size is unreadable (ErrChunkSize).
const maxChunkDigits = 18

// parseBdat parses the arguments of BDAT: chunk-size [SP end-marker],
// chunk-size = 1*DIGIT, end-marker = "LAST" (RFC 3030 section 2, "LAST"
// in any case, as every keyword). It sets cmd.Chunk as soon as the size
// reads, even when what follows it is wrong, so that the session can
// still read the chunk.
func parseBdat(cmd Command) (Command, error) {
	f := strings.Fields(cmd.Arg)
	if len(f) == 0 || len(f[0]) > maxChunkDigits || strings.Trim(f[0], "0123456789") != "" {
		return cmd, replyBdatSize
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return cmd, replyBdatSize
	}
	cmd.Chunk, cmd.ChunkSize = true, n
	switch {
	case len(f) == 1:
	case len(f) == 2 && upperASCII(f[1]) == "LAST":
		cmd.Last = true
	default:
		return cmd, replyBdatSyntax
	}
	return cmd, nil
}

// offersChunking reports whether the EHLO reply offers CHUNKING.
func (s *Session) offersChunking() bool { return s.cfg.Withhold&ExtCHUNKING == 0 }

// bdat carries out BDAT (RFC 3030 section 2): the first chunk of a
// transaction (StateRcpt) begins the message as DATA does; every chunk is
// read whole into it and answered 250, or, when the message went over
// Config.MaxMessageSize, 552 and the transaction ends; LAST ends the
// message, with 250 only once Commit has returned nil, or the refusal
// DATA would give. A failed read ends the session and aborts the message.
func (s *Session) bdat(cmd Command) (*Reply, error) {
	if s.env.Protocol != "ESMTP" { // CHUNKING is offered only in an EHLO reply
		return s.skipChunk(cmd, s.refuse(cmd.Verb, replyBdatNeedEHLO))
	}
	m := s.chunked
	if m == nil {
		var r *Reply
		if m, r = s.openMessage(); r != nil {
			return s.skipChunk(cmd, r)
		}
		s.chunked, s.state = m, StateBdat
	}
	if err := s.readChunk(cmd, m.body); err != nil {
		s.chunked = nil
		s.abortMessage(m)
		s.reset()
		return s.readError(err, "bdat")
	}
	m.chunks++
	switch {
	case m.body.tooBig():
		s.chunked = nil
		s.reset()
		return s.refuseTooBig(m), nil
	case !cmd.Last:
		return replyChunkOK(cmd.ChunkSize), nil
	}
	s.chunked = nil
	s.reset()
	return s.closeMessage(m), nil
}

// skipChunk reads and drops the chunk of a refused BDAT and returns r,
// the refusal. A BDAT whose size did not read ends the session with 501
// instead: its chunk cannot be found.
func (s *Session) skipChunk(cmd Command, r *Reply) (*Reply, error) {
	if !cmd.Chunk {
		s.log.Warn("BDAT size unreadable; closing", "arg", truncate([]byte(cmd.Arg), 100))
		return replyBdatSize, ErrChunkSize
	}
	if err := s.readChunk(cmd, io.Discard); err != nil {
		return s.readError(err, "bdat")
	}
	return r, nil
}

// readChunk reads the chunk of cmd into w, with the DATA timeout per
// block and the minimum data rate over the chunk (Session.dataDeadline).
func (s *Session) readChunk(cmd Command, w io.Writer) error {
	start := s.cfg.Now()
	return readChunk(s.r, cmd.ChunkSize, w, func(read int64) error { return s.dataDeadline(start, read) })
}

// readChunk is the BDAT framing of the one body path: it copies exactly
// n octets of r to w, whatever they are, as they arrive; w is a
// bodyWriter or io.Discard, which never fail. beforeRead, when not nil,
// runs before every read from the reader underneath r, as
// DataOptions.BeforeRead. It returns io.ErrUnexpectedEOF when r ends
// first, or the error of the read or of beforeRead.
func readChunk(r *bufio.Reader, n int64, w io.Writer, beforeRead func(read int64) error) error {
	var read int64
	for read < n {
		if err := awaitInput(r, read, beforeRead); err != nil {
			return err
		}
		k := int(min(int64(r.Buffered()), n-read))
		p, _ := r.Peek(k)
		w.Write(p)
		r.Discard(k)
		read += int64(k)
	}
	return nil
}
