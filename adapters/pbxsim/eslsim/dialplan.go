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
// curl_response_code), multiset (mod_dptools: "a=1 b=2", or "^^<d>a=1<d>b=2"
// with its own delimiter; an empty value unsets), cidlookup (mod_cidlookup
// with a url only: Options.CIDLookupURL), event (a CUSTOM event with the
// channel's headers) and hangup. ${strmicroepoch()}, ${uuid} and the
// ${curl(url [timeout <s>])} API (mod_curl: the body whatever the status, ""
// when the request fails) expand at execution, as the rest do.

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
		data, ok := s.expandDialplan(ctx, ch, a.data)
		if !ok {
			return
		}
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
		case "multiset":
			s.multiset(ch, data)
		case "cidlookup":
			s.cidlookup(ctx, ch, data)
		case "event":
			s.fireEvent(ch, data)
		case "bridge", "callcenter":
			s.ringFromDialplan(ch, a.app, data)
			return
		case "hangup":
			return
		}
	}
}

// expandDialplan expands an action's data on the session thread: the
// channel's ${…} under s.mu, each ${curl(…)} API call outside it (FreeSWITCH
// runs it on the channel's own thread). false when the channel is gone.
func (s *sim) expandDialplan(ctx context.Context, ch *channel, data string) (string, bool) {
	done := 0 // data[:done] is expanded
	for {
		loc := curlRe.FindStringSubmatchIndex(data[done:])
		s.mu.Lock()
		if ch.Dead {
			s.mu.Unlock()
			return "", false
		}
		if loc == nil {
			data = data[:done] + s.expand(ch, data[done:])
			s.mu.Unlock()
			return data, true
		}
		start, end := done+loc[0], done+loc[1]
		args := s.expand(ch, data[done+loc[2]:done+loc[3]])
		ch.Expansions = append(ch.Expansions, "curl:"+args)
		s.stats.Expansions++
		s.mu.Unlock()
		body := fsCurlAPI(ctx, args)
		data = data[:start] + body + data[end:]
		done = start + len(body)
	}
}

// curlRe is a ${curl(…)} call whose argument may hold ${var}s (no deeper nesting).
var curlRe = regexp.MustCompile(`\$\{curl\(((?:[^{}()]|\$\{[^{}]*\})*)\)\}`)

// fsCurlAPI is mod_curl's API: `url [timeout <s>] …`, a GET answering the
// body whatever the status, "" when it fails.
func fsCurlAPI(ctx context.Context, args string) string {
	f := strings.Fields(args)
	if len(f) == 0 {
		return ""
	}
	timeout := 10 * time.Second
	for i := 1; i+1 < len(f); i++ {
		if n, err := strconv.Atoi(f[i+1]); f[i] == "timeout" && err == nil && n > 0 {
			timeout = time.Duration(n) * time.Second
		}
	}
	_, body := fsGet(ctx, f[0], timeout, "freeswitch-curl/1.0")
	return body
}

// multiset is mod_dptools' multiset: set each name=value of the list.
func (s *sim) multiset(ch *channel, data string) {
	delim := " "
	if len(data) >= 3 && strings.HasPrefix(data, "^^") {
		delim, data = data[2:3], data[3:]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kv := range strings.Split(data, delim) {
		if name, val, _ := strings.Cut(kv, "="); name != "" {
			s.assign(ch, name, val, "execute multiset")
		}
	}
}

// cidlookup is mod_cidlookup's app with only a url configured: the number
// (its argument, else the caller's) kept to its digits, the url expanded
// with ${caller_id_number} and global variables alone (not the channel's),
// GET within curl-timeout (2 s); a body other than "", " ", UNKNOWN or
// UNAVAILABLE becomes the caller ID name, else the name is UNKNOWN.
func (s *sim) cidlookup(ctx context.Context, ch *channel, data string) {
	num := strings.Fields(data)
	s.mu.Lock()
	number := s.lookup(ch, "caller_id_number")
	if len(num) > 0 {
		number = num[0]
	}
	number = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, number)
	url := expRe.ReplaceAllStringFunc(s.opts.CIDLookupURL, func(m string) string {
		if n := expRe.FindStringSubmatch(m)[1]; n != "caller_id_number" {
			return s.globals[n]
		}
		return number
	})
	s.mu.Unlock()
	name, src := "UNKNOWN", "UNKNOWN"
	if s.opts.CIDLookupURL != "" {
		_, body := fsGet(ctx, url, 2*time.Second, "freeswitch-cidlookup/1.0")
		if body != "" && body != " " && !strings.EqualFold(body, "UNKNOWN") && !strings.EqualFold(body, "UNAVAILABLE") {
			name, src = body, "url"
		}
	}
	if strings.Contains(name, "${") {
		return // "Invalid CID data … contains a variable": nothing set
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assign(ch, "original_caller_id_name", s.lookup(ch, "caller_id_name"), "execute cidlookup")
	s.assign(ch, "cidlookup_source", src, "execute cidlookup")
	s.assign(ch, "cidlookup_area", "UNKNOWN", "execute cidlookup")
	for i := range ch.headers { // the caller profile's name
		if ch.headers[i].Name == "Caller-Caller-ID-Name" {
			ch.headers[i].Value = eslwire.Encode(name)
		}
	}
}

// fsCurl is mod_curl's app: GET the URL (first argument), the body and the status.
func fsCurl(ctx context.Context, args []string) (int, string) {
	if len(args) == 0 {
		return 0, ""
	}
	return fsGet(ctx, args[0], 10*time.Second, "freeswitch-curl/1.0")
}

// fsGet is libcurl's GET as FreeSWITCH's modules use it: the status and at most 1 MiB of body.
func fsGet(ctx context.Context, url string, timeout time.Duration, agent string) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, ""
	}
	req.Header.Set("User-Agent", agent)
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
