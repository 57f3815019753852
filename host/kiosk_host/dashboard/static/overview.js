// The stores overview: each store's day so far, live.
"use strict";

(() => {
  const { el, keyed, pct } = Kiosk;

  function card() {
    // The name links to the store's page (the whole card is its target); the overdue count
    // links to the store's case list.
    const node = el("article", { class: "store-card" });
    node.append(
      el("h2", { class: "name" }, el("a", { class: "open" })),
      el("div", { class: "big" }),
      el("div", { class: "line ratings" }),
      el("div", { class: "line cases" }),
      el("div", { class: "line kiosks" }),
    );
    return node;
  }

  function update(node, s) {
    const page = `/stores/${encodeURIComponent(s.store)}`;
    const open = node.querySelector(".open");
    open.href = page;
    open.textContent = s.store;
    const big = node.querySelector(".big");
    big.textContent = pct(s.satisfaction);
    big.title = "share of today's ratings above the low threshold";
    node.querySelector(".ratings").textContent =
      `${s.ratings} rating${s.ratings === 1 ? "" : "s"} today, ${s.breakdowns} low`;
    const cases = node.querySelector(".cases");
    cases.replaceChildren(
      `${s.open_cases} case${s.open_cases === 1 ? "" : "s"} waiting · `,
      s.overdue_cases > 0
        ? el("a", { class: "overdue", href: `${page}#cases`, text: `${s.overdue_cases} overdue` })
        : "0 overdue",
    );
    cases.classList.toggle("bad", s.overdue_cases > 0);
    const kiosks = node.querySelector(".kiosks");
    // The kiosks that are down (offline or refused by the broker), by name.
    const down = s.kiosks_down || [];
    kiosks.textContent =
      `kiosks: ${s.kiosks.online} online · ${s.kiosks.offline} offline` +
      (down.length ? ` (down: ${down.join(", ")})` : "");
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
