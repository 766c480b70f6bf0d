// Attacks page: the list comes from GET /api/v1/attacks and is refreshed every second while
// the newest page is shown (paging back pauses the refresh, so rows do not move under you).
"use strict";

(() => {
  const { api, el, fmtTime, utcInputToUnix, showError, toggleCustom } = Console;
  const POLL_MS = 1000;
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#attacks tbody");
  const live = document.getElementById("live");
  const total = document.getElementById("total");
  const empty = document.getElementById("empty");
  const btnNewest = document.getElementById("newest");
  const btnNewer = document.getElementById("newer");
  const btnOlder = document.getElementById("older");
  const rangeSelect = form.elements["range"];

  let cursors = [null];  // cursor of each page shown so far; the last one is the current page
  let nextCursor = null;
  let lastTopId = null;
  let inFlight = false;

  function filterParams() {
    const p = new URLSearchParams();
    for (const name of ["type", "ip", "action", "host", "q", "partial"]) {
      const v = form.elements[name].value.trim();
      if (v) p.set(name, v);
    }
    const range = rangeSelect.value;
    if (range === "custom") {
      const since = utcInputToUnix(form.elements["since"].value);
      const until = utcInputToUnix(form.elements["until"].value);
      if (since !== null) p.set("since", String(since));
      if (until !== null) p.set("until", String(until));
    } else if (range) {
      p.set("since", String(Math.floor(Date.now() / 1000) - Number(range)));
    }
    return p;
  }

  // The page URL mirrors the filter form so a filtered view can be bookmarked or shared.
  function syncUrl() {
    const p = new URLSearchParams();
    for (const name of ["type", "ip", "action", "host", "q", "partial", "range"]) {
      const v = form.elements[name].value.trim();
      if (v) p.set(name, v);
    }
    if (rangeSelect.value === "custom") {
      for (const name of ["since", "until"]) {
        const v = form.elements[name].value;
        if (v) p.set(name, v);
      }
    }
    const qs = p.toString();
    history.replaceState(null, "", "/attacks" + (qs ? "?" + qs : ""));
  }

  function row(a, isNew) {
    const link = el("a", { href: "/attacks/" + a.id, class: "path" }, a.path);
    const types = el("td", { class: "types" });
    for (const t of a.types) types.append(el("span", { class: "tag" }, t));
    return el("tr", { "data-id": a.id, "data-request-id": a.request_id, class: isNew ? "new" : null },
      el("td", { class: "time" }, el("a", { href: "/attacks/" + a.id }, fmtTime(a.time))),
      el("td", {}, a.client_ip),
      el("td", {}, a.host),
      el("td", {}, a.method),
      el("td", { class: "pathcell" }, link),
      types,
      el("td", {}, el("span", { class: "badge " + a.action }, a.action)),
      el("td", { class: "status" }, a.response_status === null ? "—" : a.response_status),
      el("td", { class: "node" }, a.node_instance || "—"),
    );
  }

  async function load() {
    if (inFlight) return;
    inFlight = true;
    try {
      const p = filterParams();
      p.set("limit", "50");
      const cursor = cursors[cursors.length - 1];
      if (cursor) p.set("cursor", cursor);
      const page = await api("/api/v1/attacks?" + p.toString());
      const onFirst = cursors.length === 1;
      const rows = page.items.map((a) => row(a, onFirst && lastTopId !== null && a.id > lastTopId));
      tbody.replaceChildren(...rows);
      if (onFirst && page.items.length) lastTopId = Math.max(lastTopId || 0, page.items[0].id);
      nextCursor = page.next_cursor;
      empty.hidden = page.items.length > 0;
      // The store leaves `total` out when counting would be slow: say "many" rather than guess.
      if (page.total !== null && page.total !== undefined) total.textContent = `${page.total} matching`;
      else total.textContent = nextCursor ? "many matching" : "";
      btnOlder.disabled = !nextCursor;
      btnNewer.disabled = cursors.length === 1;
      btnNewest.disabled = cursors.length === 1;
      live.textContent = onFirst ? "live" : "paused (older page)";
      live.className = onFirst ? "live" : "live paused";
      showError("");
    } catch (e) {
      showError(e.message);
    } finally {
      inFlight = false;
    }
  }

  function restart() {
    cursors = [null];
    lastTopId = null;
    load();
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); syncUrl(); restart(); });
  rangeSelect.addEventListener("change", () => toggleCustom(form, rangeSelect));
  btnOlder.addEventListener("click", () => { if (nextCursor) { cursors.push(nextCursor); load(); } });
  btnNewer.addEventListener("click", () => { if (cursors.length > 1) { cursors.pop(); load(); } });
  btnNewest.addEventListener("click", () => { cursors = [null]; load(); });

  toggleCustom(form, rangeSelect);
  load();
  setInterval(() => { if (cursors.length === 1 && !document.hidden) load(); }, POLL_MS);
})();
