// The stores overview: each store's day so far, live.
"use strict";

(() => {
  const { el, keyed, pct } = Kiosk;

  function card() {
    const node = el("a", { class: "store-card" });
    node.append(
      el("h2", { class: "name" }),
      el("div", { class: "big" }),
      el("div", { class: "line ratings" }),
      el("div", { class: "line cases" }),
      el("div", { class: "line kiosks" }),
    );
    return node;
  }

  function update(node, s) {
    node.href = `/stores/${encodeURIComponent(s.store)}`;
    node.querySelector(".name").textContent = s.store;
    const big = node.querySelector(".big");
    big.textContent = pct(s.satisfaction);
    big.title = "share of today's ratings above the low threshold";
    node.querySelector(".ratings").textContent =
      `${s.ratings} rating${s.ratings === 1 ? "" : "s"} today, ${s.breakdowns} low`;
    const cases = node.querySelector(".cases");
    cases.textContent = `${s.open_cases} case${s.open_cases === 1 ? "" : "s"} waiting · ${s.overdue_cases} overdue`;
    cases.classList.toggle("bad", s.overdue_cases > 0);
    const kiosks = node.querySelector(".kiosks");
    kiosks.textContent = `kiosks: ${s.kiosks.online} online · ${s.kiosks.offline} offline`;
    kiosks.classList.toggle("bad", s.kiosks.offline > 0);
    node.dataset.store = s.store;
  }

  function render(view) {
    const box = document.getElementById("stores");
    const empty = box.querySelector(".empty");
    if (empty) empty.remove();
    keyed(box, view.stores, (s) => s.store, card, update);
    if (!view.stores.length) box.append(el("p", { class: "empty", text: "No store has sent anything yet." }));
  }

  document.addEventListener("DOMContentLoaded", () => Kiosk.live("/api/stream", { stores: render }));
})();
