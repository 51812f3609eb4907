// Package eslwire reads and writes FreeSWITCH Event Socket frames: a header
// block up to an empty line, then exactly Content-Length body bytes. It is
// shared by the ESL adapter and its simulator, and it is fuzzed: every byte it
// reads comes from outside.
package eslwire

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Content types seen on the wire (FreeSWITCH 1.10).
const (
	TypeAuthRequest = "auth/request"
	TypeReply       = "command/reply"
	TypeAPIResponse = "api/response"
	TypeEventPlain  = "text/event-plain"
	TypeEventJSON   = "text/event-json"
	TypeDisconnect  = "text/disconnect-notice"
	TypeRude        = "text/rude-rejection"
	TypeLog         = "log/data"
)

// Limits protect the reader from a peer that never ends a frame.
const (
	MaxHeaderBytes = 256 << 10 // one header block
	MaxBodyBytes   = 8 << 20   // one body
)

// ErrFrame is wrapped by every framing error.
var ErrFrame = errors.New("eslwire: bad frame")

// Header is one "Name: value" line; Value is as sent (plain events URL-encode it).
type Header struct {
	Name, Value string
}

// Headers is an ordered header block with case-insensitive look-up (first wins).
type Headers []Header

// Get returns the raw value of the first header named name ("" if absent).
func (h Headers) Get(name string) string {
	v, _ := h.Lookup(name)
	return v
}

// Lookup is Get that also says whether the header exists.
func (h Headers) Lookup(name string) (string, bool) {
	for i := range h {
		if strings.EqualFold(h[i].Name, name) {
			return h[i].Value, true
		}
	}
	return "", false
}

// Frame is one message on the socket.
type Frame struct {
	First   string // the first line as sent (a command line, when a client sent the frame)
	Headers Headers
	Body    []byte
}

// ContentType returns the frame's Content-Type.
func (f *Frame) ContentType() string { return f.Headers.Get("Content-Type") }

// ReplyText is Reply-Text, URL-decoded (the outbound connect reply encodes it),
// or the body of an api/response.
func (f *Frame) ReplyText() string {
	if v, ok := f.Headers.Lookup("Reply-Text"); ok {
		return Decode(v)
	}
	return string(f.Body)
}

// Reader reads frames from a connection.
type Reader struct {
	br *bufio.Reader
}

// readBuf is a Reader's buffer. Outbound mode has a connection (and a Reader)
// per call, so this is paid per call in flight: 4 KiB holds any usual header
// line; a longer one is collected whole (up to MaxHeaderBytes) and a body
// longer than the buffer is read straight into its own slice.
const readBuf = 4 << 10

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBuf)}
}

// ReadFrame reads one frame. Empty lines between frames are skipped.
func (r *Reader) ReadFrame() (*Frame, error) {
	hs, first, err := readHeaderBlock(r.br)
	if err != nil {
		return nil, err
	}
	f := &Frame{First: first, Headers: hs}
	if cl, ok := hs.Lookup("Content-Length"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(cl))
		if err != nil || n < 0 || n > MaxBodyBytes {
			return nil, fmt.Errorf("%w: Content-Length %q", ErrFrame, cl)
		}
		if n > 0 {
			f.Body = make([]byte, n)
			if _, err := io.ReadFull(r.br, f.Body); err != nil {
				return nil, fmt.Errorf("eslwire: body: %w", err)
			}
		}
	}
	return f, nil
}

// readHeaderBlock reads "Name: value" lines to an empty line. Leading empty
// lines are skipped; CR before LF is dropped.
func readHeaderBlock(br *bufio.Reader) (Headers, string, error) {
	var hs Headers
	var first string
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// a very long line: collect it whole, bounded
			buf := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull && len(buf) <= MaxHeaderBytes {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if err != nil {
			if err == io.EOF && len(line) == 0 && len(hs) == 0 {
				return nil, "", io.EOF
			}
			if err == bufio.ErrBufferFull {
				return nil, "", fmt.Errorf("%w: header line too long", ErrFrame)
			}
			if err == io.EOF {
				return nil, "", io.ErrUnexpectedEOF
			}
			return nil, "", err
		}
		total += len(line)
		if total > MaxHeaderBytes {
			return nil, "", fmt.Errorf("%w: header block too long", ErrFrame)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if len(hs) == 0 {
				continue
			}
			return hs, first, nil
		}
		if len(hs) == 0 {
			first = string(line)
		}
		hs = append(hs, parseHeaderLine(line))
	}
}

func parseHeaderLine(line []byte) Header {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return Header{Name: string(line)}
	}
	v := line[i+1:]
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return Header{Name: string(line[:i]), Value: string(v)}
}

// ParseHeaderBlock parses a header block held in b (a plain event body, an
// uuid_dump reply) and returns what follows it: the inner body, cut to its
// Content-Length when there is one.
func ParseHeaderBlock(b []byte) (Headers, []byte, error) {
	// one string for the block: header names and values are slices of it
	b = bytes.TrimLeft(b, "\r\n")
	end := bytes.Index(b, []byte("\n\n"))
	if end < 0 {
		end = len(b)
	}
	s := string(b[:end])
	if end+2 <= len(b) {
		b = b[end+2:]
	} else {
		b = nil
	}
	hs := make(Headers, 0, strings.Count(s, "\n")+1)
	for len(s) > 0 {
		var line string
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			line, s = s, ""
		}
		line = strings.TrimRight(line, "\r")
		if line == "" {
			if len(hs) == 0 {
				continue
			}
			break
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		hs = append(hs, Header{Name: name, Value: value})
	}
	if cl, ok := hs.Lookup("Content-Length"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(cl))
		if err != nil || n < 0 {
			return hs, nil, fmt.Errorf("%w: inner Content-Length %q", ErrFrame, cl)
		}
		if n < len(b) {
			b = b[:n]
		}
		return hs, b, nil
	}
	return hs, nil, nil
}

// Event is a plain event: its headers (raw, URL-encoded) and inner body.
type Event struct {
	Headers Headers
	Body    []byte
}

// ParseEvent parses the body of a text/event-plain frame.
func ParseEvent(body []byte) (*Event, error) {
	hs, inner, err := ParseHeaderBlock(body)
	if len(hs) == 0 && err == nil {
		err = fmt.Errorf("%w: empty event", ErrFrame)
	}
	return &Event{Headers: hs, Body: inner}, err
}

// Get returns the decoded value of header name.
func (e *Event) Get(name string) string { return Decode(e.Headers.Get(name)) }

// Raw returns the value of header name as sent.
func (e *Event) Raw(name string) string { return e.Headers.Get(name) }

// Name is Event-Name.
func (e *Event) Name() string { return e.Headers.Get("Event-Name") }

// Decode URL-decodes a plain header value. Unlike url.PathUnescape it never
// gives up: a `%` not followed by two hex digits is kept as it is (eslgo's
// GetHeader returns "" there), and `+` stays `+` (FreeSWITCH encodes it).
func Decode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			h, ok1 := unhex(s[i+1])
			l, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b = append(b, h<<4|l)
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	return string(b)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Encode encodes s as FreeSWITCH does in plain events: bytes below 0x20 or
// above 0x7E and ` #%&+:;<=>?@[\]^{|}"` plus CR/LF and backtick become %XX,
// except a `%` already followed by two upper-case hex digits, which is kept.
func Encode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isUpperHex(s[i+1]) && isUpperHex(s[i+2]) {
			b.WriteByte(c)
			continue
		}
		if c < 0x20 || c > 0x7e || strings.IndexByte(" #%&+:;<=>?@[\\]^`{|}\"", c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isUpperHex(c byte) bool { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') }

// ErrUnsafe is returned when a command line or header would split the command.
var ErrUnsafe = errors.New("eslwire: CR, LF or NUL in a command")

// AppendCommand appends a command: its line, headers, and the body with a
// Content-Length header when body is not empty. It refuses CR, LF and NUL in
// the line and headers, so no value can end the command early.
func AppendCommand(dst []byte, line string, headers []Header, body []byte) ([]byte, error) {
	if unsafeLine(line) {
		return dst, ErrUnsafe
	}
	dst = append(dst, line...)
	dst = append(dst, '\n')
	for _, h := range headers {
		if unsafeLine(h.Name) || unsafeLine(h.Value) || strings.IndexByte(h.Name, ':') >= 0 {
			return dst, ErrUnsafe
		}
		dst = append(dst, h.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, h.Value...)
		dst = append(dst, '\n')
	}
	if len(body) > 0 {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(body)), 10)
		dst = append(dst, "\n\n"...)
		dst = append(dst, body...)
		return dst, nil
	}
	return append(dst, '\n'), nil
}

func unsafeLine(s string) bool { return strings.ContainsAny(s, "\r\n\x00") }

// AppendFrame appends a frame as a server writes it: headers, then the body
// with Content-Length (placed first, as FreeSWITCH does for events).
func AppendFrame(dst []byte, headers []Header, body []byte) []byte {
	if len(body) > 0 {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(body)), 10)
		dst = append(dst, '\n')
	}
	for _, h := range headers {
		dst = append(dst, h.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, h.Value...)
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	return append(dst, body...)
}

// NewUUID returns a random RFC 4122 UUID (for Job-UUID headers).
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
