package callerid

import (
	"errors"
	"log/slog"

	"github.com/callpop/callpop/call"
)

// ErrInvalid is wrapped by every error about a number that cannot be used.
var ErrInvalid = errors.New("callerid: invalid number")

// Number is a parsed, valid phone number and the variants used for matching.
type Number struct {
	E164           string // "+31201234567"
	National       string // national significant number "201234567"
	NationalFormat string // "020 123 4567"
	Digits         string // E164 without '+'
	CountryCode    int
	Region         string // "NL"
	Type           string // "mobile","fixed_line","fixed_line_or_mobile","toll_free","premium_rate","voip","unknown",...
	Geo            string // geographic description (English) where the metadata has it
}

// LogValue masks the number in logs.
func (n Number) LogValue() slog.Value {
	return slog.GroupValue(slog.String("e164", call.MaskNumber(n.E164)), slog.String("region", n.Region), slog.String("type", n.Type))
}

// Result is the number picked for a call's look-up.
type Result struct {
	Status  call.Match  // "" when a usable number was found; call.MatchAnonymous or call.MatchInvalid otherwise
	Source  call.Source // which number was used (cli|ani), "" when none
	Number  Number
	Privacy bool  // the caller asked for privacy: may be looked up, must not be shown
	Err     error // why invalid (wraps ErrInvalid)
}

// Normalizer parses caller numbers with a default region and memoises results.
type Normalizer struct {
	cfg Config
	log *slog.Logger
}

// New builds a Normalizer from a validated config.
func New(cfg Config, log *slog.Logger) (*Normalizer, error) {
	return &Normalizer{cfg: cfg, log: log}, nil
}

// Parse normalises raw in region (default region when empty). Memoised.
func (n *Normalizer) Parse(raw, region string) (Number, error) { return Number{}, ErrInvalid }

// Anonymous reports whether raw means a withheld caller.
func (n *Normalizer) Anonymous(raw string) bool { return raw == "" }

// RegionFor returns the region for a dialled number: numbers.profiles[].dnis → region, else default_region.
func (n *Normalizer) RegionFor(dnis string) string { return n.cfg.DefaultRegion }

// Pick chooses the number to look up: CLI when present and valid, else ANI.
func (n *Normalizer) Pick(cli, ani string, privacy bool, region string) Result {
	return Result{Status: call.MatchInvalid, Err: ErrInvalid}
}
