// Package testpg gives a test its own PostgreSQL: a throwaway server
// (initdb + postgres on a free loopback port, data in a temporary directory),
// or, when CALLPOP_TEST_PG_DSN names an existing server, a uniquely named
// database created on it and dropped afterwards. Without either the test is
// skipped, unless CI=true, where it fails.
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL database owned by a test.
type Server struct {
	DSN string // postgres://…/db?sslmode=disable
}

// Start returns a fresh database for the test; everything is removed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if dsn := os.Getenv("CALLPOP_TEST_PG_DSN"); dsn != "" {
		return onExisting(t, dsn)
	}
	initdb, postgres := find("initdb"), find("postgres")
	if initdb == "" || postgres == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testpg: initdb/postgres not found (CI=true: install postgresql)")
		}
		t.Skip("testpg: initdb/postgres not found and CALLPOP_TEST_PG_DSN unset; install postgresql to run this test")
	}
	return startServer(t, initdb, postgres)
}

func find(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, pat := range []string{"/usr/local/bin/" + name, "/usr/lib/postgresql/*/bin/" + name} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return m[len(m)-1]
		}
	}
	return ""
}

// asUser runs a command as user postgres when we are root (postgres refuses
// to run as root), else as ourselves. The process is started directly under
// that user's credentials, so signals reach postgres itself.
func asUser(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
			cmd.Env = append(os.Environ(), "HOME="+u.HomeDir, "USER=postgres")
		}
	}
	return cmd
}

func startServer(t testing.TB, initdb, postgres string) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "callpop-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(dir, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	data := filepath.Join(dir, "data")
	_ = os.Chmod(dir, 0o700)
	if out, err := asUser(initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		t.Fatalf("testpg: initdb: %v\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		cmd := asUser(postgres, "-D", data, "-p", strconv.Itoa(port), "-h", "127.0.0.1", "-k", "",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=30", "-c", "shared_buffers=16MB")
		logf, _ := os.Create(filepath.Join(dir, "postgres.log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("testpg: postgres: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		stop := func() {
			_ = cmd.Process.Signal(os.Interrupt) // fast shutdown
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			_ = logf.Close()
		}
		dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		if lastErr = waitReady(dsn, done, 20*time.Second); lastErr == nil {
			t.Cleanup(stop)
			return &Server{DSN: dsn}
		}
		stop()
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		lastErr = fmt.Errorf("%w\n%s", lastErr, log)
	}
	t.Fatalf("testpg: postgres did not start: %v", lastErr)
	return nil
}

func waitReady(dsn string, done <-chan struct{}, d time.Duration) error {
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("postgres exited")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var conn *pgx.Conn
		conn, err = pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready in %s: %v", d, err)
}

// onExisting creates a uniquely named database on the server at dsn and drops it afterwards.
func onExisting(t testing.TB, dsn string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("testpg: CALLPOP_TEST_PG_DSN: connect: %v", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "callpop_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testpg: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Fatalf("testpg: CALLPOP_TEST_PG_DSN must be a postgres:// URL")
	}
	u.Path = "/" + name
	return &Server{DSN: u.String()}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
