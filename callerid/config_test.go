package callerid

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/viper"
)

// TestConfigFiles: one bad config per testdata file, each rejected with a
// message naming the key on its first line ("# want: key").
func TestConfigFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/config/*.yaml")
	if len(files) < 5 {
		t.Fatalf("testdata/config holds %d files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want := strings.TrimSpace(strings.TrimPrefix(first, "# want:"))
			v := viper.New()
			v.SetConfigType("yaml")
			if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
			root := struct {
				Numbers Config `mapstructure:"numbers"`
			}{DefaultConfig()}
			err = v.UnmarshalExact(&root)
			if err == nil {
				err = root.Numbers.Validate()
			}
			if want == "" {
				if err != nil {
					t.Fatalf("good config rejected: %v", err)
				}
				if _, err := New(root.Numbers, nil); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v does not name %s", err, want)
			}
		})
	}
}
