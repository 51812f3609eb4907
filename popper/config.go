package popper

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/callpop/callpop/internal/secret"
)

// Env variables that override secrets from the file.
const (
	EnvTokenSecret = "CALLPOP_POPPER_TOKEN_SECRET"
	// EnvWebhookSecret is a format: CALLPOP_POPPER_WEBHOOKS_<index>_SECRET.
	EnvWebhookSecret = "CALLPOP_POPPER_WEBHOOKS_%d_SECRET"
	// EnvActionSecret is a format: CALLPOP_POPPER_ACTIONS_<index>_SECRET.
	EnvActionSecret = "CALLPOP_POPPER_ACTIONS_%d_SECRET"
)

// Config is the `popper` section of callpop.yaml. mapstructure tags are the YAML
// keys; unknown keys are rejected at load.
type Config struct {
	// PopOn says when an agent gets the pop: "ring" (default) or "answer".
	PopOn string `mapstructure:"pop_on"`
	// TokenSecret signs agent tokens. Precedence: env CALLPOP_POPPER_TOKEN_SECRET,
	// then TokenSecretFile, then TokenSecret (keep secrets out of the YAML).
	TokenSecret     string `mapstructure:"token_secret"`
	TokenSecretFile string `mapstructure:"token_secret_file"`
	// AllowedOrigins lists browser origins (scheme://host[:port]) other than callpop's own that may open the panel stream.
	AllowedOrigins []string `mapstructure:"allowed_origins"`
	// Agents maps PBX endpoints to agent ids; endpoints not listed fall back to the default rule unless Unmapped is "ignore".
	Agents []AgentConfig `mapstructure:"agents"`
	// Unmapped is "default" (derive the agent id from the endpoint) or "ignore".
	Unmapped string `mapstructure:"unmapped"`
	// Links are the templated links and actions shown on the pop card.
	Links []LinkConfig `mapstructure:"links"`
	// Actions are the one-click actions on the pop card: requests callpop
	// sends to a CRM when the agent presses their button.
	Actions []ActionConfig `mapstructure:"actions"`
	// ActionHosts are the hosts (host or host:port) actions may send to;
	// an action whose URL names another host is refused at load.
	ActionHosts []string `mapstructure:"action_hosts"`
	// Softphone caller-name rewrite and info link.
	Softphone SoftphoneConfig `mapstructure:"softphone"`
	// Webhooks receive the pop JSON on ring/answer/end.
	Webhooks []WebhookConfig `mapstructure:"webhooks"`
	// Channel is the prefix of the Redis Pub/Sub channels pops travel on between
	// instances: <channel>:{<group>}, one per agent group.
	Channel string `mapstructure:"channel"`
	// ChannelGroups is how many agent groups (channels) the agents are hashed into.
	ChannelGroups int `mapstructure:"channel_groups"`
	// Queue bounds the events buffered between the adapters and the correlator; beyond it events are dropped and counted.
	Queue int `mapstructure:"queue"`
	// MaxCalls bounds the calls the correlator tracks at once (oldest evicted).
	MaxCalls int `mapstructure:"max_calls"`
	// CallTTL is how long a call's state is kept without any event.
	CallTTL time.Duration `mapstructure:"call_ttl"`
	// Recent is how many past pops per agent are kept for the panel's list and reconnect replay.
	Recent int `mapstructure:"recent"`
	// Heartbeat is the interval of SSE comment lines that keep proxies from closing the stream.
	Heartbeat time.Duration `mapstructure:"heartbeat"`
	// MaxTokenTTL bounds the ttl `callpop token` issues.
	MaxTokenTTL time.Duration `mapstructure:"max_token_ttl"`
	// Supervisors are the agents whose panel token (or session cookie) also
	// opens the live stats (/stats, /v1/stats: the scope stats).
	Supervisors []string `mapstructure:"supervisors"`
}

// AgentConfig maps PBX endpoints to one agent id.
type AgentConfig struct {
	Agent string `mapstructure:"agent"`
	// Endpoints are exact endpoints or globs ("PJSIP/alice", "sofia/agents/alice@*", "Local/7001@agents").
	Endpoints []string `mapstructure:"endpoints"`
}

// LinkConfig is one link or action on the pop card.
type LinkConfig struct {
	Name  string `mapstructure:"name"`
	Label string `mapstructure:"label"`
	// URL is a template: {e164}, {digits}, {network_name}, {customer_id}, {call_id}, {agent}, {queue}, {topics} are replaced, query-escaped.
	URL string `mapstructure:"url"`
	// When is "hit", "miss" or "always".
	When string `mapstructure:"when"`
}

// SoftphoneConfig rewrites the caller name and gives the softphone a link.
type SoftphoneConfig struct {
	// CallerName is a template such as "VIP {name}" or "{tier} {name}"; empty leaves the caller name alone.
	CallerName string `mapstructure:"caller_name"`
	// CallerNameMax bounds the rewritten name in runes.
	CallerNameMax int `mapstructure:"caller_name_max"`
	// InfoURL is a template for the link the softphone opens (SIP Call-Info / X- header); empty = none.
	InfoURL string `mapstructure:"info_url"`
}

// WebhookConfig is one webhook receiver.
type WebhookConfig struct {
	URL        string `mapstructure:"url"`
	Secret     string `mapstructure:"secret"`
	SecretFile string `mapstructure:"secret_file"`
	// Events are the pop states sent: ringing, answered, retracted, ended,
	// chosen, offered (a contact popped to its agent).
	Events      []string      `mapstructure:"events"`
	Timeout     time.Duration `mapstructure:"timeout"`
	MaxAttempts int           `mapstructure:"max_attempts"`
	// Queue bounds pops waiting for this receiver; beyond it pops are dropped and counted.
	Queue int `mapstructure:"queue"`
}

// Pop states, the `state` of a pop.
const (
	// StateOffered is a contact's pop (POST /v1/contacts with an agent):
	// the chat platform gave the agent the conversation; it stays open until
	// POST /v1/contacts/{id}/end (ended) or ContactTTL.
	StateOffered   = "offered"
	StateRinging   = "ringing"
	StateAnswered  = "answered"
	StateRetracted = "retracted"
	StateEnded     = "ended"
	// StateChosen is the event of an agent's pick among the candidates of a
	// multiple match (webhooks only).
	StateChosen = "chosen"
)

// DefaultConfig returns the defaults documented in config.example.yaml.
func DefaultConfig() Config {
	return Config{
		PopOn:         "ring",
		Unmapped:      "default",
		Softphone:     SoftphoneConfig{CallerNameMax: 40},
		Channel:       "callpop:pops",
		ChannelGroups: 256,
		Queue:         4096,
		MaxCalls:      20000,
		CallTTL:       4 * time.Hour,
		Recent:        50,
		Heartbeat:     15 * time.Second,
		MaxTokenTTL:   7 * 24 * time.Hour,
	}
}

// DefaultWebhook returns the defaults of one webhooks[] entry.
func DefaultWebhook() WebhookConfig {
	return WebhookConfig{
		Events:      []string{StateRinging, StateAnswered, StateEnded, StateChosen},
		Timeout:     2 * time.Second,
		MaxAttempts: 5,
		Queue:       1024,
	}
}

// withDefaults fills zero values, so a partial section (or none) works.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.PopOn == "" {
		c.PopOn = d.PopOn
	}
	if c.Unmapped == "" {
		c.Unmapped = d.Unmapped
	}
	if c.Softphone.CallerNameMax <= 0 {
		c.Softphone.CallerNameMax = d.Softphone.CallerNameMax
	}
	if c.Channel == "" {
		c.Channel = d.Channel
	}
	if c.ChannelGroups <= 0 {
		c.ChannelGroups = d.ChannelGroups
	}
	if c.Queue <= 0 {
		c.Queue = d.Queue
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = d.MaxCalls
	}
	if c.CallTTL <= 0 {
		c.CallTTL = d.CallTTL
	}
	if c.Recent <= 0 {
		c.Recent = d.Recent
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.MaxTokenTTL <= 0 {
		c.MaxTokenTTL = d.MaxTokenTTL
	}
	wd := DefaultWebhook()
	hooks := make([]WebhookConfig, len(c.Webhooks))
	for i, w := range c.Webhooks {
		if len(w.Events) == 0 {
			w.Events = wd.Events
		}
		if w.Timeout <= 0 {
			w.Timeout = wd.Timeout
		}
		if w.MaxAttempts <= 0 {
			w.MaxAttempts = wd.MaxAttempts
		}
		if w.Queue <= 0 {
			w.Queue = wd.Queue
		}
		hooks[i] = w
	}
	c.Webhooks = hooks
	return c
}

// badFunc reports what is wrong with a key of the section.
type badFunc func(key, format string, args ...any)

// Validate checks the section as a whole; errors name the key ("popper.x: why").
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("popper.%s: "+format, append([]any{key}, args...)...))
	}
	switch c.PopOn {
	case "", "ring", "answer":
	default:
		bad("pop_on", "must be ring or answer, not %q", c.PopOn)
	}
	switch c.Unmapped {
	case "", "default", "ignore":
	default:
		bad("unmapped", "must be default or ignore, not %q", c.Unmapped)
	}
	if c.TokenSecret != "" && len(c.TokenSecret) < minSecret {
		bad("token_secret", "must be at least %d bytes", minSecret)
	}
	for i, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad(fmt.Sprintf("allowed_origins[%d]", i), "must be an origin like https://crm.example.com")
		}
	}
	c.checkAgents(bad)
	c.checkLinks(bad)
	if c.Softphone.InfoURL != "" && !strings.HasPrefix(c.Softphone.InfoURL, "{pop_url}") {
		if err := checkTemplateURL(c.Softphone.InfoURL); err != nil {
			bad("softphone.info_url", "%v", err)
		}
	}
	if c.Softphone.CallerNameMax < 0 || c.Softphone.CallerNameMax > 128 {
		bad("softphone.caller_name_max", "must be between 1 and 128")
	}
	c.checkWebhooks(bad)
	c.checkActions(bad)
	if strings.ContainsAny(c.Channel, "{}") {
		bad("channel", "must not hold { or } (the group's hash tag is added to it)")
	}
	if c.ChannelGroups < 0 || c.ChannelGroups > maxChannelGroups {
		bad("channel_groups", "must be between 1 and %d", maxChannelGroups)
	}
	if c.Queue < 0 {
		bad("queue", "must not be negative")
	}
	if c.MaxCalls < 0 {
		bad("max_calls", "must not be negative")
	}
	if c.CallTTL < 0 {
		bad("call_ttl", "must not be negative")
	}
	if c.Recent < 0 || c.Recent > 1000 {
		bad("recent", "must be between 1 and 1000")
	}
	if c.Heartbeat < 0 || (c.Heartbeat > 0 && c.Heartbeat < 100*time.Millisecond) {
		bad("heartbeat", "must be at least 100ms")
	}
	if c.MaxTokenTTL < 0 {
		bad("max_token_ttl", "must not be negative")
	}
	for i, a := range c.Supervisors {
		if a == "" || cleanAgent(a) != a {
			bad(fmt.Sprintf("supervisors[%d]", i), "agent %q: must be letters, digits or + - _ . @ : (at most 64)", a)
		}
	}
	return errors.Join(errs...)
}

// checkAgents checks the endpoint → agent map.
func (c *Config) checkAgents(bad badFunc) {
	for i, a := range c.Agents {
		if a.Agent == "" || cleanAgent(a.Agent) != a.Agent {
			bad(fmt.Sprintf("agents[%d].agent", i), "must be letters, digits or + - _ . @ : (at most 64)")
		}
		if len(a.Endpoints) == 0 {
			bad(fmt.Sprintf("agents[%d].endpoints", i), "must list at least one endpoint")
		}
		for j, e := range a.Endpoints {
			if _, err := path.Match(e, ""); err != nil || e == "" {
				bad(fmt.Sprintf("agents[%d].endpoints[%d]", i, j), "not a valid endpoint or glob")
			}
		}
	}
}

// checkLinks checks the pop's links.
func (c *Config) checkLinks(bad badFunc) {
	for i, l := range c.Links {
		key := fmt.Sprintf("links[%d]", i)
		if l.Name == "" {
			bad(key+".name", "must be set")
		}
		if err := checkTemplateURL(l.URL); err != nil {
			bad(key+".url", "%v", err)
		}
		switch l.When {
		case "", "hit", "miss", "always":
		default:
			bad(key+".when", "must be hit, miss or always, not %q", l.When)
		}
	}
}

// checkWebhooks checks the webhooks.
func (c *Config) checkWebhooks(bad badFunc) {
	for i, w := range c.Webhooks {
		key := fmt.Sprintf("webhooks[%d]", i)
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(key+".url", "must be an http or https URL")
		}
		for j, e := range w.Events {
			switch e {
			case StateRinging, StateAnswered, StateRetracted, StateEnded, StateChosen, StateOffered:
			default:
				bad(fmt.Sprintf("%s.events[%d]", key, j), "must be ringing, answered, retracted, ended, chosen or offered, not %q", e)
			}
		}
		if w.Timeout < 0 || w.Timeout > time.Minute {
			bad(key+".timeout", "must be between 0 and 1m")
		}
		if w.MaxAttempts < 0 || w.MaxAttempts > 50 {
			bad(key+".max_attempts", "must be between 1 and 50")
		}
		if w.Queue < 0 {
			bad(key+".queue", "must not be negative")
		}
	}
}

// checkTemplateURL checks a link template: http(s) only, so no javascript: reaches a browser.
func checkTemplateURL(t string) error {
	if t == "" {
		return errors.New("must be set")
	}
	lower := strings.ToLower(t)
	if !strings.HasPrefix(lower, "https://") && !strings.HasPrefix(lower, "http://") {
		return errors.New("must be an http or https URL")
	}
	return nil
}

// ResolveTokenSecret returns the token secret: env CALLPOP_POPPER_TOKEN_SECRET,
// else token_secret_file, else token_secret. Empty means agent endpoints are off.
func (c Config) ResolveTokenSecret() ([]byte, error) {
	return resolveSecret(EnvTokenSecret, c.TokenSecretFile, c.TokenSecret, "popper.token_secret")
}

// ResolveSecret returns webhook i's secret: env CALLPOP_POPPER_WEBHOOKS_<i>_SECRET, else secret_file, else secret.
func (w WebhookConfig) ResolveSecret(i int) ([]byte, error) {
	return resolveSecret(fmt.Sprintf(EnvWebhookSecret, i), w.SecretFile, w.Secret, fmt.Sprintf("popper.webhooks[%d].secret", i))
}

const minSecret = 16

// maxChannelGroups bounds popper.channel_groups.
const maxChannelGroups = 65536

func resolveSecret(env, file, inline, key string) ([]byte, error) {
	s, err := secret.Resolve(env, file, inline, key)
	if err != nil {
		return nil, err
	}
	if s != "" && len(s) < minSecret {
		return nil, fmt.Errorf("%s: must be at least %d bytes", key, minSecret)
	}
	if s == "" {
		return nil, nil
	}
	return []byte(s), nil
}
