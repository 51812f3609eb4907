// Package testredis starts throwaway redis-server processes (single node or a
// cluster) on free loopback ports for tests, and stops them when the test ends.
// Without redis-server on PATH the test is skipped, unless CI=true, where it fails.
package testredis

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process owned by a test.
type Server struct {
	Addr string // 127.0.0.1:port

	t       testing.TB
	dir     string
	port    int
	args    []string
	tls     *tls.Config // a TLS-only server: how to reach it
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	logFile string
}

// Start runs a redis-server on a free loopback port with persistence off in
// t.TempDir(); it is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := need(t, "redis-server")
	return start(t, bin, t.TempDir(), nil)
}

func start(t testing.TB, bin, dir string, extra []string) *Server {
	return startWith(t, bin, dir, nil, extra)
}

// startWith starts redis-server; conf, when set, writes a config file (given
// the chosen port) that is passed first, as sentinel mode requires.
func startWith(t testing.TB, bin, dir string, conf func(port int) string, extra []string) *Server {
	t.Helper()
	return startServer(t, bin, dir, conf, extra, nil)
}

// TLSFiles are a TLS-only server's certificate, key and the CA its
// clients' certificates must come from (tls-auth-clients yes).
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
	// Client is how the helper itself connects (a client certificate of CA).
	Client *tls.Config
}

// StartTLS runs a redis-server that speaks only TLS on its port and
// requires client certificates; it is stopped when the test ends.
func StartTLS(t testing.TB, f TLSFiles) *Server {
	t.Helper()
	bin := need(t, "redis-server")
	extra := []string{"--tls-cert-file", f.CertFile, "--tls-key-file", f.KeyFile, "--tls-ca-cert-file", f.CAFile,
		"--tls-auth-clients", "yes"}
	return startServer(t, bin, t.TempDir(), nil, extra, f.Client)
}

func startServer(t testing.TB, bin, dir string, conf func(port int) string, extra []string, tlsc *tls.Config) *Server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testredis: free port: %v", err)
		}
		s := &Server{t: t, dir: dir, port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			logFile: filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)), tls: tlsc}
		var pre []string
		if conf != nil {
			f := filepath.Join(dir, fmt.Sprintf("redis-%d.conf", port))
			if err := os.WriteFile(f, []byte(conf(port)), 0o644); err != nil {
				t.Fatalf("testredis: %v", err)
			}
			pre = []string{f}
		}
		s.args = append(pre, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", s.logFile, "--protected-mode", "no", "--daemonize", "no")
		if tlsc != nil {
			s.args = append(s.args, "--port", "0", "--tls-port", strconv.Itoa(port))
		}
		s.args = append(s.args, extra...)
		if lastErr = s.launch(bin); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("testredis: start redis-server: %v", lastErr)
	return nil
}

func (s *Server) launch(bin string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(bin, s.args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			log, _ := os.ReadFile(s.logFile)
			return fmt.Errorf("redis-server exited: %s", lastLines(log))
		default:
		}
		if ping(s.Addr, s.tls) == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("redis-server on %s not ready in 10s", s.Addr)
}

// Stop kills the server (like a crash: no shutdown save). Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused process must be able to die
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}

// Pause freezes the server (SIGSTOP): connections stay open, nothing answers,
// like a hung Redis. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart starts the server again on the same address (after Stop).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger briefly
		if err = s.launch(need(s.t, "redis-server")); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("testredis: restart %s: %v", s.Addr, err)
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Cluster is a Redis Cluster of masters (no replicas) owned by a test.
type Cluster struct {
	Addrs []string
	Nodes []*Server
}

// StartCluster starts n (≥3) masters with cluster mode on and joins them with
// `redis-cli --cluster create`; it waits until the cluster reports ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("testredis: a cluster needs at least 3 masters, got %d", n)
	}
	bin := need(t, "redis-server")
	cli := need(t, "redis-cli")
	c := &Cluster{}
	for i := 0; i < n; i++ {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := start(t, bin, dir, []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"})
		c.Nodes = append(c.Nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testredis: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		for {
			info, err := command(s.Addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testredis: cluster not ok on %s: %v %s", s.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// Sentinel is a master watched by one sentinel, owned by a test.
type Sentinel struct {
	Master     *Server
	Sentinel   *Server
	MasterName string   // the name clients ask the sentinel for
	Addrs      []string // the sentinels' addresses (what cache.redis.addrs lists)
}

// StartSentinel starts a master and one sentinel monitoring it as "callpop".
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := need(t, "redis-server")
	m := start(t, bin, t.TempDir(), nil)
	_, mport, _ := net.SplitHostPort(m.Addr)
	sdir := t.TempDir()
	sen := startWith(t, bin, sdir, func(port int) string {
		return fmt.Sprintf("sentinel monitor callpop 127.0.0.1 %s 1\n"+
			"sentinel down-after-milliseconds callpop 1000\n"+
			"sentinel failover-timeout callpop 5000\n", mport)
	}, []string{"--sentinel"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := command(sen.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "callpop")
		if err == nil && strings.Contains(r, mport) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("testredis: sentinel does not know the master: %q %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Sentinel{Master: m, Sentinel: sen, MasterName: "callpop", Addrs: []string{sen.Addr}}
}

// need finds a binary, skipping the test without it unless CI=true.
func need(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testredis: %s not on PATH (CI=true: install redis-server)", name)
		}
		t.Skipf("testredis: %s not on PATH; install redis-server to run this test", name)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func ping(addr string, tlsc *tls.Config) error {
	r, err := dialCommand(addr, tlsc, "PING")
	if err != nil {
		return err
	}
	if !strings.Contains(r, "PONG") {
		return fmt.Errorf("ping: %q", r)
	}
	return nil
}

// command sends one RESP command and returns the raw reply (enough for PING and
// CLUSTER INFO; tests use go-redis for everything else).
func command(addr string, args ...string) (string, error) {
	return dialCommand(addr, nil, args...)
}

func dialCommand(addr string, tlsc *tls.Config, args ...string) (string, error) {
	d := &net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if tlsc != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tlsc)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return "", err
	}
	buf := make([]byte, 8192)
	n, err := conn.Read(buf)
	if n == 0 {
		return "", err
	}
	return string(buf[:n]), nil
}

func lastLines(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}
