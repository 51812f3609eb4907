package eslsim

import "strings"

// FreeSWITCH's string splitting, modelled line by line on switch_utils.c
// (switch_separate_string, separate_string_blank_delim,
// separate_string_char_delim, cleanup_separated_string, unescape_char,
// switch_find_end_paren) and switch_event.c (switch_event_create_brackets),
// as in FreeSWITCH 1.10: what `originate` does to its argument and to the
// {var=value,…} list of a dial string.

// SeparateString is switch_separate_string: buf split on delim into at most
// max fields. "^^<c>" at the start of buf makes c the delimiter. A blank
// delimiter skips runs of spaces; `'` pairs group (and are removed); a
// backslash keeps the next character from splitting; each field is then
// cleaned: leading and trailing spaces trimmed, quote pairs removed, and
// `\'` `\"` `\\` `\<delim>` `\n` `\r` `\t` `\s` unescaped (any other
// backslash stays).
func SeparateString(buf string, delim byte, max int) []string {
	if buf == "" || max <= 0 {
		return nil
	}
	if len(buf) >= 4 && buf[0] == '^' && buf[1] == '^' {
		delim = buf[2]
		buf = buf[3:]
	}
	b := []byte(buf)
	var starts []int
	var ends []int
	if delim == ' ' {
		starts, ends = separateBlank(b, max)
	} else {
		starts, ends = separateChar(b, delim, max)
	}
	out := make([]string, len(starts))
	for i := range starts {
		cd := delim
		if delim == ' ' {
			cd = 0
		}
		out[i] = cleanupSeparated(b[starts[i]:ends[i]], cd)
	}
	return out
}

// separateChar is separate_string_char_delim: the fields' bounds.
func separateChar(b []byte, delim byte, max int) (starts, ends []int) {
	inQuotes := false
	started := false
	i := 0
	for i < len(b) && len(starts) < max {
		if !started {
			starts = append(starts, i)
			started = true
			continue
		}
		switch {
		case b[i] == '\\':
			i++
		case b[i] == '\'' && (inQuotes || strings.IndexByte(string(b[i+1:]), '\'') >= 0):
			inQuotes = !inQuotes
		case b[i] == delim && !inQuotes:
			ends = append(ends, i)
			started = false
		}
		i++
	}
	if len(ends) < len(starts) {
		ends = append(ends, len(b))
	}
	return starts, ends
}

// separateBlank is separate_string_blank_delim: the fields' bounds.
func separateBlank(b []byte, max int) (starts, ends []int) {
	const (
		start = iota
		skipInitial
		findDelim
		skipEnding
	)
	state := start
	inQuotes := false
	i := 0
	for i < len(b) && len(starts) < max {
		switch state {
		case start:
			starts = append(starts, i)
			state = skipInitial
		case skipInitial:
			if b[i] == ' ' {
				i++
			} else {
				state = findDelim
			}
		case findDelim:
			switch {
			case b[i] == '\\':
				i++
			case b[i] == '\'':
				inQuotes = !inQuotes
			case b[i] == ' ' && !inQuotes:
				ends = append(ends, i)
				state = skipEnding
			}
			i++
		case skipEnding:
			if b[i] == ' ' {
				i++
			} else {
				state = start
			}
		}
	}
	if len(ends) < len(starts) {
		ends = append(ends, len(b))
	}
	return starts, ends
}

// cleanupSeparated is cleanup_separated_string (delim 0 for a blank split).
func cleanupSeparated(s []byte, delim byte) string {
	p := 0
	for p < len(s) && s[p] == ' ' {
		p++
	}
	dest := make([]byte, 0, len(s)-p)
	end := -1
	inQuotes := false
	for ; p < len(s); p++ {
		esc := false
		if s[p] == '\\' {
			var e byte
			if p+1 < len(s) {
				e = s[p+1]
			}
			if e != 0 && (e == '\'' || e == '"' || (delim != 0 && e == delim) || e == '\\' || unescapeChar(e) != e) {
				if unescapeChar(e) != e {
					e = unescapeChar(e)
				}
				p++
				dest = append(dest, e)
				end = len(dest)
				esc = true
			}
		}
		if !esc {
			if s[p] == '\'' && (inQuotes || strings.IndexByte(string(s[p+1:]), '\'') >= 0) {
				inQuotes = !inQuotes
				if inQuotes {
					end = len(dest)
				}
			} else {
				dest = append(dest, s[p])
				if s[p] != ' ' || inQuotes {
					end = len(dest)
				}
			}
		}
	}
	if end >= 0 {
		dest = dest[:end]
	}
	return string(dest)
}

// unescapeChar is unescape_char: \n \r \t \s; others unchanged.
func unescapeChar(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 's':
		return ' '
	}
	return c
}

// findEndParen is switch_find_end_paren: the index in s of the close that
// ends the open s starts with (after spaces), or -1.
func findEndParen(s string, open, close byte) int {
	i := 0
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i >= len(s) || s[i] != open {
		return -1
	}
	depth := 1
	for j := i + 1; j < len(s); j++ {
		if s[j] == open && open != close {
			depth++
		} else if s[j] == close {
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// Var is one variable a {…} list set, in order.
type Var struct{ Name, Value string }

// CreateBrackets is switch_event_create_brackets for data starting with
// open (`{…}`, `[…]`): the variables of the list (each field split on sep,
// "^^<c>" at its start choosing another separator, then on the first `=`,
// both split with SeparateString's quoting and escapes; a field without `=`
// is ignored) and the data after the close. ok is false for an unbalanced
// list (FreeSWITCH's "Parse Error!").
func CreateBrackets(data string, open, close, sep byte) (vars []Var, rest string, ok bool) {
	end := findEndParen(data, open, close)
	if end < 0 {
		return nil, data, false
	}
	start := strings.IndexByte(data, open)
	inner := data[start+1 : end]
	rest = data[end+1:]
	if len(inner) >= 3 && inner[0] == '^' && inner[1] == '^' {
		sep = inner[2]
		inner = inner[3:]
	}
	for _, f := range SeparateString(inner, sep, 1024) {
		nv := SeparateString(f, '=', 2)
		if len(nv) == 2 {
			vars = append(vars, Var{nv[0], nv[1]})
		}
	}
	return vars, rest, true
}
