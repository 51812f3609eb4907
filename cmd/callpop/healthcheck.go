package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func init() { register(newHealthcheckCmd) }

// defaultHealthURL is --url's default, used as it is when the configuration
// cannot say where the instance listens.
const defaultHealthURL = "http://127.0.0.1:8080/readyz"

func newHealthcheckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Ask a running instance's /readyz: exit 0 when ready, 1 otherwise, with one line saying why",
		Long: `Ask a running instance whether it is ready (GET /readyz) and exit 0 when it is, 1
otherwise, printing one line: "ready", or why not (the instance's reasons, its
status, or why it could not be reached). For the image's HEALTHCHECK, which has
no shell or curl.

Without --url the address comes from the configuration (--config, CALLPOP_CONFIG
and CALLPOP_* as for run): listen's port on loopback when it listens on all
addresses, over HTTPS when tls.cert_file is set; else ` + defaultHealthURL + `.
Over HTTPS the instance's certificate is trusted when it is the one tls.cert_file
holds (a loopback address is rarely among its names), otherwise it must be valid
for the URL's host under the system's roots.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, _ := cmd.Flags().GetString("url")
			timeout, _ := cmd.Flags().GetDuration("timeout")
			lc, _ := configFromCmd(cmd) // an invalid file still says where it listens
			var cfg *Config
			if lc.Decoded {
				cfg = &lc.Config
			}
			if !cmd.Flags().Changed("url") {
				target = healthURL(cfg)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := checkHealth(ctx, target, cfg); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			return nil
		},
	}
	cmd.Flags().String("url", defaultHealthURL, "the instance's /readyz (default: from the configuration's listen and tls keys)")
	cmd.Flags().Duration("timeout", 2*time.Second, "how long to wait for the answer")
	return cmd
}

// healthURL is where the configured instance answers /readyz from the same
// host.
func healthURL(cfg *Config) string {
	if cfg == nil {
		return defaultHealthURL
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil || port == "0" {
		return defaultHealthURL
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port), Path: "/readyz"}).String()
}

// checkHealth GETs target and returns nil when it answers 200, else one
// line saying why not.
func checkHealth(ctx context.Context, target string, cfg *Config) error {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url %q: want http(s)://host:port/readyz", target)
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if u.Scheme == "https" {
		tc, err := healthTLS(u.Hostname(), cfg)
		if err != nil {
			return err
		}
		tr.TLSClientConfig = tc
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("not ready: %s did not answer in time", u.Redacted())
		}
		return fmt.Errorf("not ready: %s unreachable: %w", u.Redacted(), errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var st readyJSON
	if json.Unmarshal(body, &st) == nil && len(st.Reasons) > 0 {
		return fmt.Errorf("not ready (%d): %s", resp.StatusCode, strings.Join(st.Reasons, "; "))
	}
	return fmt.Errorf("not ready: %s answered %s", u.Redacted(), resp.Status)
}

// healthTLS trusts the certificate tls.cert_file holds (the instance's
// own), or else one valid for host under the system's roots.
func healthTLS(host string, cfg *Config) (*tls.Config, error) {
	var own [][]byte
	if cfg != nil && cfg.TLS.CertFile != "" {
		b, err := os.ReadFile(cfg.TLS.CertFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file: %w", err)
		}
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			if blk.Type == "CERTIFICATE" {
				own = append(own, blk.Bytes)
			}
		}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below: the instance's own certificate, or the usual way.
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection does the verification
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			leaf := cs.PeerCertificates[0]
			for _, raw := range own {
				if bytes.Equal(raw, leaf.Raw) {
					return nil
				}
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Intermediates: inter})
			return err
		},
	}, nil
}
