// Settings page: node mode with overrides (GET/PUT /api/v1/mode), the IP lists
// (GET/POST/DELETE /api/v1/iplists) and the exceptions (GET/DELETE /api/v1/exceptions).
// Changes apply on the node's next request.
"use strict";

(() => {
  const { api, el, fmtTime, utcInputToUnix, showError, showNotice } = Console;
  const MODES = ["off", "monitoring", "safe_blocking", "block"];
  const modeSelect = document.getElementById("mode-default");
  const partialSelect = document.getElementById("partial-default");
  const overridesBody = document.querySelector("#overrides tbody");
  const ipForm = document.getElementById("ip-form");
  const ipBody = document.querySelector("#iplist tbody");
  const ipShow = document.getElementById("ip-show");
  const ttlSelect = document.getElementById("ip-ttl");

  function modeOptions(select, selected) {
    select.replaceChildren(...MODES.map((m) => el("option", { value: m, selected: m === selected }, m)));
    select.value = selected;
  }

  function overrideRow(o = { host: "", path_prefix: "", mode: "monitoring" }) {
    const mode = el("select", { class: "ov-mode" });
    modeOptions(mode, o.mode);
    const partial = el("select", { class: "ov-partial" },
      ...[["", "the default's"], ["block", "block"], ["monitor", "monitor"]].map(([v, label]) =>
        el("option", { value: v, selected: (o.partial_inspection || "") === v }, label)));
    const remove = el("button", { type: "button", class: "ov-remove" }, "Remove");
    const tr = el("tr", {},
      el("td", {}, el("input", { class: "ov-host", value: o.host || "", placeholder: "any host", size: 20 })),
      el("td", {}, el("input", { class: "ov-prefix", value: o.path_prefix || "", placeholder: "any path, e.g. /api/admin", size: 24 })),
      el("td", {}, mode),
      el("td", {}, partial),
      el("td", {}, el("input", { class: "ov-body", type: "number", min: 1, value: o.max_body_bytes || "", placeholder: "the node's", size: 10 })),
      el("td", {}, remove));
    remove.addEventListener("click", () => tr.remove());
    return tr;
  }

  async function loadMode() {
    const m = await api("/api/v1/mode");
    modeOptions(modeSelect, m.default);
    partialSelect.value = m.partial_inspection;
    overridesBody.replaceChildren(...m.overrides.map(overrideRow));
  }

  async function saveMode(ev) {
    ev.preventDefault();
    const overrides = [...overridesBody.querySelectorAll("tr")].map((tr) => ({
      host: tr.querySelector(".ov-host").value.trim() || null,
      path_prefix: tr.querySelector(".ov-prefix").value.trim() || null,
      mode: tr.querySelector(".ov-mode").value,
      partial_inspection: tr.querySelector(".ov-partial").value || null,
      max_body_bytes: tr.querySelector(".ov-body").value ? Number(tr.querySelector(".ov-body").value) : null,
    }));
    try {
      const body = { default: modeSelect.value, partial_inspection: partialSelect.value, overrides };
      const m = await api("/api/v1/mode", { method: "PUT", body });
      modeOptions(modeSelect, m.default);
      partialSelect.value = m.partial_inspection;
      overridesBody.replaceChildren(...m.overrides.map(overrideRow));
      showError("");
      showNotice(`Saved: default mode ${m.default}, ${m.overrides.length} override(s).`);
    } catch (e) {
      showNotice("");
      showError(e.message);
    }
  }

  async function loadIps() {
    const qs = ipShow.value ? "?list=" + encodeURIComponent(ipShow.value) : "";
    const data = await api("/api/v1/iplists" + qs);
    ipBody.replaceChildren(...data.items.map((e) => {
      const del = el("button", { type: "button", class: "ip-delete", "data-id": e.id }, "Delete");
      del.addEventListener("click", async () => {
        try {
          await api("/api/v1/iplists/" + encodeURIComponent(e.id), { method: "DELETE" });
          showNotice(`Removed ${e.network} from the ${e.list} list.`);
          showError("");
          await loadIps();
        } catch (err) { showError(err.message); }
      });
      return el("tr", { "data-id": e.id },
        el("td", {}, el("span", { class: "badge list-" + e.list }, e.list)),
        el("td", {}, el("code", {}, e.network)),
        el("td", {}, e.expires_at === null ? "never" : fmtTime(e.expires_at)),
        el("td", {}, e.comment),
        el("td", {}, fmtTime(e.created_at)),
        el("td", {}, del));
    }));
  }

  async function addIp(ev) {
    ev.preventDefault();
    const body = {
      list: document.getElementById("ip-list").value,
      network: document.getElementById("ip-network").value.trim(),
      comment: document.getElementById("ip-comment").value.trim(),
    };
    if (ttlSelect.value === "custom") {
      const at = utcInputToUnix(document.getElementById("ip-expires").value);
      if (at === null) { showError("Pick the expiry time."); return; }
      body.expires_at = at;
    } else if (ttlSelect.value) {
      body.ttl_seconds = Number(ttlSelect.value);
    }
    try {
      const e = await api("/api/v1/iplists", { method: "POST", body });
      showNotice(`Added ${e.network} to the ${e.list} list.`);
      showError("");
      ipForm.reset();
      toggleExpiry();
      await loadIps();
    } catch (e) {
      showNotice("");
      showError(e.message);
    }
  }

  const exceptionBody = document.querySelector("#exception-list tbody");

  async function loadExceptions() {
    const data = await api("/api/v1/exceptions");
    document.getElementById("no-exceptions").hidden = data.items.length > 0;
    exceptionBody.replaceChildren(...data.items.map((e) => {
      const del = el("button", { type: "button", class: "exception-delete", "data-id": e.id }, "Remove");
      del.addEventListener("click", async () => {
        try {
          await api("/api/v1/exceptions/" + encodeURIComponent(e.id), { method: "DELETE" });
          showNotice(`Removed exception #${e.id}: its findings are attacks again.`);
          showError("");
          await loadExceptions();
        } catch (err) { showError(err.message); }
      });
      const what = e.rule_id ? ["rule ", el("code", {}, e.rule_id)] : ["type ", el("code", {}, e.attack_type)];
      const letThrough = e.excepted_requests + (e.last_excepted_at ? ` (last ${fmtTime(e.last_excepted_at)})` : "");
      return el("tr", { "data-id": e.id },
        el("td", {}, "#" + e.id),
        el("td", {}, ...what),
        el("td", {}, e.host || "any"),
        el("td", {}, e.path_prefix ? el("code", {}, e.path_prefix) : "any"),
        el("td", {}, e.location ? el("code", {}, e.location) : "anywhere"),
        el("td", {}, e.comment),
        el("td", { class: "created-by" }, e.created_by),
        el("td", {}, fmtTime(e.created_at)),
        el("td", { class: "excepted-count" }, letThrough),
        el("td", {}, del));
    }));
  }

  function toggleExpiry() {
    for (const label of ipForm.querySelectorAll(".custom")) label.hidden = ttlSelect.value !== "custom";
  }

  document.getElementById("mode-form").addEventListener("submit", saveMode);
  document.getElementById("add-override").addEventListener("click", () => overridesBody.append(overrideRow()));
  ipForm.addEventListener("submit", addIp);
  ipShow.addEventListener("change", () => loadIps().catch((e) => showError(e.message)));
  ttlSelect.addEventListener("change", toggleExpiry);
  toggleExpiry();
  loadMode().catch((e) => showError(e.message));
  loadIps().catch((e) => showError(e.message));
  loadExceptions().catch((e) => showError(e.message));
})();
