package ari

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// Client is an ARI REST client for tools beside the adapter (callpop bench
// on a real PBX): the adapter's transport, authentication and errors
// (ErrGone for 404/409, StatusError otherwise), not a second client.
type Client struct{ r *restClient }

// NewClient talks to the Asterisk HTTP base baseURL (the /ari prefix is
// added) with at most maxConnections connections.
func NewClient(baseURL, user, password string, maxConnections int) *Client {
	return &Client{r: newRESTClient(baseURL, user, password, max(maxConnections, minConnections))}
}

// Close drops the idle connections.
func (c *Client) Close() { c.r.close() }

// Requests is how many requests the client sent.
func (c *Client) Requests() int64 { return c.r.requests.Load() }

// Requests is how many REST requests the adapter sent (callpop bench's
// requests per call).
func (a *Adapter) Requests() int64 { return a.rest.requests.Load() }

// Originate is POST /channels: a new channel to Endpoint (e.g.
// Local/bench@callpop-bench) that, once answered, enters App with AppArgs;
// Variables are set on it first (a Local channel's ;2 half inherits them).
type Originate struct {
	Endpoint  string
	App       string
	AppArgs   string
	CallerID  string // "Name <number>" or "number"
	Timeout   int    // seconds to wait for an answer; 0 = Asterisk's (30)
	Variables map[string]string
}

// Originate originates o and returns the new channel's id.
func (c *Client) Originate(ctx context.Context, o Originate) (string, error) {
	q := url.Values{"endpoint": {o.Endpoint}, "app": {o.App}}
	if o.AppArgs != "" {
		q.Set("appArgs", o.AppArgs)
	}
	if o.CallerID != "" {
		q.Set("callerId", o.CallerID)
	}
	if o.Timeout > 0 {
		q.Set("timeout", fmt.Sprint(o.Timeout))
	}
	var body []byte
	if len(o.Variables) > 0 {
		body, _ = json.Marshal(map[string]any{"variables": o.Variables})
	}
	answer, err := c.r.doWith(c.r.ctl, ctx, http.MethodPost, "/channels", q.Encode(), body, true)
	if err != nil {
		return "", err
	}
	var ch struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(answer, &ch); err != nil || ch.ID == "" {
		return "", fmt.Errorf("adapters/ari: POST /channels: no channel in the answer")
	}
	return ch.ID, nil
}

// Hangup is DELETE /channels/{id}; ErrGone when it is gone already.
func (c *Client) Hangup(ctx context.Context, id string) error {
	_, err := c.r.doWith(c.r.ctl, ctx, http.MethodDelete, "/channels/"+url.PathEscape(id), "", nil, false)
	return err
}

// Channels lists the names of the live channels (GET /channels).
func (c *Client) Channels(ctx context.Context) ([]string, error) {
	list, err := c.r.channels(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(list))
	for i, ch := range list {
		names[i] = ch.Name
	}
	return names, nil
}
