// Package secret reads the secrets callpop's config names: from an
// environment variable or a mounted file, never from the YAML itself.
package secret

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// MinLen is the shortest secret accepted: anything shorter can be guessed.
const MinLen = 16

// ErrNone is returned by Read when neither the variable nor the file is set.
var ErrNone = errors.New("not set")

// Read returns the value of the environment variable env when it is set,
// else the content of file (one trailing line break trimmed). key names the
// config key in errors; the value never appears in one.
func Read(env, file, key string) ([]byte, error) {
	var s string
	switch {
	case env != "" && os.Getenv(env) != "":
		s = os.Getenv(env)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s_file: %w", key, err)
		}
		s = strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return nil, fmt.Errorf("%s_file: %s is empty", key, file)
		}
	default:
		return nil, fmt.Errorf("%s: %w (set %s_file or %s)", key, ErrNone, key, env)
	}
	if len(s) < MinLen {
		return nil, fmt.Errorf("%s: must be at least %d bytes", key, MinLen)
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%s: must be one line", key)
	}
	return []byte(s), nil
}
