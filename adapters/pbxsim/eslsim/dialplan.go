package eslsim

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
)

// The dialplan part: `api|bgapi originate {vars}loopback/<exten>/<context>
// &park()` (as recorded in background_job.txt) creates the loopback pair;
// the -b leg runs Options.Dialplan, a FreeSWITCH XML dialplan subset:
// <context name>, <extension>, one <condition field="destination_number"
// expression>, and the actions set, socket (<addr> async full: the outbound
// socket conversation on this channel, then the dialplan goes on at the
// next 20 ms wake-up), curl (mod_curl's app: curl_response_data and
// curl_response_code), event (a CUSTOM event with the channel's headers) and
// hangup. ${strmicroepoch()} and ${uuid} expand at execution, as the rest do.

type xmlDialplan struct {
	Contexts []struct {
		Name       string `xml:"name,attr"`
		Extensions []struct {
			Name      string `xml:"name,attr"`
			Condition struct {
				Field      string `xml:"field,attr"`
				Expression string `xml:"expression,attr"`
				Actions    []struct {
					App  string `xml:"application,attr"`
					Data string `xml:"data,attr"`
				} `xml:"action"`
			} `xml:"condition"`
		} `xml:"extension"`
	} `xml:"context"`
}

type fsAction struct{ app, data string }

type fsExtension struct {
	match   *regexp.Regexp
	actions []fsAction
}

// fsDialplan is context → extensions in order.
type fsDialplan map[string][]fsExtension

func parseFSDialplan(text string) (fsDialplan, error) {
	dp := fsDialplan{}
	if strings.TrimSpace(text) == "" {
		return dp, nil
	}
	var x xmlDialplan
	if err := xml.Unmarshal([]byte(text), &x); err != nil {
		return nil, fmt.Errorf("eslsim: dialplan: %w", err)
	}
	for _, c := range x.Contexts {
		for _, e := range c.Extensions {
			if e.Condition.Field != "destination_number" {
				return nil, fmt.Errorf("eslsim: dialplan: extension %q: only destination_number conditions", e.Name)
			}
			re, err := regexp.Compile(e.Condition.Expression)
			if err != nil {
				return nil, fmt.Errorf("eslsim: dialplan: extension %q: %w", e.Name, err)
			}
			ext := fsExtension{match: re}
			for _, a := range e.Condition.Actions {
				ext.actions = append(ext.actions, fsAction{a.App, a.Data})
			}
			dp[c.Name] = append(dp[c.Name], ext)
		}
	}
	return dp, nil
}

// dialplanRuns tracks the -b legs running their dialplan, for Close.
type dialplanRuns struct {
	once sync.Once
	dp   fsDialplan
	err  error
	wg   sync.WaitGroup
	ctx  context.Context
	stop context.CancelFunc
}

func (s *sim) dialplan() (fsDialplan, error) {
	s.dpRuns.once.Do(func() {
		s.dpRuns.dp, s.dpRuns.err = parseFSDialplan(s.opts.Dialplan)
		s.dpRuns.ctx, s.dpRuns.stop = context.WithCancel(context.Background())
	})
	return s.dpRuns.dp, s.dpRuns.err
}

// stopDialplans ends the running dialplans and waits for them.
func (s *sim) stopDialplans() {
	s.dialplan()
	s.dpRuns.stop()
	s.dpRuns.wg.Wait()
}

// originate is the originate api command for loopback endpoints. Caller holds s.mu.
func (s *sim) originate(args string) string {
	dp, err := s.dialplan()
	if err != nil {
		return "-ERR " + err.Error() + "\n"
	}
	vars := map[string]string{}
	rest := strings.TrimSpace(args)
	if strings.HasPrefix(rest, "{") {
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n"
		}
		for _, kv := range separate(rest[1:end], ',', 256) {
			if n, v, ok := strings.Cut(kv, "="); ok {
				vars[n] = strings.Trim(v, "'")
			}
		}
		rest = rest[end+1:]
	}
	url, _, _ := strings.Cut(rest, " ")
	parts := strings.Split(strings.TrimPrefix(url, "loopback/"), "/")
	if !strings.HasPrefix(url, "loopback/") || parts[0] == "" {
		// The simulator dials no device: only loopback legs into its dialplan.
		return "-ERR CHAN_NOT_IMPLEMENTED\n"
	}
	exten, dctx := parts[0], "default"
	if len(parts) > 1 && parts[1] != "" {
		dctx = parts[1]
	}
	var actions []fsAction
	for _, e := range dp[dctx] {
		if e.match.MatchString(exten) {
			actions = e.actions
			break
		}
	}
	if actions == nil {
		return "-ERR NO_ROUTE_DESTINATION\n"
	}
	c := Caller{Number: vars["origination_caller_id_number"], Name: vars["origination_caller_id_name"], DNIS: exten, Context: dctx, Vars: vars}
	a, b := s.newChannel(c), s.newChannel(c)
	a.Parked, b.Parked = true, false
	s.add(a)
	s.add(b)
	s.dpRuns.wg.Add(1)
	go func() { // the -b leg's session thread: ends with its dialplan or Close
		defer s.dpRuns.wg.Done()
		s.runFSDialplan(s.dpRuns.ctx, b, actions)
		s.hangup(b.UUID, "NORMAL_CLEARING")
		s.hangup(a.UUID, "NORMAL_CLEARING")
	}()
	return "+OK " + a.UUID + "\n"
}

// runFSDialplan executes actions on ch until one hangs up or ctx ends.
func (s *sim) runFSDialplan(ctx context.Context, ch *channel, actions []fsAction) {
	for _, a := range actions {
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if ch.Dead {
			s.mu.Unlock()
			return
		}
		data := s.expand(ch, a.data)
		s.mu.Unlock()
		switch a.app {
		case "set":
			name, val, _ := strings.Cut(data, "=")
			s.mu.Lock()
			s.assign(ch, name, val, "execute set")
			s.mu.Unlock()
		case "socket":
			target := strings.Fields(data)
			if len(target) == 0 {
				continue
			}
			res, err := (&Outbound{sim: s, target: target[0]}).run(ctx, ch, nil)
			if err == nil {
				time.Sleep(time.Until(res.Resume)) // the parked thread's next wake-up
			}
		case "curl":
			code, body := fsCurl(ctx, strings.Fields(data))
			s.mu.Lock()
			s.assign(ch, "curl_response_code", strconv.Itoa(code), "execute curl")
			s.assign(ch, "curl_response_data", body, "execute curl")
			s.mu.Unlock()
		case "event":
			s.fireEvent(ch, data)
		case "hangup":
			return
		}
	}
}

// fsCurl is mod_curl's app: GET the URL (first argument), the body and the status.
func fsCurl(ctx context.Context, args []string) (int, string) {
	if len(args) == 0 {
		return 0, ""
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return 0, ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// fireEvent is the event app: "Event-Name=CUSTOM,Event-Subclass=x,k=v,…",
// the channel's headers added; to the inbound sessions subscribed.
func (s *sim) fireEvent(ch *channel, data string) {
	name, subclass := "CUSTOM", ""
	var extra []eslwire.Header
	for _, kv := range separate(data, ',', 256) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "Event-Name":
			name = v
		case "Event-Subclass":
			subclass = v
			extra = append(extra, eslwire.Header{Name: k, Value: eslwire.Encode(v)})
		default:
			extra = append(extra, eslwire.Header{Name: k, Value: eslwire.Encode(v)})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	body := s.eventBody(ch, name, extra...)
	frame := eslwire.AppendFrame(nil, []eslwire.Header{{Name: "Content-Type", Value: eslwire.TypeEventPlain}}, body)
	for ss := range s.sessions {
		if ss.bound == nil && ss.wants(name, subclass) {
			ss.send(frame)
		}
	}
}
