package router

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzAGISession plays arbitrary bytes as Asterisk's side of a FastAGI
// session: the server must neither panic nor hang, and every command it
// sends must be one Asterisk parses as GET VARIABLE, SET VARIABLE or EXEC
// MSet with the right number of arguments (MSet: every pair with its `=`,
// nothing AGIEXECFULL would substitute).
func FuzzAGISession(f *testing.F) {
	f.Add("agi_network: yes\nagi_network_script: route\nagi_callerid: 0201234567\nagi_dnid: 0800123456\n\n200 result=1 (0201234567)\n" + strings.Repeat("200 result=1\n", 20))
	f.Add("agi_network_script: route/vip\nagi_callerid: \"q\\\" ${x}\nagi_callingpres: 35\n\nHANGUP\n")
	f.Add("agi_network_script: route?profile=a\n\n520-Invalid command syntax.  Proper usage follows:\nx\n520 End of proper usage.\n511 dead\n")
	f.Add("agi_network_script: route\n\n200 result=1 (a) b) c)\n200 result=1\nHANGUP\n")
	f.Add("agi_network_script: route\nagi_version: 22.10.1\nagi_callerid: 0201234567\n\n200 result=1 (0201234567)\n200 result=-2\n" + strings.Repeat("200 result=1\n", 20))
	f.Add("agi_network_script: route\nagi_version: 13.38.3\n\n200 result=0\n510 Invalid or unknown command\n200 result=0\n")
	f.Add("\n")
	f.Add("agi_network_script: lookup\n\n")
	cfg := testConfig()
	cfg.FastAGI.ReadTimeout = 10 * time.Millisecond
	te := newTestEnv(f, cfg, nil, 100*time.Millisecond)
	f.Fuzz(func(t *testing.T, input string) {
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			te.router.serveAGI(context.Background(), server)
		}()
		go func() { // Asterisk writes; ends when the server closes its side
			_, _ = io.WriteString(client, input)
		}()
		rd := bufio.NewReader(client)
		for range 1000 {
			_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, err := rd.ReadString('\n')
			if err != nil {
				break
			}
			line = strings.TrimSuffix(line, "\n")
			args := asteriskParseArgs(line)
			ok := len(args) == 3 && args[0] == "GET" && args[1] == "VARIABLE" ||
				len(args) == 4 && args[0] == "SET" && args[1] == "VARIABLE"
			if len(args) == 3 && args[0] == "EXEC" && args[1] == "MSet" {
				_, ignored := asteriskMSet(args[2])
				ok = len(ignored) == 0 && !strings.Contains(args[2], "${") && !strings.Contains(args[2], "$[")
			}
			if !ok {
				t.Fatalf("command Asterisk would misread: %q → %q", line, args)
			}
		}
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("session did not end")
		}
	})
}

// FuzzAGIQuote: any value without a line break survives AGI quoting as one
// argument, exactly.
func FuzzAGIQuote(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b`, `c\d`, `\"`, `"\`, "tab\there", "${EXEC(x)}", "  ", "Zoë 李"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsAny(v, "\r\n\x00") {
			return
		}
		args := asteriskParseArgs("SET VARIABLE X " + agiQuote(v))
		if len(args) != 4 || args[3] != v {
			t.Fatalf("%q → %q", v, args)
		}
	})
}

// FuzzBlockList: any file content loads or fails without a panic, and every
// entry loaded is an E.164 number or prefix.
func FuzzBlockList(f *testing.F) {
	f.Add("+31201234567\n# comment\n0201234567 # inline\n+1900*\n00449*\n\nnot a number\n")
	f.Add("*\n+*\n00*\n" + strings.Repeat("9", 2000))
	te := newTestEnv(f, testConfig(), nil, 100*time.Millisecond)
	f.Fuzz(func(t *testing.T, content string) {
		set, _, err := parseBlockList(strings.NewReader(content), te.numbers)
		if err != nil {
			return
		}
		for n := range set.exact {
			if !strings.HasPrefix(n, "+") || len(n) < 3 {
				t.Fatalf("loaded %q", n)
			}
		}
		for _, p := range set.prefixes {
			if !strings.HasPrefix(p, "+") || len(p) < 2 {
				t.Fatalf("prefix %q", p)
			}
		}
	})
}
