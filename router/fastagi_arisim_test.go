package router

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

// startARISim starts the ARI simulator for one test.
func startARISim(t *testing.T) *arisim.Server {
	t.Helper()
	sim, err := arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// ariVar reads a channel variable over ARI (GET /channels/{id}/variable).
func ariVar(t *testing.T, sim *arisim.Server, id, name string) (string, bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, sim.URL()+"/ari/channels/"+url.PathEscape(id)+"/variable?variable="+url.QueryEscape(name), nil)
	req.SetBasicAuth("callpop", "test-ari-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", false
	}
	var body struct {
		Value string `json:"value"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("GET variable %s: %s", name, resp.Status)
	}
	return body.Value, true
}

// Against the ARI simulator's AGI (res_agi and MSet as Asterisk 22 runs
// them), callpop's own session sets the whole decision with one EXEC MSet,
// no SET VARIABLE, and the channel then carries exactly the decision.
func TestFastAGIOnARISim(t *testing.T) {
	sim := startARISim(t)
	te := newTestEnv(t, testConfig(), nil, testBudget)
	addr := startAGI(t, te.router)
	for _, execFull := range []bool{false, true} {
		t.Run(fmt.Sprintf("AGIEXECFULL=%v", execFull), func(t *testing.T) {
			spec := arisim.CallSpec{CLI: "0209999999", CLIName: "x", ANI: "0209999999", DNIS: "0800123456"} // the hostile CRM record
			if execFull {
				spec.Vars = map[string]string{"AGIEXECFULL": "yes"}
			}
			id := sim.NewDialplanChannel(spec)
			want := expectedVars(t, te.router, call.Call{ID: id, CLI: "0209999999", ANI: "0209999999", DNIS: "0800123456"})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			set, err := sim.RunAGI(ctx, id, addr, "route")
			if err != nil {
				t.Fatal(err)
			}
			rec, _ := sim.Record(id)
			if len(rec.AGI) != 2 || rec.AGI[0] != "GET VARIABLE CALLERID(ani)" || !strings.HasPrefix(rec.AGI[1], "EXEC MSet ") {
				t.Fatalf("commands %q, want GET VARIABLE and one EXEC MSet", rec.AGI)
			}
			if len(set) != len(want) {
				t.Errorf("%d variables set, want %d: %q", len(set), len(want), set)
			}
			for _, v := range want {
				if set[v.Name] != v.Value {
					t.Errorf("MSet set %s = %q, want %q", v.Name, set[v.Name], v.Value)
				}
				// __NAME (inherited) is read back as NAME
				if got, ok := ariVar(t, sim, id, strings.TrimLeft(v.Name, "_")); !ok || got != v.Value {
					t.Errorf("%s reads %q (%v) over ARI, want %q", v.Name, got, ok, v.Value)
				}
			}
		})
	}
}

// serveSetVars answers each FastAGI session on a loopback listener with
// callpop's own agiSetVars of vars, with EXEC MSet or SET VARIABLE.
func serveSetVars(t *testing.T, r *Router, vars []call.Var, mset bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			a := &agiConn{conn: conn, rd: bufio.NewReaderSize(conn, agiMaxLine), timeout: 10 * time.Second}
			if _, err := a.readEnv(); err == nil {
				if res := r.agiSetVars(a, vars, mset); res != "ok" {
					t.Errorf("agiSetVars (mset %v): %s", mset, res)
				}
			}
			conn.Close()
		}
	}()
	return ln.Addr().String()
}

// Hostile values set by callpop's EXEC MSet on the simulator's channel are
// stored exactly as sent (and read back over ARI so, where JSON can carry
// them), and exactly as SET VARIABLE stores them,
// with and without AGIEXECFULL; nothing falls back to SET VARIABLE.
func TestFastAGIMSetHostileOnARISim(t *testing.T) {
	sim := startARISim(t)
	te := newTestEnv(t, testConfig(), nil, testBudget)
	vars := []call.Var{
		{Name: "CALLERID(name)", Value: `${SHELL(id)} "a,b" [c=d] (e\f)`},
		{Name: "__CALLPOP_INHERITED", Value: `a=b,c=d\`},
	}
	for i, v := range msetHostile {
		vars = append(vars, call.Var{Name: fmt.Sprintf("CALLPOP_V%d", i), Value: v})
	}
	msetAddr := serveSetVars(t, te.router, vars, true)
	setAddr := serveSetVars(t, te.router, vars, false)

	run := func(addr string, execFull bool) (string, arisim.Record) {
		spec := arisim.CallSpec{CLI: "0201234567", DNIS: "0800123456"}
		if execFull {
			spec.Vars = map[string]string{"AGIEXECFULL": "yes"}
		}
		id := sim.NewDialplanChannel(spec)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := sim.RunAGI(ctx, id, addr, "set"); err != nil {
			t.Fatal(err)
		}
		rec, _ := sim.Record(id)
		return id, rec
	}
	setID, setRec := run(setAddr, false)
	if len(setRec.AGI) != len(vars) {
		t.Fatalf("%d commands, want %d SET VARIABLE", len(setRec.AGI), len(vars))
	}
	for _, execFull := range []bool{false, true} {
		t.Run(fmt.Sprintf("AGIEXECFULL=%v", execFull), func(t *testing.T) {
			id, rec := run(msetAddr, execFull)
			if len(rec.AGI) != 1 || !strings.HasPrefix(rec.AGI[0], "EXEC MSet ") {
				t.Fatalf("commands %.200q, want one EXEC MSet", rec.AGI)
			}
			for _, v := range vars {
				name := strings.TrimLeft(v.Name, "_")
				got, ok := ariVar(t, sim, id, name)
				bySet, _ := ariVar(t, sim, setID, name)
				if !ok || got != bySet || rec.Vars[v.Name] != v.Value || setRec.Vars[v.Name] != v.Value {
					t.Errorf("%s: MSet stored %q (ARI %q, %v), SET VARIABLE %q (ARI %q), sent %q",
						v.Name, rec.Vars[v.Name], got, ok, setRec.Vars[v.Name], bySet, v.Value)
				}
				if utf8.ValidString(v.Value) && got != v.Value { // ARI's JSON carries text only
					t.Errorf("%s reads %q over ARI, sent %q", v.Name, got, v.Value)
				}
			}
		})
	}
}
