package netallow

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// echoServer serves one line back to each allowed peer.
func echoServer(t *testing.T, allow []string, name string) string {
	t.Helper()
	list, err := Parse("test.allow", allow)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Wrap(inner, func() List { return list }, name, nil)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				_, _ = c.Write([]byte(line))
			}()
		}
	}()
	return inner.Addr().String()
}

// ask connects to addr from source and returns what came back.
func ask(t *testing.T, source, addr string) (string, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestListenerAllowList(t *testing.T) {
	addr := echoServer(t, []string{"127.0.0.2/32"}, "test-allow")
	before := testutil.ToFloat64(refused.WithLabelValues("test-allow"))
	if got, err := ask(t, "127.0.0.2", addr); err != nil || got != "hello\n" {
		t.Fatalf("listed peer: %q, %v", got, err)
	}
	if got, err := ask(t, "127.0.0.3", addr); err == nil && got != "" {
		t.Fatalf("unlisted peer served: %q", got)
	}
	if n := testutil.ToFloat64(refused.WithLabelValues("test-allow")) - before; n != 1 {
		t.Fatalf("refusals counted: %v, want 1", n)
	}
	// The listener goes on serving after a refusal.
	if got, err := ask(t, "127.0.0.2", addr); err != nil || got != "hello\n" {
		t.Fatalf("listed peer after a refusal: %q, %v", got, err)
	}
}

func TestParse(t *testing.T) {
	l, err := Parse("k", []string{"10.0.0.0/8", "192.0.2.7", "::1/128", "::ffff:198.51.100.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "11.0.0.1": false, "192.0.2.7": true, "192.0.2.8": false, "::1": true,
		"::ffff:10.0.0.1": true, "198.51.100.9": true, "2001:db8::1": false,
	} {
		if got := l.Allows(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if _, err := Parse("router.fastagi.allow", []string{"10.0.0.0/8", "pbx.example", "10.0.0.1/33"}); err == nil ||
		!strings.Contains(err.Error(), `router.fastagi.allow[1]: "pbx.example" is not a CIDR`) ||
		!strings.Contains(err.Error(), `router.fastagi.allow[2]`) {
		t.Fatalf("bad entries: %v", err)
	}
	def, _ := Parse("k", DefaultAllow)
	if !def.OnlyLoopback() || l.OnlyLoopback() {
		t.Fatal("OnlyLoopback")
	}
}

func TestCheckBind(t *testing.T) {
	for _, tt := range []struct {
		listen string
		allow  []string
		fail   bool
	}{
		{"127.0.0.1:4573", DefaultAllow, false},
		{"localhost:4573", DefaultAllow, false},
		{"[::1]:4573", DefaultAllow, false},
		{"", DefaultAllow, false},
		{":4573", DefaultAllow, true},
		{"0.0.0.0:4573", DefaultAllow, true},
		{"[::]:4573", DefaultAllow, true},
		{"10.0.0.2:4573", DefaultAllow, true},
		{"pbx-host:4573", DefaultAllow, true},
		{"0.0.0.0:4573", []string{"10.0.0.5/32"}, false},
	} {
		err := CheckBind(tt.listen, tt.allow, "router.fastagi.allow", "CALLPOP_ROUTER_FASTAGI_ALLOW")
		if (err != nil) != tt.fail {
			t.Errorf("%q %v: %v", tt.listen, tt.allow, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "router.fastagi.allow") || !strings.Contains(err.Error(), "CALLPOP_ROUTER_FASTAGI_ALLOW")) {
			t.Errorf("message names neither key nor variable: %v", err)
		}
	}
}
