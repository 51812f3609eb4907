package callerid

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/callpop/callpop/call"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nyaruka/phonenumbers/v2"
	"github.com/nyaruka/phonenumbers/v2/geocoding"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// ErrInvalid is wrapped by every error about a number that cannot be used.
var ErrInvalid = errors.New("callerid: invalid number")

var (
	parsesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_numbers_parses_total",
		Help: "Number parses by result (valid, invalid) and whether the memo answered (memo=true).",
	}, []string{"result", "memo"})
	// Resolved once: the memoised path looks nothing up.
	parsedValidMemo   = parsesTotal.WithLabelValues("valid", "true")
	parsedInvalidMemo = parsesTotal.WithLabelValues("invalid", "true")
)

// Limits on raw input, far above any real number so only junk trips them.
const (
	maxRawLen    = 128 // bytes of the raw value (a SIP URI with a host)
	maxDigitsLen = 18  // digits including an IDD prefix such as 011 (E.164 has at most 15)
)

// Number is a parsed, valid phone number and the variants used for matching.
type Number struct {
	E164           string // "+31201234567"
	National       string // national significant number "201234567"
	NationalFormat string // "020 123 4567"
	Digits         string // E164 without '+'
	CountryCode    int
	Region         string // "NL"
	Type           string // "mobile","fixed_line","fixed_line_or_mobile","toll_free","premium_rate","voip","unknown",...
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

// memoKey is a raw value in a region: a struct, so a memo hit builds no string.
type memoKey struct{ region, raw string }

type memoEntry struct {
	n   Number
	err error
}

// Normalizer parses caller numbers with a default region and memoises results.
// A number is accepted when phonenumbers.IsValidNumber holds for it: the
// metadata knows the number's range (which includes reserved fictional ranges
// such as +1 415 555 01xx), so a possible-looking but impossible national
// number (a US number starting with 0) is rejected rather than mis-read.
// It is safe for concurrent use.
type Normalizer struct {
	region    string
	anonymous map[string]bool
	dnis      DNISMatcher // numbers.profiles[].dnis
	regions   []string    // numbers.profiles[].region, by profile
	memo      *lru.Cache[memoKey, memoEntry]
	geo       *lru.Cache[string, string] // E.164 → Geo's answer
	log       *slog.Logger
}

// New builds a Normalizer from a validated config.
func New(cfg Config, log *slog.Logger) (*Normalizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = 1
	}
	memo, err := lru.New[memoKey, memoEntry](size)
	if err != nil {
		return nil, fmt.Errorf("callerid: memo: %w", err)
	}
	geo, err := lru.New[string, string](size)
	if err != nil {
		return nil, fmt.Errorf("callerid: memo: %w", err)
	}
	n := &Normalizer{
		region:    strings.ToUpper(cfg.DefaultRegion),
		anonymous: map[string]bool{},
		memo:      memo,
		geo:       geo,
		log:       log.With("component", "callerid"),
	}
	anon := cfg.Anonymous
	if anon == nil {
		anon = DefaultAnonymous
	}
	for _, a := range anon {
		n.anonymous[strings.ToLower(strings.TrimSpace(a))] = true
	}
	lists := make([][]string, len(cfg.Profiles))
	for i, p := range cfg.Profiles {
		lists[i] = p.DNIS
		n.regions = append(n.regions, strings.ToUpper(p.Region))
	}
	n.dnis = NewDNISMatcher(lists)
	return n, nil
}

// Parse normalises raw in region (default region when empty). Memoised.
// Errors wrap ErrInvalid. An anonymous value is invalid here; use Anonymous or Pick.
func (n *Normalizer) Parse(raw, region string) (Number, error) {
	if region == "" {
		region = n.region
	}
	region = strings.ToUpper(region)
	if len(raw) > maxRawLen {
		parsesTotal.WithLabelValues("invalid", "false").Inc()
		return Number{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, maxRawLen)
	}
	key := memoKey{region, raw}
	if e, ok := n.memo.Get(key); ok {
		if e.err != nil {
			parsedInvalidMemo.Inc()
		} else {
			parsedValidMemo.Inc()
		}
		return e.n, e.err
	}
	num, err := parse(raw, region)
	n.memo.Add(key, memoEntry{num, err})
	parsesTotal.WithLabelValues(resultLabel(err), "false").Inc()
	return num, err
}

func resultLabel(err error) string {
	if err != nil {
		return "invalid"
	}
	return "valid"
}

// Anonymous reports whether raw means a withheld caller: empty, a value of
// numbers.anonymous (case-insensitive, also as the user part of a SIP URI), or all zeros.
func (n *Normalizer) Anonymous(raw string) bool {
	s := strings.TrimSpace(raw)
	if s == "" {
		return true
	}
	if len(s) > maxRawLen {
		return false
	}
	if user, ok := uriUser(s); ok {
		s = user
		if s == "" {
			return true
		}
	}
	if n.anonymous[strings.ToLower(s)] {
		return true
	}
	zeros := 0
	for _, r := range s {
		switch {
		case r == '0':
			zeros++
		case r == '+' || r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return false
		}
	}
	return zeros > 0
}

// RegionFor returns the region for a dialled number: numbers.profiles[].dnis →
// region, else default_region. DNIS values are compared by their digits; a
// profile entry ending in '*' matches by prefix. An exact entry wins over a
// prefix, the longest prefix over a shorter one (DNISMatcher: the rule
// router.profiles follows too).
func (n *Normalizer) RegionFor(dnis string) string {
	if i := n.dnis.Match(dnis); i >= 0 {
		return n.regions[i]
	}
	return n.region
}

// Pick chooses the number to look up: CLI when present and valid, else ANI.
// A withheld CLI with a valid ANI looks up the ANI with Privacy set. With no
// usable number: a withheld CLI or the privacy flag → anonymous, else invalid
// (Err says why).
func (n *Normalizer) Pick(cli, ani string, privacy bool, region string) Result {
	cliAnon, aniAnon := n.Anonymous(cli), n.Anonymous(ani)
	var cliErr, aniErr error
	if !cliAnon {
		num, err := n.Parse(cli, region)
		if err == nil {
			return Result{Source: call.SourceCLI, Number: num, Privacy: privacy}
		}
		cliErr = err
	}
	if !aniAnon {
		num, err := n.Parse(ani, region)
		if err == nil {
			return Result{Source: call.SourceANI, Number: num, Privacy: privacy || (cliAnon && strings.TrimSpace(cli) != "")}
		}
		aniErr = err
	}
	switch {
	case cliAnon || privacy:
		return Result{Status: call.MatchAnonymous, Privacy: true}
	case cliErr != nil:
		return Result{Status: call.MatchInvalid, Err: fmt.Errorf("cli: %w", cliErr)}
	default:
		return Result{Status: call.MatchInvalid, Err: fmt.Errorf("ani: %w", aniErr)}
	}
}

// parse does the work of Parse without the memo.
func parse(raw, region string) (Number, error) {
	s, err := clean(raw)
	if err != nil {
		return Number{}, err
	}
	pn, err := phonenumbers.Parse(s, region)
	if err != nil || !phonenumbers.IsValidNumber(pn) {
		// An international prefix the region does not use itself (00 dialled
		// in the US, 011 elsewhere): read it as '+'.
		var alt string
		switch {
		case strings.HasPrefix(s, "011"):
			alt = "+" + s[3:]
		case strings.HasPrefix(s, "00"):
			alt = "+" + s[2:]
		}
		if alt != "" {
			if p2, err2 := phonenumbers.Parse(alt, region); err2 == nil && phonenumbers.IsValidNumber(p2) {
				pn, err = p2, nil
			}
		}
		if err != nil {
			return Number{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if !phonenumbers.IsValidNumber(pn) {
			return Number{}, fmt.Errorf("%w: not a valid number in region %s", ErrInvalid, region)
		}
	}
	if pn.GetExtension() != "" {
		pn.Extension = nil
	}
	e164 := phonenumbers.Format(pn, phonenumbers.E164)
	num := Number{
		E164:           e164,
		National:       phonenumbers.GetNationalSignificantNumber(pn),
		NationalFormat: phonenumbers.Format(pn, phonenumbers.NATIONAL),
		Digits:         strings.TrimPrefix(e164, "+"),
		CountryCode:    int(pn.GetCountryCode()),
		Region:         phonenumbers.GetRegionCodeForNumber(pn),
		Type:           typeName(phonenumbers.GetNumberType(pn)),
	}
	if num.Region == "" {
		num.Region = phonenumbers.GetRegionCodeForCountryCode(num.CountryCode)
	}
	return num, nil
}

// Geo returns the geographic description (English) of a parsed number where
// the metadata has one ("Amsterdam"), else its country's name; "" when
// unknown. Memoised. The first call loads the geocoding prefix maps (about
// 14 MB of heap for the life of the process), so Parse leaves it to callers
// that need it: the router asks only when a rule reads `geo`.
func (n *Normalizer) Geo(num Number) string {
	if num.E164 == "" {
		return ""
	}
	if g, ok := n.geo.Get(num.E164); ok {
		return g
	}
	var g string
	if pn, err := phonenumbers.Parse(num.E164, "ZZ"); err == nil {
		g, _ = geocoding.GetDescriptionForNumber(pn, "en")
	}
	n.geo.Add(num.E164, g)
	return g
}

// clean reduces raw to what phonenumbers should see: the user part of a tel:
// or sip: URI without parameters, Unicode digits as ASCII, and only digits, a
// leading '+' and common punctuation. Anything else is invalid.
func clean(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: not UTF-8", ErrInvalid)
	}
	if user, ok := uriUser(s); ok {
		s = user
	}
	var b strings.Builder
	b.Grow(len(s))
	digits := 0
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			digits++
		case unicode.IsDigit(r):
			b.WriteByte(byte('0' + digitValue(r)))
			digits++
		case r == '+' || r == '＋':
			if i != 0 || b.Len() != 0 {
				return "", fmt.Errorf("%w: '+' inside the number", ErrInvalid)
			}
			b.WriteByte('+')
		case r == '(' || r == ')' || r == '-' || r == '.' || r == '/':
			b.WriteRune(r) // phonenumbers reads these, including "+31 (0)20"
		case r == '‐' || r == '‑' || r == '–' || r == '—':
			b.WriteByte('-')
		case unicode.IsSpace(r) && !unicode.IsControl(r) || r == ' ':
			b.WriteByte(' ')
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return "", fmt.Errorf("%w: control character", ErrInvalid)
		default:
			return "", fmt.Errorf("%w: unexpected character %q", ErrInvalid, r)
		}
	}
	if digits == 0 {
		return "", fmt.Errorf("%w: no digits", ErrInvalid)
	}
	if digits > maxDigitsLen {
		return "", fmt.Errorf("%w: %d digits", ErrInvalid, digits)
	}
	return b.String(), nil
}

// uriUser returns the user part of a tel:, sip: or sips: URI, parameters and
// host removed and percent-escapes decoded; ok is false when s is no such URI.
func uriUser(s string) (string, bool) {
	if len(s) > 2 && s[0] == '<' && s[len(s)-1] == '>' { // <sip:…> as in a SIP header
		s = s[1 : len(s)-1]
	}
	lower := strings.ToLower(s)
	var rest string
	switch {
	case strings.HasPrefix(lower, "tel:"):
		rest = s[4:]
	case strings.HasPrefix(lower, "sip:"):
		rest = s[4:]
	case strings.HasPrefix(lower, "sips:"):
		rest = s[5:]
	default:
		return "", false
	}
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, ';'); i >= 0 {
		rest = rest[:i]
	}
	if strings.Contains(rest, "%") {
		if u, err := url.PathUnescape(rest); err == nil {
			rest = u
		}
	}
	return strings.TrimSpace(rest), true
}

// digitValue returns the value of a Unicode decimal digit: decimal digits come
// in runs of ten starting at zero, so it is the count of digits before r in its
// run, modulo ten.
func digitValue(r rune) int {
	v := 0
	for p := r - 1; p >= 0 && unicode.IsDigit(p) && v < 100; p-- {
		v++
	}
	return v % 10
}

func typeName(t phonenumbers.PhoneNumberType) string {
	switch t {
	case phonenumbers.FIXED_LINE:
		return "fixed_line"
	case phonenumbers.MOBILE:
		return "mobile"
	case phonenumbers.FIXED_LINE_OR_MOBILE:
		return "fixed_line_or_mobile"
	case phonenumbers.TOLL_FREE:
		return "toll_free"
	case phonenumbers.PREMIUM_RATE:
		return "premium_rate"
	case phonenumbers.SHARED_COST:
		return "shared_cost"
	case phonenumbers.VOIP:
		return "voip"
	case phonenumbers.PERSONAL_NUMBER:
		return "personal_number"
	case phonenumbers.PAGER:
		return "pager"
	case phonenumbers.UAN:
		return "uan"
	case phonenumbers.VOICEMAIL:
		return "voicemail"
	default:
		return "unknown"
	}
}
