package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"
)

// Options are `callpop bench`'s flags.
type Options struct {
	PBX         string        // --pbx: asterisk | freeswitch-outbound | freeswitch-inbound | direct
	Duration    time.Duration // --duration: the load phase (ramp included)
	Rate        int           // --rate: calls/s; 0 = ramp to saturation
	MaxInFlight int           // --max-inflight: calls the load generator keeps open at most
	Budget      time.Duration // --budget: call.budget
	// Redis (--redis) is a running Redis, host:port; several comma-separated
	// are a Redis Cluster. "" = start redis-server. The run's keys have a
	// prefix of their own and are deleted at its end.
	Redis string

	Population int           // --population: customers in the CRM stub
	Zipf       float64       // --zipf: exponent of caller popularity (> 1)
	Mix        Mix           // --unknown, --anonymous, --junk shares
	CRMLatency time.Duration // --crm-latency: fixed part of the stub's answer time
	CRMJitter  time.Duration // --crm-jitter: uniform extra

	BurstNumbers int // --burst-numbers: uncached numbers in the singleflight burst (0 = skip)
	BurstCalls   int // --burst: simultaneous calls per burst number
	InFlight     int // --inflight: calls held in flight for the memory figure (0 = skip)

	BareDuration time.Duration // --bare-duration: the bare-client phase (0 = skip)
	// ARIChannelVars (--ari-channelvars) gives the ARI simulator ari.conf
	// channelvars CALLPOP_CALL_ID, CALLERID(ani), CALLERID(num-pres): the
	// adapter and the bare client then skip the two caller-variable GETs.
	ARIChannelVars bool
	// SidecarCommand runs the sidecar of the in-flight phase as a child
	// process (argv; it must call RunSidecar), so memory, goroutines and
	// time to ready are the sidecar's own; nil = in this process.
	SidecarCommand []string
	// SidecarProfile, when set with SidecarCommand, makes the child write its
	// goroutine and heap profiles to SidecarProfile.* while the calls are held.
	SidecarProfile string
	// SidecarMemLimit (--sidecar-memlimit, e.g. 48MiB) runs the in-flight
	// child with GOMEMLIMIT set: the Go runtime's soft memory limit, which an
	// operator can set the same way. "" = the runtime's default (none).
	SidecarMemLimit string
	Seed            uint64       // --seed
	Logger          *slog.Logger // the sidecar's logger (errors only by default)
	Progress        io.Writer    // phase notes; nil = none
}

// DefaultOptions returns the defaults of `callpop bench`.
func DefaultOptions() Options {
	return Options{
		PBX:            PBXAsterisk,
		Duration:       10 * time.Second,
		Rate:           0,
		MaxInFlight:    4096,
		Budget:         300 * time.Millisecond,
		Population:     100_000,
		Zipf:           1.1,
		Mix:            Mix{Unknown: 0.15, Anonymous: 0.03, Junk: 0.02},
		CRMLatency:     20 * time.Millisecond,
		CRMJitter:      10 * time.Millisecond,
		BurstNumbers:   3,
		BurstCalls:     1000,
		InFlight:       10_000,
		BareDuration:   3 * time.Second,
		ARIChannelVars: true,
		Seed:           1,
	}
}

// Validate checks the options; messages name the flag.
// memLimitRE is what the Go runtime accepts in GOMEMLIMIT.
var memLimitRE = regexp.MustCompile(`^(off|[0-9]+(B|KiB|MiB|GiB|TiB)?)$`)

func (o *Options) Validate() error {
	var errs []error
	if o.SidecarMemLimit != "" && !memLimitRE.MatchString(o.SidecarMemLimit) {
		errs = append(errs, fmt.Errorf("--sidecar-memlimit: %q is not a GOMEMLIMIT value (e.g. 48MiB, 1GiB, off)", o.SidecarMemLimit))
	}
	if o.Redis != "" {
		for _, a := range strings.Split(o.Redis, ",") {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				errs = append(errs, fmt.Errorf("--redis: %q is not host:port", a))
			}
		}
	}
	if err := checkPBX(o.PBX); err != nil {
		errs = append(errs, err)
	}
	if o.Duration <= 0 || o.Duration > time.Hour {
		errs = append(errs, errors.New("--duration: must be between 0 and 1h"))
	}
	if o.Rate < 0 {
		errs = append(errs, errors.New("--rate: must not be negative (0 = ramp)"))
	}
	if o.MaxInFlight < 1 {
		errs = append(errs, errors.New("--max-inflight: must be positive"))
	}
	if o.Budget <= 0 {
		errs = append(errs, errors.New("--budget: must be positive"))
	}
	if o.Population < 1 || o.Population > 6_000_000 {
		errs = append(errs, errors.New("--population: must be between 1 and 6000000"))
	}
	if o.Zipf <= 1 {
		errs = append(errs, errors.New("--zipf: must be above 1"))
	}
	if s := o.Mix.Unknown + o.Mix.Anonymous + o.Mix.Junk; s < 0 || s > 1 || o.Mix.Unknown < 0 || o.Mix.Anonymous < 0 || o.Mix.Junk < 0 {
		errs = append(errs, errors.New("--unknown, --anonymous, --junk: shares between 0 and 1, summing to at most 1"))
	}
	if o.CRMLatency < 0 || o.CRMJitter < 0 {
		errs = append(errs, errors.New("--crm-latency, --crm-jitter: must not be negative"))
	}
	if o.BurstNumbers < 0 || o.BurstCalls < 0 || o.InFlight < 0 {
		errs = append(errs, errors.New("--burst-numbers, --burst, --inflight: must not be negative"))
	}
	if o.BareDuration < 0 {
		errs = append(errs, errors.New("--bare-duration: must not be negative"))
	}
	return errors.Join(errs...)
}
