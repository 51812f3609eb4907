package tlsfiles

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/callpop/callpop/internal/testcerts"
)

// serve runs an HTTPS server on loopback with s's settings.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: s.TLSConfig(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			_, _ = w.Write([]byte("client " + r.TLS.VerifiedChains[0][0].Subject.CommonName))
			return
		}
		_, _ = w.Write([]byte("anonymous"))
	})}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// peer dials addr and returns the server certificate's common name.
func peer(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "test CA")
	first := ca.Server(t, "first").Write(t, dir, "server")
	s, err := NewServer(Config{CertFile: first.CertFile, KeyFile: first.KeyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	if cn := peer(t, addr, client); cn != "first" {
		t.Fatalf("served %q, want first", cn)
	}
	// A half-written rotation (new cert, old key) keeps the last good pair.
	second := ca.Server(t, "second-of-a-longer-name")
	if err := os.WriteFile(first.CertFile, second.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if cn := peer(t, addr, client); cn != "first" {
		t.Fatalf("mid-rotation served %q, want the previous certificate", cn)
	}
	second.Write(t, dir, "server")
	if cn := peer(t, addr, client); cn != "second-of-a-longer-name" {
		t.Fatalf("after rotation served %q, want the new certificate", cn)
	}
	// TLS 1.2 is the floor.
	old := client.Clone()
	old.MaxVersion = tls.VersionTLS11
	if c, err := tls.Dial("tcp", addr, old); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake accepted")
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "server CA")
	clients := testcerts.NewCA(t, "client CA")
	srvPair := ca.Server(t, "callpop").Write(t, dir, "server")
	s, err := NewServer(Config{CertFile: srvPair.CertFile, KeyFile: srvPair.KeyFile,
		ClientCAFile: clients.WriteFile(t, dir, "clients.pem")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	get := func(cert *testcerts.Pair) (string, error) {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if cert != nil {
			kp, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			// Sent whatever CAs the server asks for (Go's client would
			// otherwise hold back a certificate of another CA).
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get(clients.Client(t, "pbx-1")); err != nil || body != "client pbx-1" {
		t.Fatalf("client certificate: %q, %v", body, err)
	}
	if body, err := get(nil); err != nil || body != "anonymous" {
		t.Fatalf("no client certificate (an API key client): %q, %v", body, err)
	}
	if body, err := get(ca.Client(t, "stranger")); err == nil {
		t.Fatalf("a certificate from another CA was accepted: %q", body)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	pair := testcerts.NewCA(t, "ca").Server(t, "x").Write(t, dir, "s")
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile}, ""},
		{Config{CertFile: pair.CertFile}, "tls.key_file: required"},
		{Config{KeyFile: pair.KeyFile}, "tls.cert_file: required"},
		{Config{ClientCAFile: junk}, "tls.client_ca_file: needs tls.cert_file"},
		{Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: junk}, "holds no PEM certificate"},
		{Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientScopes: []string{"route"}}, "tls.client_scopes: needs tls.client_ca_file"},
		{Config{CertFile: junk, KeyFile: pair.KeyFile}, "tls.cert_file/tls.key_file"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
