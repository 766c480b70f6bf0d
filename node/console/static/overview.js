// Overview page: counts, stacked bar charts (SVG built with DOM APIs) and top lists from
// GET /api/v1/stats for the chosen range; refreshed every 5 s.
"use strict";

(() => {
  const { api, el, fmtTime, utcInputToUnix, showError, toggleCustom } = Console;
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#e03131", "#1971c2", "#2f9e44", "#9c36b5", "#f59f00", "#0c8599", "#495057",
                   "#d6336c", "#66a80f", "#364fc7", "#a9e34b"];
  const ACTION_COLORS = { blocked: "#c92a2a", monitored: "#f08c00" };
  const form = document.getElementById("range");
  const rangeSelect = form.elements["range"];

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  // One stacked bar per bucket; series keys in a stable order with one colour each.
  function drawChart(container, stats, field, colorOf) {
    const keys = Object.keys(stats[field]).sort((a, b) => stats[field][b] - stats[field][a]);
    const W = 900, H = 220, left = 40, bottom = 24, top = 10;
    const n = Math.max(stats.series.length, 1);
    const maxTotal = Math.max(1, ...stats.series.map((b) => Object.values(b[field]).reduce((s, v) => s + v, 0)));
    const plotH = H - bottom - top, barW = (W - left) / n;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img",
                              "aria-label": `attacks over time by ${field.replace("by_", "")}` });
    // y axis: 0 and max
    root.append(svg("line", { x1: left, y1: top, x2: left, y2: H - bottom, class: "axis" }));
    root.append(svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
    root.append(svg("text", { x: left - 4, y: top + 10, class: "tick", "text-anchor": "end" }, maxTotal));
    root.append(svg("text", { x: left - 4, y: H - bottom, class: "tick", "text-anchor": "end" }, 0));
    stats.series.forEach((b, i) => {
      let y = H - bottom;
      const x = left + i * barW;
      for (const key of keys) {
        const v = b[field][key] || 0;
        if (!v) continue;
        const h = (v / maxTotal) * plotH;
        y -= h;
        const rect = svg("rect", { x: x + 1, y, width: Math.max(barW - 2, 1), height: h, fill: colorOf(key, keys) });
        rect.append(svg("title", {}, `${fmtTime(b.start)} ${key}: ${v}`));
        root.append(rect);
      }
    });
    // x axis: first and last bucket start
    if (stats.series.length) {
      root.append(svg("text", { x: left, y: H - 6, class: "tick" }, fmtTime(stats.series[0].start)));
      root.append(svg("text", { x: W, y: H - 6, class: "tick", "text-anchor": "end" },
                      fmtTime(stats.series[stats.series.length - 1].start)));
    }
    const legend = el("div", { class: "legend" });
    for (const key of keys) {
      const swatch = svg("svg", { width: 12, height: 12, class: "swatch" });
      swatch.append(svg("rect", { width: 12, height: 12, fill: colorOf(key, keys) }));
      legend.append(el("span", { class: "legend-item" }, swatch, ` ${key} (${stats[field][key]})`));
    }
    if (!keys.length) legend.append(el("span", {}, "No attacks in this range."));
    container.replaceChildren(root, legend);
  }

  const typeColor = (key, keys) => PALETTE[keys.indexOf(key) % PALETTE.length];
  const actionColor = (key) => ACTION_COLORS[key] || "#868e96";

  function fillTable(id, rows) {
    document.querySelector(`#${id} tbody`).replaceChildren(...rows);
  }

  function range() {
    const p = new URLSearchParams();
    if (rangeSelect.value === "custom") {
      const since = utcInputToUnix(form.elements["since"].value);
      const until = utcInputToUnix(form.elements["until"].value);
      if (since !== null) p.set("since", String(since));
      if (until !== null) p.set("until", String(until));
    } else {
      const now = Math.floor(Date.now() / 1000);
      p.set("since", String(now - Number(rangeSelect.value)));
      p.set("until", String(now));
    }
    return p;
  }

  async function load() {
    try {
      const s = await api("/api/v1/stats?" + range().toString());
      document.getElementById("count-total").textContent = s.total;
      document.getElementById("count-excepted").textContent = s.excepted_requests;
      document.getElementById("count-blocked").textContent = s.by_action.blocked || 0;
      document.getElementById("count-monitored").textContent = s.by_action.monitored || 0;
      drawChart(document.getElementById("chart-type"), s, "by_type", typeColor);
      drawChart(document.getElementById("chart-action"), s, "by_action", actionColor);
      fillTable("by-type", Object.entries(s.by_type).sort((a, b) => b[1] - a[1]).map(([t, c]) =>
        el("tr", {}, el("td", {}, el("a", { href: `/attacks?type=${encodeURIComponent(t)}` }, t)), el("td", {}, c))));
      fillTable("top-paths", s.top_paths.map((r) =>
        el("tr", {}, el("td", {}, el("a", { href: `/attacks?q=${encodeURIComponent(r.path)}` }, r.path)), el("td", {}, r.count))));
      fillTable("top-ips", s.top_ips.map((r) =>
        el("tr", {}, el("td", {}, el("a", { href: `/attacks?ip=${encodeURIComponent(r.ip)}` }, r.ip)), el("td", {}, r.count))));
      showError("");
    } catch (e) {
      showError(e.message);
    }
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  rangeSelect.addEventListener("change", () => { toggleCustom(form, rangeSelect); if (rangeSelect.value !== "custom") load(); });
  toggleCustom(form, rangeSelect);
  load();
  setInterval(() => { if (!document.hidden) load(); }, 5000);
})();
