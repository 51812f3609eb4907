package popper

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/callpop/callpop/call"
)

func TestCallerName(t *testing.T) {
	tests := []struct {
		name, tmpl string
		max        int
		cust       *call.Customer
		privacy    bool
		want       string
	}{
		{"vip template", "VIP {name}", 40, &call.Customer{Name: "Jane Doe"}, false, "VIP Jane Doe"},
		{"tier", "{tier} {name}", 40, &call.Customer{Name: "Jane Doe", Tier: "gold"}, false, "GOLD Jane Doe"},
		{"miss leaves the name alone", "VIP {name}", 40, nil, false, ""},
		{"length limited", "{name}", 10, &call.Customer{Name: "Bartholomew Fitzgerald-Smythe"}, false, "Bartholome"},
		{"hostile CRM data", "VIP {name}", 40, &call.Customer{Name: "Eve\r\n${SHELL(rm -rf /)};\"x`"}, false, "VIP Eve SHELL(rm -rf /) x"},
		{"number in the name, privacy", "{name}", 40, &call.Customer{Name: "+31201234567"}, true, ""},
		{"number in the name, privacy, national", "{name} ({id})", 40, &call.Customer{Name: "Caller 020-123 4567", ID: "C1"}, true, "Caller (C1)"},
		{"short numbers stay", "{name}", 40, &call.Customer{Name: "Suite 12 Floor 3"}, true, "Suite 12 Floor 3"},
		{"unknown placeholder", "{nope}{name}", 40, &call.Customer{Name: "Jo"}, false, "Jo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := call.Decision{Match: call.MatchHit, E164: "+31201234567", Customer: tt.cust}
			got := CallerName(tt.tmpl, tt.max, d, tt.privacy)
			if got != tt.want {
				t.Fatalf("CallerName = %q, want %q", got, tt.want)
			}
			if utf8.RuneCountInString(got) > tt.max || call.CleanValue(got) != got {
				t.Fatalf("not clean/bounded: %q", got)
			}
		})
	}
}

func TestInfoURL(t *testing.T) {
	d := call.Decision{CallID: "c1", Match: call.MatchHit, E164: "+31201234567", PopURL: "https://crm.example/c/1?x=1",
		Customer: &call.Customer{ID: "a b&c"}}
	tests := []struct {
		tmpl    string
		privacy bool
		want    string
	}{
		{"https://crm.example/pop?e164={e164}&id={customer_id}&call={call_id}", false, "https://crm.example/pop?e164=%2B31201234567&id=a+b%26c&call=c1"},
		{"https://crm.example/pop?e164={e164}", true, "https://crm.example/pop?e164="},
		{"{pop_url}", false, "https://crm.example/c/1?x=1"},
		{"javascript:alert(1)//{e164}", false, ""},
	}
	for _, tt := range tests {
		if got := InfoURL(tt.tmpl, d, tt.privacy); got != tt.want {
			t.Errorf("InfoURL(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestDecorate(t *testing.T) {
	p, err := New(Config{Softphone: SoftphoneConfig{CallerName: "VIP {name}", InfoURL: "https://crm.example/p?n={e164}"}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	inner := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		return call.Decision{Match: call.MatchHit, E164: "+31201234567", Customer: &call.Customer{Name: "Jane Doe"}}
	})
	d := p.Decorate(inner).Decide(context.Background(), call.Call{ID: "x"})
	if d.CallerName != "VIP Jane Doe" || d.InfoURL != "https://crm.example/p?n=%2B31201234567" {
		t.Fatalf("decorated %+v", d)
	}
	d = p.Decorate(inner).Decide(context.Background(), call.Call{ID: "x", Privacy: true})
	if strings.Contains(d.InfoURL, "201234567") {
		t.Fatalf("privacy: %q", d.InfoURL)
	}
	// Nothing configured: the decider is returned as is.
	q, _ := New(Config{}, Deps{})
	if got := q.Decorate(inner); got == nil {
		t.Fatal("nil decider")
	}
}

// asyncInner is an AsyncDecider answering on a goroutine of its own.
type asyncInner struct{ call.DeciderFunc }

func (a asyncInner) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	go func() { done(a.Decide(ctx, c)) }()
}

// TestDecorateAsync: over an AsyncDecider the decorated decider is one too,
// and decorates in done; over a plain Decider it is not.
func TestDecorateAsync(t *testing.T) {
	cfg := SoftphoneConfig{CallerName: "VIP {name}", InfoURL: "https://crm.example/p?n={e164}"}
	inner := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		return call.Decision{Match: call.MatchHit, E164: "+31201234567", Customer: &call.Customer{Name: "Jane Doe"}}
	})
	if _, ok := Softphone(cfg, inner).(call.AsyncDecider); ok {
		t.Fatal("decorated plain Decider claims to be an AsyncDecider")
	}
	dec, ok := Softphone(cfg, asyncInner{inner}).(call.AsyncDecider)
	if !ok {
		t.Fatal("decorated AsyncDecider is not one")
	}
	for _, privacy := range []bool{false, true} {
		c := call.Call{ID: "x", Privacy: privacy}
		ch := make(chan call.Decision, 2)
		dec.DecideAsync(context.Background(), c, func(d call.Decision) { ch <- d })
		got := <-ch
		if want := dec.Decide(context.Background(), c); got.CallerName != want.CallerName || got.InfoURL != want.InfoURL {
			t.Fatalf("privacy %v: async %q %q, sync %q %q", privacy, got.CallerName, got.InfoURL, want.CallerName, want.InfoURL)
		}
		if got.CallerName != "VIP Jane Doe" || (privacy == strings.Contains(got.InfoURL, "201234567")) {
			t.Fatalf("privacy %v: %q %q", privacy, got.CallerName, got.InfoURL)
		}
	}
}
