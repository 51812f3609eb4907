// Package tlsfiles serves TLS from certificate files that may be replaced
// while callpop runs (cert-manager, certbot): each handshake checks the
// files and picks up a new certificate or client CA without a restart.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/callpop/callpop/internal/loglimit"
)

// Config is the top-level `tls` section, for the HTTP listener.
type Config struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ClientCAFile turns on mutual TLS: a client certificate signed by one
	// of these CAs stands for an API key with ClientScopes.
	ClientCAFile string   `mapstructure:"client_ca_file"`
	ClientScopes []string `mapstructure:"client_scopes"`
}

// Enabled says whether the listener serves TLS.
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate checks that the files go together and can be read.
func (c Config) Validate() error {
	var errs []error
	if c.CertFile == "" && c.KeyFile != "" {
		errs = append(errs, errors.New("tls.cert_file: required with tls.key_file"))
	}
	if c.KeyFile == "" && c.CertFile != "" {
		errs = append(errs, errors.New("tls.key_file: required with tls.cert_file"))
	}
	if c.ClientCAFile != "" && !c.Enabled() {
		errs = append(errs, errors.New("tls.client_ca_file: needs tls.cert_file and tls.key_file"))
	}
	if len(c.ClientScopes) > 0 && c.ClientCAFile == "" {
		errs = append(errs, errors.New("tls.client_scopes: needs tls.client_ca_file"))
	}
	if err := errors.Join(errs...); err != nil || !c.Enabled() {
		return err
	}
	if _, err := load(c); err != nil {
		return err
	}
	return nil
}

// stamp identifies a version of a file.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) stamp {
	if path == "" {
		return stamp{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{fi.ModTime(), fi.Size()}
}

type loaded struct {
	cert   *tls.Certificate
	pool   *x509.CertPool
	stamps [3]stamp
}

func load(c Config) (*loaded, error) {
	l := &loaded{stamps: [3]stamp{stampOf(c.CertFile), stampOf(c.KeyFile), stampOf(c.ClientCAFile)}}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	l.cert = &cert
	if c.ClientCAFile != "" {
		if l.pool, err = CAPool("tls.client_ca_file", c.ClientCAFile); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// CAPool reads the PEM certificates of path into a pool; key names the
// config key in errors.
func CAPool(key, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, path)
	}
	return pool, nil
}

// Server hands out the current TLS settings.
type Server struct {
	cfg  Config
	log  *slog.Logger
	warn loglimit.Limiter

	mu  sync.Mutex
	cur *loaded
}

// NewServer loads the files; an error names the key. The result's
// TLSConfig is for an http.Server.
func NewServer(cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	l, err := load(cfg)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: log.With("component", "tls"), cur: l}, nil
}

// current reloads the files when one changed since the last load; a
// change that does not load (a half-written file) keeps the last good
// pair, and is tried again at the next handshake.
func (s *Server) current() *loaded {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := [3]stamp{stampOf(s.cfg.CertFile), stampOf(s.cfg.KeyFile), stampOf(s.cfg.ClientCAFile)}
	if now == s.cur.stamps {
		return s.cur
	}
	l, err := load(s.cfg)
	if err != nil {
		if n, ok := s.warn.Allow(); ok {
			s.log.Warn("TLS files changed but do not load; serving the previous certificate", "err", err, "suppressed", n)
		}
		return s.cur
	}
	s.log.Info("TLS files reloaded", "cert_file", s.cfg.CertFile, "not_after", l.cert.Leaf.NotAfter)
	s.cur = l
	return l
}

// TLSConfig is TLS 1.2 or later, with the files' current certificate and,
// with a client CA, client certificates verified when a client sends one
// (clients with an API key need none).
func (s *Server) TLSConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		l := s.current()
		c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: base.NextProtos, Certificates: []tls.Certificate{*l.cert}}
		if l.pool != nil {
			c.ClientCAs = l.pool
			c.ClientAuth = tls.VerifyClientCertIfGiven
		}
		return c, nil
	}
	return base
}
