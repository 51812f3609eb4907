package popper

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Webhook signature headers.
const (
	HeaderSignature = "X-Callpop-Signature" // "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))
	HeaderTimestamp = "X-Callpop-Timestamp" // unix seconds
	HeaderEvent     = "X-Callpop-Event"     // the pop state
	HeaderDelivery  = "X-Callpop-Delivery"  // the pop id, the same on every attempt
)

// Backoff bounds between webhook attempts (jittered).
var (
	webhookBackoffBase = 200 * time.Millisecond
	webhookBackoffMax  = 10 * time.Second
)

// Sign returns the X-Callpop-Signature value for body sent at ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a webhook's signature header (for receivers and tests).
func VerifySignature(secret []byte, ts, sig string, body []byte) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

// webhook delivers pops to one receiver from a bounded queue.
type webhook struct {
	cfg    WebhookConfig
	index  int
	secret []byte
	events map[string]bool
	queue  chan Pop
	client *http.Client
	log    *slog.Logger
}

func newWebhook(i int, cfg WebhookConfig, log *slog.Logger) (*webhook, error) {
	secret, err := cfg.ResolveSecret(i)
	if err != nil {
		return nil, err
	}
	w := &webhook{
		cfg:    cfg,
		index:  i,
		secret: secret,
		events: make(map[string]bool, len(cfg.Events)),
		queue:  make(chan Pop, cfg.Queue),
		client: &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		log:    log.With("webhook", i),
	}
	for _, e := range cfg.Events {
		w.events[e] = true
	}
	return w, nil
}

// Offer queues p when the receiver wants its state; never blocks.
func (w *webhook) Offer(p Pop) {
	if !w.events[p.State] {
		return
	}
	select {
	case w.queue <- p:
	default:
		webhookDroppedTotal.Inc()
	}
}

// run delivers until ctx ends.
func (w *webhook) run(ctx context.Context) {
	defer w.client.CloseIdleConnections()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-w.queue:
			w.deliver(ctx, p)
		}
	}
}

// deliver tries one pop up to max_attempts times with jittered backoff.
func (w *webhook) deliver(ctx context.Context, p Pop) {
	body, err := json.Marshal(p)
	if err != nil {
		webhookTotal.WithLabelValues("failed").Inc()
		return
	}
	for attempt := 1; ; attempt++ {
		retry, err := w.post(ctx, p, body)
		if err == nil {
			webhookTotal.WithLabelValues("ok").Inc()
			return
		}
		if !retry || ctx.Err() != nil {
			webhookTotal.WithLabelValues("failed").Inc()
			w.log.Warn("webhook failed", "component", "popper", "pop", p, "attempt", attempt, "err", err)
			return
		}
		if attempt >= w.cfg.MaxAttempts {
			webhookTotal.WithLabelValues("gave_up").Inc()
			w.log.Warn("webhook gave up", "component", "popper", "pop", p, "attempts", attempt, "err", err)
			return
		}
		webhookTotal.WithLabelValues("retry").Inc()
		t := time.NewTimer(backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			webhookTotal.WithLabelValues("failed").Inc()
			return
		case <-t.C:
		}
	}
}

// backoff is base·2^(attempt-1), capped, with full jitter in its upper half.
func backoff(attempt int) time.Duration {
	d := webhookBackoffBase << min(attempt-1, 16)
	if d > webhookBackoffMax || d <= 0 {
		d = webhookBackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// post sends one attempt; retry says whether a failure is worth retrying.
func (w *webhook) post(ctx context.Context, p Pop, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("popper: webhook request: %w", err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "callpop-popper")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderEvent, p.State)
	req.Header.Set(HeaderDelivery, p.ID)
	if len(w.secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(w.secret, ts, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("popper: webhook post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return true, fmt.Errorf("popper: webhook status %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("popper: webhook status %d", resp.StatusCode)
	}
}
