// The customer-health dashboard's only script: the model selector, the override form and the
// revoke buttons. Writes are posted as JSON with the page's CSRF token in a header (see
// dashboard/auth.py).
"use strict";

async function postJson(form, body) {
  const response = await fetch(form.dataset.endpoint, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", [form.dataset.csrfHeader]: form.dataset.csrf },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  return { response, answer };
}

function explain(answer) {
  if (typeof answer.detail === "string") return answer.detail;
  if (Array.isArray(answer.detail)) {
    return answer.detail.map((e) => `${(e.loc || []).slice(-1)[0] || "body"}: ${e.msg}`).join("; ");
  }
  return JSON.stringify(answer.detail);
}

function handle(form, makeBody, saved) {
  const output = form.querySelector("output.result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    output.className = "result";
    output.textContent = "Saving…";
    try {
      const { response, answer } = await postJson(form, makeBody(new FormData(form)));
      if (response.ok) {
        output.className = "result ok";
        output.textContent = `${saved(answer)} Reloading…`;
        setTimeout(() => window.location.reload(), 900);
      } else {
        output.className = "result fail";
        output.textContent = `Not saved (${response.status}): ${explain(answer)}`;
      }
    } catch (error) {
      output.className = "result fail";
      output.textContent = `Not saved: ${error}`;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }

  const form = document.getElementById("override-form");
  if (form) {
    handle(
      form,
      (data) => ({
        // A whole number from the number input; anything else is sent as typed and refused by the server.
        score: /^\d+$/.test(String(data.get("score"))) ? Number(data.get("score")) : String(data.get("score")),
        reason: String(data.get("reason") || ""),
        expires_on: String(data.get("expires_on") || ""),
        replace: data.get("replace") === "on",
      }),
      (answer) => `Override #${answer.override_id} saved: score ${answer.score} by ${answer.created_by}.`,
    );
  }
  for (const revoke of document.querySelectorAll("form.revoke")) {
    handle(
      revoke,
      (data) => ({ reason: String(data.get("reason") || "") }),
      (answer) => `Override #${answer.override_id} revoked by ${answer.revoked_by}.`,
    );
  }
});
