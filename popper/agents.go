package popper

import (
	"path"
	"strings"

	"github.com/callpop/callpop/call"
)

// agentMap turns PBX endpoints into agent ids.
type agentMap struct {
	entries []AgentConfig
	ignore  bool // unmapped endpoints are not popped
}

// Agent returns the agent id for a PBX endpoint, "" when none.
func (m agentMap) Agent(endpoint string) string {
	if endpoint == "" {
		return ""
	}
	stripped := StripChannelSuffix(endpoint)
	for _, e := range m.entries {
		for _, p := range e.Endpoints {
			if p == endpoint || p == stripped {
				return e.Agent
			}
			if ok, _ := path.Match(p, stripped); ok {
				return e.Agent
			}
			if ok, _ := path.Match(p, endpoint); ok {
				return e.Agent
			}
		}
	}
	if m.ignore && len(m.entries) > 0 {
		return ""
	}
	return DefaultAgent(endpoint)
}

// DefaultAgent is the rule used without a mapping: the resource after the
// technology, up to the first '@', '-' or ';'. PJSIP/1001-00000005,
// Local/1001@agents-000048d7;1, sofia/agents/1001@127.0.0.1:5072, user/1001
// and mod_callcenter's 1001@default all give "1001".
func DefaultAgent(endpoint string) string {
	s := endpoint
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	// The resource is after the last '/' of the part before any '@'
	// (sofia/<profile>/<user>@host: the host may hold no '/', but be safe).
	at := strings.IndexByte(s, '@')
	head := s
	if at >= 0 {
		head = s[:at]
	}
	if i := strings.LastIndexByte(head, '/'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, "@-;"); i >= 0 {
		s = s[:i]
	}
	return cleanAgent(s)
}

// StripChannelSuffix removes what makes an endpoint a channel rather than a
// device: Local's ";1"/";2" and the "-0000abcd" uniqueness suffix of
// Asterisk channel names.
func StripChannelSuffix(endpoint string) string {
	s := endpoint
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '-'); i >= 0 && len(s)-i-1 == 8 && isHex(s[i+1:]) && strings.IndexByte(s, '/') >= 0 {
		s = s[:i]
	}
	return s
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// cleanAgent is the form an agent id may take: a token of at most 64 characters.
func cleanAgent(s string) string { return call.CleanToken(s) }
