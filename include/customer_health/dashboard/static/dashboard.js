// The customer-health dashboard's only script: the model selector and the override form.
// Overrides are posted as JSON with the page's CSRF token in a header (see dashboard/auth.py).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }

  const form = document.getElementById("override-form");
  if (!form) return;
  const output = form.querySelector("output.result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      score: Number(data.get("score")),
      reason: String(data.get("reason") || ""),
      expires_on: String(data.get("expires_on") || ""),
      replace: data.get("replace") === "on",
    };
    output.className = "result";
    output.textContent = "Saving…";
    try {
      const response = await fetch(form.dataset.endpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", [form.dataset.csrfHeader]: form.dataset.csrf },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) {
        output.className = "result ok";
        output.textContent = `Override #${answer.override_id} saved: score ${answer.score} by ${answer.created_by}. Reloading…`;
        setTimeout(() => window.location.reload(), 900);
      } else {
        const detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail);
        output.className = "result fail";
        output.textContent = `Not saved (${response.status}): ${detail}`;
      }
    } catch (error) {
      output.className = "result fail";
      output.textContent = `Not saved: ${error}`;
    }
  });
});
