package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/callpop/callpop/adapters"
)

// The memory and goroutine figures are the sidecar's own when it runs as a
// child process (`callpop bench --sidecar-child`): the simulator, the CRM stub
// and the load generator stay in the parent. The two talk JSON lines over the
// child's stdin/stdout: the parent sends a SidecarSpec, the child answers
// sidecarReady, then one sidecarStats per "stats" line; stdin closed = stop.

// SidecarSpec is what a sidecar child runs.
type SidecarSpec struct {
	PBX        string        `json:"pbx"`
	Endpoint   string        `json:"endpoint"` // ARI URL or inbound ESL address; "" for outbound
	CRMURL     string        `json:"crm_url"`
	RedisAddr  string        `json:"redis_addr"`
	KeyPrefix  string        `json:"key_prefix"` // the run's own (cache.key_prefix)
	Budget     time.Duration `json:"budget"`
	CRMTimeout time.Duration `json:"crm_timeout"`
	MaxCalls   int           `json:"max_calls"` // the adapter's max_calls; 0 = its default
}

type sidecarReady struct {
	Addr  string `json:"addr,omitempty"` // outbound ESL listener
	Error string `json:"error,omitempty"`
}

type sidecarStats struct {
	Goroutines int   `json:"goroutines"`
	InPipeline int64 `json:"in_pipeline"` // calls inside Decide now
	RSSKiB     int64 `json:"rss_kib"`
	HWMKiB     int64 `json:"hwm_kib"`
	HeapInuse  int64 `json:"heap_inuse"`
	StackInuse int64 `json:"stack_inuse"` // goroutine stacks
}

// RunSidecar is the child's side: it builds the pipeline and the adapter the
// spec on the first line of in names, reports ready on out, answers "stats"
// lines, and returns when in ends or ctx ends.
func RunSidecar(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	if !sc.Scan() {
		return errors.New("bench: sidecar: no spec on stdin")
	}
	var spec SidecarSpec
	if err := json.Unmarshal(sc.Bytes(), &spec); err != nil {
		return fmt.Errorf("bench: sidecar: spec: %w", err)
	}
	fail := func(err error) error {
		_ = enc.Encode(sidecarReady{Error: err.Error()})
		return err
	}
	p, err := NewPipeline(PipelineConfig{CRMURL: spec.CRMURL, RedisAddr: spec.RedisAddr, KeyPrefix: spec.KeyPrefix, Budget: spec.Budget, CRMTimeout: spec.CRMTimeout, Logger: log})
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ec := &entryCounter{dec: p.Router, log: log}
	ready, addr, err := startSidecarAdapter(ctx, spec, adapters.Deps{Decider: ec, Logger: log, Budget: spec.Budget}, log)
	if err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ok, _ := ready(); !ok; ok, _ = ready() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fail(errors.New("bench: sidecar: adapter not ready in 10s"))
		}
		time.Sleep(200 * time.Microsecond)
	}
	if err := enc.Encode(sidecarReady{Addr: addr()}); err != nil {
		return err
	}
	return answerSidecar(sc, enc, ec)
}

// startSidecarAdapter starts the adapter spec.PBX names on deps; it returns
// its readiness and the address the PBX connects to ("" but outbound ESL).
func startSidecarAdapter(ctx context.Context, spec SidecarSpec, deps adapters.Deps, log *slog.Logger) (ready func() (bool, string), addr func() string, err error) {
	switch spec.PBX {
	case PBXAsterisk:
		a, err := startARIAdapter(ctx, spec.Endpoint, spec.MaxCalls, deps, log)
		if err != nil {
			return nil, nil, err
		}
		return a.Ready, func() string { return "" }, nil
	case PBXFreeSWITCHInbound, PBXFreeSWITCHOutbound:
		m, where := "inbound", spec.Endpoint
		if spec.PBX == PBXFreeSWITCHOutbound {
			m, where = "outbound", "127.0.0.1:0"
		}
		a, err := startESLAdapter(ctx, m, where, spec.MaxCalls, deps, log)
		if err != nil {
			return nil, nil, err
		}
		return a.Ready, a.Addr, nil
	}
	return nil, nil, fmt.Errorf("bench: sidecar: --pbx %q has no sidecar", spec.PBX)
}

// answerSidecar answers the parent's lines until in ends: "stats" with a
// sidecarStats, "profile PATH" by writing the profiles.
func answerSidecar(sc *bufio.Scanner, enc *json.Encoder, ec *entryCounter) error {
	for sc.Scan() {
		if path, ok := strings.CutPrefix(sc.Text(), "profile "); ok {
			writeProfiles(path)
			continue
		}
		if sc.Text() != "stats" {
			continue
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if err := enc.Encode(sidecarStats{Goroutines: runtime.NumGoroutine(), InPipeline: ec.in.Load(),
			RSSKiB: procStatusKiB("VmRSS"), HWMKiB: procStatusKiB("VmHWM"), HeapInuse: int64(ms.HeapInuse), StackInuse: int64(ms.StackInuse)}); err != nil {
			return err
		}
	}
	return nil
}

// sidecarChild is the parent's handle on a child sidecar.
type sidecarChild struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	ready sidecarReady
	done  chan error
}

// startSidecar starts command (e.g. callpop bench --sidecar-child) with spec
// and waits for it to report ready.
func startSidecar(ctx context.Context, command []string, memLimit string, spec SidecarSpec) (*sidecarChild, error) {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stderr = os.Stderr
	if memLimit != "" {
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+memLimit)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: sidecar: %w", err)
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: sidecar: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: sidecar: %w", err)
	}
	c := &sidecarChild{cmd: cmd, in: in, out: bufio.NewScanner(outR), done: make(chan error, 1)}
	b, _ := json.Marshal(spec)
	if _, err := in.Write(append(b, '\n')); err != nil {
		c.close()
		return nil, fmt.Errorf("bench: sidecar: %w", err)
	}
	got := make(chan error, 1)
	go func() { // ends when the child answers or exits
		if !c.out.Scan() {
			got <- errors.New("exited before ready")
			return
		}
		got <- json.Unmarshal(c.out.Bytes(), &c.ready)
	}()
	select {
	case err = <-got:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(20 * time.Second):
		err = errors.New("not ready in 20s")
	}
	if err == nil && c.ready.Error != "" {
		err = errors.New(c.ready.Error)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("bench: sidecar: %w", err)
	}
	return c, nil
}

func (c *sidecarChild) stats() (sidecarStats, error) {
	var s sidecarStats
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		return s, fmt.Errorf("bench: sidecar: %w", err)
	}
	if !c.out.Scan() {
		return s, errors.New("bench: sidecar: exited")
	}
	return s, json.Unmarshal(c.out.Bytes(), &s)
}

// close stops the child: stdin closed, then killed if it lingers.
func (c *sidecarChild) close() {
	_ = c.in.Close()
	go func() { c.done <- c.cmd.Wait() }() // ends when the child exits
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// writeProfiles writes the goroutine (text, grouped) and heap profiles of this
// process to path.goroutines.txt and path.heap.pb.gz; best effort.
func writeProfiles(path string) {
	if f, err := os.Create(path + ".goroutines.txt"); err == nil {
		_ = pprof.Lookup("goroutine").WriteTo(f, 1)
		f.Close()
	}
	if f, err := os.Create(path + ".heap.pb.gz"); err == nil {
		_ = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
}

// profile asks the child to write its profiles to path.*.
func (c *sidecarChild) profile(path string) error {
	_, err := io.WriteString(c.in, "profile "+path+"\n")
	return err
}
