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

// Resolve returns the environment variable env when it is set, else the
// content of file (trailing line breaks trimmed), else inline: a variable
// wins over the file, and both over a value in the config. key names the
// config key ("pbx.asterisk.password") in errors; the value never appears
// in one.
func Resolve(env, file, inline, key string) (string, error) {
	if v := os.Getenv(env); env != "" && v != "" {
		return v, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", key, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return inline, nil
}

// Read is Resolve for a secret that must be set, from the variable or the
// file only, at least MinLen bytes and one line.
func Read(env, file, key string) ([]byte, error) {
	s, err := Resolve(env, file, "", key)
	switch {
	case err != nil:
		return nil, err
	case s == "" && file != "":
		return nil, fmt.Errorf("%s_file: %s is empty", key, file)
	case s == "":
		return nil, fmt.Errorf("%s: %w (set %s_file or %s)", key, ErrNone, key, env)
	case len(s) < MinLen:
		return nil, fmt.Errorf("%s: must be at least %d bytes", key, MinLen)
	case strings.ContainsAny(s, "\r\n"):
		return nil, fmt.Errorf("%s: must be one line", key)
	}
	return []byte(s), nil
}
