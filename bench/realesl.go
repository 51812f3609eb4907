package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/esl"
	"github.com/callpop/callpop/adapters/esl/eslwire"
)

// realESL is a FreeSWITCH reached over its inbound Event Socket:
// `bgapi originate {callpop_bench_*=…}loopback/<way>/callpop-bench &park()`,
// and each call's stamps arrive as the CUSTOM callpop::bench event the
// dialplan fires (its headers callpop_bench_id, callpop_bench_t0/t1 and the
// channel's Unique-ID).
type realESL struct {
	o    RealOptions
	log  *slog.Logger
	nc   net.Conn
	wmu  sync.Mutex // one command at a time: its reply is the next reply frame
	w    *bufio.Writer
	rep  chan *eslwire.Frame // command/reply and api/response frames, in order
	wg   sync.WaitGroup
	jobs atomic.Int64
}

// ESLEventSubclass is the CUSTOM event the FreeSWITCH bench context fires per call.
const ESLEventSubclass = "callpop::bench"

func newRealESL(o RealOptions, log *slog.Logger) realPBX {
	return &realESL{o: o, log: log, rep: make(chan *eslwire.Frame, 16)}
}

func (r *realESL) host() string {
	h, _, _ := net.SplitHostPort(r.o.ESLAddress)
	return h
}

func (r *realESL) port() int {
	_, p, _ := net.SplitHostPort(r.o.ESLAddress)
	n, _ := strconv.Atoi(p)
	return n
}

func (r *realESL) process() string { return "freeswitch" }

func (r *realESL) connect(ctx context.Context, w *reportWaiter) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", r.o.ESLAddress)
	if err != nil {
		return fmt.Errorf("bench: Event Socket at %s: %w", r.o.ESLAddress, err)
	}
	r.nc, r.w = nc, bufio.NewWriter(nc)
	rd := eslwire.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := rd.ReadFrame(); err != nil || f.ContentType() != "auth/request" {
		return fmt.Errorf("bench: Event Socket at %s: no auth/request (%v)", r.o.ESLAddress, err)
	}
	for _, line := range []string{"auth " + r.o.ESLPassword, "event plain CUSTOM " + ESLEventSubclass} {
		if err := r.write(line); err != nil {
			return fmt.Errorf("bench: Event Socket: %w", err)
		}
		f, err := rd.ReadFrame()
		if err != nil {
			return fmt.Errorf("bench: Event Socket: %w", err)
		}
		if reply := f.Headers.Get("Reply-Text"); !strings.HasPrefix(reply, "+OK") {
			return fmt.Errorf("bench: Event Socket: %s: %q", strings.Fields(line)[0], reply) // never the password
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	r.wg.Add(1)
	go func() { // ends when the connection closes
		defer r.wg.Done()
		defer stop()
		defer close(r.rep)
		for {
			f, err := rd.ReadFrame()
			if err != nil {
				return
			}
			switch f.ContentType() {
			case eslwire.TypeReply, eslwire.TypeAPIResponse:
				r.rep <- f
			case eslwire.TypeEventPlain:
				r.file(w, f.Body)
			}
		}
	}()
	return nil
}

// file hands a CUSTOM callpop::bench event's stamps on.
func (r *realESL) file(w *reportWaiter, body []byte) {
	ev, err := eslwire.ParseEvent(body)
	if err != nil || eslwire.Decode(ev.Headers.Get("Event-Subclass")) != ESLEventSubclass {
		return
	}
	get := func(n string) string { return eslwire.Decode(ev.Headers.Get(n)) }
	s, id, err := parseReport([]string{get("callpop_bench_id"), get("Unique-ID"), get("callpop_bench_t0"), get("callpop_bench_t1"), get("callpop_bench_match")})
	if err != nil {
		r.log.Warn("bench: a call reported no stamps: is the bench context as docs/performance.md has it?", "err", err)
		return
	}
	w.report(id, s)
}

func (r *realESL) write(line string) error {
	r.w.WriteString(line + "\n\n")
	return r.w.Flush()
}

// command sends one command and returns its reply (command/reply or api/response).
func (r *realESL) command(ctx context.Context, line string) (*eslwire.Frame, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if err := r.write(line); err != nil {
		return nil, fmt.Errorf("bench: Event Socket: %w", err)
	}
	select {
	case f, ok := <-r.rep:
		if !ok {
			return nil, errors.New("bench: Event Socket closed")
		}
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *realESL) liveChannels(ctx context.Context) (int, error) {
	f, err := r.command(ctx, "api show channels as json")
	if err != nil {
		return 0, err
	}
	var out struct {
		RowCount int `json:"row_count"`
	}
	if err := json.Unmarshal(f.Body, &out); err != nil {
		return 0, fmt.Errorf("bench: show channels as json: %q", strings.TrimSpace(string(f.Body)))
	}
	return out.RowCount, nil
}

func (r *realESL) originate(ctx context.Context, way, cli string, vars map[string]string) error {
	list := []string{"origination_caller_id_number", cli}
	for k, v := range vars {
		list = append(list, strings.ToLower(k), v)
	}
	var b strings.Builder
	b.WriteString("bgapi originate {")
	for i := 0; i < len(list); i += 2 {
		v, err := originateValue(list[i+1])
		if err != nil {
			return fmt.Errorf("bench: originate variable %s: %w", list[i], err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(list[i] + "=" + v)
	}
	fmt.Fprintf(&b, "}loopback/%s/%s &park()\nJob-UUID: callpop-bench-%d", way, BenchContext, r.jobs.Add(1))
	f, err := r.command(ctx, b.String())
	if err != nil {
		return err
	}
	if reply := f.Headers.Get("Reply-Text"); !strings.HasPrefix(reply, "+OK") {
		return fmt.Errorf("bench: bgapi originate: %q", reply)
	}
	return nil
}

// originateValue quotes a value of an originate's {} block when it holds a
// space or a comma (switch_separate_string keeps a quoted field whole); what
// no quoting can carry is an error.
func originateValue(v string) (string, error) {
	if strings.ContainsAny(v, "'}\r\n") {
		return "", fmt.Errorf("%q cannot be passed in an originate", v)
	}
	if strings.ContainsAny(v, " ,\t") {
		return "'" + v + "'", nil
	}
	return v, nil
}

func (r *realESL) handler(way string, bare bool, o *RealOptions, p *Pipeline) (wayHandler, error) {
	switch way {
	case WayESLOutbound:
		return &eslOutbound{bare: bare, o: o, p: p, log: r.log}, nil
	case WayHTTP:
		return &httpHandler{bare: bare, listen: o.Listen, p: p, varName: "CALLPOP_BENCH_URL", delay: o.CRMDelay, recordMatch: true}, nil
	case WayMultiset:
		h := &httpHandler{bare: bare, listen: o.Listen, p: p, varName: "CALLPOP_BENCH_URL", delay: o.CRMDelay}
		if bare {
			h.body = sampleAnswer(p, "format=multiset&call_id="+sampleCallID)
		}
		return h, nil
	case WayCIDLookup:
		h := &cidlookupHandler{httpHandler: httpHandler{bare: bare, listen: o.Listen, p: p, delay: o.CRMDelay}, r: r}
		if bare {
			h.body = sampleAnswer(p, "field=name")
		}
		return h, nil
	}
	return nil, fmt.Errorf("no way %q into FreeSWITCH", way)
}

func (r *realESL) close() {
	if r.nc != nil {
		r.nc.Close()
	}
	r.wg.Wait()
}

// eslOutbound answers `socket ${callpop_bench_socket} async full`: callpop's
// ESL adapter in outbound mode, or a bare handler that sends connect with resume
// then exit. Commands are counted on the bench's side of the socket.
type eslOutbound struct {
	bare     bool
	o        *RealOptions
	p        *Pipeline
	log      *slog.Logger
	ln       net.Listener
	commands atomic.Int64
	wg       sync.WaitGroup
	ad       *esl.Adapter
	cancel   context.CancelFunc
}

func (h *eslOutbound) start(ctx context.Context) error {
	ln, err := net.Listen("tcp", h.o.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	h.ln = &countingListener{Listener: ln, sep: "\n\n", lines: &h.commands}
	if h.bare {
		h.wg.Add(1)
		go func() { // ends when the listener closes
			defer h.wg.Done()
			serveConns(h.ln, &h.wg, bareSocket)
		}()
		return nil
	}
	ctx, h.cancel = context.WithCancel(ctx)
	cfg := esl.DefaultConfig()
	cfg.Mode, cfg.Events, cfg.Password = "outbound", false, h.o.ESLPassword
	if h.o.allow != nil {
		cfg.Allow = h.o.allow
	}
	h.ad, err = esl.New(cfg, adapters.Deps{Decider: h.p.Router, Logger: h.log, Budget: h.o.Budget})
	if err != nil {
		ln.Close()
		return fmt.Errorf("bench: %w", err)
	}
	h.wg.Add(1)
	go func() { // ends with ctx
		defer h.wg.Done()
		if err := h.ad.ServeOutboundListener(ctx, h.ln); err != nil {
			h.log.Error("esl adapter stopped", "component", "bench", "err", err)
		}
	}()
	return nil
}

// bareSocket does the least a socket app handler can that still lets the
// dialplan go on: connect with resume, exit.
func bareSocket(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	rd := eslwire.NewReader(c)
	cmd := replyReader(c, rd)
	if _, err := socketConnect(c, cmd); err != nil {
		return
	}
	_, _ = cmd("exit")
}

func (h *eslOutbound) ready() bool { return h.ln != nil }
func (h *eslOutbound) vars(string) map[string]string {
	return map[string]string{"CALLPOP_BENCH_SOCKET": h.ln.Addr().String()}
}
func (h *eslOutbound) requests() int64 { return h.commands.Load() }
func (h *eslOutbound) close() {
	if h.cancel != nil {
		h.cancel()
	}
	if h.ln != nil {
		h.ln.Close()
	}
	h.wg.Wait()
}

// CIDLookupURLVar is the global variable cidlookup.conf.xml's url starts
// with on a PBX benched with --way cidlookup: mod_cidlookup's url is one
// setting for every call and expands only ${caller_id_number} and global
// variables, so the bench points it at callpop or the bare server before
// each of their turns (`global_setvar`), a turn's calls all done before the next.
const CIDLookupURLVar = "callpop_bench_cidlookup_url"

// cidlookupHandler answers mod_cidlookup's GET (`…&number=<digits>`):
// callpop's /v1/route?field=name, or a bare server answering a fixed name.
type cidlookupHandler struct {
	httpHandler
	r *realESL
}

func (h *cidlookupHandler) vars(string) map[string]string { return nil }

func (h *cidlookupHandler) turn(ctx context.Context) error {
	return h.r.globalSet(ctx, CIDLookupURLVar, "http://"+h.ln.Addr().String())
}

func (h *cidlookupHandler) hint() string {
	return `mod_cidlookup did not ask the bench: give cidlookup.conf.xml <param name="url" value="${` + CIDLookupURLVar +
		`}/v1/route?field=name&amp;number=${caller_id_number}"/>, then "reload mod_cidlookup" (docs/performance.md, "FreeSWITCH bench context")`
}

func (h *cidlookupHandler) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.r.globalSet(ctx, CIDLookupURLVar, "") // a look-up after the bench fails at once, not against a closed port's successor
	h.httpHandler.close()
}

// globalSet sets a FreeSWITCH global variable (api global_setvar; "" deletes it).
func (r *realESL) globalSet(ctx context.Context, name, value string) error {
	if strings.ContainsAny(value, "=\r\n") { // global_setvar takes "a=b=c" as "a=b if a is c"
		return fmt.Errorf("bench: global_setvar %s: %q cannot be set", name, value)
	}
	f, err := r.command(ctx, "api global_setvar "+name+"="+value)
	if err != nil {
		return err
	}
	if reply := strings.TrimSpace(string(f.Body)); !strings.HasPrefix(reply, "+OK") {
		return fmt.Errorf("bench: global_setvar %s: %q", name, reply)
	}
	return nil
}
