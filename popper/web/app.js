// callpop agent panel. Everything that comes from a CRM or a caller is put
// on the page with textContent only, and links must be http(s).
(function () {
  "use strict";

  var FLAG_BADGES = {
    fraud: ["Fraud suspect", "bad"], fraud_suspect: ["Fraud suspect", "bad"],
    ani_verified: ["ANI verified", "good"], region_mismatch: ["Region mismatch", "warn"],
    vip: null
  };
  var STATE_TEXT = {
    ringing: "Ringing", answered: "On call",
    retracted: "Answered by a colleague", ended: "Ended", offered: "Assigned to you"
  };
  // The channel a contact came in by (a call's is voice: no badge).
  var CHANNEL_TEXT = { chat: "Chat", email: "E-mail", sms: "SMS", social: "Social", callback: "Callback", other: "Other channel" };
  var FIXED = { id: 1, name: 1, tier: 1, language: 1, url: 1, open_tickets: 1, recent_interactions: 1, topics: 1, lists: 1 };
  var LIST_TITLES = { history: "History", tickets: "Tickets", orders: "Orders" };
  var WHEN_KEYS = ["at", "date", "created", "updated", "time"];
  var TEXT_KEYS = ["summary", "subject", "title", "topic", "text", "note", "description", "name"];
  var STATUS_KIND = {
    open: "warn", new: "warn", pending: "warn", waiting: "warn", escalated: "bad", urgent: "bad",
    closed: "good", resolved: "good", done: "good", solved: "good"
  };

  var $ = function (id) { return document.getElementById(id); };
  // The agent's token lives in an HttpOnly cookie the server set; the page
  // knows only who is signed in and until when (from the server).
  var es = null, agent = "", exp = 0, lastId = "", retry = 0, retryTimer = 0;
  var seen = {}, live = {}, recent = [];
  // What the agent did on a call's card (a candidate picked, actions
  // pressed and their results), kept across re-renders.
  var ui = {};

  function uiOf(callId) {
    if (!ui[callId]) ui[callId] = { chosen: null, results: {}, pickError: "" };
    return ui[callId];
  }

  function safeHref(u) {
    try {
      var x = new URL(u);
      return (x.protocol === "https:" || x.protocol === "http:") ? x.href : "";
    } catch (e) { return ""; }
  }

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  function setConn(state, text) {
    $("conn").dataset.state = state;
    $("conn-text").textContent = text;
  }

  function showLogin(msg) {
    if (es) { es.close(); es = null; }
    clearTimeout(retryTimer);
    $("workspace").hidden = true;
    $("who").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    var e = $("login-error");
    e.hidden = !msg;
    e.textContent = msg || "";
    setConn("idle", "Not connected");
  }

  function start(a, expMs) {
    if (expMs <= Date.now()) { showLogin("Your token has expired; sign in again."); return; }
    agent = a; exp = expMs;
    $("agent-id").textContent = agent;
    $("who").hidden = false;
    $("logout").hidden = false;
    $("login").hidden = true;
    $("workspace").hidden = false;
    if ("Notification" in window && Notification.permission === "default") $("notify").hidden = false;
    connect();
  }

  function connect() {
    if (es) es.close();
    if (exp <= Date.now()) { showLogin("Your token has expired; sign in again."); return; }
    setConn("connecting", retry ? "Reconnecting…" : "Connecting…");
    var url = "/v1/agents/" + encodeURIComponent(agent) + "/pops"; // the session cookie goes along
    if (lastId) url += "?last_event_id=" + encodeURIComponent(lastId);
    es = new EventSource(url);
    es.onopen = function () { retry = 0; setConn("live", "Live"); };
    es.addEventListener("pop", function (ev) {
      var p;
      try { p = JSON.parse(ev.data); } catch (e) { return; }
      if (ev.lastEventId) lastId = ev.lastEventId;
      handle(p);
    });
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        // The server refused (401/403) or went away: probe once, then back off.
        es.close(); es = null;
        if (exp <= Date.now()) { showLogin("Your token has expired; sign in again."); return; }
        retry++;
        var wait = Math.min(30000, 1000 * Math.pow(2, Math.min(retry, 5)));
        setConn("down", "Disconnected — retrying");
        retryTimer = setTimeout(probeThenConnect, wait);
      } else {
        setConn("connecting", "Reconnecting…");
      }
    };
  }

  function probeThenConnect() {
    fetch("/v1/agents/" + encodeURIComponent(agent) + "/pops", { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401 || r.status === 403) { showLogin("The server refused this token; sign in again."); return; }
      if (r.body && r.body.cancel) r.body.cancel();
      connect();
    }, function () { connect(); });
  }

  function handle(p) {
    if (!p || !p.call_id || seen[p.id]) return;
    seen[p.id] = 1;
    if (p.state === "ringing" || p.state === "answered" || p.state === "offered") {
      live[p.call_id] = p;
      if (p.state === "ringing" || p.state === "offered") notify(p);
    } else {
      delete live[p.call_id];
    }
    var i;
    for (i = 0; i < recent.length; i++) if (recent[i].call_id === p.call_id) break;
    if (i < recent.length) recent.splice(i, 1);
    recent.unshift(p);
    if (recent.length > 50) recent.length = 50;
    render();
  }

  function displayName(p) {
    var u = ui[p.call_id];
    if (u && u.chosen && u.chosen.name) return u.chosen.name;
    if (p.customer && p.customer.name) return p.customer.name;
    if (isContact(p)) {
      // A chat, mail, SMS or message: the name and address the sender gave.
      if (p.network_name) return p.network_name;
      if (p.email) return p.email;
      if (p.number) return p.number;
      if (p.match === "timeout" || p.match === "error") return "Contact (CRM unavailable)";
      return "Anonymous contact";
    }
    if (p.match === "anonymous") return "Withheld number";
    // The name the network gave ("Unknown caller" only when there is none);
    // the server never sends it for a caller who asked for privacy.
    if (p.network_name) return p.network_name;
    if (p.match === "miss") return "Unknown caller";
    if (p.match === "timeout" || p.match === "error") return "Caller (CRM unavailable)";
    return "Caller";
  }

  // isContact: a pop of POST /v1/contacts (not a call, not a callback).
  function isContact(p) {
    return !!p.channel && p.channel !== "voice" && p.channel !== "callback";
  }

  function channelText(p) {
    return p.channel && p.channel !== "voice" ? (CHANNEL_TEXT[p.channel] || CHANNEL_TEXT.other) : "";
  }

  // post asks callpop to do something for a pop; the session cookie goes
  // along, and the answer is JSON (or an error text).
  function post(path, body) {
    return fetch(path, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.text().then(function (t) {
        var j = null;
        try { j = JSON.parse(t); } catch (e) { j = null; }
        return { status: r.status, json: j, text: t };
      });
    });
  }

  function whenOf(x) {
    for (var i = 0; i < WHEN_KEYS.length; i++) {
      var v = x[WHEN_KEYS[i]];
      if (typeof v === "string" || typeof v === "number") {
        var d = new Date(v);
        if (!isNaN(d)) return { key: WHEN_KEYS[i], value: v, time: d.getTime() };
      }
    }
    return null;
  }

  function textOf(x) {
    for (var i = 0; i < TEXT_KEYS.length; i++) {
      var v = x[TEXT_KEYS[i]];
      if (v !== undefined && v !== null && v !== "" && typeof v !== "object") return String(v);
    }
    return "";
  }

  // timelineItem is one item of a customer list: when, a status badge,
  // what, and its link when it has an http(s) one.
  function timelineItem(name, x) {
    var li = el("li", "tl-item");
    li.dataset.list = name;
    var w = whenOf(x);
    li.appendChild(el("span", "tl-when", w ? fmtWhen(w.value) : ""));
    var body = el("div", "tl-body");
    var head = el("div", "tl-head");
    if (x.status !== undefined && x.status !== null && x.status !== "" && typeof x.status !== "object") {
      var st = String(x.status);
      var b = el("span", "badge tl-status " + (STATUS_KIND[st.toLowerCase()] || "plain"), st);
      b.dataset.status = st.toLowerCase();
      head.appendChild(b);
    }
    var meta = [x.id, x.channel, x.agent].filter(function (v) { return v !== undefined && v !== null && v !== "" && typeof v !== "object"; }).join(" · ");
    if (meta) head.appendChild(el("span", "meta", meta));
    if (head.childNodes.length) body.appendChild(head);
    body.appendChild(el("span", "tl-text", textOf(x)));
    li.appendChild(body);
    var href = safeHref(x.url || x.link || "");
    if (href) {
      var a = el("a", "tl-link", "Open");
      a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer";
      li.appendChild(a);
    }
    return li;
  }

  // timeline renders customer.lists: one short list each (history first,
  // then tickets, then the others by name), newest first.
  function timeline(n, lists) {
    var box = n.querySelector(".lists");
    if (!lists || typeof lists !== "object") return;
    var names = Object.keys(lists).filter(function (k) { return Array.isArray(lists[k]) && lists[k].length; });
    var rank = function (k) { return k === "history" ? 0 : (k === "tickets" ? 1 : 2); };
    names.sort(function (a, b) { return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0); });
    names.forEach(function (name) {
      var items = lists[name].filter(function (x) { return x && typeof x === "object"; }).map(function (x, i) {
        var w = whenOf(x);
        return { x: x, t: w ? w.time : -Infinity, i: i };
      });
      items.sort(function (a, b) { return (b.t - a.t) || (a.i - b.i); });
      var sec = el("section", "tl");
      sec.dataset.list = name;
      sec.appendChild(el("h4", "", LIST_TITLES[name] || name.replace(/_/g, " ")));
      var ul = el("ul");
      items.slice(0, 6).forEach(function (it) { ul.appendChild(timelineItem(name, it.x)); });
      sec.appendChild(ul);
      if (items.length > 6) sec.appendChild(el("p", "muted small", "and " + (items.length - 6) + " more in the CRM"));
      box.appendChild(sec);
    });
    box.hidden = names.length === 0;
  }

  // pickList shows the customers sharing the number; the agent's pick goes
  // to callpop (and on to the CRM's webhook as a chosen event).
  function pickList(n, p) {
    var cands = Array.isArray(p.candidates) ? p.candidates : [];
    if (p.match !== "multiple" || !cands.length) return;
    var u = uiOf(p.call_id);
    var current = u.chosen ? u.chosen.id : (p.customer && p.customer.id);
    var sec = n.querySelector(".pick");
    sec.querySelector("h4").textContent = cands.length + " customers share this number";
    var ul = sec.querySelector("ul");
    cands.forEach(function (c, i) {
      if (!c || typeof c !== "object") return;
      var li = el("li", "cand");
      li.dataset.candidate = String(c.id);
      var isCur = String(c.id) === String(current);
      if (isCur) li.classList.add("current");
      var who = el("div", "cand-who");
      who.appendChild(el("span", "cand-name", c.name || c.id));
      if (c.tier) who.appendChild(el("span", "badge tier", c.tier));
      if (i === 0 && !u.chosen) who.appendChild(el("span", "cand-note", "best match"));
      if (u.chosen && isCur) who.appendChild(el("span", "cand-note chosen", "chosen"));
      li.appendChild(who);
      var href = safeHref(c.url || "");
      if (href) {
        var a = el("a", "cand-link", "CRM");
        a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer";
        li.appendChild(a);
      } else {
        li.appendChild(el("span", "cand-nolink"));
      }
      var btn = el("button", "pick-btn", isCur && u.chosen ? "Chosen" : "This caller");
      btn.type = "button";
      btn.disabled = !!(u.chosen && isCur);
      btn.addEventListener("click", function () { choose(p, c, btn); });
      li.appendChild(btn);
      ul.appendChild(li);
    });
    var res = sec.querySelector(".pick-result");
    res.textContent = u.pickError || "";
    res.hidden = !u.pickError;
    sec.hidden = false;
  }

  function choose(p, c, btn) {
    btn.disabled = true;
    var u = uiOf(p.call_id);
    post("/v1/pops/" + encodeURIComponent(p.id) + "/choice", { id: String(c.id) }).then(function (r) {
      if (r.status === 200 && r.json && r.json.chosen) {
        u.chosen = r.json.chosen; u.pickError = "";
      } else {
        u.pickError = "Could not send the choice: " + (r.json && r.json.error ? r.json.error : (r.text || String(r.status))).trim();
      }
      render();
    }, function () { u.pickError = "Could not send the choice: callpop did not answer"; render(); });
  }

  // actionButtons shows a button per one-click action and the last result
  // of each; callpop sends the request, the browser holds no CRM key.
  function actionButtons(n, p) {
    var acts = Array.isArray(p.actions) ? p.actions : [];
    if (!acts.length) return;
    var u = uiOf(p.call_id);
    var box = n.querySelector(".actions");
    var bar = box.querySelector(".action-buttons");
    var out = box.querySelector(".action-results");
    acts.forEach(function (a) {
      if (!a || !a.name) return;
      var r = u.results[a.name];
      var btn = el("button", "act-btn", a.label || a.name);
      btn.type = "button";
      btn.dataset.action = a.name;
      btn.disabled = !!(r && r.pending);
      btn.addEventListener("click", function () { press(p, a); });
      bar.appendChild(btn);
      if (r) {
        var li = el("li", "action-result " + (r.pending ? "pending" : r.ok ? "ok" : "failed"));
        li.dataset.action = a.name;
        li.appendChild(el("span", "ar-label", a.label || a.name));
        li.appendChild(el("span", "ar-text", r.text));
        out.appendChild(li);
      }
    });
    box.hidden = false;
  }

  function press(p, a) {
    var u = uiOf(p.call_id);
    u.results[a.name] = { pending: true, text: "sending…" };
    render();
    post("/v1/pops/" + encodeURIComponent(p.id) + "/actions/" + encodeURIComponent(a.name), {}).then(function (r) {
      var j = r.json || {};
      if (j.ok) u.results[a.name] = { ok: true, text: "done" + (j.status ? " (" + j.status + ")" : "") };
      else u.results[a.name] = { ok: false, text: "failed: " + (j.error || (r.text || String(r.status)).trim()) };
      render();
    }, function () { u.results[a.name] = { ok: false, text: "failed: callpop did not answer" }; render(); });
  }

  // VIP is the router's decision (router.flags.vip_tiers or a rule), never a
  // guess from the tier's name.
  function isVIP(p) {
    return (p.flags || []).indexOf("vip") >= 0;
  }

  function fmtTime(s) {
    var d = new Date(s);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function fmtWhen(s) {
    var d = new Date(s);
    if (isNaN(d)) return "";
    if (d.toDateString() === new Date().toDateString()) return fmtTime(s);
    return d.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + fmtTime(s);
  }

  function listItem(x) {
    if (x === null || x === undefined) return null;
    if (typeof x !== "object") return el("li", "", x);
    var li = el("li");
    var head = [x.id, x.channel, x.status, x.at ? fmtWhen(x.at) : ""].filter(Boolean).join(" · ");
    if (head) li.appendChild(el("span", "meta", head));
    li.appendChild(el("span", "", x.subject || x.summary || x.title || x.topic || ""));
    return li;
  }

  function badge(text, kind, name) {
    var b = el("span", "badge " + kind, text);
    b.dataset.badge = name;
    return b;
  }

  function card(p) {
    var n = $("card-tpl").content.firstElementChild.cloneNode(true);
    var c = p.customer || {};
    n.dataset.call = p.call_id;
    n.dataset.state = p.state;
    n.classList.add("state-" + p.state);
    if (isVIP(p)) n.classList.add("vip");
    n.querySelector(".state").textContent = STATE_TEXT[p.state] || p.state;
    n.querySelector(".queue").textContent = p.queue ? "Queue " + p.queue : "";
    n.querySelector(".at").textContent = fmtTime(p.at);
    var u = ui[p.call_id];
    // Once the agent picked another candidate, the card is that customer's.
    if (u && u.chosen) c = { id: u.chosen.id, name: u.chosen.name, tier: u.chosen.tier, url: u.chosen.url };
    var name = displayName(p);
    n.querySelector(".pop-name").textContent = name;
    n.querySelector(".avatar").textContent = ((p.customer || p.network_name) && name ? name.trim().charAt(0) : "?").toUpperCase();
    n.dataset.channel = p.channel || "voice";
    var reach = [p.number, p.email].filter(Boolean).join(" · ");
    n.querySelector(".number").textContent = reach ? reach : (p.privacy ? "Number withheld" : "");
    if (p.subject) {
      var subj = n.querySelector(".subject");
      subj.querySelector(".subject-label").textContent = p.channel === "callback" ? "Note" : "Subject";
      subj.querySelector(".subject-text").textContent = p.subject;
      subj.hidden = false;
    }
    // The network's name beside the CRM's when they may differ (a miss
    // shows it as the name, a multiple match under the pick list's choice).
    var net = n.querySelector(".network");
    if (p.network_name && p.match !== "hit") {
      var known = p.customer || (u && u.chosen);
      net.textContent = isContact(p) ? (known ? "Name given: " + p.network_name : "Name given (not in the CRM)") :
        (known ? "Network name: " : "Name from the network (not in the CRM)") + (known ? p.network_name : "");
      net.hidden = false;
    }

    var badges = n.querySelector(".badges");
    var ch = channelText(p);
    if (ch) badges.appendChild(badge(ch, "channel", "channel"));
    if (isVIP(p)) badges.appendChild(badge("VIP", "vip", "vip"));
    if (c.tier) badges.appendChild(badge(c.tier, "tier", "tier"));
    if (c.language) badges.appendChild(badge(String(c.language).toUpperCase(), "lang", "language"));
    (p.flags || []).forEach(function (f) {
      if (f === "vip") return;
      var b = FLAG_BADGES[f];
      badges.appendChild(b ? badge(b[0], b[1], f) : badge(f.replace(/_/g, " "), "plain", f));
    });
    if (p.match === "miss") badges.appendChild(badge(isContact(p) ? "New contact" : "New caller", "plain", "miss"));
    if (p.match === "multiple") badges.appendChild(badge("Shared number", "warn", "multiple"));

    var facts = n.querySelector(".facts");
    function fact(k, v) {
      if (v === undefined || v === null || v === "") return;
      facts.appendChild(el("dt", "", k));
      facts.appendChild(el("dd", "", v));
    }
    if (c.id) fact("Customer", c.id);
    Object.keys(c).sort().forEach(function (k) {
      var v = c[k];
      if (FIXED[k] || v === null || typeof v === "object") return;
      fact(k.replace(/_/g, " "), v);
    });
    if (p.priority) fact("Priority", p.priority);

    [["open_tickets", ".tickets"], ["recent_interactions", ".interactions"]].forEach(function (pair) {
      var items = c[pair[0]];
      if (!Array.isArray(items) || !items.length) return;
      var sec = n.querySelector(pair[1]);
      var ul = sec.querySelector("ul");
      items.slice(0, 8).forEach(function (x) { var li = listItem(x); if (li) ul.appendChild(li); });
      sec.hidden = false;
    });

    timeline(n, c.lists); // a chosen candidate brings no lists: they were the best one's
    pickList(n, p);
    actionButtons(n, p);

    var nav = n.querySelector(".links");
    (p.links || []).forEach(function (l) {
      var href = safeHref(l.url);
      // The CRM record link follows the agent's pick among candidates.
      if (l.name === "crm" && u && u.chosen) href = safeHref(u.chosen.url || "");
      if (!href) return;
      var a = el("a", "action", l.label || l.name);
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.dataset.link = l.name;
      nav.appendChild(a);
    });
    return n;
  }

  function render() {
    var liveEl = $("live");
    liveEl.textContent = "";
    var ids = Object.keys(live).sort(function (a, b) { return live[b].id - live[a].id; });
    ids.forEach(function (id) { liveEl.appendChild(card(live[id])); });
    $("idle").hidden = ids.length > 0;

    var ol = $("recent");
    ol.textContent = "";
    var today = new Date().toDateString();
    var shown = 0;
    recent.forEach(function (p) {
      if (new Date(p.at).toDateString() !== today) return;
      var li = el("li", "recent-item state-" + p.state);
      li.dataset.call = p.call_id;
      li.appendChild(el("span", "r-time", fmtTime(p.at)));
      li.appendChild(el("span", "r-name", displayName(p)));
      var ch = channelText(p);
      li.appendChild(el("span", "r-state", (ch ? ch + " · " : "") + (STATE_TEXT[p.state] || p.state)));
      var first = (p.links || []).map(function (l) { return safeHref(l.url); }).filter(Boolean)[0];
      if (first) {
        var a = el("a", "r-link", "Open");
        a.href = first; a.target = "_blank"; a.rel = "noopener noreferrer";
        li.appendChild(a);
      }
      ol.appendChild(li);
      shown++;
    });
    $("recent-empty").hidden = shown > 0;
  }

  function notify(p) {
    if (!("Notification" in window) || Notification.permission !== "granted" || !document.hidden) return;
    try {
      var what = p.state === "offered" ? "New " + (channelText(p) || "contact").toLowerCase() + ": " : "Incoming call: ";
      var n = new Notification(what + displayName(p), {
        body: [p.customer && p.customer.tier, p.queue].filter(Boolean).join(" · "), tag: p.call_id
      });
      n.onclick = function () { window.focus(); n.close(); };
    } catch (e) { /* not allowed here */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("notify").addEventListener("click", function () {
      Notification.requestPermission().then(function () { $("notify").hidden = true; });
    });
    // The server's reason when it refused a token; a refused token still in
    // the address is taken out of it (a good one was exchanged for the
    // cookie and redirected away by the server).
    var refused = $("login-error").textContent.trim();
    var q = new URLSearchParams(location.search);
    if (q.has("token")) {
      q.delete("token");
      history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
    }
    var signedIn = document.body.dataset.agent, until = parseInt(document.body.dataset.exp, 10) * 1000;
    if (refused) showLogin(refused); else if (signedIn && until) start(signedIn, until); else showLogin("");
  });
})();
