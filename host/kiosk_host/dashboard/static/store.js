// One store's page: figures, charts, cases with their countdown, alerts, recognition, kiosks.
"use strict";

(() => {
  const { el, keyed, pct, when, duration, ago } = Kiosk;
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
  }

  // -- cases -----------------------------------------------------------------------------

  function caseRow(c) {
    const row = el("tr", { class: "case" });
    const staff = el("input", { class: "staff", placeholder: "staff id", maxlength: 32, "aria-label": "staff id" });
    const note = el("input", { class: "note", placeholder: "what was done (optional)", maxlength: 500, "aria-label": "note" });
    const status = el("span", { class: "result", role: "status" });
    const form = el("form", { class: "fix" }, staff, note, el("button", { type: "submit", text: "Mark fixed" }), status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = await Kiosk.post(`${api}/cases/${encodeURIComponent(row.dataset.key)}/fix`, {
        staff: staff.value.trim(), note: note.value.trim() || null,
      });
      Kiosk.say(status, result, "Marked fixed.");
      if (result.ok) note.value = "";
    });
    row.append(
      el("td", { class: "code" }), el("td", { class: "station" }),
      el("td", {}, el("span", { class: "state" })), el("td", { class: "opened" }),
      el("td", { class: "deadline" }), el("td", {}, el("span", { class: "countdown" })),
      el("td", { class: "fixed-by" }), el("td", { class: "action" }, form),
    );
    return row;
  }

  function updateCase(row, c) {
    row.querySelector(".code").textContent = c.code;
    row.querySelector(".station").textContent = c.station;
    const state = row.querySelector(".state");
    state.textContent = c.state;
    state.title = STATE_WORDS[c.state] || c.state;
    state.className = `state badge ${c.state}`;
    row.dataset.state = c.state;
    row.querySelector(".opened").textContent = when(tz, c.opened_at);
    row.querySelector(".deadline").textContent = when(tz, c.deadline);
    const countdown = row.querySelector(".countdown");
    countdown.dataset.deadline = c.deadline;
    countdown.dataset.waiting = c.state === "open" || c.state === "fixed" ? "yes" : "no";
    const fixed = row.querySelector(".fixed-by");
    fixed.textContent = c.fixed_by ? `${c.fixed_by}${c.note ? `: ${c.note}` : ""}` : "–";
    if (c.escalations) fixed.append(el("span", { class: "badge warn", text: ` ${c.escalations}× not yet` }));
    row.querySelector(".fix").hidden = c.state !== "open";
  }

  function tick() {
    const now = Kiosk.now();
    for (const node of document.querySelectorAll(".countdown")) {
      const left = Number(node.dataset.deadline) - now;
      node.dataset.left = Math.floor(left);
      if (node.dataset.waiting !== "yes") {
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

  function cases(view) {
    keyed($("cases").tBodies[0], view.cases, (c) => c.code, caseRow, updateCase);
    $("cases-empty").hidden = view.cases.length > 0;
    set("cases-note", `${view.cases.length} waiting (open or fixed), soonest deadline first`);
    tick();
  }

  // -- alerts ----------------------------------------------------------------------------

  function alertItem() {
    const item = el("li", { class: "alert" });
    const status = el("span", { class: "result", role: "status" });
    const ack = el("button", { type: "button", class: "ack", text: "Acknowledge" });
    ack.addEventListener("click", async () => {
      if (!Kiosk.who()) {
        status.classList.add("bad");
        status.textContent = "Enter your name under Manager access first.";
        return;
      }
      const result = await Kiosk.post(`${api}/alerts/${encodeURIComponent(item.dataset.key)}/ack`, { by: Kiosk.who() });
      Kiosk.say(status, result, "Acknowledged.");
    });
    const text = el("input", { class: "comment-text", placeholder: "comment", maxlength: 500, "aria-label": "comment" });
    const form = el("form", { class: "comment" }, text, el("button", { type: "submit", text: "Comment" }));
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
  }

  function alerts(view) {
    keyed($("alerts"), view.alerts, (a) => a.id, alertItem, updateAlert);
    $("alerts-empty").hidden = view.alerts.length > 0;
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

  function deviceRow() {
    const row = el("tr", { class: "device" });
    for (const cls of ["name", "state", "seen", "fw", "board", "heap", "rssi", "outbox", "dropped", "config"]) {
      row.append(el("td", { class: cls }));
    }
    return row;
  }

  function updateDevice(row, d) {
    const cell = (cls, text) => { row.querySelector(`.${cls}`).textContent = text ?? "–"; };
    cell("name", d.device);
    const state = row.querySelector(".state");
    state.replaceChildren(el("span", { class: `badge ${d.online ? "online" : "offline"}`, text: d.online ? "online" : (d.state || "unknown") }));
    const seen = row.querySelector(".seen");
    seen.dataset.seen = d.last_seen || "";
    seen.textContent = ago(d.last_seen);
    seen.title = when(tz, d.last_seen);
    cell("fw", d.fw);
    cell("board", d.board);
    cell("heap", d.heap_free === null || d.heap_free === undefined ? null : `${Math.round(d.heap_free / 1024)} kB`);
    cell("rssi", d.rssi === null || d.rssi === undefined ? null : `${d.rssi} dBm`);
    cell("outbox", d.outbox);
    cell("dropped", d.dropped);
    cell("config", d.config_error || "ok");
    row.classList.toggle("off", !d.online);
  }

  function kiosks(view) {
    keyed($("devices").tBodies[0], view.devices, (d) => d.device, deviceRow, updateDevice);
    $("devices-empty").hidden = view.devices.length > 0;
  }

  document.addEventListener("DOMContentLoaded", () => {
    Kiosk.live(`${api}/stream`, { summary, report, cases, alerts, recognition, devices: kiosks });
    setInterval(() => {
      tick();
      for (const node of document.querySelectorAll("#devices .seen")) node.textContent = ago(Number(node.dataset.seen));
    }, 1000);
  });
})();
