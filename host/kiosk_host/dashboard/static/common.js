// Shared by every page: the managers' token, live streams, DOM and time helpers.
"use strict";

const Kiosk = (() => {
  const TOKEN = "kiosk-dashboard.token";
  const WHO = "kiosk-dashboard.who";
  let skew = 0; // server clock minus this browser's, in seconds

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(node, children) {
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  // Keeps one element per item (by key) so that what a manager is typing survives updates.
  function keyed(container, items, key, create, update) {
    const old = new Map();
    for (const child of Array.from(container.children)) old.set(child.dataset.key, child);
    let previous = null;
    for (const item of items) {
      const k = String(key(item));
      let node = old.get(k);
      if (node) old.delete(k);
      else {
        node = create(item);
        node.dataset.key = k;
      }
      update(node, item);
      const at = previous ? previous.nextSibling : container.firstChild;
      if (node !== at) container.insertBefore(node, at);
      previous = node;
    }
    for (const node of old.values()) node.remove();
  }

  const token = () => localStorage.getItem(TOKEN) || "";
  const who = () => localStorage.getItem(WHO) || "";
  const now = () => Date.now() / 1000 + skew;

  async function request(method, url, body) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, error: `the dashboard cannot be reached (${err.message})` };
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    const error = response.ok ? null : (data && data.error) || `HTTP ${response.status}`;
    return { ok: response.ok, status: response.status, data, error };
  }

  const post = (url, body) => request("POST", url, body);

  function say(node, result, done) {
    node.classList.toggle("bad", !result.ok);
    node.textContent = result.ok ? done : (result.status ? `Refused (${result.status}): ` : "") + result.error;
  }

  // Whether this browser may change things: "read-only" (the dashboard has no token),
  // "none" (no token saved here), "refused" (the saved token is not the dashboard's),
  // "checking" or "ok". Buttons that need the token (class needs-token) are disabled unless
  // it may, and every .sign-in line says how to sign in.
  let access = "checking";
  const SIGN_IN = {
    "read-only": "This dashboard is read-only: it was started without a managers' token, so nothing can be changed here.",
    none: "Read-only in this browser: to mark cases fixed, close them or acknowledge alerts, open Manager access (top right) and enter the managers' token.",
    refused: "The token saved in this browser is not this dashboard's: open Manager access (top right) and enter the managers' token.",
  };

  const mayChange = () => access === "ok" || access === "checking";

  function applyAccess(root) {
    const allowed = mayChange();
    for (const node of (root || document).querySelectorAll(".needs-token")) {
      node.disabled = !allowed;
      if (allowed) node.removeAttribute("title");
      else node.title = "Needs the managers' token: see Manager access";
    }
    for (const line of document.querySelectorAll(".sign-in")) {
      line.hidden = allowed;
      if (allowed) continue;
      const open = el("button", { type: "button", class: "link", text: "Sign in" });
      open.addEventListener("click", openAccess);
      line.replaceChildren(SIGN_IN[access] || SIGN_IN.none, " ", access === "read-only" ? "" : open);
    }
    document.body.dataset.access = access;
  }

  function openAccess() {
    const details = document.getElementById("access");
    if (!details) return;
    details.open = true;
    document.getElementById("token").focus();
  }

  function setAccess(value) {
    access = value;
    applyAccess();
  }

  function setupAccess() {
    const form = document.getElementById("token-form");
    if (!form) return;
    const input = document.getElementById("token");
    const name = document.getElementById("who");
    const state = document.getElementById("token-state");
    input.value = token();
    name.value = who();
    const show = async () => {
      if (document.body.dataset.writable === "no") {
        state.textContent = "Read-only: the dashboard runs without a token.";
        setAccess("read-only");
        return;
      }
      if (!token()) {
        state.textContent = "No token saved: read-only.";
        setAccess("none");
        return;
      }
      setAccess("checking");
      const result = await request("GET", "/api/token");
      say(state, result, "Token accepted: changes are allowed.");
      // A dashboard out of reach says nothing about the token: the buttons stay usable.
      setAccess(result.ok ? "ok" : result.status === 401 || result.status === 403 ? "refused" : "checking");
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      localStorage.setItem(TOKEN, input.value.trim());
      localStorage.setItem(WHO, name.value.trim());
      show();
    });
    document.getElementById("token-forget").addEventListener("click", () => {
      localStorage.removeItem(TOKEN);
      input.value = "";
      show();
    });
    show();
  }

  // One server-sent-events stream; handlers by event name. Reconnects by itself.
  function live(url, handlers) {
    const badge = document.getElementById("live");
    const source = new EventSource(url);
    const mark = (text, cls) => { badge.textContent = text; badge.className = `live ${cls}`; };
    source.addEventListener("open", () => mark("live", "on"));
    source.addEventListener("error", () => mark("reconnecting…", "off"));
    source.addEventListener("clock", (event) => {
      skew = Number(event.data) - Date.now() / 1000;
      mark("live", "on");
    });
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => handle(JSON.parse(event.data)));
    }
    return source;
  }

  function zone(tz) {
    try {
      new Intl.DateTimeFormat("en-GB", { timeZone: tz });
      return tz;
    } catch (err) {
      return "UTC";
    }
  }

  function formatter(tz, options) {
    return new Intl.DateTimeFormat("en-GB", { timeZone: zone(tz), ...options });
  }

  function when(tz, unix) {
    if (unix === null || unix === undefined) return "–";
    return formatter(tz, {
      weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
    }).format(new Date(unix * 1000));
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return `${h}:${pad(m)}:${pad(s % 60)}`;
  }

  function ago(unix) {
    if (!unix) return "never";
    const s = Math.max(0, Math.round(now() - unix));
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }

  const pct = (share) => (share === null || share === undefined ? "–" : `${Math.round(share * 100)}%`);

  // Red for the lowest score to green for the highest.
  function scoreColour(score, scale) {
    const hue = Math.round((120 * (score - 1)) / Math.max(1, scale - 1));
    return `hsl(${hue}, 62%, 45%)`;
  }

  // A stretch of time in words: "45 s", "12 min", "3 h 5 min", "2 days 4 h".
  function span(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
    const d = Math.floor(h / 24);
    return h % 24 ? `${d} days ${h % 24} h` : `${d} days`;
  }

  document.addEventListener("DOMContentLoaded", setupAccess);
  return {
    el, svg, keyed, token, who, now, post, say, live, when, duration, ago, span, pct, scoreColour,
    applyAccess, mayChange,
  };
})();
