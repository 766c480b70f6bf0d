// Attack detail: "Not an attack here" on a finding opens a form prefilled from the attack (its
// rule or type, host, path, location); confirming creates the exception (POST /api/v1/exceptions),
// which the node applies to the next request.
"use strict";

(() => {
  const { api, showError, showNotice } = Console;
  const form = document.getElementById("except-form");
  if (!form) return;
  const ruleBox = document.getElementById("except-rule");
  const typeBox = document.getElementById("except-type");

  function open(button) {
    ruleBox.textContent = button.getAttribute("data-rule");
    typeBox.textContent = button.getAttribute("data-type");
    document.getElementById("except-what-rule").checked = true;
    document.getElementById("except-host").value = form.getAttribute("data-host");
    document.getElementById("except-path").value = form.getAttribute("data-path");
    document.getElementById("except-location").value = button.getAttribute("data-location");
    document.getElementById("except-comment").value = "";
    form.hidden = false;
    showError("");
    showNotice("");
    document.getElementById("except-confirm").focus();
  }

  async function create(ev) {
    ev.preventDefault();
    const byRule = document.getElementById("except-what-rule").checked;
    const text = (id) => document.getElementById(id).value.trim() || null;
    const body = {
      rule_id: byRule ? ruleBox.textContent : null,
      attack_type: byRule ? null : typeBox.textContent,
      host: text("except-host"),
      path_prefix: text("except-path"),
      location: text("except-location"),
      comment: text("except-comment") || "",
    };
    try {
      const e = await api("/api/v1/exceptions", { method: "POST", body });
      form.hidden = true;
      showError("");
      showNotice(`Exception #${e.id} created: ${e.rule_id ? "rule " + e.rule_id : "type " + e.attack_type} ` +
                 `is no longer an attack at ${e.host || "any host"} ${e.path_prefix || "/"} ` +
                 `${e.location || "anywhere"}. See Settings to remove it.`);
    } catch (err) {
      showNotice("");
      showError(err.message);
    }
  }

  for (const button of document.querySelectorAll("button.not-attack")) {
    button.addEventListener("click", () => open(button));
  }
  form.addEventListener("submit", create);
  document.getElementById("except-cancel").addEventListener("click", () => { form.hidden = true; });
})();
