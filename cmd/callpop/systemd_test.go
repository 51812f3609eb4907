package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Under systemd (Type=notify, WatchdogSec) `callpop run` sends READY=1 once
// it serves, WATCHDOG=1 while it runs, and STOPPING=1 when it drains, on
// the datagram socket $NOTIFY_SOCKET names.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "40000") // a ping every 20ms
	t.Setenv("WATCHDOG_PID", "")

	msgs := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				select {
				case msgs <- line:
				default: // the test has what it needs
				}
			}
		}
	}()
	want := func(state string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case m := <-msgs:
				if m == state {
					return
				}
			case <-deadline:
				t.Fatalf("no %s on NOTIFY_SOCKET", state)
			}
		}
	}

	sc := startSidecar(t, writeConfig(t, runConfig))
	want("READY=1")
	want("WATCHDOG=1")
	sc.sigs <- syscall.SIGTERM
	want("STOPPING=1")
	select {
	case err := <-sc.done:
		if err != nil {
			t.Fatal(err)
		}
		sc.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatalf("run did not return:\n%s", sc.logs.String())
	}
}
