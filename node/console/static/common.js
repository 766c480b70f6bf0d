// Shared helpers for the console pages. Everything attacker-controlled goes into the page
// through textContent / setAttribute (never parsed as HTML), so it always renders as text.
"use strict";

const Console = (() => {
  const csrfToken = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, { method = "GET", body } = {}) {
    const headers = { "Accept": "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 401) {  // session expired: back to the login page, then here again
      window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new ApiError(401, "session expired");
    }
    if (resp.status === 204) return null;
    let data = null;
    try { data = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || ("HTTP " + resp.status));
    return data;
  }

  // el("td", {class: "x"}, "text", childNode...) -> element; strings become text nodes.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(unix) {
    if (unix === null || unix === undefined) return "—";
    const d = new Date(unix * 1000);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
           `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  }

  // <input type="datetime-local"> value, read as UTC -> unix seconds (or null).
  function utcInputToUnix(value) {
    if (!value) return null;
    const ms = Date.parse(value + (value.length === 16 ? ":00Z" : "Z"));
    return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
  }

  function unixToUtcInput(unix) {
    return fmtTime(unix).replace(" ", "T");
  }

  function showError(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function showNotice(message) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function toggleCustom(form, rangeSelect) {
    const custom = rangeSelect.value === "custom";
    for (const label of form.querySelectorAll(".custom")) label.hidden = !custom;
  }

  return { api, el, fmtTime, utcInputToUnix, unixToUtcInput, showError, showNotice, toggleCustom, ApiError };
})();
