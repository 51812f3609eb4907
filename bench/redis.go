package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// RedisServer is a throwaway redis-server on a free loopback port, persistence off.
type RedisServer struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// StartRedis starts redis-server (from PATH) and waits until it answers PING.
func StartRedis() (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("bench: redis-server not on PATH (install it, or pass --redis ADDR): %w", err)
	}
	dir, err := os.MkdirTemp("", "callpop-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("bench: redis dir: %w", err)
	}
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--protected-mode", "no", "--daemonize", "no", "--logfile", "")
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("bench: start redis-server: %w", err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }() // ends when the process exits
		if last = s.waitReady(5 * time.Second); last == nil {
			return s, nil
		}
		s.Close()
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("bench: redis-server: %w", last)
}

func (s *RedisServer) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("exited")
		default:
		}
		if err := pingRedis(s.Addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not ready on %s in %s", s.Addr, d)
}

// Close kills the server and removes its directory.
func (s *RedisServer) Close() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = os.RemoveAll(s.dir)
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("ping: %q", line)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
