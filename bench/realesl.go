package bench

import (
	"context"
	"errors"
	"log/slog"
)

// realESL is FreeSWITCH over the Event Socket: not measured yet.
type realESL struct{}

var errESLBench = errors.New("bench: --esl-address: benching FreeSWITCH is not built yet; use --ari-url")

func newRealESL(RealOptions, *slog.Logger) realPBX           { return realESL{} }
func (realESL) connect(context.Context, *reportWaiter) error { return errESLBench }
func (realESL) liveChannels(context.Context) (int, error)    { return 0, errESLBench }
func (realESL) originate(context.Context, string, string, map[string]string) error {
	return errESLBench
}
func (realESL) handler(string, bool, *RealOptions, *Pipeline) (wayHandler, error) {
	return nil, errESLBench
}
func (realESL) host() string    { return "" }
func (realESL) process() string { return "freeswitch" }
func (realESL) close()          {}
