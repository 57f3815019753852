// One store's page: figures, charts, cases with their countdown, alerts, recognition, kiosks.
"use strict";

(() => {
  const { el, keyed, pct, when, duration, ago, span } = Kiosk;
  const body = document.body.dataset;
  const store = body.store;
  const tz = body.tz;
  const low = Number(body.low);
  const api = `/api/stores/${encodeURIComponent(store)}`;
  const NEAR_S = Number(body.near) || 4 * 3600; // "deadline near" from here on
  const STATE_WORDS = {
    open: "open: waiting for staff",
    fixed: "fixed: waiting for the customer",
    wow: "wow: the customer said Wow!",
    recovered: "recovered: made right in time",
    breached: "breached: the window closed",
    unconfirmed: "unconfirmed: no verdict in time",
  };

  const $ = (id) => document.getElementById(id);
  const set = (id, text) => { $(id).textContent = text; };

  function summary(s) {
    set("f-satisfaction", pct(s.satisfaction));
    set("f-ratings", s.ratings);
    set("f-breakdowns", s.breakdowns);
    set("f-open", s.open_cases);
    set("f-overdue", s.overdue_cases);
    set("f-recovered", s.recovered_in_time);
    $("f-overdue").classList.toggle("bad", s.overdue_cases > 0);
    const outside = s.outside_hours ? ` ${s.outside_hours} press${s.outside_hours === 1 ? "" : "es"} outside opening hours are kept but not counted.` : "";
    set("f-note", `${s.day} (${s.tz}).${outside}`);
    Charts.byScore($("by-score"), s.counts, s.scale, low);
  }

  function report(r) {
    const today = r.days[r.days.length - 1];
    if (today) Charts.byHour($("by-hour"), today.ratings_by_hour, r.scale);
    Charts.heatmap($("heatmap"), r.days);
    risk();
  }

  // -- next week's riskiest hours ----------------------------------------------------------

  // Eight weeks hardly move with one more rating: fetched apart from the live stream, when
  // the week's report changes, at most once a minute.
  const RISK_EVERY_MS = 60_000;
  let riskAt = -Infinity;

  async function risk() {
    if (Date.now() - riskAt < RISK_EVERY_MS) return;
    riskAt = Date.now();
    let view;
    try {
      const response = await fetch(`${api}/risk`, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      view = await response.json();
    } catch (err) {
      riskAt = -Infinity; // asked again with the next report
      set("risk-summary", `Next week's forecast cannot be read now (${err.message}).`);
      return;
    }
    const items = view.top.map((t) => {
      const [hours, ...rest] = t.reason.split(": ");
      return el("li", { class: "risky", "data-weekday": t.weekday, "data-hour": t.hour },
        el("span", { class: "when", text: hours }), `: ${rest.join(": ")}`);
    });
    $("risk").replaceChildren(...items);
    $("risk").hidden = items.length === 0;
    set("risk-note", `${view.from} to ${view.to}, from ${view.weeks} week${view.weeks === 1 ? "" : "s"} of history`);
    set("risk-summary", view.summary);
    $("risk-summary").title = view.method;
  }

  // -- cases -----------------------------------------------------------------------------

  // The store's roster, rendered into the page: the fix form shows names and sends ids.
  const CHOICES = $("staff-choices").content;
  const ROSTER = new Map(
    Array.from(CHOICES.querySelectorAll("option"))
      .filter((o) => o.value && o.value !== "*")
      .map((o) => [o.value, o.textContent]),
  );
  const nameOf = (staff) => ROSTER.get(staff) || staff;

  // Each cell carries its column's heading: on a phone a row folds into a card of
  // "heading: value" lines.
  function cells(table, classes) {
    const headings = Array.from(table.tHead.rows[0].cells, (th) => th.textContent);
    return classes.map((cls, i) => el("td", { class: cls, "data-label": headings[i] }));
  }

  const openedAt = (c) => c.opened ?? c.opened_at;

  // Overdue: the window closed and nobody has made it right yet. Without the flag (an older
  // aggregator) it is worked out from the state and the deadline.
  function isOverdue(c) {
    if (typeof c.overdue === "boolean") return c.overdue;
    return c.state === "breached" || c.state === "unconfirmed" || (c.state === "open" && c.deadline <= Kiosk.now());
  }

  function staffPicker() {
    const select = el("select", { class: "staff needs-token", "aria-label": "who fixed it" });
    select.append(CHOICES.cloneNode(true));
    const typed = el("input", {
      class: "staff-id needs-token", placeholder: "staff id", maxlength: 32, "aria-label": "staff id",
      spellcheck: "false", autocomplete: "off",
    });
    if (ROSTER.size) {
      typed.hidden = true;
      select.addEventListener("change", () => {
        typed.hidden = select.value !== "*";
        if (!typed.hidden) typed.focus();
      });
    } else {
      select.hidden = true; // nobody on the roster: the id is typed
    }
    const value = () => (select.hidden || select.value === "*" ? typed.value.trim().toLowerCase() : select.value);
    return { nodes: [select, typed], value };
  }

  function caseRow() {
    const row = el("tr", { class: "case" });
    const status = el("p", { class: "result", role: "status" });
    const code = () => row.dataset.key;

    const picker = staffPicker();
    const note = el("input", { class: "note needs-token", placeholder: "what was done (optional)", maxlength: 500, "aria-label": "what was done" });
    const fixButton = el("button", { type: "submit", class: "do-fix needs-token", text: "Mark fixed" });
    const fix = el("form", { class: "fix" }, ...picker.nodes, note, fixButton);
    fix.addEventListener("submit", async (event) => {
      event.preventDefault();
      const staff = picker.value();
      if (!staff) {
        status.classList.add("bad");
        status.textContent = "Choose who fixed it first.";
        return;
      }
      const result = await Kiosk.post(`${api}/cases/${encodeURIComponent(code())}/fix`, {
        staff, note: note.value.trim() || null,
      });
      Kiosk.say(status, result, `Marked fixed by ${nameOf(staff)}: now waiting for the customer's verdict on the kiosk.`);
      if (result.ok) note.value = "";
    });

    const why = el("input", { class: "close-note needs-token", placeholder: "why it is closed", maxlength: 500, required: true, "aria-label": "why it is closed" });
    const closeForm = el("form", { class: "close" }, why,
      el("button", { type: "submit", class: "do-close needs-token", text: "Close case" }));
    closeForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!Kiosk.who()) {
        status.classList.add("bad");
        status.textContent = "Enter your name under Manager access first.";
        return;
      }
      const result = await Kiosk.post(`${api}/cases/${encodeURIComponent(code())}/close`, {
        by: Kiosk.who(), note: why.value.trim(),
      });
      Kiosk.say(status, result, `Closed by ${Kiosk.who()}.`);
      if (result.ok) why.value = "";
    });
    const close = el("details", { class: "close" }, el("summary", { text: "Close…" }), closeForm);

    row.append(...cells($("cases"), ["code", "station", "state-cell", "opened", "deadline", "left", "fixed-by", "action"]));
    row.querySelector(".state-cell").append(el("span", { class: "state" }));
    row.querySelector(".left").append(el("span", { class: "countdown" }), el("span", { class: "age" }));
    row.querySelector(".action").append(
      el("p", { class: "verdict", text: "Fixed: now waiting for the customer's verdict on the kiosk." }),
      fix, close, status,
    );
    return row;
  }

  function updateCase(row, c) {
    const overdue = isOverdue(c);
    row.dataset.state = c.state;
    row.dataset.overdue = overdue ? "yes" : "no";
    row.classList.toggle("overdue", overdue);
    row.querySelector(".code").textContent = c.code;
    row.querySelector(".station").textContent = c.station;
    const state = row.querySelector(".state");
    state.textContent = overdue ? `${c.state} · overdue` : c.state;
    state.title = STATE_WORDS[c.state] || c.state;
    state.className = `state badge ${c.state}${overdue ? " overdue" : ""}`;
    row.querySelector(".opened").textContent = when(tz, openedAt(c));
    row.querySelector(".deadline").textContent = when(tz, c.deadline);
    const countdown = row.querySelector(".countdown");
    countdown.dataset.deadline = c.deadline;
    countdown.dataset.opened = openedAt(c);
    countdown.dataset.mode = overdue ? "overdue" : c.state === "open" || c.state === "fixed" ? "waiting" : "done";
    const fixed = row.querySelector(".fixed-by");
    fixed.textContent = c.fixed_by ? `${nameOf(c.fixed_by)}${c.note ? `: ${c.note}` : ""}` : "–";
    if (c.late) fixed.append(" ", el("span", { class: "badge late", text: "fixed late" }));
    if (c.escalations) fixed.append(" ", el("span", { class: "badge warn", text: `${c.escalations}× not yet` }));
    // Staff can still make an overdue case right (a late fix); a manager can close it.
    const fixable = c.state === "open" || (overdue && c.state === "breached");
    row.querySelector("form.fix").hidden = !fixable;
    row.querySelector(".do-fix").textContent = overdue ? "Mark fixed (late)" : "Mark fixed";
    row.querySelector("details.close").hidden = !overdue;
    row.querySelector(".verdict").hidden = c.state !== "fixed";
  }

  function tick() {
    const now = Kiosk.now();
    for (const node of document.querySelectorAll(".countdown")) {
      const left = Number(node.dataset.deadline) - now;
      const age = node.nextElementSibling;
      node.dataset.left = Math.floor(left);
      age.textContent = "";
      if (node.dataset.mode === "overdue") {
        node.textContent = `overdue by ${span(-left)}`;
        node.className = "countdown late";
        const opened = now - Number(node.dataset.opened);
        age.textContent = `opened ${opened < 3600 ? span(opened) : opened < 172800 ? `${Math.floor(opened / 3600)} h` : span(opened)} ago`;
      } else if (node.dataset.mode !== "waiting") {
        node.textContent = "–";
        node.className = "countdown";
      } else if (left > 0) {
        node.textContent = `${duration(left)} left`;
        node.className = left < NEAR_S ? "countdown near" : "countdown";
      } else {
        node.textContent = `deadline passed ${duration(-left)} ago`;
        node.className = "countdown late";
      }
    }
  }

  // Overdue cases first, longest overdue at the top; then the waiting ones as the server
  // orders them (soonest deadline first).
  function ordered(list) {
    const late = list.filter(isOverdue).sort((a, b) => a.deadline - b.deadline);
    return [...late, ...list.filter((c) => !isOverdue(c))];
  }

  // The first CASES_FIRST rows, or all of them, or those whose code starts as typed: the
  // list grows with the page rather than scrolling in a box of its own.
  const CASES_FIRST = 12;
  let allCases = false;

  function showCases() {
    const wanted = $("find-code").value.replace(/\s+/g, "").toUpperCase();
    const rows = Array.from($("cases").tBodies[0].rows);
    let shown = 0;
    rows.forEach((row, i) => {
      const hit = wanted ? row.dataset.key.startsWith(wanted) : allCases || i < CASES_FIRST;
      row.hidden = !hit;
      row.classList.toggle("found", Boolean(wanted) && row.dataset.key === wanted);
      if (hit) shown += 1;
    });
    const more = $("cases-more");
    more.hidden = Boolean(wanted) || rows.length <= CASES_FIRST;
    more.textContent = allCases ? `Show the first ${CASES_FIRST} only` : `Show all ${rows.length} cases`;
    if (!wanted) set("find-note", "");
    else if (!shown) set("find-note", `No listed case has a code starting ${wanted}.`);
    else set("find-note", `${shown} case${shown === 1 ? "" : "s"} with a code starting ${wanted}.`);
  }

  let casesShown = false;

  function cases(view) {
    const list = ordered(view.cases);
    keyed($("cases").tBodies[0], list, (c) => c.code, caseRow, updateCase);
    $("cases-empty").hidden = list.length > 0;
    const late = list.filter(isOverdue).length;
    const waiting = list.length - late;
    set("cases-note", `${late ? `${late} overdue · ` : ""}${waiting} waiting (open or fixed)${late ? ", overdue first" : ", soonest deadline first"}`);
    showCases();
    Kiosk.applyAccess($("cases"));
    tick();
    if (!casesShown && location.hash === "#cases") $("cases-card").scrollIntoView(); // from the overview
    casesShown = true;
  }

  // -- alerts ----------------------------------------------------------------------------

  const ALERTS_FIRST = 6; // shown before "Show all": the panel grows with them, never clips one
  let allAlerts = false;

  function alertItem() {
    const item = el("li", { class: "alert" });
    const status = el("span", { class: "result", role: "status" });
    const ack = el("button", { type: "button", class: "ack needs-token", text: "Acknowledge" });
    ack.addEventListener("click", async () => {
      if (!Kiosk.who()) {
        status.classList.add("bad");
        status.textContent = "Enter your name under Manager access first.";
        return;
      }
      const result = await Kiosk.post(`${api}/alerts/${encodeURIComponent(item.dataset.key)}/ack`, { by: Kiosk.who() });
      Kiosk.say(status, result, "Acknowledged.");
    });
    const text = el("input", { class: "comment-text needs-token", placeholder: "comment", maxlength: 500, "aria-label": "comment" });
    const form = el("form", { class: "comment" }, text, el("button", { type: "submit", class: "needs-token", text: "Comment" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = await Kiosk.post(`${api}/alerts/${encodeURIComponent(item.dataset.key)}/comment`, { text: text.value.trim() });
      Kiosk.say(status, result, "Comment saved.");
      if (result.ok) text.value = "";
    });
    item.append(
      el("div", { class: "head" }, el("span", { class: "badge severity" }), el("span", { class: "type" }), el("time", { class: "at" })),
      el("p", { class: "text" }),
      el("p", { class: "done" }),
      el("ul", { class: "sent" }),
      el("div", { class: "actions" }, ack, form, status),
    );
    return item;
  }

  function updateAlert(item, a) {
    const sev = item.querySelector(".severity");
    sev.textContent = a.severity;
    sev.className = `badge severity ${a.severity}`;
    item.querySelector(".type").textContent = a.type.replace(/_/g, " ");
    item.querySelector(".at").textContent = when(tz, a.ts);
    item.querySelector(".text").textContent = a.text;
    const done = [];
    if (a.acked_by) done.push(`Acknowledged by ${a.acked_by}`);
    if (a.comment) done.push(`Comment: ${a.comment}`);
    item.querySelector(".done").textContent = done.join(" · ");
    item.querySelector(".ack").hidden = Boolean(a.acked_by);
    item.classList.toggle("acked", Boolean(a.acked_by));
    const sent = item.querySelector(".sent");
    sent.replaceChildren(...(a.deliveries || []).map((d) => el("li", { class: `delivery ${d.state}`, text: deliveryLine(d) })));
  }

  // What was sent to people about an alert: by e-mail or webhook, and how it went.
  function deliveryLine(d) {
    const tries = `${d.attempts} ${d.attempts === 1 ? "try" : "tries"}`;
    if (d.state === "delivered") return `Sent to ${d.to} at ${when(tz, d.delivered_at)}`;
    if (d.state === "failed") return `Not sent to ${d.to}: ${d.last_error} (${tries})`;
    if (d.attempts) return `Retrying ${d.to} at ${when(tz, d.next_at)} (${tries}): ${d.last_error}`;
    return `Waiting to be sent to ${d.to} at ${when(tz, d.next_at)}`;
  }

  function showAlerts() {
    const items = Array.from($("alerts").children);
    items.forEach((item, i) => { item.hidden = !allAlerts && i >= ALERTS_FIRST; });
    const more = $("alerts-more");
    more.hidden = items.length <= ALERTS_FIRST;
    more.textContent = allAlerts ? `Show the latest ${ALERTS_FIRST} only` : `Show all ${items.length} alerts`;
    const waiting = items.filter((item) => !item.classList.contains("acked")).length;
    set("alerts-note", items.length ? `${waiting} not acknowledged, newest first` : "");
  }

  function alerts(view) {
    keyed($("alerts"), view.alerts, (a) => a.id, alertItem, updateAlert);
    $("alerts-empty").hidden = view.alerts.length > 0;
    showAlerts();
    Kiosk.applyAccess($("alerts"));
  }

  // -- recognition and kiosks ------------------------------------------------------------

  function recognition(board) {
    const t = board.team;
    const team = el("p", { class: "team" },
      `The team: ${t.smooth} of ${t.ratings} customers gave the top score (${pct(t.smooth_rate)}); `,
      `${t.recovered_in_time} recover${t.recovered_in_time === 1 ? "y" : "ies"} in time, ${t.wow_in_time} with a Wow!`);
    const people = board.staff.map((p) => el("li", { class: "person", "data-staff": p.staff },
      el("strong", { text: p.name || p.staff }),
      el("ul", { class: "reasons" }, p.reasons.map((r) => el("li", { text: r })))));
    const list = people.length ? el("ol", { class: "board" }, people)
      : el("p", { class: "empty", text: "Nobody to recognise yet this week." });
    $("recognition").replaceChildren(team, list);
  }

  const HEALTH_WORDS = {
    online: "online: its telemetry comes on time",
    offline: "offline: silent for more than two telemetry intervals, or its last will came",
    refused: "refused: the broker refused its connection (a removed account or a wrong password)",
  };

  // An update that failed or was refused: shown in the problem colour.
  const UPDATE_PROBLEMS = ["ota_failed", "refused"];

  // online, offline or refused, as the aggregator worked it out.
  const healthOf = (d) => d.health || (d.online ? "online" : "offline");

  function deviceRow() {
    const row = el("tr", { class: "device" });
    row.append(...cells($("devices"), ["name", "state", "seen", "fw", "update", "hw", "heap", "rssi", "outbox", "dropped", "config"]));
    return row;
  }

  function updateDevice(row, d) {
    const cell = (cls, text) => { row.querySelector(`.${cls}`).textContent = text ?? "–"; };
    cell("name", d.device);
    const health = healthOf(d);
    const state = row.querySelector(".state");
    const badge = el("span", { class: `badge health ${health}`, text: health, title: HEALTH_WORDS[health] || health });
    const late = health !== "online" && d.late_s > 0 ? el("span", { class: "late-by", text: `telemetry ${span(d.late_s)} late` }) : null;
    state.replaceChildren(badge, late ? " " : "", late || "");
    row.dataset.health = health;
    const seen = row.querySelector(".seen");
    seen.dataset.seen = d.last_seen || "";
    seen.textContent = ago(d.last_seen);
    seen.title = when(tz, d.last_seen);
    cell("fw", d.fw);
    // the aggregator words it (devices' `update`): empty when no update was ever sent
    const update = row.querySelector(".update");
    update.textContent = d.update || "";
    update.classList.toggle("bad", Boolean(d.ota) && UPDATE_PROBLEMS.includes(d.ota.state));
    update.title = d.ota ? `update ${d.ota.id}: ${d.ota.version}, ${d.ota.state}` : "";
    cell("hw", d.board);
    cell("heap", d.heap_free === null || d.heap_free === undefined ? null : `${Math.round(d.heap_free / 1024)} kB`);
    cell("rssi", d.rssi === null || d.rssi === undefined ? null : `${d.rssi} dBm`);
    cell("outbox", d.outbox);
    cell("dropped", d.dropped);
    cell("config", d.config_error || "ok");
    row.classList.toggle("off", health !== "online");
  }

  function kiosks(view) {
    keyed($("devices").tBodies[0], view.devices, (d) => d.device, deviceRow, updateDevice);
    $("devices-empty").hidden = view.devices.length > 0;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("find-code").addEventListener("input", (event) => {
      const input = event.target;
      const upper = input.value.toUpperCase(); // codes are read off the kiosk in any case
      if (upper !== input.value) input.value = upper;
      showCases();
    });
    $("cases-more").addEventListener("click", () => {
      allCases = !allCases;
      showCases();
    });
    $("alerts-more").addEventListener("click", () => {
      allAlerts = !allAlerts;
      showAlerts();
    });
    Kiosk.live(`${api}/stream`, { summary, report, cases, alerts, recognition, devices: kiosks });
    setInterval(() => {
      tick();
      for (const node of document.querySelectorAll("#devices .seen")) node.textContent = ago(Number(node.dataset.seen));
    }, 1000);
  });
})();
