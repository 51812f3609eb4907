package popper

import (
	"context"
	"net/url"
	"regexp"
	"strings"

	"github.com/callpop/callpop/call"
)

// Decorate wraps d so each decision carries the softphone fields:
// CallerName (popper.softphone.caller_name, e.g. "VIP {name}") and InfoURL
// (popper.softphone.info_url). main wraps the router with it.
func (p *Popper) Decorate(d call.Decider) call.Decider {
	return Softphone(p.cfg.Softphone, d)
}

// Softphone is Decorate without a Popper, for wiring and tests.
func Softphone(cfg SoftphoneConfig, d call.Decider) call.Decider {
	if cfg.CallerName == "" && cfg.InfoURL == "" {
		return d
	}
	if cfg.CallerNameMax <= 0 {
		cfg.CallerNameMax = DefaultConfig().Softphone.CallerNameMax
	}
	sp := softphone{cfg: cfg, d: d}
	if _, ok := d.(call.AsyncDecider); ok {
		return asyncSoftphone{sp}
	}
	return sp
}

// softphone decorates its decider's decisions with the softphone fields.
type softphone struct {
	cfg SoftphoneConfig
	d   call.Decider
}

func (s softphone) Decide(ctx context.Context, c call.Call) call.Decision {
	return s.decorate(s.d.Decide(ctx, c), c)
}

func (s softphone) decorate(dec call.Decision, c call.Call) call.Decision {
	if s.cfg.CallerName != "" {
		dec.CallerName = CallerName(s.cfg.CallerName, s.cfg.CallerNameMax, dec, c.Privacy)
	}
	if s.cfg.InfoURL != "" {
		dec.InfoURL = InfoURL(s.cfg.InfoURL, dec, c.Privacy)
	}
	return dec
}

// asyncSoftphone is softphone over an AsyncDecider: an AsyncDecider too,
// decorating in done.
type asyncSoftphone struct{ softphone }

func (s asyncSoftphone) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	s.d.(call.AsyncDecider).DecideAsync(ctx, c, func(dec call.Decision) { done(s.decorateSafe(dec, c)) })
}

// decorateSafe is decorate that falls back to dec undecorated on a panic: it
// runs inside the inner decider's done, which must still reach ours.
func (s softphone) decorateSafe(dec call.Decision, c call.Call) (out call.Decision) {
	defer func() {
		if recover() != nil {
			out = dec
		}
	}()
	return s.decorate(dec, c)
}

// CallerName renders the caller-name template for a decision with a
// customer: {name}, {tier}, {id}, {language}, {queue}, {flags}; "" (leave
// the name alone) on a miss. The result is sanitised, at most max runes, and
// never holds the number when the caller asked for privacy.
func CallerName(tmpl string, max int, d call.Decision, privacy bool) string {
	if d.Customer == nil || d.Customer.Name == "" {
		return ""
	}
	c := d.Customer
	tier := c.Tier
	vars := map[string]string{
		"name":     c.Name,
		"tier":     strings.ToUpper(tier),
		"id":       c.ID,
		"language": c.Language,
		"queue":    d.Queue,
		"flags":    strings.Join(d.Flags, " "),
	}
	for k, v := range vars {
		vars[k] = call.CleanValue(v)
	}
	s := expand(tmpl, vars, nil)
	if privacy || d.Privacy {
		s = stripNumber(s, d.E164)
	}
	return call.CleanValueN(strings.TrimSpace(s), max)
}

// phoneLike matches runs that look like a phone number: 6 or more digits,
// possibly with separators.
var phoneLike = regexp.MustCompile(`\+?\d[\d\s\-./()]{4,}\d`)

// stripNumber removes the number, and anything that looks like one, from s.
func stripNumber(s, e164 string) string {
	if e164 != "" {
		s = strings.ReplaceAll(s, e164, "")
	}
	s = phoneLike.ReplaceAllStringFunc(s, func(m string) string {
		n := 0
		for _, r := range m {
			if r >= '0' && r <= '9' {
				n++
			}
		}
		if n >= 6 {
			return ""
		}
		return m
	})
	return strings.Join(strings.Fields(s), " ")
}

// InfoURL renders the softphone link template: {e164} and {digits} (empty
// when the caller asked for privacy), {customer_id}, {call_id}, {match};
// values are query-escaped and the result must be http(s).
func InfoURL(tmpl string, d call.Decision, privacy bool) string {
	vars := map[string]string{
		"call_id": d.CallID,
		"match":   string(d.Match),
		"pop_url": d.PopURL,
	}
	if !privacy && !d.Privacy {
		vars["e164"] = d.E164
		vars["digits"] = strings.TrimPrefix(d.E164, "+")
	}
	if d.Customer != nil {
		vars["customer_id"] = d.Customer.ID
	}
	prefix := ""
	if rest, ok := strings.CutPrefix(tmpl, "{pop_url}"); ok {
		// the CRM link itself: taken as it is, the rest of the template escaped
		prefix, tmpl = d.PopURL, rest
	}
	return safeURL(prefix + expand(tmpl, vars, url.QueryEscape))
}
