package ari

import (
	"bytes"
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
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/callpop/callpop/call"
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
	// slots bounds the per-call requests under way to the per-call pool's
	// connections (with finish > 0): a request waits for a slot with its
	// call's context, and only a request holding one enters the Transport,
	// which its call's context can then no longer cancel.
	slots chan struct{}
	// refused is told about a request whose new connection Asterisk closed
	// unanswered (http.conf sessionlimit reached).
	refused func(method, path string, err error)
	// requests counts the requests sent (callpop bench's requests per call).
	requests atomic.Int64
}

// PoolSizes splits pbx.asterisk.max_connections between the event
// WebSocket (one), one spare, the control pool (continue, reconcile: a
// quarter, at least one) and the per-call pool (the rest), so callpop never
// holds more HTTP sessions than that. The spare covers the moment a pool
// replaces a connection (or the WebSocket is re-dialled) before Asterisk has
// ended the old session: under load one more session was seen at once.
func PoolSizes(maxConnections int) (perCall, control int) {
	control = max(1, (maxConnections-2)/4)
	return max(1, maxConnections-2-control), control
}

// idleTimeout closes an idle keep-alive connection before Asterisk does
// (http.conf session_keep_alive, 15 s by default): a request then never
// goes out on a connection Asterisk is closing.
const idleTimeout = 10 * time.Second

// newTransport keeps maxConns connections open and idle between bursts
// (MaxIdleConnsPerHost = MaxConnsPerHost), so a steady load never dials.
func newTransport(maxConns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // ARI is local; never through a proxy
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		MaxConnsPerHost:     maxConns, // no connection storm when many calls reach their deadline at once
		IdleConnTimeout:     idleTimeout,
		ForceAttemptHTTP2:   false,
	}
}

func newRESTClient(base, user, pass string, maxConnections int) *restClient {
	perCall, control := PoolSizes(maxConnections)
	r := &restClient{base: strings.TrimRight(base, "/") + "/ari",
		hc:    &http.Client{Transport: newTransport(perCall)},
		ctl:   &http.Client{Transport: newTransport(control)},
		slots: make(chan struct{}, perCall),
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
	return r.doWith(r.hc, ctx, method, path, query, nil, true)
}

// doWith sends one request on hc, with body as JSON when not nil. Without
// wantBody a 2xx answer's body is drained and dropped (a subscription's
// lists every channel of the app).
func (r *restClient) doWith(hc *http.Client, ctx context.Context, method, path, query string, body []byte, wantBody bool) ([]byte, error) {
	r.requests.Add(1)
	u := r.base + path
	if query != "" {
		u += "?" + query
	}
	if hc == r.hc && r.finish > 0 {
		if err := r.takeSlot(ctx); err != nil {
			return nil, fmt.Errorf("adapters/ari: %s %s: %w", method, path, err) // gave up waiting
		}
		defer func() { <-r.slots }()
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), r.finish)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// Whether the request went out on a new connection: one Asterisk closes
	// unanswered is a refused session, not a hang-up or a lost answer.
	var fresh, answered atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:              func(i httptrace.GotConnInfo) { fresh.Store(!i.Reused) },
		GotFirstResponseByte: func() { answered.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("adapters/ari: %s %s: %w", method, path, err)
	}
	if r.auth != "" {
		req.Header["Authorization"] = []string{r.auth}
	}
	if body != nil {
		req.Header["Content-Type"] = []string{"application/json"}
	}
	resp, err := hc.Do(req)
	if err != nil {
		if fresh.Load() && !answered.Load() && closedUnanswered(err) {
			err = fmt.Errorf("%w: %w", ErrSessionRefused, err)
			if r.refused != nil {
				r.refused(method, path, err)
			}
		}
		// *url.Error carries the whole URL, query values (caller data) included:
		// keep it out of errors and logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("adapters/ari: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	return readAnswer(resp, method, path, wantBody)
}

// readAnswer reads a response: its body when wanted, a StatusError for a
// status other than 2xx (ErrGone for 404 and 409: the channel is gone or out
// of Stasis). The body is read to its end either way, so the connection is
// kept.
func readAnswer(resp *http.Response, method, path string, wantBody bool) ([]byte, error) {
	if resp.StatusCode/100 == 2 && !wantBody {
		if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<20)); err != nil {
			return nil, fmt.Errorf("adapters/ari: %s %s: read: %w", method, path, err)
		}
		return nil, nil
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("adapters/ari: %s %s: read: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var m struct {
			Message string `json:"message"`
		}
		json.Unmarshal(answer, &m)
		se := &StatusError{Code: resp.StatusCode, Message: m.Message}
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusConflict {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrGone, method, path, se)
		}
		return nil, fmt.Errorf("adapters/ari: %s %s: %w", method, path, se)
	}
	return answer, nil
}

// ErrSessionRefused means Asterisk accepted a new HTTP connection and
// closed it without an answer: what it does beyond http.conf sessionlimit.
var ErrSessionRefused = errors.New("adapters/ari: Asterisk closed a new connection unanswered (http.conf sessionlimit reached?)")

// closedUnanswered reports an error of a connection closed or reset by the
// other side before any answer.
func closedUnanswered(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// takeSlot waits, at most as long as ctx, for one of the per-call pool's
// connections to be free for a request, which then runs on for up to
// finish whatever becomes of ctx. Waiting here rather than in the
// Transport's own queue is what keeps a connection: a request cancelled
// there just as a connection is handed to it is sent on that connection and
// aborted in flight, and the connection closed (then re-dialled, while
// Asterisk still counts the old session until it reads the close: one
// session more than max_connections at once, with a few of those at once
// on a loaded machine). A request never starts once ctx has ended.
func (r *restClient) takeSlot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err // too late to start
	}
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := ctx.Err(); err != nil { // both were ready: ctx ended first or with it
		<-r.slots
		return err
	}
	return nil
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
		"variable="+url.QueryEscape(name)+"&value="+url.QueryEscape(value), nil, false)
	return err
}

// setVars sets every variable in one POST /channels/{id}/variables
// (Asterisk 20.20, 22.10, 23.4 and later): 204, or 404/409 when the
// channel is gone or out of Stasis.
func (r *restClient) setVars(ctx context.Context, chanID string, vars []call.Var) error {
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	body, err := json.Marshal(struct {
		Variables map[string]string `json:"variables"`
	}{m})
	if err != nil {
		return fmt.Errorf("adapters/ari: variables: %w", err)
	}
	_, err = r.doWith(r.hc, ctx, http.MethodPost, channelPath(chanID, "variables"), "", body, false)
	return err
}

// getVars reads several variables or functions in one GET
// /channels/{id}/variables?variables=A,B.
func (r *restClient) getVars(ctx context.Context, chanID string, names ...string) (map[string]string, error) {
	body, err := r.do(ctx, http.MethodGet, channelPath(chanID, "variables"), "variables="+url.QueryEscape(strings.Join(names, ",")))
	if err != nil {
		return nil, err
	}
	var v struct {
		Variables map[string]string `json:"variables"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("adapters/ari: variables: %w", err)
	}
	return v.Variables, nil
}

// multiVarsPath is the path api-docs/channels.json lists when Asterisk
// serves the multi-variable requests.
const multiVarsPath = "/channels/{channelId}/variables"

// multiVars asks Asterisk whether it serves /channels/{id}/variables: the
// API description lists the path, or (api-docs not installed) its version
// is one that has it. Never guessed from a 404 on a call: that also means
// the caller hung up.
func (r *restClient) multiVars(ctx context.Context) (bool, error) {
	body, err := r.doWith(r.ctl, ctx, http.MethodGet, "/api-docs/channels.json", "", nil, true)
	if err == nil {
		type api struct {
			Path string `json:"path"`
		}
		var doc struct {
			APIs []api `json:"apis"`
		}
		if err := json.Unmarshal(body, &doc); err == nil && len(doc.APIs) > 0 {
			return slices.ContainsFunc(doc.APIs, func(a api) bool { return a.Path == multiVarsPath }), nil
		}
	}
	body, err = r.doWith(r.ctl, ctx, http.MethodGet, "/asterisk/info", "", nil, true)
	if err != nil {
		return false, err
	}
	var info struct {
		System struct {
			Version string `json:"version"`
		} `json:"system"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return false, fmt.Errorf("adapters/ari: GET /asterisk/info: %w", err)
	}
	return versionHasMultiVars(info.System.Version), nil
}

// versionHasMultiVars reports whether an Asterisk version string ("22.10.1",
// "certified-20.7-cert5", "GIT-master-…") names a release with
// /channels/{id}/variables: 20.20, 22.10, 23.4 and later. Unknown = no.
func versionHasMultiVars(v string) bool {
	v = strings.TrimPrefix(strings.TrimPrefix(v, "certified/"), "certified-")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(c rune) bool { return c < '0' || c > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	switch major {
	case 20:
		return minor >= 20
	case 21:
		return false
	case 22:
		return minor >= 10
	case 23:
		return minor >= 4
	}
	return major > 23
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
	_, err := r.doWith(r.ctl, ctx, http.MethodPost, channelPath(chanID, "continue"), q.Encode(), nil, false)
	return err
}

func (r *restClient) subscribe(ctx context.Context, app, chanID string) error {
	_, err := r.doWith(r.hc, ctx, http.MethodPost, "/applications/"+url.PathEscape(app)+"/subscription",
		"eventSource="+url.QueryEscape("channel:"+chanID), nil, false)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusUnprocessableEntity {
		// 422 "Event source does not exist": the channel is gone.
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return err
}

func (r *restClient) unsubscribe(ctx context.Context, app, chanID string) error {
	_, err := r.doWith(r.ctl, ctx, http.MethodDelete, "/applications/"+url.PathEscape(app)+"/subscription",
		"eventSource="+url.QueryEscape("channel:"+chanID), nil, false)
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
	body, err := r.doWith(r.ctl, ctx, http.MethodGet, "/channels", "", nil, true)
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
	body, err := r.doWith(r.ctl, ctx, http.MethodGet, "/applications/"+url.PathEscape(app), "", nil, true)
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
