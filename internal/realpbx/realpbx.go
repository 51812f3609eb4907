// Package realpbx is for the opt-in tests that check callpop against a real
// Asterisk or FreeSWITCH instead of the simulators: it reads where the
// server is from the environment, skips the test when it is not set (CI
// has no PBX), and refuses anything but a loopback address.
package realpbx

import (
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
)

// Asterisk is a real Asterisk's ARI, from CALLPOP_TEST_ASTERISK_ARI (a
// loopback base URL such as http://127.0.0.1:8088), the user
// CALLPOP_TEST_ASTERISK_ARI_USER (defaultUser when unset) and the password
// CALLPOP_PBX_ASTERISK_PASSWORD.
type Asterisk struct {
	URL, User, Password string
}

// ARI returns the real Asterisk to check against, or skips t.
func ARI(t testing.TB, defaultUser string) Asterisk {
	t.Helper()
	base := os.Getenv("CALLPOP_TEST_ASTERISK_ARI")
	if base == "" {
		t.Skip("CALLPOP_TEST_ASTERISK_ARI not set: no real Asterisk to check against")
	}
	u, err := url.Parse(base)
	if err != nil || !loopback(u.Hostname()) {
		t.Fatalf("CALLPOP_TEST_ASTERISK_ARI must be a loopback URL: %q", base)
	}
	a := Asterisk{URL: strings.TrimSuffix(base, "/"), User: os.Getenv("CALLPOP_TEST_ASTERISK_ARI_USER"),
		Password: os.Getenv("CALLPOP_PBX_ASTERISK_PASSWORD")}
	if a.User == "" {
		a.User = defaultUser
	}
	return a
}

// FreeSWITCH is a real FreeSWITCH's event socket, from
// CALLPOP_TEST_FREESWITCH_ESL (a loopback host:port such as
// 127.0.0.1:8021) and the password CALLPOP_PBX_FREESWITCH_PASSWORD.
type FreeSWITCH struct {
	Addr, Password string
}

// ESL returns the real FreeSWITCH to check against, or skips t.
func ESL(t testing.TB) FreeSWITCH {
	t.Helper()
	addr := os.Getenv("CALLPOP_TEST_FREESWITCH_ESL")
	if addr == "" {
		t.Skip("CALLPOP_TEST_FREESWITCH_ESL not set: no real FreeSWITCH to check against")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !loopback(host) {
		t.Fatalf("CALLPOP_TEST_FREESWITCH_ESL must be a loopback address: %q", addr)
	}
	return FreeSWITCH{Addr: addr, Password: os.Getenv("CALLPOP_PBX_FREESWITCH_PASSWORD")}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
