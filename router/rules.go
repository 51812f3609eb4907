package router

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callpop/callpop/call"
)

// Env is what a rule's expressions see. Field names are the expr tags.
type Env struct {
	Customer    CustomerEnv    `expr:"customer"`     // the CRM record (empty on a miss)
	Record      map[string]any `expr:"record"`       // every customer field by name, extra ones included; empty on a miss
	Match       string         `expr:"match"`        // hit, multiple, miss, anonymous, invalid, timeout, error
	Candidates  []CandidateEnv `expr:"candidates"`   // match multiple: every customer owning the number, best (customer) first
	E164        string         `expr:"e164"`         // the number looked up
	Source      string         `expr:"source"`       // cli, ani or email (what the look-up used)
	CountryCode int            `expr:"country_code"` // 31, 1, 44 … (0 when unknown)
	Region      string         `expr:"region"`       // the number's region: "NL", "US" …
	NumberType  string         `expr:"number_type"`  // mobile, fixed_line, fixed_line_or_mobile, toll_free, premium_rate, voip, unknown …
	Geo         string         `expr:"geo"`          // geographic description ("Amsterdam") where known
	DNIS        string         `expr:"dnis"`         // the dialled number as the PBX gave it
	Profile     string         `expr:"profile"`      // the profile in use
	Time        time.Time      `expr:"time"`         // local time (router.timezone)
	Hour        int            `expr:"hour"`         // 0..23, local
	Minute      int            `expr:"minute"`       // 0..59, local
	HHMM        int            `expr:"hhmm"`         // hour*100+minute, local: 1730 for 17:30
	Weekday     string         `expr:"weekday"`      // mon, tue, wed, thu, fri, sat, sun (local)
	Weekend     bool           `expr:"weekend"`      // weekday is sat or sun
	Flags       []string       `expr:"flags"`        // flags so far (built-in ones and earlier rules')
	ANI         string         `expr:"ani"`          // ANI as the PBX gave it
	CLI         string         `expr:"cli"`          // caller ID number as the PBX gave it
	CLIName     string         `expr:"cli_name"`     // caller ID name as the PBX gave it
	Privacy     bool           `expr:"privacy"`      // the caller asked for privacy
	Cached      bool           `expr:"cached"`       // the record came from the cache
	Channel     string         `expr:"channel"`      // voice for a call; chat, email, sms, social (POST /v1/contacts) or callback
}

// CustomerEnv is the customer record as rules see it.
type CustomerEnv struct {
	Found    bool           `expr:"found"`
	ID       string         `expr:"id"`
	Name     string         `expr:"name"`
	Tier     string         `expr:"tier"`
	Language string         `expr:"language"`
	URL      string         `expr:"url"`
	Phones   []string       `expr:"phones"`
	Extra    map[string]any `expr:"extra"`
	// Lists are the record's named lists: len(customer.lists.tickets) > 2.
	Lists map[string][]map[string]any `expr:"lists"`
}

// CandidateEnv is one candidate of a multiple match as rules see it.
type CandidateEnv struct {
	ID   string `expr:"id"`
	Name string `expr:"name"`
	Tier string `expr:"tier"`
	URL  string `expr:"url"`
}

// noRecord is the record rules see on a miss; nothing writes to it.
var noRecord = map[string]any{}

// noLists are the lists rules see of a record without any; nothing writes to it.
var noLists = map[string][]map[string]any{}

func customerEnv(c *call.Customer) (CustomerEnv, map[string]any) {
	if c == nil {
		return CustomerEnv{Lists: noLists}, noRecord
	}
	rec := make(map[string]any, len(c.Extra)+6)
	for k, v := range c.Extra {
		rec[k] = v
	}
	rec["id"], rec["name"], rec["tier"], rec["language"], rec["url"] = c.ID, c.Name, c.Tier, c.Language, c.URL
	rec["phones"] = c.Phones
	extra := c.Extra
	if extra == nil {
		extra = map[string]any{}
	}
	lists := c.Lists
	if lists == nil {
		lists = noLists
	}
	return CustomerEnv{Found: true, ID: c.ID, Name: c.Name, Tier: c.Tier, Language: c.Language, URL: c.URL, Phones: c.Phones, Extra: extra, Lists: lists}, rec
}

var weekdays = [...]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// setTime fills the local-time fields.
func (e *Env) setTime(t time.Time) {
	e.Time = t
	e.Hour, e.Minute = t.Hour(), t.Minute()
	e.HHMM = e.Hour*100 + e.Minute
	e.Weekday = weekdays[t.Weekday()]
	e.Weekend = t.Weekday() == time.Saturday || t.Weekday() == time.Sunday
}

// compiledRule is a Rule ready to run.
type compiledRule struct {
	name     string
	when     string
	whenProg *vm.Program // nil = always
	priority *value      // nil = not set
	queue    *value
	skill    *value
	language *value
	flags    []string
	vars     []namedValue
	stop     bool
	warned   atomic.Bool // the first run-time error of this rule was logged
	matches  prometheus.Counter
}

type namedValue struct {
	name string // variable name suffix, already VarName'd
	v    *value
}

// value is a literal or an expression output.
type value struct {
	lit  string
	ilit int
	prog *vm.Program
}

// RuleStatus is one rule's compile result, for check-config.
type RuleStatus struct {
	Key  string // "router.rules[3]" or "router.rule_sets.vip[0]"
	Name string
	Err  string // "" when it compiled
}

// CompileReport compiles every rule of cfg and reports each one's result.
func CompileReport(cfg Config) []RuleStatus {
	var out []RuleStatus
	add := func(key string, rules []Rule) {
		for i, r := range rules {
			st := RuleStatus{Key: fmt.Sprintf("%s[%d]", key, i), Name: r.Name}
			if _, err := compileRule(r, cfg.Timezone); err != nil {
				st.Err = err.Error()
			}
			for j := range i {
				if rules[j].Name == r.Name && r.Name != "" && st.Err == "" {
					st.Err = fmt.Sprintf("name: also used by %s[%d]", key, j)
				}
			}
			out = append(out, st)
		}
	}
	add("router.rules", cfg.Rules)
	for _, name := range sortedKeys(cfg.RuleSets) {
		add("router.rule_sets."+name, cfg.RuleSets[name])
	}
	return out
}

// compileRules compiles a rule list; the error names the first bad rule.
func compileRules(key string, rules []Rule, tz string) ([]*compiledRule, error) {
	out := make([]*compiledRule, 0, len(rules))
	var errs []error
	for i, r := range rules {
		for j := range i {
			if rules[j].Name == r.Name && r.Name != "" {
				errs = append(errs, fmt.Errorf("%s[%d] %s: name: also used by %s[%d]", key, i, quoteName(r.Name), key, j))
			}
		}
		cr, err := compileRule(r, tz)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d] %s: %w", key, i, quoteName(r.Name), err))
			continue
		}
		out = append(out, cr)
	}
	return out, errors.Join(errs...)
}

func exprOptions(tz string) []expr.Option {
	opts := []expr.Option{expr.Env(Env{}), expr.MaxNodes(2000)}
	if _, err := loadLocation(tz); err == nil && tz != "" && tz != "Local" {
		opts = append(opts, expr.Timezone(tz)) // for now() and date(); panics on an unknown zone
	}
	return opts
}

func compileRule(r Rule, tz string) (*compiledRule, error) {
	if strings.TrimSpace(r.Name) == "" {
		return nil, errors.New("name: required")
	}
	cr := &compiledRule{name: r.Name, when: r.When, stop: r.Stop || r.Then.Stop, matches: ruleMatches.WithLabelValues(r.Name)}
	if strings.TrimSpace(r.When) != "" {
		p, err := expr.Compile(r.When, append(exprOptions(tz), expr.AsBool())...)
		if err != nil {
			return nil, errors.New(exprErr(err)) // the condition is the rule: no key prefix
		}
		cr.whenProg = p
	}
	var err error
	if cr.priority, err = compilePriority(r.Then.Priority, tz); err != nil {
		return nil, fmt.Errorf("then.priority: %w", err)
	}
	for _, f := range []struct {
		key string
		src string
		dst **value
	}{{"queue", r.Then.Queue, &cr.queue}, {"skill", r.Then.Skill, &cr.skill}, {"language", r.Then.Language, &cr.language}} {
		if *f.dst, err = compileString(f.src, tz); err != nil {
			return nil, fmt.Errorf("then.%s: %w", f.key, err)
		}
	}
	for i, f := range r.Then.Flags {
		t := call.CleanToken(f)
		if t == "" || t != f {
			return nil, fmt.Errorf("then.flags[%d]: %q must be letters, digits, - _ . only", i, f)
		}
		cr.flags = append(cr.flags, t)
	}
	for _, k := range sortedKeys(r.Then.Vars) {
		n := call.VarName(k)
		if n == "" {
			return nil, fmt.Errorf("then.vars.%s: not a usable variable name", k)
		}
		v, err := compileString(r.Then.Vars[k], tz)
		if err != nil {
			return nil, fmt.Errorf("then.vars.%s: %w", k, err)
		}
		if v == nil {
			v = &value{}
		}
		cr.vars = append(cr.vars, namedValue{name: n, v: v})
	}
	return cr, nil
}

// programs lists the rule's compiled expressions.
func (cr *compiledRule) programs() []*vm.Program {
	var ps []*vm.Program
	if cr.whenProg != nil {
		ps = append(ps, cr.whenProg)
	}
	for _, v := range []*value{cr.priority, cr.queue, cr.skill, cr.language} {
		if v != nil && v.prog != nil {
			ps = append(ps, v.prog)
		}
	}
	for _, nv := range cr.vars {
		if nv.v != nil && nv.v.prog != nil {
			ps = append(ps, nv.v.prog)
		}
	}
	return ps
}

// rulesRead reports whether an expression of rules may read the Env field
// tagged name: by its name or through $env (which may name any field).
func rulesRead(rules []*compiledRule, name string) bool {
	v := &identVisitor{names: map[string]bool{name: true, "$env": true}}
	for _, r := range rules {
		for _, p := range r.programs() {
			node := p.Node()
			ast.Walk(&node, v)
			if v.found {
				return true
			}
		}
	}
	return false
}

type identVisitor struct {
	names map[string]bool
	found bool
}

func (v *identVisitor) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok && v.names[id.Value] {
		v.found = true
	}
}

func compileString(src, tz string) (*value, error) {
	if src == "" {
		return nil, nil
	}
	if rest, ok := strings.CutPrefix(src, "="); ok {
		p, err := expr.Compile(rest, append(exprOptions(tz), expr.AsKind(reflect.String))...)
		if err != nil {
			return nil, errors.New(exprErr(err))
		}
		return &value{prog: p}, nil
	}
	if c := call.CleanValue(src); c != src {
		return nil, fmt.Errorf("%q has characters a channel variable cannot carry (it would become %q)", src, c)
	}
	return &value{lit: src}, nil
}

func compilePriority(v any, tz string) (*value, error) {
	switch p := v.(type) {
	case nil:
		return nil, nil
	case int:
		return &value{ilit: p}, nil
	case int64:
		return &value{ilit: int(p)}, nil
	case uint64:
		if p > math.MaxInt32 {
			return nil, fmt.Errorf("%d is too large", p)
		}
		return &value{ilit: int(p)}, nil
	case float64:
		if p != math.Trunc(p) || math.Abs(p) > math.MaxInt32 {
			return nil, fmt.Errorf("%v is not an integer", p)
		}
		return &value{ilit: int(p)}, nil
	case string:
		if rest, ok := strings.CutPrefix(p, "="); ok {
			prog, err := expr.Compile(rest, append(exprOptions(tz), expr.AsInt())...)
			if err != nil {
				return nil, errors.New(exprErr(err))
			}
			return &value{prog: prog}, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer (or an \"=expression\")", p)
		}
		return &value{ilit: n}, nil
	default:
		return nil, fmt.Errorf("%v (%T) is not an integer", v, v)
	}
}

// exprErr shortens an expr compile error to one line: message (line:column).
func exprErr(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		if fe.Snippet == "" {
			return fe.Message
		}
		return fmt.Sprintf("%s (%d:%d)", fe.Message, fe.Line, fe.Column+1)
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// outcome is what rule evaluation produced.
type outcome struct {
	priority    int
	prioritySet bool
	queue       string
	skill       string
	language    string
	flags       []string
	vars        map[string]string
	matched     []string
	trace       []RuleTrace // only when asked
	errors      int
}

// RuleTrace explains one rule's evaluation, for `callpop lookup` and /v1/lookup.
type RuleTrace struct {
	Name    string         `json:"name"`
	When    string         `json:"when"`
	Matched bool           `json:"matched"`
	Set     map[string]any `json:"set,omitempty"`
	Stop    bool           `json:"stop,omitempty"`
	Error   string         `json:"error,omitempty"`
}

var vmPool = sync.Pool{New: func() any { return &vm.VM{} }}

// ruleErrLog receives the first run-time error of each compiled rule.
type ruleErrLog func(rule, key string, err error)

// evalRules runs rules in order over env. env.Flags grows as rules add flags.
func evalRules(rules []*compiledRule, env *Env, explain bool, logErr ...ruleErrLog) outcome {
	var o outcome
	m := vmPool.Get().(*vm.VM)
	defer vmPool.Put(m)
	run := ruleRun{m: m, env: env, o: &o}
	if len(logErr) > 0 {
		run.logErr = logErr[0]
	}
	for _, r := range rules {
		run.r, run.tr = r, nil
		if explain {
			o.trace = append(o.trace, RuleTrace{Name: r.name, When: r.when})
			run.tr = &o.trace[len(o.trace)-1]
		}
		if !run.matches() {
			continue
		}
		run.apply()
		if r.stop {
			if run.tr != nil {
				run.tr.Stop = true
			}
			break
		}
	}
	return o
}

// ruleRun is one rule's evaluation within evalRules.
type ruleRun struct {
	m      *vm.VM
	env    *Env
	o      *outcome
	logErr ruleErrLog
	r      *compiledRule
	tr     *RuleTrace // nil unless explaining: the trace's values (boxed, concatenated) cost allocations
}

// matches runs the rule's condition; a failing one does not match.
func (run *ruleRun) matches() bool {
	r := run.r
	if r.whenProg != nil {
		out, err := run.m.Run(r.whenProg, run.env)
		if err != nil {
			run.fail("when", err)
			return false
		}
		if b, _ := out.(bool); !b {
			return false
		}
	}
	run.o.matched = append(run.o.matched, r.name)
	r.matches.Inc()
	if run.tr != nil {
		run.tr.Matched = true
		run.tr.Set = map[string]any{}
	}
	return true
}

// fail counts a run-time error of the rule (the first one is logged) and
// traces it.
func (run *ruleRun) fail(key string, err error) {
	run.o.errors++
	ruleErrors.Inc()
	if run.logErr != nil && run.r.warned.CompareAndSwap(false, true) {
		run.logErr(run.r.name, key, err)
	}
	if run.tr == nil {
		return
	}
	if key == "when" {
		run.tr.Error = "when: " + firstLine(err.Error())
		return
	}
	run.tr.Error += key + ": " + firstLine(err.Error()) + "; "
}

// apply runs a matched rule's then: priority, queue, skill, language,
// flags, variables. An output that fails is skipped; the rest still apply.
func (run *ruleRun) apply() {
	r, o := run.r, run.o
	if r.priority != nil {
		if p, err := r.priority.intValue(run.m, run.env); err != nil {
			run.fail("then.priority", err)
		} else {
			o.priority, o.prioritySet = p, true
			if run.tr != nil {
				run.tr.Set["priority"] = p
			}
		}
	}
	run.setString("queue", r.queue, &o.queue)
	run.setString("skill", r.skill, &o.skill)
	run.setString("language", r.language, &o.language)
	for _, f := range r.flags {
		if !contains(run.env.Flags, f) {
			run.env.Flags = append(run.env.Flags, f)
			o.flags = append(o.flags, f)
		}
	}
	if run.tr != nil && len(r.flags) > 0 {
		run.tr.Set["flags"] = r.flags
	}
	for _, nv := range r.vars {
		s, err := nv.v.stringValue(run.m, run.env)
		if err != nil {
			run.fail("then.vars."+nv.name, err)
			continue
		}
		if o.vars == nil {
			o.vars = map[string]string{}
		}
		o.vars[nv.name] = s
		if run.tr != nil {
			run.tr.Set["vars."+nv.name] = s
		}
	}
}

// setString runs one string output (nil: the rule does not set it) into dst.
func (run *ruleRun) setString(key string, v *value, dst *string) {
	if v == nil {
		return
	}
	s, err := v.stringValue(run.m, run.env)
	if err != nil {
		run.fail("then."+key, err)
		return
	}
	*dst = s
	if run.tr != nil {
		run.tr.Set[key] = s
	}
}

func (v *value) stringValue(m *vm.VM, env *Env) (string, error) {
	if v.prog == nil {
		return v.lit, nil
	}
	out, err := m.Run(v.prog, env)
	if err != nil {
		return "", err
	}
	switch s := out.(type) {
	case string:
		return call.CleanValue(s), nil
	case nil:
		return "", nil
	default:
		return call.CleanValue(fmt.Sprint(s)), nil
	}
}

func (v *value) intValue(m *vm.VM, env *Env) (int, error) {
	if v.prog == nil {
		return v.ilit, nil
	}
	out, err := m.Run(v.prog, env)
	if err != nil {
		return 0, err
	}
	switch n := out.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return 0, fmt.Errorf("%v is not a number", n)
		}
		return int(math.Round(max(min(n, math.MaxInt32), math.MinInt32))), nil
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer", call.CleanValueN(n, 32))
		}
		return i, nil
	default:
		return 0, fmt.Errorf("%T is not an integer", out)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
