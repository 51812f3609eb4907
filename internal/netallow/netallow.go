// Package netallow keeps unlisted peers off callpop's listeners: source
// allow-lists (CIDRs) for the raw-TCP listeners, and the loopback checks
// that secure defaults rest on.
package netallow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/callpop/callpop/internal/loglimit"
)

// DefaultAllow is the allow-list a listener has until the config names
// another: loopback only.
var DefaultAllow = []string{"127.0.0.0/8", "::1/128"}

var refused = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "callpop_listener_refused_total",
	Help: "Connections closed at once because their source is not in the listener's allow-list (or not loopback where only loopback is served).",
}, []string{"listener"})

// List is a parsed allow-list.
type List struct {
	prefixes []netip.Prefix
}

// Parse reads CIDRs ("10.0.0.0/8", "::1/128") or single addresses; key names
// the config key in errors. An empty list admits nobody.
func Parse(key string, cidrs []string) (List, error) {
	var l List
	var errs []error
	for i, s := range cidrs {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %q is not a CIDR (10.0.0.0/8) or an address", key, i, s))
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		l.prefixes = append(l.prefixes, p.Masked())
	}
	return l, errors.Join(errs...)
}

// Allows says whether addr (an IP) is in the list.
func (l List) Allows(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range l.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// OnlyLoopback says whether the list admits loopback sources and nothing else.
func (l List) OnlyLoopback() bool {
	for _, p := range l.prefixes {
		if !p.Addr().IsLoopback() || (p.Addr().Is4() && p.Bits() < 8) || (p.Addr().Is6() && p.Bits() < 128) {
			return false
		}
	}
	return true
}

// String lists the prefixes as configured.
func (l List) String() string {
	s := make([]string, len(l.prefixes))
	for i, p := range l.prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// IsDefault says whether cidrs is the default allow-list, as given.
func IsDefault(cidrs []string) bool {
	if len(cidrs) != len(DefaultAllow) {
		return false
	}
	for i := range cidrs {
		if strings.TrimSpace(cidrs[i]) != DefaultAllow[i] {
			return false
		}
	}
	return true
}

// RemoteIP is the IP of a "host:port" remote address (an *http.Request's
// RemoteAddr), or the zero Addr.
func RemoteIP(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// IsLoopback says whether a "host:port" remote address is a loopback source.
func IsLoopback(remote string) bool {
	return RemoteIP(remote).IsLoopback()
}

// BeyondLoopback says whether a listen address ("host:port") accepts
// connections from other hosts: an empty or unspecified host, a
// non-loopback address, or a name other than localhost.
func BeyondLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return true // a name: it may resolve to anything
	}
	return !a.Unmap().IsLoopback()
}

// CheckBind refuses the default allow-list on a listener bound beyond
// loopback: the admin must say which PBXs may connect. key is the config
// key of the list, env its environment variable.
func CheckBind(listen string, cidrs []string, key, env string) error {
	if listen == "" || !BeyondLoopback(listen) || !IsDefault(cidrs) {
		return nil
	}
	return fmt.Errorf("%s: %s listens beyond loopback but admits only loopback peers (the default); list the PBXs' addresses in %s (env %s, e.g. %s=10.0.0.5/32)",
		key, listen, key, env, env)
}

// Listener closes at once every connection whose source is not allowed.
type Listener struct {
	net.Listener
	list  func() List
	name  string
	log   *slog.Logger
	count prometheus.Counter
	warn  loglimit.Limiter
}

// Wrap puts an allow-list in front of l; list is asked at each connection
// (a reloaded config applies to the next one). name labels the metric and
// the log lines.
func Wrap(l net.Listener, list func() List, name string, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.Default()
	}
	return &Listener{Listener: l, list: list, name: name, log: log, count: refused.WithLabelValues(name)}
}

// Accept returns the next allowed connection.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var ip netip.Addr
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip = ta.AddrPort().Addr().Unmap()
		} else {
			ip = RemoteIP(c.RemoteAddr().String())
		}
		list := l.list()
		if list.Allows(ip) {
			return c, nil
		}
		l.refuse(ip.String(), list) // counted before the peer can see the close
		_ = c.Close()
	}
}

// refuse counts and logs (at most once a second) a peer turned away.
func (l *Listener) refuse(peer string, list List) {
	l.count.Inc()
	n, ok := l.warn.Allow()
	if !ok {
		return
	}
	l.log.LogAttrs(context.Background(), slog.LevelWarn, "connection refused: source not in the allow-list",
		slog.String("listener", l.name), slog.String("peer", peer), slog.String("allow", list.String()),
		slog.Int64("suppressed", n))
}
