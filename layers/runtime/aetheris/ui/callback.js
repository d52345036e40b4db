// The approval page of a scoped callback (ui/callback.html#t=TOKEN). Plain browser JavaScript.
// It reads the token's own payload to show which wait it answers (the signature is checked by the
// API, not here), and sends Approve as POST ../callbacks/succeed {approved: true, comment} and
// Reject as POST ../callbacks/fail {error: {code: "rejected", message: comment}}, the token in
// Authorization: Callback. Everything is inserted as text, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.hash.slice(1)).get("t") || "";
  // Out of the address bar (and so of the history and of a screenshot), once read.
  history.replaceState(null, "", location.pathname + location.search);

  function flash(message, isError) {
    $("flash").textContent = message || "";
    $("flash").className = isError ? "error" : "";
  }

  function grant(text) {
    const parts = text.split(".");
    if (parts.length !== 4 || parts[0] !== "v1") return null;
    try {
      const b64 = parts[2].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    } catch (_) {
      return null;
    }
  }

  function finish(message) {
    $("wait").hidden = true;
    $("done").hidden = false;
    $("done").textContent = message;
  }

  async function send(approve) {
    const comment = $("comment").value;
    const body = approve
      ? { approved: true, comment }
      : { error: { code: "rejected", message: comment } };
    for (const button of document.querySelectorAll("#answer button")) button.disabled = true;
    flash("Sending…");
    try {
      const response = await fetch(`../callbacks/${approve ? "succeed" : "fail"}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Callback ${token}` },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.status === 202) {
        flash("");
        finish(approve ? "Approved. The job carries on; you can close this page." : "Rejected. The job was told.");
        return;
      }
      const error = answer.error || {};
      flash(`${error.code || response.status}: ${error.message || "the answer was refused"}`, true);
      if (response.status === 403) finish("This link cannot answer (any more): nothing was sent to the job.");
    } catch (failure) {
      flash(`The answer did not get through (${failure.message}): try again.`, true);
    }
    for (const button of document.querySelectorAll("#answer button")) button.disabled = false;
  }

  const shown = grant(token);
  if (!shown) {
    flash("This link holds no callback token: open the link exactly as you received it.", true);
    return;
  }
  $("wait-name").textContent = shown.n;
  $("wait-job").textContent = shown.j;
  $("wait-expires").textContent = new Date(shown.e * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  $("wait").hidden = false;
  if (Date.now() >= shown.e * 1000) flash("This link has expired: the job no longer waits for it.", true);
  $("answer").addEventListener("submit", (event) => {
    event.preventDefault();
    send(event.submitter ? event.submitter.value === "approve" : true);
  });
})();
