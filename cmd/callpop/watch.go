package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"
)

// reloadDebounce lets an editor finish writing before the file is read.
const reloadDebounce = 300 * time.Millisecond

// configWatcher reloads the config file when it changes: the routing rules
// (router.Reload, which keeps the old rules if the new ones do not compile)
// and the log level. Other sections need a restart; a change to them is
// logged.
type configWatcher struct {
	path     string
	current  Config
	pipeline *pipeline
	level    *slog.LevelVar
	log      *slog.Logger

	last []byte // the content last applied
}

// run watches the file's directory (editors and Kubernetes replace files
// rather than write them) until ctx ends. It never fails the process.
func (w *configWatcher) run(ctx context.Context) error {
	// Without a watch callpop runs on; changes then need a restart.
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.log.Warn("config watch unavailable; changes to the file need a restart", "err", err)
		return nil
	}
	defer fw.Close()
	if err := fw.Add(filepath.Dir(w.path)); err != nil {
		w.log.Warn("config watch unavailable; changes to the file need a restart", "dir", filepath.Dir(w.path), "err", err)
		return nil
	}
	w.last, _ = os.ReadFile(w.path)
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			debounce = time.After(reloadDebounce)
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.log.Warn("config watch error", "err", err)
		case <-debounce:
			debounce = nil
			w.reload()
		}
	}
}

// reload applies the file if its content changed and it is valid.
func (w *configWatcher) reload() {
	data, err := os.ReadFile(w.path)
	if err != nil {
		w.log.Error("config reload: cannot read the file; keeping the running config", "path", w.path, "err", err)
		configReloads.WithLabelValues("error").Inc()
		return
	}
	if bytes.Equal(data, w.last) {
		return
	}
	w.last = data
	lc, err := loadConfig(w.path, true)
	if err != nil {
		w.log.Error("config reload rejected; keeping the running config", "err", err)
		configReloads.WithLabelValues("error").Inc()
		return
	}
	next := lc.Config
	if err := w.pipeline.router.Reload(next.Router); err != nil {
		w.log.Error("config reload: router rejected the new rules; keeping the old ones", "err", err)
		configReloads.WithLabelValues("error").Inc()
		return
	}
	w.level.Set(parseLevel(next.Log.Level))
	for _, s := range restartSections(w.current, next) {
		w.log.Warn("config reload: this section changed but needs a restart to apply", "section", s)
	}
	w.current.Router = next.Router
	w.current.Log.Level = next.Log.Level
	configReloads.WithLabelValues("ok").Inc()
	w.log.Info("config reloaded", "path", w.path)
}

// restartSections names the sections of next that differ from cur and are
// not reloaded live.
func restartSections(cur, next Config) []string {
	var out []string
	a, b := reflect.ValueOf(cur), reflect.ValueOf(next)
	t := a.Type()
	for i := range t.NumField() {
		name, _ := keyName(t.Field(i))
		if name == "router" {
			continue
		}
		x, y := a.Field(i).Interface(), b.Field(i).Interface()
		if name == "log" {
			lx, ly := x.(LogConfig), y.(LogConfig)
			lx.Level, ly.Level = "", ""
			x, y = lx, ly
		}
		if !reflect.DeepEqual(x, y) {
			out = append(out, name)
		}
	}
	return out
}
