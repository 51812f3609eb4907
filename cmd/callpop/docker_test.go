package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/callpop/callpop/internal/apiauth"
)

// The Dockerfile's image (config.example.yaml with the Dockerfile's ENV)
// refuses to start until told who may connect, and each `docker run` its
// header documents passes `callpop check-config` and has what `callpop run`
// needs besides (CRM sources, every API key's value). Without one of the
// allow-lists it names, the refusal names the key and its variable.
func TestDockerfileRuns(t *testing.T) {
	image, runs := parseDockerfile(t, "../../Dockerfile")
	if len(runs) < 2 {
		t.Fatalf("the Dockerfile documents %d docker run commands, want the dialplan's and FreeSWITCH's", len(runs))
	}
	check := func(t *testing.T, env map[string]string) (string, error) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		out, _, err := execute(t, context.Background(), "check-config")
		return out, err
	}

	t.Run("image alone", func(t *testing.T) {
		out, err := check(t, image)
		if err == nil {
			t.Fatalf("check-config passed:\n%s", out)
		}
		for _, want := range []string{"router.fastagi.allow: 0.0.0.0:4573 listens beyond loopback", "CALLPOP_ROUTER_FASTAGI_ALLOW="} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
		if !strings.Contains(out, "warning: crm.sources: none configured") {
			t.Errorf("no warning about crm.sources:\n%s", out)
		}
	})
	for i, run := range runs {
		env := map[string]string{}
		for k, v := range image {
			env[k] = v
		}
		for k, v := range run {
			env[k] = v
		}
		t.Run("docker run #"+string(rune('1'+i)), func(t *testing.T) {
			out, err := check(t, env)
			if err != nil || !strings.HasSuffix(out, "OK\n") || strings.Contains(out, "warning:") {
				t.Fatalf("check-config: %v\n%s", err, out)
			}
			lc, err := loadConfig(os.Getenv("CALLPOP_CONFIG"), true)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lc.runCRM(); err != nil {
				t.Errorf("run would refuse: %v", err)
			}
			if _, err := apiauth.New(lc.API, apiauth.Options{}); err != nil {
				t.Errorf("run would refuse the keys: %v", err)
			}
			if w := strings.Join(exposureWarnings(lc.Config), "\n"); strings.Contains(w, "api.keys is empty") {
				t.Errorf("the HTTP API would answer no client: %s", w)
			}
		})
		for name := range run {
			key, ok := map[string]string{
				"CALLPOP_ROUTER_FASTAGI_ALLOW": "router.fastagi.allow",
				"CALLPOP_PBX_FREESWITCH_ALLOW": "pbx.freeswitch.allow",
			}[name]
			if !ok {
				continue
			}
			t.Run("docker run #"+string(rune('1'+i))+" without "+name, func(t *testing.T) {
				without := map[string]string{}
				for k, v := range env {
					if k != name {
						without[k] = v
					}
				}
				out, err := check(t, without)
				if err == nil {
					t.Fatalf("check-config passed:\n%s", out)
				}
				if !strings.Contains(err.Error(), key+": ") || !strings.Contains(err.Error(), name+"=") {
					t.Errorf("error names neither %s nor %s: %v", key, name, err)
				}
			})
		}
	}
}

// parseDockerfile returns the final image's ENV (CALLPOP_CONFIG pointing at
// config.example.yaml, which the image copies there) and the variables of
// each `docker run` in the header comment; a variable passed from the shell
// (-e NAME) gets a made-up secret.
func parseDockerfile(t *testing.T, path string) (map[string]string, []map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	var comment []string
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		comment = append(comment, strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
	}
	var runs []map[string]string
	for _, cmd := range strings.Split(strings.ReplaceAll(strings.Join(comment, "\n"), "\\\n", " "), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(cmd), "docker run ") {
			continue
		}
		words := shellWords(t, strings.TrimSpace(cmd))
		env := map[string]string{}
		for i := 2; i+1 < len(words); i++ {
			if words[i] != "-e" && words[i] != "--env" {
				continue
			}
			i++
			name, value, ok := strings.Cut(words[i], "=")
			if !ok {
				value = "passed-from-the-shell-0123456789abcdef"
			}
			env[name] = value
		}
		runs = append(runs, env)
	}

	image := map[string]string{}
	final := text[strings.LastIndex(text, "\nFROM "):]
	for _, m := range regexp.MustCompile(`(?m)^ENV ((?:.*\\\n)*.*)$`).FindAllStringSubmatch(final, -1) {
		for _, kv := range strings.Fields(strings.ReplaceAll(m[1], "\\\n", " ")) {
			name, value, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("Dockerfile: ENV %q is not NAME=value", kv)
			}
			image[name] = value
		}
	}
	copied := regexp.MustCompile(`(?m)^COPY --from=build /src/config\.example\.yaml (\S+)$`).FindStringSubmatch(final)
	if copied == nil || image["CALLPOP_CONFIG"] != copied[1] {
		t.Fatalf("Dockerfile: CALLPOP_CONFIG=%q is not where config.example.yaml is copied (%v)", image["CALLPOP_CONFIG"], copied)
	}
	image["CALLPOP_CONFIG"] = examplePath
	return image, runs
}

// shellWords splits a command line as sh does for the Dockerfile's examples:
// words at blanks, '…' and "…" quoting (no expansion inside '…').
func shellWords(t *testing.T, s string) []string {
	var words []string
	var b strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				t.Fatalf("unbalanced %c in %q", c, s)
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words
}
