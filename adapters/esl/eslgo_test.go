// eslgo v1.5.1's Conn.Close races with its own receive loop (the race
// detector reports a concurrent map write in Conn.close), so this test runs
// without -race only.

//go:build !race

package esl

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/percipia/eslgo"
	"github.com/percipia/eslgo/command"

	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
)

// Why callpop does not send commands through eslgo v1.5.1's Conn: replies are
// matched to commands only by order, so a command that times out on the client
// leaves its reply to be taken by the next command. This test pins that
// behaviour against the simulator (TestLateReplyDoesNotShift is callpop's own
// connection doing the same sequence correctly). If a later eslgo fixes it,
// this test fails and the choice can be revisited.
func TestEslgoShiftsLateReplies(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword, APIDelay: func(cmd, args string) time.Duration {
		if strings.HasSuffix(args, " slow") {
			return 300 * time.Millisecond
		}
		return 0
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	id := sim.ParkWithoutEvent(eslsim.Caller{Number: "0201234567", Context: "other", Vars: map[string]string{"slow": "SLOW", "fast": "FAST"}})
	opts := eslgo.DefaultInboundOptions
	opts.Password = testPassword
	opts.Logger = eslgo.NilLogger{}
	conn, err := opts.Dial(sim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = conn.SendCommand(short, command.API{Command: "uuid_getvar", Arguments: id + " slow"})
	cancel()
	if err == nil {
		t.Fatal("the slow command did not time out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := conn.SendCommand(ctx, command.API{Command: "uuid_getvar", Arguments: id + " fast"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Body); got != "SLOW" {
		t.Fatalf("eslgo gave the fast command %q; the shift this adapter works around is gone", got)
	}
}
