package call

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// CleanValue reduces a value from a caller or a CRM to a form that is safe in
// any PBX channel variable, dialplan expansion, ESL command line or log line:
// valid UTF-8; no control, format or line-separator characters; none of the
// characters PBXes treat specially (`$ { } \ " `+"`"+`); commas and semicolons,
// which split Asterisk application arguments, become spaces; runs of white space
// fold to one space; at most MaxValueLen runes.
func CleanValue(s string) string {
	return clean(s, MaxValueLen)
}

// CleanValueN is CleanValue with a caller-chosen bound in runes.
func CleanValueN(s string, max int) string {
	return clean(s, max)
}

func clean(s string, max int) string {
	if max <= 0 {
		max = MaxValueLen
	}
	if isPlain(s) && len(s) <= max {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), max*2))
	n := 0
	space := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError && size <= 1 {
			continue
		}
		switch {
		case r == ',' || r == ';' || unicode.IsSpace(r):
			space = true
			continue
		case unsafeRune(r):
			continue
		}
		if space && n > 0 {
			if n+1 >= max {
				break
			}
			b.WriteByte(' ')
			n++
		}
		space = false
		b.WriteRune(r)
		n++
		if n >= max {
			break
		}
	}
	return b.String()
}

// isPlain reports whether s is printable ASCII with nothing CleanValue changes.
func isPlain(s string) bool {
	prevSpace := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return false
		}
		switch c {
		case '$', '{', '}', '\\', '"', '`', ',', ';':
			return false
		case ' ':
			if prevSpace {
				return false
			}
			prevSpace = true
			continue
		}
		prevSpace = false
	}
	return !prevSpace || s == ""
}

func unsafeRune(r rune) bool {
	switch r {
	case '$', '{', '}', '\\', '"', '`':
		return true
	}
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) ||
		unicode.Is(unicode.Zp, r) || unicode.Is(unicode.Co, r) || r == utf8.RuneError
}

// CleanToken keeps only ASCII letters, digits and `+ - _ . @ :`, at most 64
// characters: for values that are identifiers (match, source, E.164, flags).
func CleanToken(s string) string {
	if len(s) <= 64 && isToken(s) {
		return s // nothing to drop: no copy
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '+' || c == '-' || c == '_' || c == '.' || c == '@' || c == ':':
			b.WriteByte(c)
		}
	}
	return b.String()
}

// CleanCallID is CleanToken for a callpop call id, which may also hold
// one `/` between the name of the PBX and its channel id ("ast-a/1712345.67",
// pbxes): the PBX name and the token after it, each cleaned.
func CleanCallID(s string) string {
	name, id, ok := strings.Cut(s, "/")
	if !ok {
		return CleanToken(s)
	}
	name, id = CleanToken(name), CleanToken(strings.ReplaceAll(id, "/", ""))
	switch {
	case name == "":
		return id
	case id == "":
		return name
	}
	return name + "/" + id
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '+' || c == '-' || c == '_' || c == '.' || c == '@' || c == ':':
		default:
			return false
		}
	}
	return true
}

// urlSpecial are the printable ASCII characters CleanURL encodes.
const urlSpecial = "${}\\\",;`<>|^"

// CleanURL makes a URL safe as a channel variable or header value: characters
// outside printable ASCII, white space, and `$ { } \ " , ; `+"`"+` < >` are
// percent-encoded; at most MaxURLLen bytes (cut before a partial escape).
func CleanURL(s string) string {
	if len(s) <= MaxURLLen && isPlainURL(s) {
		return s // nothing to encode: no copy
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		var enc bool
		switch {
		case c <= 0x20 || c >= 0x7f:
			enc = true
		case strings.IndexByte(urlSpecial, c) >= 0:
			enc = true
		}
		if enc {
			if b.Len()+3 > MaxURLLen {
				break
			}
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		if b.Len()+1 > MaxURLLen {
			break
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isPlainURL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || strings.IndexByte(urlSpecial, c) >= 0 {
			return false
		}
	}
	return true
}
