// Package docs holds callpop's documentation; its tests keep the pages
// standing alone and true to the code.
package docs

import (
	"bufio"
	"go/build"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

const module = "github.com/callpop/callpop/"

// root is the repository's top directory.
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r, "go.mod")); err != nil {
		t.Fatalf("no go.mod above docs/: %v", err)
	}
	return r
}

// repoFiles lists the repository's files with one of the extensions, paths
// relative to root, leaving out dot directories (.git).
func repoFiles(t *testing.T, r string, exts ...string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != r && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && slices.Contains(exts, filepath.Ext(p)) {
			rel, _ := filepath.Rel(r, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Written so that this file does not match itself.
var outside = regexp.MustCompile(`(?i)\.\./shared|shared/[f]ixtures|\bdesign\.md\b|fixtures/(freeswitch-esl|asterisk-ari)|shared\s+folder`)

// No page or Go comment points to files a user of the repository does not
// have (the project's design notes and lab captures live outside it).
func TestNothingPointsOutside(t *testing.T) {
	r := root(t)
	for _, f := range repoFiles(t, r, ".md", ".go") {
		b, err := os.ReadFile(filepath.Join(r, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := outside.FindString(line); m != "" {
				t.Errorf("%s:%d points outside the repository (%q): %s", f, i+1, m, strings.TrimSpace(line))
			}
		}
	}
}

var (
	mdLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	// a path in backticks that starts at one of the repository's top directories
	repoPath = regexp.MustCompile("`((?:adapters|bench|call|callerid|cmd|crm|docs|internal|popper|router)/[^`\\s]*)`")
)

// Every relative link in README.md and docs/*.md reaches a file of the
// repository (and a heading, for #anchors), and every path the pages name in
// backticks exists.
func TestLinksResolve(t *testing.T) {
	r := root(t)
	pages := []string{"README.md"}
	for _, f := range repoFiles(t, r, ".md") {
		if strings.HasPrefix(f, "docs/") {
			pages = append(pages, f)
		}
	}
	if len(pages) < 5 {
		t.Fatalf("only %v found", pages)
	}
	for _, page := range pages {
		text := prose(t, filepath.Join(r, page))
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`).MatchString(link) {
				continue // https:, mailto:
			}
			path, anchor, _ := strings.Cut(link, "#")
			target := filepath.Join(r, page)
			if path != "" {
				target = filepath.Join(filepath.Dir(target), filepath.FromSlash(path))
			}
			if rel, err := filepath.Rel(r, target); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: link %s leaves the repository", page, link)
				continue
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s: link %s: %v", page, link, err)
				continue
			}
			if anchor != "" && !slices.Contains(headingIDs(t, target), anchor) {
				t.Errorf("%s: link %s: no heading #%s in %s", page, link, anchor, filepath.Base(target))
			}
		}
		for _, m := range repoPath.FindAllStringSubmatch(text, -1) {
			p := strings.TrimSuffix(m[1], "/")
			if strings.ContainsAny(p, "*<>{…") {
				continue // a pattern, not a path
			}
			if _, err := os.Stat(filepath.Join(r, filepath.FromSlash(p))); err != nil {
				t.Errorf("%s: names %s, which does not exist", page, m[1])
			}
		}
	}
}

// prose is a Markdown file without its fenced code blocks.
func prose(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	fenced := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			b.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// headingIDs are the anchors GitHub gives a Markdown file's headings.
func headingIDs(t *testing.T, path string) []string {
	var ids []string
	for line := range strings.SplitSeq(prose(t, path), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		var id strings.Builder
		for _, c := range strings.ToLower(strings.TrimLeft(line, "# ")) {
			switch {
			case unicode.IsLetter(c) || unicode.IsDigit(c) || c == '-' || c == '_':
				id.WriteRune(c)
			case c == ' ':
				id.WriteByte('-')
			}
		}
		ids = append(ids, id.String())
	}
	return ids
}

// The import table of docs/architecture.md is what the code imports.
func TestArchitectureImports(t *testing.T) {
	r := root(t)
	text := prose(t, filepath.Join(r, "docs", "architecture.md"))
	_, table, ok := strings.Cut(text, "### Import direction\n")
	if !ok {
		t.Fatal("docs/architecture.md: no \"### Import direction\"")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([a-z/]+)` \\| (.*) \\|$")
	documented := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		var imports []string
		for _, i := range regexp.MustCompile("`([a-z/]+)`").FindAllStringSubmatch(m[2], -1) {
			imports = append(imports, i[1])
		}
		documented[m[1]] = imports
	}
	dirs := map[string]bool{}
	for _, f := range repoFiles(t, r, ".go") {
		if !strings.HasSuffix(f, "_test.go") && !strings.Contains(f, "testdata/") {
			dirs[filepath.Dir(f)] = true
		}
	}
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		if strings.HasPrefix(dir, "internal/") {
			continue // helpers: test servers, secrets, TLS files, allow-lists
		}
		want, ok := documented[dir]
		if !ok {
			t.Errorf("package %s is not in the import table", dir)
			continue
		}
		pkg, err := build.ImportDir(filepath.Join(r, filepath.FromSlash(dir)), 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, i := range pkg.Imports {
			// internal/ helpers (secrets, TLS files, allow-lists…) are leaves
			// any package may use; the table is about the product's parts.
			if p := strings.TrimPrefix(i, module); p != i && !strings.HasPrefix(p, "internal/") {
				got = append(got, p)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s imports %v; docs/architecture.md says %v", dir, got, want)
		}
	}
}
