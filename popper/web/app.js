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
    retracted: "Answered by a colleague", ended: "Ended"
  };
  var FIXED = { id: 1, name: 1, tier: 1, language: 1, url: 1, open_tickets: 1, recent_interactions: 1, topics: 1 };

  var $ = function (id) { return document.getElementById(id); };
  // The agent's token lives in an HttpOnly cookie the server set; the page
  // knows only who is signed in and until when (from the server).
  var es = null, agent = "", exp = 0, lastId = "", retry = 0, retryTimer = 0;
  var seen = {}, live = {}, recent = [];

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
    if (p.state === "ringing" || p.state === "answered") {
      live[p.call_id] = p;
      if (p.state === "ringing") notify(p);
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
    if (p.customer && p.customer.name) return p.customer.name;
    if (p.match === "anonymous") return "Withheld number";
    if (p.match === "miss") return "Unknown caller";
    if (p.match === "timeout" || p.match === "error") return "Caller (CRM unavailable)";
    return "Caller";
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
    var name = displayName(p);
    n.querySelector(".pop-name").textContent = name;
    n.querySelector(".avatar").textContent = (p.customer && name ? name.trim().charAt(0) : "?").toUpperCase();
    n.querySelector(".number").textContent = p.number ? p.number : (p.privacy ? "Number withheld" : "");

    var badges = n.querySelector(".badges");
    if (isVIP(p)) badges.appendChild(badge("VIP", "vip", "vip"));
    if (c.tier) badges.appendChild(badge(c.tier, "tier", "tier"));
    if (c.language) badges.appendChild(badge(String(c.language).toUpperCase(), "lang", "language"));
    (p.flags || []).forEach(function (f) {
      if (f === "vip") return;
      var b = FLAG_BADGES[f];
      badges.appendChild(b ? badge(b[0], b[1], f) : badge(f.replace(/_/g, " "), "plain", f));
    });
    if (p.match === "miss") badges.appendChild(badge("New caller", "plain", "miss"));

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

    var nav = n.querySelector(".links");
    (p.links || []).forEach(function (l) {
      var href = safeHref(l.url);
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
      li.appendChild(el("span", "r-state", STATE_TEXT[p.state] || p.state));
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
      var n = new Notification("Incoming call: " + displayName(p), {
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
