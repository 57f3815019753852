// Charts drawn as inline SVG: today's ratings by score and by hour, and the week's heatmap.
"use strict";

const Charts = (() => {
  const { svg, scoreColour } = Kiosk;

  function frame(width, height, label) {
    return svg("svg", {
      viewBox: `0 0 ${width} ${height}`, class: "svg", role: "img", "aria-label": label,
      preserveAspectRatio: "xMidYMid meet",
    });
  }

  function niceMax(n) {
    if (n <= 5) return 5;
    const step = 10 ** Math.floor(Math.log10(n));
    return Math.ceil(n / step) * step;
  }

  // Bars for each score, lowest first; the low ones are the breakdowns.
  function byScore(box, counts, scale, low) {
    const W = 360, H = 190, top = 18, bottom = 34, left = 10;
    const chart = frame(W, H, "Ratings by score");
    const max = niceMax(Math.max(0, ...counts));
    const slot = (W - 2 * left) / scale;
    counts.forEach((n, i) => {
      const score = i + 1;
      const h = ((H - top - bottom) * n) / max;
      const x = left + i * slot + slot * 0.15;
      const bar = svg("rect", {
        x, y: H - bottom - h, width: slot * 0.7, height: Math.max(h, n ? 1 : 0),
        fill: scoreColour(score, scale), class: "bar", "data-score": score, "data-count": n,
      });
      bar.append(svg("title", { text: `score ${score}: ${n}` }));
      chart.append(
        bar,
        svg("text", { x: x + slot * 0.35, y: H - bottom - h - 4, class: "count", text: n }),
        svg("text", {
          x: x + slot * 0.35, y: H - bottom + 15, class: "axis",
          text: score <= low ? `${score} · low` : String(score),
        }),
      );
    });
    chart.append(svg("line", { x1: left, x2: W - left, y1: H - bottom, y2: H - bottom, class: "base" }));
    chart.append(svg("text", { x: W / 2, y: H - 4, class: "axis", text: "score" }));
    box.replaceChildren(chart);
  }

  // Ratings per local hour, stacked by score with the low ones at the bottom.
  function byHour(box, hours, scale) {
    const W = 480, H = 190, top = 12, bottom = 30, left = 28, right = 6;
    const chart = frame(W, H, "Ratings by hour");
    const totals = Object.values(hours).map((c) => c.reduce((a, b) => a + b, 0));
    const max = niceMax(Math.max(0, ...totals));
    const slot = (W - left - right) / 24;
    const yOf = (n) => H - bottom - ((H - top - bottom) * n) / max;
    for (const tick of [0, max / 2, max].filter(Number.isInteger)) {
      chart.append(
        svg("line", { x1: left, x2: W - right, y1: yOf(tick), y2: yOf(tick), class: "grid" }),
        svg("text", { x: left - 4, y: yOf(tick) + 3, class: "axis end", text: tick }),
      );
    }
    for (let h = 0; h < 24; h++) {
      const key = String(h).padStart(2, "0");
      const counts = hours[key] || [];
      let base = 0;
      counts.forEach((n, i) => {
        if (!n) return;
        const rect = svg("rect", {
          x: left + h * slot + 1, y: yOf(base + n), width: slot - 2, height: yOf(base) - yOf(base + n),
          fill: scoreColour(i + 1, scale),
        });
        rect.append(svg("title", { text: `${key}:00, score ${i + 1}: ${n}` }));
        chart.append(rect);
        base += n;
      });
      const bar = svg("rect", {
        x: left + h * slot, y: top, width: slot, height: H - top - bottom, class: "hour",
        "data-hour": key, "data-count": base,
      });
      bar.append(svg("title", { text: `${key}:00–${key}:59: ${base} rating${base === 1 ? "" : "s"}` }));
      chart.append(bar);
      if (h % 3 === 0) {
        chart.append(svg("text", { x: left + h * slot + slot / 2, y: H - bottom + 14, class: "axis", text: key }));
      }
    }
    chart.append(svg("text", { x: (W + left) / 2, y: H - 3, class: "axis", text: "hour of the day" }));
    box.replaceChildren(chart);
  }

  // One row per day (oldest first), one column per local hour: the breakdowns in each.
  function heatmap(box, days) {
    const W = 720, left = 92, top = 18, cell = (W - left - 6) / 24, rowH = 24;
    const H = top + days.length * rowH + 6;
    const chart = frame(W, H, "Breakdowns by weekday and hour");
    let max = 0;
    for (const d of days) for (const n of Object.values(d.breakdowns_by_hour)) max = Math.max(max, n);
    for (let h = 0; h < 24; h += 2) {
      chart.append(svg("text", { x: left + h * cell + cell / 2, y: top - 6, class: "axis", text: String(h).padStart(2, "0") }));
    }
    days.forEach((d, row) => {
      const y = top + row * rowH;
      const label = `${d.weekday} ${d.day.slice(8)}/${d.day.slice(5, 7)}`;
      chart.append(svg("text", { x: left - 8, y: y + rowH / 2 + 4, class: "axis end", text: label }));
      for (let h = 0; h < 24; h++) {
        const key = String(h).padStart(2, "0");
        const n = d.breakdowns_by_hour[key] || 0;
        const strength = max ? n / max : 0;
        const rect = svg("rect", {
          x: left + h * cell + 1, y: y + 1, width: cell - 2, height: rowH - 2, rx: 3,
          fill: n ? `rgba(192, 57, 43, ${0.15 + 0.85 * strength})` : "#f1f3f5",
          class: "cell", "data-day": d.day, "data-hour": key, "data-count": n,
        });
        rect.append(svg("title", { text: `${d.weekday} ${d.day} ${key}:00: ${n} breakdown${n === 1 ? "" : "s"}` }));
        chart.append(rect);
        if (n) {
          chart.append(svg("text", {
            x: left + h * cell + cell / 2, y: y + rowH / 2 + 4,
            class: strength > 0.55 ? "cell-n light" : "cell-n", text: n,
          }));
        }
      }
    });
    box.replaceChildren(chart);
  }

  return { byScore, byHour, heatmap };
})();
