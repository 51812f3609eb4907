package arisim

import (
	"bufio"
	"strings"
)

// How Asterisk 22.10.1 reads an AGI command and runs `EXEC MSet`, as its C
// source does it. The simulator's AGI plays it, and callpop's router tests
// check their FastAGI commands against it: one model, not two.

// AGIBufLen is res_agi's AGI_BUF_LEN, the buffer a command line is read
// into: fgets reads at most AGIBufLen-1 bytes, so a longer line (with its
// newline) is cut and the rest read as the next command.
const AGIBufLen = 8192

// agiMaxArgs is res_agi's MAX_ARGS: parse_args keeps at most 127 words.
const agiMaxArgs = 128

// readAGILine reads one command as res_agi's run_agi does: up to and
// including '\n', at most AGIBufLen-1 bytes; the newline is dropped.
func readAGILine(rd *bufio.Reader) (string, error) {
	var b []byte
	for len(b) < AGIBufLen-1 {
		c, err := rd.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			break
		}
		b = append(b, c)
	}
	return string(b), nil
}

// AGIParseArgs splits an AGI command line as res_agi.c's parse_args does:
// space and tab separate words outside double quotes; a double quote
// toggles quoting (and starts a word, even an empty one); a backslash makes
// the next byte literal (a quote, a space, a backslash) and is dropped; a
// backslash at the end is dropped. Words past the 127th are dropped, as
// parse_args truncates them.
func AGIParseArgs(s string) []string {
	var args []string
	var cur []byte
	inArg, quoted, escaped := false, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' && !escaped:
			quoted = !quoted
			if quoted && !inArg && len(args) < agiMaxArgs-1 {
				inArg = true
			}
		case (c == ' ' || c == '\t') && !quoted && !escaped:
			if inArg {
				args = append(args, string(cur))
				cur, inArg = nil, false
			}
		case c == '\\' && !escaped:
			escaped = true
			continue
		default:
			if !inArg && len(args) >= agiMaxArgs-1 {
				continue // "Too many arguments, truncating"; escaped stays as it was
			}
			inArg = true
			cur = append(cur, c)
		}
		escaped = false
	}
	if inArg {
		args = append(args, string(cur))
	}
	return args
}

// AppSeparateArgs splits buf as main/app.c's __ast_app_separate_args does
// (AST_STANDARD_APP_ARGS / AST_NONSTANDARD_APP_ARGS): delim separates
// arguments outside double quotes, ( ) and [ ] (counts that carry over from
// one argument to the next; a closing one without an opening one is
// ignored); with removeChars a quote is dropped and a backslash dropped with
// the byte after it taken as it is. Only arraylen-1 arguments are parsed: the
// arraylen-th is the rest, untouched. A delimiter at the very end adds an
// empty argument.
func AppSeparateArgs(buf string, delim byte, removeChars bool, arraylen int) []string {
	var out []string
	paren, bracket, quote := 0, 0, false
	scan, lastDelim := 0, -1
	for scan < len(buf) && len(out) < arraylen-1 {
		var arg []byte
	arg:
		for ; scan < len(buf); scan++ {
			c := buf[scan]
			switch {
			case c == '(':
				paren++
			case c == ')':
				if paren > 0 {
					paren--
				}
			case c == '[':
				bracket++
			case c == ']':
				if bracket > 0 {
					bracket--
				}
			case c == '"' && delim != '"':
				quote = !quote
				if removeChars {
					continue
				}
			case c == '\\':
				if !removeChars {
					arg = append(arg, c)
				}
				if scan+1 < len(buf) { // the next byte is taken as it is
					scan++
					arg = append(arg, buf[scan])
				}
				continue
			case c == delim && paren == 0 && bracket == 0 && !quote:
				lastDelim = scan
				scan++
				break arg
			}
			arg = append(arg, c)
		}
		out = append(out, string(arg))
	}
	if scan < len(buf) || scan > 0 && scan-1 == lastDelim {
		out = append(out, buf[scan:])
	}
	return out
}

// MSetPair is one variable MSet sets.
type MSetPair struct{ Name, Value string }

// MSetPairs is what main/pbx_variables.c's pbx_builtin_setvar_multiple
// (the MSet application) sets for data: up to 99 comma-separated pairs
// (AST_STANDARD_APP_ARGS into 99 slots: the 99th is the rest, unparsed),
// each split at its first `=` (AST_NONSTANDARD_APP_ARGS with two fields:
// only the name is parsed, the value is taken as it is). A pair without
// `=` is ignored (with a warning in Asterisk's log); so is empty data.
func MSetPairs(data string) (set []MSetPair, ignored []string) {
	for _, p := range AppSeparateArgs(data, ',', true, 99) {
		kv := AppSeparateArgs(p, '=', true, 2)
		if len(kv) != 2 {
			ignored = append(ignored, p)
			continue
		}
		set = append(set, MSetPair{Name: kv[0], Value: kv[1]})
	}
	return set, ignored
}

// agiTrue is main/utils.c's ast_true: yes, true, y, t, 1 and on, in any case.
func agiTrue(s string) bool {
	switch strings.ToLower(s) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}
