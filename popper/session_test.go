package popper

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// noRedirect stops at the first answer.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// TestPanelTokenExchange: a token in /agent?token= is exchanged at once for
// an HttpOnly, SameSite=Strict cookie (Secure over TLS) and the address is
// redirected without it; the pop stream takes the cookie, the Bearer header
// or ?token=; sign-in by form post and sign-out work without the address.
func TestPanelTokenExchange(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	good := token(t, "1001")
	tlsSrv := httptest.NewTLSServer(in.p.Handler())
	t.Cleanup(tlsSrv.Close)

	for _, tc := range []struct {
		name   string
		client *http.Client
		base   string
		secure bool
	}{
		{"plain HTTP", &http.Client{CheckRedirect: noRedirect}, in.srv.URL, false},
		{"TLS", func() *http.Client { c := tlsSrv.Client(); c.CheckRedirect = noRedirect; return c }(), tlsSrv.URL, true},
	} {
		resp, err := tc.client.Get(tc.base + "/agent?token=" + url.QueryEscape(good))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/agent" {
			t.Fatalf("%s: %d to %q, want 303 to /agent", tc.name, resp.StatusCode, resp.Header.Get("Location"))
		}
		cs := resp.Cookies()
		if len(cs) != 1 || cs[0].Name != cookieName || cs[0].Value != good || !cs[0].HttpOnly ||
			cs[0].SameSite != http.SameSiteStrictMode || cs[0].Secure != tc.secure || cs[0].Path != "/" || cs[0].MaxAge <= 0 {
			t.Fatalf("%s: cookie %+v", tc.name, cs)
		}
		if ttl := time.Duration(cs[0].MaxAge) * time.Second; ttl > time.Hour+time.Minute {
			t.Errorf("%s: the cookie outlives the token: %v", tc.name, ttl)
		}
	}

	// A browser-like client: the cookie jar carries the session.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := browser.Get(in.srv.URL + "/agent?token=" + url.QueryEscape(good))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.RawQuery != "" || !strings.Contains(string(page), `data-agent="1001"`) {
		t.Fatalf("after the exchange: %s %q", resp.Request.URL, page[:min(len(page), 300)])
	}
	stream := func(c *http.Client, path, bearer string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", in.srv.URL+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == 200 {
			if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "retry: 2000\n" {
				t.Errorf("%s: stream starts %q", path, line)
			}
		}
		return resp.StatusCode
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range []struct {
		name   string
		client *http.Client
		path   string
		bearer string
		want   int
	}{
		{"the cookie", browser, "/v1/agents/1001/pops", "", 200},
		{"the cookie, another agent", browser, "/v1/agents/1002/pops", "", 403},
		{"Bearer", plain, "/v1/agents/1001/pops", good, 200},
		{"?token=", plain, "/v1/agents/1001/pops?token=" + url.QueryEscape(good), "", 200},
		{"nothing", plain, "/v1/agents/1001/pops", "", 401},
	} {
		if got := stream(tc.client, tc.path, tc.bearer); got != tc.want {
			t.Errorf("stream with %s: %d, want %d", tc.name, got, tc.want)
		}
	}

	// Sign out drops the cookie; the stream then refuses.
	resp, err = browser.PostForm(in.srv.URL+"/agent/signout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := stream(browser, "/v1/agents/1001/pops", ""); got != 401 {
		t.Errorf("stream after sign-out: %d", got)
	}

	// Sign in by form post: the token travels in the body.
	post := &http.Client{CheckRedirect: noRedirect}
	for _, tc := range []struct {
		token  string
		status int
		reason string
	}{{good, 303, ""}, {"forged.token", 401, "token invalid"}} {
		resp, err := post.PostForm(in.srv.URL+"/agent", url.Values{"token": {tc.token}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.status == 303) != (len(resp.Cookies()) == 1) || !strings.Contains(string(body), tc.reason) {
			t.Errorf("sign-in with %q: %d, cookies %v", tc.token, resp.StatusCode, resp.Cookies())
		}
	}

	// An expired session: the sign-in form with the reason, the cookie dropped.
	expired, _ := IssueToken([]byte(testSecret), "1001", time.Minute, time.Now().Add(-time.Hour))
	req, _ := http.NewRequest("GET", in.srv.URL+"/agent", nil)
	req.AddCookie(&http.Cookie{Name: cookieName, Value: expired})
	resp, err = plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), "token expired") || strings.Contains(string(body), `data-agent="1001"`) {
		t.Errorf("expired session: %d", resp.StatusCode)
	}
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Errorf("expired session cookie not dropped: %+v", cs)
	}
}
