package ari

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// The per-call REST calls go straight over HTTP rather than through the
// ari/v5 client: that client takes no context (so a call's deadline could not
// bound it), drops an empty value (`SetVariable(k, "")` unsets) and cannot
// continue to a label. Direct requests share one keep-alive pool.

// ErrGone means the channel is gone or no longer in Stasis (404/409): the
// caller hung up or the channel was continued already. It is normal.
var ErrGone = errors.New("adapters/ari: channel gone")

// StatusError is an ARI answer other than 2xx.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("adapters/ari: ARI answered %d %q", e.Code, e.Message)
}

type restClient struct {
	base string       // http://host:port/ari
	auth string       // the Authorization header, "" = none
	hc   *http.Client // per-call reads and sets: at most max_conns connections
	ctl  *http.Client // continue, reconcile, the WebSocket: never queued behind a burst of sets
	// finish is how long a per-call request already on a connection may run
	// on once its context ends (0 = none). Aborting it would close that
	// keep-alive connection: a call's deadline or its caller hanging up
	// would then cost a dial, and under load a dial per request.
	finish time.Duration
}

// newTransport keeps max_conns connections open and idle between bursts
// (MaxIdleConnsPerHost = MaxConnsPerHost), so a steady load never dials.
func newTransport(maxConns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // ARI is local; never through a proxy
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		MaxConnsPerHost:     maxConns, // no connection storm when many calls reach their deadline at once
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
}

func newRESTClient(base, user, pass string, maxConns int) *restClient {
	r := &restClient{base: strings.TrimRight(base, "/") + "/ari",
		hc:  &http.Client{Transport: newTransport(maxConns)},
		ctl: &http.Client{Transport: newTransport(maxConns)},
	}
	if user != "" || pass != "" {
		r.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	return r
}

func (r *restClient) close() {
	r.hc.CloseIdleConnections()
	r.ctl.CloseIdleConnections()
}

// do sends one request and returns the answer's body. query is encoded
// already (an empty value stays "value=", which Asterisk reads as "set to
// empty", not "unset").
func (r *restClient) do(ctx context.Context, method, path, query string) ([]byte, error) {
	return r.doWith(r.hc, ctx, method, path, query, true)
}

// doWith sends one request on hc. Without wantBody a 2xx answer's body is
// drained and dropped (a subscription's lists every channel of the app).
func (r *restClient) doWith(hc *http.Client, ctx context.Context, method, path, query string, wantBody bool) ([]byte, error) {
	u := r.base + path
	if query != "" {
		u += "?" + query
	}
	if hc == r.hc && r.finish > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("adapters/ari: %s %s: %w", method, path, err) // too late to start
		}
		var cancel context.CancelFunc
		ctx, cancel = r.letFinish(ctx)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("adapters/ari: %s %s: %w", method, path, err)
	}
	if r.auth != "" {
		req.Header["Authorization"] = []string{r.auth}
	}
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error carries the whole URL, query values (caller data) included:
		// keep it out of errors and logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("adapters/ari: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 && !wantBody {
		if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<20)); err != nil {
			return nil, fmt.Errorf("adapters/ari: %s %s: read: %w", method, path, err)
		}
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("adapters/ari: %s %s: read: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var m struct {
			Message string `json:"message"`
		}
		json.Unmarshal(body, &m)
		se := &StatusError{Code: resp.StatusCode, Message: m.Message}
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusConflict {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrGone, method, path, se)
		}
		return nil, fmt.Errorf("adapters/ari: %s %s: %w", method, path, se)
	}
	return body, nil
}

// letFinish returns a context for one request that ends with ctx while the
// request waits for a connection, but once it holds one, only finish later.
func (r *restClient) letFinish(ctx context.Context) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.finish)
	var onConn atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		if !onConn.Load() {
			cancel()
		}
	})
	rctx = httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { onConn.Store(true) },
	})
	return rctx, func() { stop(); cancel() }
}

// channelPath is /channels/<id>/<what>.
func channelPath(chanID, what string) string {
	return "/channels/" + url.PathEscape(chanID) + "/" + what
}

func (r *restClient) getVar(ctx context.Context, chanID, name string) (string, error) {
	body, err := r.do(ctx, http.MethodGet, channelPath(chanID, "variable"), "variable="+url.QueryEscape(name))
	var se *StatusError
	if errors.As(err, &se) && se.Message == "Provided variable was not found" {
		return "", nil // an unset variable reads as empty; the channel is there
	}
	if err != nil {
		return "", err
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("adapters/ari: variable %s: %w", name, err)
	}
	return v.Value, nil
}

func (r *restClient) setVar(ctx context.Context, chanID, name, value string) error {
	_, err := r.doWith(r.hc, ctx, http.MethodPost, channelPath(chanID, "variable"),
		"variable="+url.QueryEscape(name)+"&value="+url.QueryEscape(value), false)
	return err
}

func (r *restClient) continueChannel(ctx context.Context, chanID string, to ContinueConfig) error {
	q := url.Values{}
	if to.Context != "" {
		q.Set("context", to.Context)
	}
	if to.Extension != "" {
		q.Set("extension", to.Extension)
	}
	if to.Priority > 0 {
		q.Set("priority", fmt.Sprint(to.Priority))
	}
	if to.Label != "" {
		q.Set("label", to.Label)
	}
	_, err := r.doWith(r.ctl, ctx, http.MethodPost, channelPath(chanID, "continue"), q.Encode(), false)
	return err
}

func (r *restClient) subscribe(ctx context.Context, app, chanID string) error {
	_, err := r.doWith(r.hc, ctx, http.MethodPost, "/applications/"+url.PathEscape(app)+"/subscription",
		"eventSource="+url.QueryEscape("channel:"+chanID), false)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusUnprocessableEntity {
		// 422 "Event source does not exist": the channel is gone.
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return err
}

func (r *restClient) unsubscribe(ctx context.Context, app, chanID string) error {
	_, err := r.doWith(r.ctl, ctx, http.MethodDelete, "/applications/"+url.PathEscape(app)+"/subscription",
		"eventSource="+url.QueryEscape("channel:"+chanID), false)
	return err
}

// restChannel is a channel as GET /channels returns it. ari/v5's ChannelData
// lacks dialplan.app_name/app_data, which reconcile needs.
type restChannel struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Caller struct {
		Name   string `json:"name"`
		Number string `json:"number"`
	} `json:"caller"`
	Dialplan struct {
		Context  string `json:"context"`
		Exten    string `json:"exten"`
		Priority int    `json:"priority"`
		AppName  string `json:"app_name"`
		AppData  string `json:"app_data"`
	} `json:"dialplan"`
	ChannelVars map[string]string `json:"channelvars"`
}

func (r *restClient) channels(ctx context.Context) ([]restChannel, error) {
	body, err := r.doWith(r.ctl, ctx, http.MethodGet, "/channels", "", true)
	if err != nil {
		return nil, err
	}
	var out []restChannel
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("adapters/ari: GET /channels: %w", err)
	}
	return out, nil
}

func (r *restClient) appChannels(ctx context.Context, app string) ([]string, error) {
	body, err := r.doWith(r.ctl, ctx, http.MethodGet, "/applications/"+url.PathEscape(app), "", true)
	if err != nil {
		return nil, err
	}
	var out struct {
		ChannelIDs []string `json:"channel_ids"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("adapters/ari: GET /applications/%s: %w", app, err)
	}
	return out.ChannelIDs, nil
}
