package popper

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{"defaults", DefaultConfig(), ""},
		{"empty section", Config{}, ""},
		{"pop_on", Config{PopOn: "later"}, "popper.pop_on: must be ring or answer"},
		{"short secret", Config{TokenSecret: "abc"}, "popper.token_secret: must be at least 16 bytes"},
		{"origin with path", Config{AllowedOrigins: []string{"https://x.example/panel"}}, "popper.allowed_origins[0]"},
		{"agent id", Config{Agents: []AgentConfig{{Agent: "a b", Endpoints: []string{"PJSIP/x"}}}}, "popper.agents[0].agent"},
		{"agent endpoints", Config{Agents: []AgentConfig{{Agent: "ab"}}}, "popper.agents[0].endpoints"},
		{"bad glob", Config{Agents: []AgentConfig{{Agent: "ab", Endpoints: []string{"PJSIP/[x"}}}}, "popper.agents[0].endpoints[0]"},
		{"javascript link", Config{Links: []LinkConfig{{Name: "x", URL: "javascript:alert(1)"}}}, "popper.links[0].url: must be an http or https URL"},
		{"link when", Config{Links: []LinkConfig{{Name: "x", URL: "https://a.example", When: "sometimes"}}}, "popper.links[0].when"},
		{"webhook url", Config{Webhooks: []WebhookConfig{{URL: "ftp://x"}}}, "popper.webhooks[0].url"},
		{"webhook event", Config{Webhooks: []WebhookConfig{{URL: "https://x.example", Events: []string{"rung"}}}}, "popper.webhooks[0].events[0]"},
		{"info_url", Config{Softphone: SoftphoneConfig{InfoURL: "sip:x"}}, "popper.softphone.info_url"},
		{"info_url pop_url", Config{Softphone: SoftphoneConfig{InfoURL: "{pop_url}"}}, ""},
		{"heartbeat", Config{Heartbeat: 1}, "popper.heartbeat"},
		{"channel hash tag", Config{Channel: "pops:{x}"}, "popper.channel: must not hold { or }"},
		{"channel_groups", Config{ChannelGroups: 65537}, "popper.channel_groups: must be between 1 and 65536"},
		{"channel_groups one", Config{ChannelGroups: 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConfigChannelGroupsDefault(t *testing.T) {
	if g := (Config{}).withDefaults().ChannelGroups; g != 256 {
		t.Fatalf("channel_groups default %d, want 256", g)
	}
}
