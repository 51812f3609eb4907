// Package testbrowser drives a real headless Chromium (Debian's chromium)
// over the DevTools protocol for the tests of the pages callpop serves.
package testbrowser

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Find returns Chromium's path; without it the test skips, except under
// CI=true (CI installs it), where it fails.
func Find(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not installed (apt-get install -y chromium)")
	}
	t.Skip("chromium not installed; apt-get update && apt-get install -y chromium")
	return ""
}

// Browser is one headless Chromium with a fresh profile, ended with the test.
type Browser struct {
	T   *testing.T
	Ctx context.Context
	// Hint, when set, is added to a failed Wait's message (what the page says).
	Hint func() string
}

// New starts Chromium with a window of width × height (background
// networking off: this machine's network is closed).
func New(t *testing.T, width, height int) *Browser {
	bin := Find(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height))
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// The first Run starts the browser; it must not carry the timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &Browser{T: t, Ctx: ctx}
}

// Step runs acts within 30 s; the test fails, named name, if they fail.
func (b *Browser) Step(name string, acts ...chromedp.Action[chromedp.Void]) {
	b.T.Helper()
	sctx, scancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer scancel()
	if err := chromedp.Do(sctx, acts...); err != nil {
		b.T.Fatalf("%s: %v", name, err)
	}
}

// Eval returns the string js evaluates to.
func (b *Browser) Eval(js string) string {
	b.T.Helper()
	sctx, scancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer scancel()
	s, err := chromedp.Run(sctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.T.Fatalf("eval %s: %v", js, err)
	}
	return s
}

// Wait polls js until it is true, for at most within; a navigation under
// way (a form posted, a redirect) ends a poll, or makes it throw on a
// half-built page, and it then starts again on the new page.
func (b *Browser) Wait(name, js string, within time.Duration) {
	b.T.Helper()
	deadline := time.Now().Add(within)
	for {
		poll := min(20*time.Second, within)
		sctx, scancel := context.WithTimeout(b.Ctx, poll)
		err := chromedp.Do(sctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(poll)))
		scancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || b.Ctx.Err() != nil {
			if b.Hint != nil {
				b.T.Fatalf("%s: %v (%s)", name, err, b.Hint())
			}
			b.T.Fatalf("%s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Screenshot writes the whole page as a PNG to dir/name and returns its path.
func (b *Browser) Screenshot(dir, name string) string {
	b.T.Helper()
	sctx, scancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer scancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.T.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.T.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.T.Fatal(err)
	}
	b.T.Logf("screenshot: %s", p)
	return p
}
