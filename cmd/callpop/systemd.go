package main

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// systemdNotifier tells systemd (Type=notify) how the sidecar is doing over
// $NOTIFY_SOCKET: READY=1 once it serves, STATUS= with what /readyz says,
// STOPPING=1 when it drains, and WATCHDOG=1 every half WatchdogSec. Outside
// systemd ($NOTIFY_SOCKET unset) it does nothing.
type systemdNotifier struct {
	log  *slog.Logger
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newSystemdNotifier(log *slog.Logger) *systemdNotifier {
	return &systemdNotifier{log: log, done: make(chan struct{})}
}

// send sends state; a failure is logged (systemd then reports the unit
// itself), never fatal.
func (n *systemdNotifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// ready reports READY=1: the listeners are open and the parts run. It does
// not wait for the PBX: Asterisk or FreeSWITCH may itself be ordered after
// callpop, and /readyz (and STATUS=) tell when calls may come. With
// WatchdogSec set it starts the watchdog pings, which also refresh STATUS=.
func (n *systemdNotifier) ready(rd *readiness) {
	n.send(daemon.SdNotifyReady + "\n" + statusLine(rd))
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("systemd watchdog: bad WATCHDOG_USEC", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	n.wg.Go(func() {
		tick := time.NewTicker(interval / 2)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				n.send(daemon.SdNotifyWatchdog + "\n" + statusLine(rd))
			case <-n.done:
				return
			}
		}
	})
}

// statusLine is STATUS= for systemctl status: ready, or why not.
func statusLine(rd *readiness) string {
	st := rd.status()
	if st.Ready {
		return "STATUS=ready"
	}
	return "STATUS=not ready: " + strings.Join(st.Reasons, "; ")
}

// stopping reports STOPPING=1 (once).
func (n *systemdNotifier) stopping() {
	n.once.Do(func() { n.send(daemon.SdNotifyStopping + "\nSTATUS=draining") })
}

// close ends the watchdog pings.
func (n *systemdNotifier) close() {
	select {
	case <-n.done:
	default:
		close(n.done)
	}
	n.wg.Wait()
}
