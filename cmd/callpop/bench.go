package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/esl"
	"github.com/callpop/callpop/bench"
)

func init() { register(newBenchCmd) }

// benchFreeSWITCH is what --pbx freeswitch measures: the mode demo runs.
const benchFreeSWITCH = "freeswitch-" + simFreeSWITCHMode

// benchFlags are the values of `callpop bench`'s flags.
type benchFlags struct {
	o                                                  bench.Options
	real                                               bench.RealOptions
	ways                                               []string
	jsonOut, plotOut, cpuProfile, memProfile, logLevel string
	sidecarChild, inProcess                            bool
	sidecarProfile, sidecarMemLimit                    string
}

// newBenchCmd is `callpop bench`: the load generator of package bench.
func newBenchCmd() *cobra.Command {
	b := &benchFlags{o: bench.DefaultOptions()}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure what callpop adds to a call: PBX simulator, CRM stub and redis-server on loopback",
		Long: `bench starts the project's PBX simulator, a CRM stub (--population customers, Zipf-distributed
callers, --crm-latency) and a throwaway redis-server (unless --redis is given), drives calls through
the real sidecar pipeline at --rate calls/s (0 = ramp to saturation) for --duration, then runs a bare
protocol client at the same rate, a singleflight burst and a many-calls-in-flight memory phase, and
prints a table (--json FILE or - for JSON, --plot FILE.svg for the latency distribution).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := b.prepare(cmd, args); err != nil {
				return err
			}
			if b.real.ARIURL != "" || b.real.ESLAddress != "" || cmd.Flags().Changed("way") {
				return runRealBench(cmd, b.o, &b.real, b.ways, b.jsonOut)
			}
			if name := changedFlag(cmd, benchRealFlags); name != "" {
				return fmt.Errorf("--%s: only against a real PBX (with --ari-url or --esl-address)", name)
			}
			if b.sidecarChild {
				return bench.RunSidecar(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), b.o.Logger)
			}
			return b.runSim(cmd)
		},
	}
	b.define(cmd)
	return cmd
}

// define declares the flags on cmd.
func (b *benchFlags) define(cmd *cobra.Command) {
	o, f := &b.o, cmd.Flags()
	f.StringVar(&o.PBX, "pbx", o.PBX, "PBX simulator: "+strings.Join(bench.PBXNames(), "|")+"|"+PBXFreeSWITCH+
		" ("+PBXFreeSWITCH+" = "+benchFreeSWITCH+", as callpop demo runs it); several comma-separated (asterisk,freeswitch) run at once on one pipeline, the calls offered to each in turn, the report per PBX and for all")
	f.DurationVar(&o.Duration, "duration", o.Duration, "length of the load phase (the ramp included)")
	f.IntVar(&o.Rate, "rate", o.Rate, "calls per second; 0 = ramp to saturation")
	f.IntVar(&o.MaxInFlight, "max-inflight", o.MaxInFlight, "calls the load generator keeps open at most")
	f.DurationVar(&o.Budget, "budget", o.Budget, "call.budget of the sidecar")
	f.StringVar(&o.Redis, "redis", o.Redis, "use a running Redis at ADDR (several comma-separated: a cluster) instead of starting redis-server; the run's keys get a prefix of their own (callpop-bench:<run id>:) and are deleted at its end")
	f.IntVar(&o.Population, "population", o.Population, "customers in the CRM stub")
	f.Float64Var(&o.Zipf, "zipf", o.Zipf, "Zipf exponent of caller popularity (> 1; larger = more repeat callers)")
	f.Float64Var(&o.Mix.Unknown, "unknown", o.Mix.Unknown, "share of callers no customer owns")
	f.Float64Var(&o.Mix.Anonymous, "anonymous", o.Mix.Anonymous, "share of withheld callers")
	f.Float64Var(&o.Mix.Junk, "junk", o.Mix.Junk, "share of junk caller IDs")
	f.DurationVar(&o.CRMLatency, "crm-latency", o.CRMLatency, "CRM stub answer time, fixed part")
	f.DurationVar(&o.CRMJitter, "crm-jitter", o.CRMJitter, "CRM stub answer time, uniform extra")
	f.IntVar(&o.BurstNumbers, "burst-numbers", o.BurstNumbers, "uncached numbers in the singleflight burst (0 = skip)")
	f.IntVar(&o.BurstCalls, "burst", o.BurstCalls, "simultaneous calls from each burst number")
	f.IntVar(&o.InFlight, "inflight", o.InFlight, "calls held in flight for the memory and goroutine figures (0 = skip)")
	f.DurationVar(&o.BareDuration, "bare-duration", o.BareDuration, "length of the bare-client phase (0 = skip)")
	f.BoolVar(&o.ARIChannelVars, "ari-channelvars", o.ARIChannelVars, "give the ARI simulator ari.conf channelvars CALLPOP_CALL_ID, CALLERID(ani), CALLERID(num-pres) (false: callpop and the bare client GET the two caller variables per call)")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the caller generator")
	f.StringVar(&b.jsonOut, "json", "", "write the report as JSON to FILE (- = stdout instead of the table)")
	f.Lookup("json").NoOptDefVal = "-"
	f.StringVar(&b.plotOut, "plot", "", "write the latency distribution to FILE.svg")
	f.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to FILE")
	f.StringVar(&b.memProfile, "memprofile", "", "write an allocation profile of the run to FILE")
	f.StringVar(&b.logLevel, "log-level", "error", "sidecar log level (debug, info, warn, error)")
	f.BoolVar(&b.inProcess, "in-process", false, "hold the in-flight calls in this process instead of a sidecar child (memory figures then include the simulator)")
	f.StringVar(&b.sidecarProfile, "sidecar-profile", "", "write the sidecar child's goroutine and heap profiles to PREFIX.* while the in-flight calls are held")
	f.StringVar(&b.sidecarMemLimit, "sidecar-memlimit", "", "run the in-flight sidecar child with GOMEMLIMIT=VALUE (e.g. 48MiB), the Go runtime's soft memory limit an operator can set the same way")
	f.StringVar(&b.real.ARIURL, "ari-url", "", "bench a real Asterisk at this HTTP base (e.g. http://127.0.0.1:8088; password from "+ari.PasswordEnv+"); see docs/performance.md, \"Bench on a real PBX\"")
	f.StringVar(&b.real.ARIUser, "ari-user", "", "ARI user of --ari-url (ari.conf)")
	f.StringVar(&b.real.ESLAddress, "esl-address", "", "bench a real FreeSWITCH at this Event Socket HOST:PORT (e.g. 127.0.0.1:8021; password from "+esl.PasswordEnv+")")
	f.StringSliceVar(&b.ways, "way", nil, "ways in to bench on the real PBX, comma-separated: ari|fastagi|http (Asterisk), esl-outbound|http|multiset|cidlookup (FreeSWITCH)")
	f.BoolVar(&b.real.Force, "force", false, "bench the real PBX although it has other live channels")
	f.DurationVar(&b.real.CRMDelay, "crm-delay", 0, "real PBX: a slow CRM: the CRM stub (and the bare HTTP servers, which stand for the PBX asking the CRM itself) answer this late (at most "+bench.MaxCRMDelay.String()+"), each way with a cold cache of its own; 0 = at once, warm cache")
	f.StringVar(&b.real.Listen, "listen", "127.0.0.1:0", "IP:PORT the bench's FastAGI, HTTP and socket listeners bind; the real PBX must reach it")
	f.BoolVar(&b.sidecarChild, "sidecar-child", false, "internal: run as the sidecar child of a bench")
	_ = f.MarkHidden("sidecar-child")
}

// prepare checks the argument and the log level, reads --pbx freeswitch as
// the mode demo runs, and sets the logger.
func (b *benchFlags) prepare(cmd *cobra.Command, args []string) error {
	// --json takes an optional value, so "--json FILE" arrives as an argument.
	if len(args) == 1 {
		if b.jsonOut != "-" {
			return fmt.Errorf("bench: unexpected argument %q", args[0])
		}
		b.jsonOut = args[0]
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(b.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	list := strings.Split(b.o.PBX, ",")
	for i, name := range list {
		if name == PBXFreeSWITCH {
			list[i] = benchFreeSWITCH
			fmt.Fprintf(cmd.ErrOrStderr(), "bench: --pbx %s is FreeSWITCH in Event Socket %s mode (--pbx %s), as callpop demo runs it\n",
				PBXFreeSWITCH, simFreeSWITCHMode, benchFreeSWITCH)
		}
	}
	b.o.PBX = strings.Join(list, ",")
	b.o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})).With("component", "bench")
	return nil
}

// runSim is the bench on the simulators (bench.Run), profiled if asked, and
// its report written.
func (b *benchFlags) runSim(cmd *cobra.Command) error {
	o := b.o
	if !b.inProcess {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: own executable: %w", err)
		}
		o.SidecarCommand = []string{exe, "bench", "--sidecar-child", "--log-level", b.logLevel}
		o.SidecarProfile = b.sidecarProfile
		o.SidecarMemLimit = b.sidecarMemLimit
	}
	o.Progress = cmd.ErrOrStderr()
	if err := o.Validate(); err != nil {
		return err
	}
	if b.cpuProfile != "" {
		stop, err := benchStartCPUProfile(b.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if b.memProfile != "" {
		runtime.MemProfileRate = 64 * 1024
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if b.memProfile != "" {
		if err := benchWriteProfile(b.memProfile, "allocs"); err != nil {
			return err
		}
	}
	if err := writeBenchReport(cmd.OutOrStdout(), rep, b.jsonOut); err != nil || b.jsonOut == "-" || b.plotOut == "" {
		return err
	}
	if err := benchWriteFile(b.plotOut, rep.WritePlot); err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	return nil
}

// benchStartCPUProfile starts profiling the CPU into path; stop ends it.
func benchStartCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// benchReport is a bench's report, on the simulators or a real PBX.
type benchReport interface {
	WriteJSON(io.Writer) error
	WriteTable(io.Writer) error
}

// writeBenchReport writes rep to out: JSON for --json -, else the table and,
// with --json FILE, the JSON to FILE.
func writeBenchReport(out io.Writer, rep benchReport, jsonOut string) error {
	if jsonOut == "-" {
		return rep.WriteJSON(out)
	}
	if err := rep.WriteTable(out); err != nil {
		return err
	}
	if jsonOut != "" {
		if err := benchWriteFile(jsonOut, rep.WriteJSON); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	return nil
}

// changedFlag is the first of names set on cmd's command line, or "".
func changedFlag(cmd *cobra.Command, names []string) string {
	for _, name := range names {
		if cmd.Flags().Changed(name) {
			return name
		}
	}
	return ""
}

func benchWriteFile(name string, write func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func benchWriteProfile(name, profile string) error {
	return benchWriteFile(name, func(w io.Writer) error { return pprof.Lookup(profile).WriteTo(w, 0) })
}

// benchRealFlags are the flags of a bench against a real PBX alone;
// benchSimFlags those of a bench against the simulators alone.
var (
	benchRealFlags = []string{"ari-user", "force", "listen", "crm-delay"}
	benchSimFlags  = []string{"pbx", "redis", "zipf", "unknown", "anonymous", "junk", "crm-latency", "crm-jitter", "burst-numbers", "burst",
		"inflight", "bare-duration", "ari-channelvars", "seed", "plot", "in-process", "sidecar-profile", "sidecar-memlimit", "max-inflight"}
)

// runRealBench is `callpop bench --ari-url …|--esl-address …`: the ways in
// on a real PBX (bench.RunReal), 20 calls/s and 1,000 customers unless given.
func runRealBench(cmd *cobra.Command, o bench.Options, real *bench.RealOptions, ways []string, jsonOut string) error {
	if name := changedFlag(cmd, benchSimFlags); name != "" {
		return fmt.Errorf("--%s: a simulator setting; not with --ari-url or --esl-address", name)
	}
	if real.ARIURL == "" && real.ESLAddress == "" {
		return errors.New("--way: give the real PBX too: --ari-url URL --ari-user U, or --esl-address HOST:8021")
	}
	real.Ways, real.Duration, real.Budget, real.Logger, real.Progress = ways, o.Duration, o.Budget, o.Logger, cmd.ErrOrStderr()
	real.Rate, real.Population = o.Rate, o.Population
	if !cmd.Flags().Changed("rate") {
		real.Rate = 20
	}
	if !cmd.Flags().Changed("population") {
		real.Population = 1000
	}
	real.ARIPassword, real.ESLPassword = os.Getenv(ari.PasswordEnv), os.Getenv(esl.PasswordEnv)
	if err := real.Validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.RunReal(ctx, *real)
	if err != nil {
		return err
	}
	return writeBenchReport(cmd.OutOrStdout(), rep, jsonOut)
}
