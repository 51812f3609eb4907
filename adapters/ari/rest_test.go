package ari

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
)

// The REST client against the simulator's recorded answers: 404 on an
// unset variable is an empty value, 404/409 on a channel is ErrGone, empty
// values are sent as "value=" (set, not unset).
func TestRESTClientAnswers(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	dialRaw(t, sim, sim.App())
	id := sim.OfferCall(arisim.CallSpec{CLI: "0201234567", ANI: "0301112233", NumPres: "prohib"})
	rc := newRESTClient(sim.URL(), testUser, testPass, 4)
	defer rc.close()
	ctx := context.Background()
	tests := []struct {
		name, variable, want string
	}{
		{"ani", "CALLERID(ani)", "0301112233"},
		{"num-pres", "CALLERID(num-pres)", "prohib"},
		{"unset variable", "NO_SUCH_VAR", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := rc.getVar(ctx, id, tt.variable)
			if err != nil || v != tt.want {
				t.Errorf("%q %v, want %q", v, err, tt.want)
			}
		})
	}
	if err := rc.setVar(ctx, id, "CALLPOP_NAME", ""); err != nil {
		t.Fatal(err)
	}
	if v, ok := sim.Vars(id)["CALLPOP_NAME"]; !ok || v != "" {
		t.Errorf("empty value not set: %q %v", v, ok)
	}
	if _, err := rc.getVar(ctx, "does-not-exist-123", "CALLERID(ani)"); !errors.Is(err, ErrGone) {
		t.Errorf("missing channel: %v", err)
	}
	if err := rc.continueChannel(ctx, id, ContinueConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := rc.setVar(ctx, id, "X", "1"); !errors.Is(err, ErrGone) {
		t.Errorf("set after continue: %v, want ErrGone (409)", err)
	}
	if err := rc.continueChannel(ctx, id, ContinueConfig{}); !errors.Is(err, ErrGone) {
		t.Errorf("second continue: %v, want ErrGone (409)", err)
	}
	var se *StatusError
	bad := newRESTClient(sim.URL(), testUser, "wrong", 1)
	defer bad.close()
	if _, err := bad.channels(ctx); !errors.As(err, &se) || se.Code != 401 {
		t.Errorf("wrong password: %v", err)
	}
}

// A transport error never carries the query (caller data) into an error.
func TestRESTErrorsCarryNoValues(t *testing.T) {
	rc := newRESTClient("http://127.0.0.1:1", testUser, testPass, 1) // nothing listens on port 1
	defer rc.close()
	err := rc.setVar(context.Background(), "1.2", "CALLPOP_NAME", "Jan de Vries")
	if err == nil {
		t.Fatal("no error")
	}
	for _, leak := range []string{"Jan", "value=", testPass} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error %q leaks %q", err, leak)
		}
	}
}
