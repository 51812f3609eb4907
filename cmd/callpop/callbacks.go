package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callbacks"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/secret"
)

// validateCallbacks checks how the callbacks section fits the rest: a PBX
// to dial on (callbacks.pbx names it; required with several), and that
// PBX's dial string, context and extension.
func (c *Config) validateCallbacks() error {
	if !c.Callbacks.Enabled {
		return nil
	}
	e, err := c.callbacksPBX()
	if err != nil {
		return err
	}
	return c.Callbacks.CheckDial(e.Kind)
}

// callbacksPBX is the PBX callbacks dial on: callbacks.pbx, or the one PBX.
func (c *Config) callbacksPBX() (PBXEntry, error) {
	list, _ := c.pbxList()
	names := make([]string, len(list))
	for i, e := range list {
		names[i] = e.Name
	}
	want := c.Callbacks.PBX
	switch {
	case len(list) == 0:
		return PBXEntry{}, errors.New("callbacks.enabled: no PBX to dial on: configure pbx or pbxes (callpop demo brings its simulators)")
	case want == "" && len(list) > 1:
		return PBXEntry{}, fmt.Errorf("callbacks.pbx: required with several PBXs: the name of the one that dials (%s)", strings.Join(names, ", "))
	case want == "":
		return list[0], nil
	}
	i := slices.Index(names, want)
	if i < 0 {
		return PBXEntry{}, fmt.Errorf("callbacks.pbx: %q is not a configured PBX (%s)", want, strings.Join(names, ", "))
	}
	return list[i], nil
}

// callbacksLocation is the time zone of callbacks.hours: callbacks.timezone,
// else router.timezone.
func (c *Config) callbacksLocation() (*time.Location, error) {
	tz := c.Callbacks.Timezone
	if tz == "" {
		tz = c.Router.Timezone
	}
	if tz == "" || tz == "Local" {
		return time.Local, nil
	}
	return time.LoadLocation(tz)
}

// errCallbacksNoRedis: `run` keeps callback requests in Redis, nowhere else.
var errCallbacksNoRedis = errors.New("callbacks.enabled: needs cache.redis: callback requests must survive a restart and be shared " +
	"by every instance (the in-process store serves `callpop demo` only)")

// newCallbacks builds the callback service on the pipeline, dialling
// through the adapter of callbacks.pbx; nil when callbacks are off.
// shared says the requests must live in Redis (run); the demo may keep
// them in the process.
func (p *pipeline) newCallbacks(list []pbxAdapter, shared bool) (*callbacks.Service, error) {
	cfg := p.cfg
	if !cfg.Callbacks.Enabled {
		return nil, nil
	}
	if shared && p.redis == nil {
		return nil, errCallbacksNoRedis
	}
	entry, err := cfg.callbacksPBX()
	if err != nil {
		return nil, err
	}
	var orig call.Originator
	for _, pa := range list {
		if pa.entry.Name == entry.Name {
			orig, _ = pa.adapter.(call.Originator)
		}
	}
	if orig == nil {
		return nil, fmt.Errorf("callbacks.pbx: the %s adapter of PBX %q cannot originate calls in this build", entry.Kind, entry.Name)
	}
	loc, err := cfg.callbacksLocation()
	if err != nil {
		return nil, fmt.Errorf("callbacks.timezone: %w", err)
	}
	var key []byte
	if p.redis != nil {
		k, err := secret.Resolve(crm.EnvKeySecret, cfg.Cache.KeySecretFile, cfg.Cache.KeySecret, "cache.key_secret")
		if err != nil {
			return nil, err
		}
		key = []byte(k)
	}
	svc, err := callbacks.New(cfg.Callbacks, callbacks.Deps{
		Decider:    p.decider,
		Check:      p.router,
		Originator: orig,
		Numbers:    p.numbers,
		Region:     cfg.Numbers.DefaultRegion,
		Redis:      p.redis,
		KeySecret:  key,
		Logger:     p.log,
		Budget:     cfg.Call.Budget,
		PBX:        entry.Name,
		Kind:       entry.Kind,
		Location:   loc,
	})
	if err != nil {
		return nil, fmt.Errorf("callbacks: %w", err)
	}
	p.callbacks = svc
	return svc, nil
}

// demoCallbackRegions are the regions of the sample customers' numbers
// (demoKnown): the demo calls back no one else.
var demoCallbackRegions = []string{"NL", "US", "GB", "FR", "DE"}

// startCallbacks turns callbacks on for a demo on the simulated PBX of
// kind, dialling through adapter (a trunk the simulator plays), with the
// requests in the process (the demo has no Redis). Call it after start and
// before serveAPI, which mounts /v1/callbacks.
func (d *demo) startCallbacks(kind string, adapter any) error {
	cb := &d.p.cfg.Callbacks
	cb.Enabled = true
	cb.AllowedRegions = demoCallbackRegions
	cb.RetryAfter = 20 * time.Second
	cb.CallerID = callbacks.CallerIDConfig{Number: "+442079460000", Name: "callpop demo"}
	cb.Asterisk.Endpoint = "PJSIP/{number}@trunk"
	cb.FreeSWITCH.Endpoint = "sofia/gateway/trunk/{number}"
	d.p.cfg.PBX.Kind = kind
	aa, _ := adapter.(adapters.Adapter)
	svc, err := d.p.newCallbacks([]pbxAdapter{{entry: PBXEntry{Name: kind, PBXConfig: PBXConfig{Kind: kind}}, adapter: aa}}, false)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.wg.Go(func() { _ = svc.Run(d.parts) })
	return nil
}

// printCallbackTry is the demo's line showing a callback request.
func printCallbackTry(out io.Writer, base string) {
	fmt.Fprintf(out, "  a web callback (the simulated trunk answers, agents 1001–1003 ring): curl -X POST '%s/v1/callbacks' "+
		"-H 'Content-Type: application/json' -d '{\"number\":\"+442079460018\",\"name\":\"Liam\",\"note\":\"about my order\"}'\n", base)
}
