package crm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/viper"
)

// loadSections decodes the crm and cache sections of a YAML file the way
// cmd/callpop does: defaults, then the file, unknown keys rejected.
func loadSections(b []byte) (Config, CacheConfig, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
		return Config{}, CacheConfig{}, err
	}
	root := struct {
		CRM   Config      `mapstructure:"crm"`
		Cache CacheConfig `mapstructure:"cache"`
	}{DefaultConfig(), DefaultCacheConfig()}
	if err := v.UnmarshalExact(&root); err != nil {
		return root.CRM, root.Cache, err
	}
	if err := root.CRM.Validate(); err != nil {
		return root.CRM, root.Cache, err
	}
	return root.CRM, root.Cache, root.Cache.Validate()
}

// TestConfigFiles: one bad config per testdata file, each rejected with a
// message naming the key given on its first line ("# want: key").
func TestConfigFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.yaml")
	if err != nil || len(files) < 10 {
		t.Fatalf("testdata/config: %d files, %v", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want := strings.TrimSpace(strings.TrimPrefix(first, "# want:"))
			_, _, err = loadSections(b)
			if want == "" {
				if err != nil {
					t.Fatalf("good config rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error naming %s", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %s", err, want)
			}
		})
	}
}

func TestDefaultsValid(t *testing.T) {
	c, cc := DefaultConfig(), DefaultCacheConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cc.Validate(); err != nil {
		t.Fatal(err)
	}
	if cc.TTL.String() != "10m0s" || cc.MissTTL.String() != "1m0s" {
		t.Fatalf("issue-fixed defaults changed: ttl %s miss_ttl %s", cc.TTL, cc.MissTTL)
	}
}

func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "secret")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The variable wins over the file and the inline value (as the README
	// says); without it, the file wins over the inline value.
	tests := []struct{ env, inline, file, want string }{
		{"", "inline", "", "inline"}, {"", "", f, "from-file"}, {"", "inline", f, "from-file"},
		{"from-env", "", "", "from-env"}, {"from-env", "inline", "", "from-env"}, {"from-env", "", f, "from-env"},
	}
	for _, tt := range tests {
		t.Setenv("CALLPOP_TEST_SECRET", tt.env)
		got, err := readSecret(tt.inline, tt.file, "CALLPOP_TEST_SECRET", "x.secret")
		if err != nil || got != tt.want {
			t.Fatalf("env %q: secret(%q,%q) = %q, %v; want %q", tt.env, tt.inline, tt.file, got, err, tt.want)
		}
	}
	if _, err := readSecret("", filepath.Join(dir, "missing"), "X", "x.secret"); err == nil || !strings.Contains(err.Error(), "x.secret_file") {
		t.Fatalf("missing file: %v", err)
	}
	if got := dsnEnv("crm-main.1"); got != "CALLPOP_CRM_CRM_MAIN_1_DSN" {
		t.Fatalf("dsnEnv: %s", got)
	}
}
