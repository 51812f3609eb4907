package arisim

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAGIParseArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{``, nil},
		{`GET VARIABLE X`, []string{"GET", "VARIABLE", "X"}},
		{"  a \t b  ", []string{"a", "b"}},
		{`SET VARIABLE X "a \"b\" c\\d"`, []string{"SET", "VARIABLE", "X", `a "b" c\d`}},
		{`X ""`, []string{"X", ""}},
		{`a"b c"d e`, []string{"ab cd", "e"}},
		{`a\ b`, []string{"a b"}},
		{`a\`, []string{"a"}},
		{`\x`, []string{"x"}},
		{`"unterminated x`, []string{"unterminated x"}},
	}
	for _, tt := range tests {
		if got := AGIParseArgs(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("AGIParseArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// parse_args keeps 127 words and drops the rest
	got := AGIParseArgs(strings.Repeat("w ", 130) + `"last"`)
	if len(got) != agiMaxArgs-1 {
		t.Errorf("%d words, want %d", len(got), agiMaxArgs-1)
	}
}

func TestMSetPairs(t *testing.T) {
	set, ignored := MSetPairs(`A=1,B=x\,y,C="q,r",D=a=b,E,F(a,b)=c,G=[h,i],H=`)
	want := []MSetPair{{"A", "1"}, {"B", "x,y"}, {"C", "q,r"}, {"D", "a=b"}, {"F(a,b)", "c"}, {"G", "[h,i]"}, {"H", ""}}
	if !slices.Equal(set, want) || !slices.Equal(ignored, []string{"E"}) {
		t.Errorf("set %q ignored %q", set, ignored)
	}
	if set, ignored := MSetPairs(""); set != nil || ignored != nil {
		t.Errorf("empty: %q %q", set, ignored)
	}
}

// agiScript serves one FastAGI session on a loopback port: it reads the
// environment, sends the lines and reads n replies (a 520 block as one).
func agiScript(t *testing.T, lines []string, n int) (string, <-chan []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan []string, 1)
	go func() {
		var replies []string
		defer func() { out <- replies }()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		rd := bufio.NewReader(conn)
		for {
			l, err := rd.ReadString('\n')
			if err != nil || l == "\n" {
				break
			}
		}
		if _, err := conn.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
			return
		}
		for range n {
			var reply string
			for {
				r, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				reply += r
				if !strings.HasPrefix(r, "520-") && !strings.HasPrefix(r, " ") {
					break
				}
			}
			replies = append(replies, strings.TrimSuffix(reply, "\n"))
		}
	}()
	return ln.Addr().String(), out
}

// The simulator's AGI runs commands as res_agi does: words in any case,
// EXEC's argument substituted only with AGIEXECFULL, MSet's pairs and Set's
// one landing on the channel, an unknown application 200 result=-2, a
// command with the wrong number of words 520, an unknown one 510, and a line
// longer than AGI_BUF_LEN-1 bytes cut in two commands.
func TestAGICommands(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	long := "SET VARIABLE L " + strings.Repeat("x", AGIBufLen)
	tests := []struct {
		name     string
		execFull bool
		lines    []string
		replies  []string
		vars     map[string]string
	}{
		{"plain", false, []string{
			`exec mset "A=${CALLERID(num)},B=x\\,y,C"`,
			`EXEC Set "D=1,2=3"`,
			`EXEC Playback hello`,
			`EXEC NoOp`,
			`get variable A`,
			`GET VARIABLE`,
			`SAY NUMBER 1 ""`,
			`EXEC`,
		}, []string{"200 result=0", "200 result=0", "200 result=-2", "200 result=0", "200 result=1 (${CALLERID(num)})",
			"520-Invalid command syntax.  Proper usage follows:\n Usage: GET VARIABLE <variablename>\n520 End of proper usage.",
			"510 Invalid or unknown command",
			"520-Invalid command syntax.  Proper usage follows:\n Usage: EXEC <application> <options>\n520 End of proper usage."},
			map[string]string{"A": "${CALLERID(num)}", "B": "x,y", "D": "1,2=3"}},
		{"AGIEXECFULL", true, []string{
			`EXEC MSet "A=${CALLERID(num)},B=x"`,
			`SET VARIABLE C ${CALLERID(num)}`,
		}, []string{"200 result=0", "200 result=1"},
			map[string]string{"A": "0201234567", "B": "x", "C": "${CALLERID(num)}"}},
		{"cut line", false, []string{long}, []string{"200 result=1", "510 Invalid or unknown command"},
			map[string]string{"L": strings.Repeat("x", AGIBufLen-1-len("SET VARIABLE L "))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := CallSpec{CLI: "0201234567"}
			if tt.execFull {
				spec.Vars = map[string]string{"AGIEXECFULL": "yes"}
			}
			id := s.NewDialplanChannel(spec)
			addr, out := agiScript(t, tt.lines, len(tt.replies))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			set, err := s.RunAGI(ctx, id, addr, "t")
			if err != nil {
				t.Fatal(err)
			}
			replies := <-out
			if rec, _ := s.Record(id); len(rec.AGI) != len(tt.replies) || len(rec.AGI[0]) > AGIBufLen-1 {
				t.Errorf("%d commands read, want %d", len(rec.AGI), len(tt.replies))
			}
			if !slices.Equal(replies, tt.replies) {
				t.Errorf("replies\n got  %q\n want %q", replies, tt.replies)
			}
			for k, want := range tt.vars {
				if set[k] != want {
					t.Errorf("%s set to %q, want %q", k, set[k], want)
				}
				s.mu.Lock()
				got, _, _ := s.channels[id].read(k)
				s.mu.Unlock()
				if got != want {
					t.Errorf("%s on the channel %q, want %q", k, got, want)
				}
			}
			if len(set) != len(tt.vars) {
				t.Errorf("set %q", set)
			}
		})
	}
}
