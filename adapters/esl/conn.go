package esl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/call"
)

// ErrClosed is returned for commands on a connection that has gone away.
var ErrClosed = errors.New("adapters/esl: connection closed")

// conn is one event socket connection. It replaces eslgo's Conn for the
// paths where eslgo's design loses calls (see doc.go): replies are matched to
// commands in order, and a command whose caller gave up keeps its place in the
// queue, so a late reply is consumed by its own command and never shifts the
// next one; unknown content types are counted and skipped; events are handed
// to one callback in arrival order on the reading goroutine.
type conn struct {
	nc  net.Conn
	r   *eslwire.Reader
	log *slog.Logger
	m   *metrics // frames read, by kind, under the adapter's pbx label

	wmu sync.Mutex // serialises writes and the order of pending

	mu      sync.Mutex
	pending []*waiter
	jobs    map[string]chan string
	err     error

	onEvent func(*eslwire.Event)
	done    chan struct{}
}

type waiter struct {
	ch   chan *eslwire.Frame
	sent time.Time
}

func newConn(nc net.Conn, log *slog.Logger, m *metrics) *conn {
	return &conn{nc: nc, r: eslwire.NewReader(nc), log: log, m: m, jobs: map[string]chan string{}, done: make(chan struct{})}
}

// start runs the read loop; onEvent is called for each plain event, in order.
func (c *conn) start(onEvent func(*eslwire.Event)) {
	c.onEvent = onEvent
	go c.readLoop()
}

func (c *conn) readLoop() {
	defer c.fail(ErrClosed)
	for {
		f, err := c.r.ReadFrame()
		if err != nil {
			c.fail(fmt.Errorf("adapters/esl: read: %w", err))
			return
		}
		c.dispatch(f)
	}
}

func (c *conn) dispatch(f *eslwire.Frame) {
	switch ct := f.ContentType(); ct {
	case eslwire.TypeReply, eslwire.TypeAPIResponse:
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.mu.Unlock()
			c.m.frames.WithLabelValues("unexpected_reply").Inc()
			return
		}
		w := c.pending[0]
		c.pending = c.pending[1:]
		c.mu.Unlock()
		w.ch <- f // buffered: a waiter that gave up does not block the loop
	case eslwire.TypeEventPlain:
		ev, err := eslwire.ParseEvent(f.Body)
		if err != nil {
			c.m.frames.WithLabelValues("bad_event").Inc()
			return
		}
		if ev.Name() == "BACKGROUND_JOB" {
			id := ev.Raw("Job-UUID")
			c.mu.Lock()
			ch, ok := c.jobs[id]
			delete(c.jobs, id)
			c.mu.Unlock()
			if ok {
				ch <- string(ev.Body)
				return
			}
		}
		c.m.frames.WithLabelValues("event").Inc()
		if c.onEvent != nil {
			c.onEvent(ev)
		}
	case eslwire.TypeDisconnect:
		c.m.frames.WithLabelValues("disconnect").Inc()
		if strings.EqualFold(f.Headers.Get("Content-Disposition"), "linger") {
			return
		}
		// FreeSWITCH closes the socket next; the read loop sees EOF.
	case eslwire.TypeAuthRequest:
		c.m.frames.WithLabelValues("auth_request").Inc()
	case eslwire.TypeRude:
		// FreeSWITCH's ACL refused this host; it closes the socket next
		c.m.frames.WithLabelValues("rude_rejection").Inc()
		c.log.Warn("event socket refused this host (apply-inbound-acl in event_socket.conf.xml)", "reply", call.CleanValue(string(f.Body)))
	default:
		// log/data, text/rude-rejection, JSON or XML events: counted and
		// skipped, never the end of the loop (eslgo's receive loop dies here).
		c.m.frames.WithLabelValues("other").Inc()
		c.log.Debug("skipped frame", "content_type", eslwire.Decode(ct))
	}
}

func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.pending = nil
	c.jobs = map[string]chan string{}
	c.mu.Unlock()
	close(c.done)
	_ = c.nc.Close()
}

// Close drops the connection.
func (c *conn) Close() { c.fail(ErrClosed) }

// Err is why the connection ended (nil while it is up).
func (c *conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// oldestPending is the age of the oldest unanswered command (0 = none).
func (c *conn) oldestPending() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return 0
	}
	return time.Since(c.pending[0].sent)
}

// send writes a command and queues its reply waiter in the same order.
func (c *conn) send(line string, headers []eslwire.Header, body []byte, job string, jobCh chan string) (*waiter, error) {
	msg, err := eslwire.AppendCommand(nil, line, headers, body)
	if err != nil {
		return nil, fmt.Errorf("adapters/esl: %w", err)
	}
	w := &waiter{ch: make(chan *eslwire.Frame, 1), sent: time.Now()}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.pending = append(c.pending, w)
	if job != "" {
		c.jobs[job] = jobCh
	}
	c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.nc.Write(msg); err != nil {
		c.fail(fmt.Errorf("adapters/esl: write: %w", err))
		return nil, err
	}
	return w, nil
}

// command sends a command and waits for its reply or ctx. A caller that gives
// up leaves its waiter in place; the late reply lands there.
func (c *conn) command(ctx context.Context, line string, headers []eslwire.Header, body []byte) (*eslwire.Frame, error) {
	w, err := c.send(line, headers, body, "", nil)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, w)
}

// wait returns w's reply, or why it will not come.
func (c *conn) wait(ctx context.Context, w *waiter) (*eslwire.Frame, error) {
	select {
	case f := <-w.ch:
		return f, nil
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resumeCommand makes FreeSWITCH go on with the dialplan when an outbound
// socket session ends. Without it, a session that ends before the channel
// thread has entered the socket app's park (a fast exit or close, or a close
// before connect) leaves the call parked until it hangs up:
// mod_event_socket.c socket_function parks after the listener thread has
// already cleared CF_CONTROLLED, and nothing clears it again. With it, the
// listener sets CS_RESET, which park checks before it waits and which ends
// its loop (switch_channel_ready is false in CS_RESET).
const resumeCommand = "resume"

// connect sends `connect` and `resume` in one go (FreeSWITCH reads them in
// order; resume costs no round trip) and returns connect's reply.
func (c *conn) connect(ctx context.Context) (*eslwire.Frame, error) {
	w, err := c.send("connect", nil, nil, "", nil)
	if err != nil {
		return nil, err
	}
	if _, err := c.send(resumeCommand, nil, nil, "", nil); err != nil {
		return nil, err
	}
	return c.wait(ctx, w)
}

// api runs `api cmd` and returns the reply body.
func (c *conn) api(ctx context.Context, cmd string) (string, error) {
	f, err := c.command(ctx, "api "+cmd, nil, nil)
	if err != nil {
		return "", err
	}
	return string(f.Body), nil
}

// bgapi runs `bgapi cmd` with a Job-UUID of ours and returns the job's result,
// matched by that id (never by order).
func (c *conn) bgapi(ctx context.Context, cmd string) (string, error) {
	job := eslwire.NewUUID()
	res := make(chan string, 1)
	w, err := c.send("bgapi "+cmd, []eslwire.Header{{Name: "Job-UUID", Value: job}}, nil, job, res)
	if err != nil {
		return "", err
	}
	defer func() {
		c.mu.Lock()
		delete(c.jobs, job)
		c.mu.Unlock()
	}()
	select {
	case f := <-w.ch:
		if t := f.ReplyText(); !strings.HasPrefix(t, "+OK") {
			return "", fmt.Errorf("adapters/esl: bgapi: %s", strings.TrimSpace(t))
		}
	case <-c.done:
		return "", c.Err()
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case out := <-res:
		return out, nil
	case <-c.done:
		return "", c.Err()
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// bgapiStart sends `bgapi cmd` with Job-UUID job and waits for the command
// reply only: the job's result goes to res (buffered) when it comes on this
// connection. The job stays registered until forgetJob. sent reports
// whether FreeSWITCH may run the command: false when it was not written or
// was refused (-ERR), true with an error when its reply did not come.
func (c *conn) bgapiStart(ctx context.Context, cmd, job string, res chan string) (sent bool, err error) {
	w, err := c.send("bgapi "+cmd, []eslwire.Header{{Name: "Job-UUID", Value: job}}, nil, job, res)
	if err != nil {
		return false, err
	}
	f, err := c.wait(ctx, w)
	if err != nil {
		return true, err
	}
	if t := f.ReplyText(); !strings.HasPrefix(t, "+OK") {
		c.forgetJob(job)
		return false, fmt.Errorf("adapters/esl: bgapi: %s", call.CleanValue(t))
	}
	return true, nil
}

// forgetJob drops a job's result channel.
func (c *conn) forgetJob(job string) {
	c.mu.Lock()
	delete(c.jobs, job)
	c.mu.Unlock()
}

// readAuth waits for auth/request and authenticates.
func (c *conn) auth(ctx context.Context, password string) error {
	f, err := c.command(ctx, "auth "+password, nil, nil)
	if err != nil {
		return fmt.Errorf("adapters/esl: auth: %w", err)
	}
	if t := f.ReplyText(); !strings.HasPrefix(t, "+OK") {
		return fmt.Errorf("adapters/esl: auth: %s", strings.TrimSpace(t))
	}
	return nil
}
