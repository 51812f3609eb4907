package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/callpop/callpop/call"
)

// newLogger builds the process logger from the log section: JSON (or text)
// to w at the configured level. Personal data is masked by the LogValue
// methods of the types that carry it, unless log.mask_personal_data is off.
func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	log, _ := newLoggerVar(cfg, w)
	return log
}

// newLoggerVar is newLogger with the level in a variable, so a config reload
// can change it.
func newLoggerVar(cfg LogConfig, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	call.SetMasking(cfg.MaskPersonalData)
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if strings.EqualFold(cfg.Format, "text") {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h), level
}

// addVerboseFlag gives a one-shot command --verbose (see oneShotLogger).
func addVerboseFlag(cmd *cobra.Command) {
	cmd.Flags().BoolP("verbose", "v", false, "log at info level on stderr (default: warnings and errors only, unless log.level is set)")
}

// oneShotLogger is the logger of a one-shot command (lookup, cache forget):
// its output is the answer, so it logs warnings and errors only, unless
// log.level is set (config file or CALLPOP_LOG_LEVEL) or --verbose is given.
func oneShotLogger(cmd *cobra.Command, cfg LogConfig) *slog.Logger {
	if cfg.Level == "" {
		cfg.Level = "warn"
	}
	if v, _ := cmd.Flags().GetBool("verbose"); v && parseLevel(cfg.Level) > slog.LevelInfo {
		cfg.Level = "info"
	}
	return newLogger(cfg, cmd.ErrOrStderr())
}

// parseLevel reads log.level; unset ("") is info, the level of `run`.
func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
