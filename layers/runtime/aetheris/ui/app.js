// Aetheris operator UI. Plain browser JavaScript: no build step, no dependency, no CDN.
// Every request goes to a relative URL ("jobs", "jobs/ID/trace"): this page is served as .../ui,
// so they resolve next to it, under whatever stage prefix or base path the API has.
// Data is always inserted as text (never as HTML), so nothing a job recorded can run here.
"use strict";

(() => {
  const TOKEN_KEY = "aetheris.token";
  const STATUSES = ["PENDING", "RUNNING", "WAITING", "SLEEPING", "COMPENSATING", "COMPLETED", "FAILED", "CANCELLED"];
  const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
  const view = document.getElementById("view");
  const flashBox = document.getElementById("flash");
  const tokenForm = document.getElementById("token-form");
  let renderToken = 0; // a newer render makes older, still-loading ones drop their result
  let navToken = 0; // grows when the user goes elsewhere: watchers of the old page stop
  const cursors = {}; // filter -> cursors of the pages before the current one

  // -- helpers --------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      // Styles through the CSSOM: the page's Content Security Policy refuses style attributes.
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const badge = (state) => h("span", { class: `status ${state}` }, state ?? "?");
  const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");
  const json = (value) => h("pre", {}, value === undefined || value === null ? "—" : JSON.stringify(value, null, 2));
  const jobLink = (id) => h("a", { href: `#/job/${encodeURIComponent(id)}` }, id);

  function flash(message, isError) {
    flashBox.textContent = message || "";
    flashBox.className = isError ? "error" : "";
  }

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || (body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || String(status);
    }
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = { message: text.slice(0, 300) };
    }
    if (response.status === 401) askForToken();
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  function askForToken() {
    tokenForm.hidden = false;
    document.getElementById("token-input").focus();
  }

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    tokenForm.hidden = true;
    document.getElementById("token-input").value = "";
    route();
  });

  function showAuthState() {
    const box = document.getElementById("auth-state");
    box.replaceChildren();
    if (sessionStorage.getItem(TOKEN_KEY)) {
      box.append("token set · ", h("a", { href: "#", onclick: (e) => { e.preventDefault(); sessionStorage.removeItem(TOKEN_KEY); route(); } }, "forget"));
    }
  }

  function failed(error) {
    if (error instanceof ApiError && error.status === 401) return h("p", { class: "muted" }, "Waiting for a bearer token…");
    return h("div", { class: "panel" }, h("strong", {}, "Could not load: "), error instanceof ApiError ? `${error.code}: ${error.message}` : String(error));
  }

  // Any JSON value as a readable block: scalars as text, objects as facts, lists of objects as tables.
  function generic(value) {
    if (value === null || value === undefined) return h("span", { class: "muted" }, "—");
    if (Array.isArray(value)) {
      if (!value.length) return h("span", { class: "muted" }, "none");
      if (value.every((v) => v && typeof v === "object" && !Array.isArray(v))) return table(value);
      return h("span", {}, value.map(String).join(", "));
    }
    if (typeof value === "object") {
      return h("dl", { class: "facts" }, Object.entries(value).map(([k, v]) => [h("dt", {}, k), h("dd", {}, generic(v))]));
    }
    return h("span", {}, String(value));
  }

  function table(rows) {
    const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
    return h("table", {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => {
        const v = row[c];
        if (c === "job_id" && typeof v === "string") return h("td", { class: "id" }, jobLink(v));
        if (c === "status" && typeof v === "string") return h("td", {}, badge(v));
        return h("td", {}, v !== null && typeof v === "object" ? json(v) : v ?? "—");
      })))));
  }

  // -- pages ----------------------------------------------------------------------------------

  async function jobsPage(params) {
    const status = params.get("status") || "";
    const limit = params.get("limit") || "20";
    const cursor = params.get("cursor") || "";
    const key = `${status}|${limit}`;
    const query = new URLSearchParams({ limit });
    if (status) query.set("status", status);
    if (cursor) query.set("cursor", cursor);
    const page = await api(`jobs?${query}`);
    const go = (next) => {
      const p = new URLSearchParams({ limit: next.limit ?? limit });
      const s = next.status ?? status;
      if (s) p.set("status", s);
      if (next.cursor) p.set("cursor", next.cursor);
      location.hash = `#/jobs?${p}`;
    };
    const filter = h("select", { id: "status-filter", onchange: (e) => go({ status: e.target.value, cursor: "" }) },
      h("option", { value: "" }, "all statuses"), STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
    const size = h("select", { id: "page-size", onchange: (e) => go({ limit: e.target.value, cursor: "" }) },
      ["10", "20", "50", "100"].map((n) => h("option", { value: n, selected: n === limit }, `${n} per page`)));
    const stack = (cursors[key] = cursors[key] || []);
    const rows = page.jobs.map((job) => h("tr", { "data-job": job.job_id },
      h("td", { class: "id" }, jobLink(job.job_id)), h("td", {}, job.job_type), h("td", {}, job.version),
      h("td", {}, badge(job.status)), h("td", {}, when(job.created_at)), h("td", {}, when(job.updated_at))));
    return [
      h("h1", {}, "Jobs"),
      h("div", { class: "toolbar" }, filter, size, h("button", { onclick: () => route() }, "Refresh")),
      page.jobs.length
        ? h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ["job id", "type", "version", "status", "created", "status changed"].map((c) => h("th", {}, c)))), h("tbody", {}, rows))
        : h("p", { class: "muted" }, "No jobs here."),
      h("div", { class: "pager" },
        h("button", { disabled: !cursor, onclick: () => go({ cursor: stack.pop() || "" }) }, "← Newer"),
        h("button", { id: "next-page", disabled: !page.next_cursor, onclick: () => { stack.push(cursor); go({ cursor: page.next_cursor }); } }, "Older →")),
    ];
  }

  async function jobPage(jobId) {
    const [job, trace] = await Promise.all([api(`jobs/${encodeURIComponent(jobId)}`), api(`jobs/${encodeURIComponent(jobId)}/trace`)]);
    const facts = {
      job: job.job_id, type: `${job.job_type} v${job.version}`, status: badge(job.status), created: when(job.created_at),
      "status changed": when(job.updated_at), "waiting for": job.waiting_for, "current step": job.current_step,
      attempt: job.attempt, "cancel requested": job.cancel_requested_at && when(job.cancel_requested_at),
      "parent job": job.parent_id && jobLink(job.parent_id),
      "child jobs": job.children && job.children.length ? job.children.flatMap((c, i) => (i ? [", ", jobLink(c)] : [jobLink(c)])) : null,
    };
    const outcome = job.error ? ["error", json(job.error)] : job.result !== null && job.result !== undefined ? ["result", json(job.result)] : null;
    return [
      h("h1", {}, "Job ", h("code", {}, job.job_id), " ", badge(job.status)),
      h("div", { class: "panel", id: "job-facts", "data-status": job.status, "data-last-seq": trace.last_seq },
        h("dl", { class: "facts" }, Object.entries(facts).filter(([, v]) => v !== null && v !== undefined && v !== "")
          .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]), outcome && [h("dt", {}, outcome[0]), h("dd", {}, outcome[1])])),
      actions(job),
      h("h2", {}, "Timeline"), timeline(trace),
      h("h2", {}, "Effects"), effects(trace),
      h("h2", {}, "Signals"), signals(trace),
      h("h2", {}, "Causal tree"), causes(trace),
      trace.open_claim ? [h("h2", {}, "Open claim"), generic(trace.open_claim)] : null,
      h("h2", {}, "Totals"), generic(trace.totals),
    ];
  }

  function actions(job) {
    if (TERMINAL.has(job.status)) return h("p", { class: "muted" }, `Finished (${job.status}): no more signals or cancels.`);
    const name = h("input", { id: "signal-name", name: "name", value: job.waiting_for || "", required: true, maxlength: 100 });
    const payload = h("textarea", { id: "signal-payload", name: "payload", placeholder: '{"approved": true}' });
    const signalId = h("input", { id: "signal-id", name: "signal_id", placeholder: "generated", maxlength: 128 });
    const send = async (event) => {
      event.preventDefault();
      let body = {};
      try {
        if (payload.value.trim()) body.payload = JSON.parse(payload.value);
      } catch (error) {
        flash(`The payload is not JSON: ${error.message}`, true);
        return;
      }
      if (signalId.value.trim()) body.signal_id = signalId.value.trim();
      try {
        const accepted = await api(`jobs/${encodeURIComponent(job.job_id)}/signals/${encodeURIComponent(name.value.trim())}`, { method: "POST", body });
        flash(`Signal ${name.value} accepted (${accepted.signal_id}); watching the job move…`);
        watch(job.job_id, job.status, job.last_seq);
      } catch (error) {
        flash(`Signal refused: ${error.message}`, true);
      }
    };
    const cancel = async () => {
      if (!window.confirm(`Cancel job ${job.job_id}? Its compensations run first.`)) return;
      try {
        await api(`jobs/${encodeURIComponent(job.job_id)}/cancel`, { method: "POST" });
        flash("Cancel requested; watching the job move…");
        watch(job.job_id, job.status, job.last_seq);
      } catch (error) {
        flash(`Cancel refused: ${error.message}`, true);
      }
    };
    return h("div", { class: "panel" },
      h("form", { class: "inline", id: "signal-form", onsubmit: send },
        h("label", {}, "signal", name), h("label", { class: "grow" }, "payload (JSON)", payload),
        h("label", {}, "signal id", signalId), h("button", { type: "submit" }, "Send signal")),
      h("div", { class: "toolbar spaced" }, h("button", { class: "danger", id: "cancel-job", type: "button", onclick: cancel }, "Cancel job")));
  }

  // Re-render the job page each time the job changes, for up to a minute.
  function watch(jobId, status, lastSeq) {
    const until = Date.now() + 60000;
    const mine = navToken;
    const poll = async () => {
      if (mine !== navToken || Date.now() > until) return;
      try {
        const job = await api(`jobs/${encodeURIComponent(jobId)}`);
        if (job.status !== status || job.last_seq !== lastSeq) {
          status = job.status;
          lastSeq = job.last_seq;
          await route(true);
          if (TERMINAL.has(job.status)) return;
        }
      } catch (_) { /* the next poll tries again */ }
      setTimeout(poll, 400);
    };
    setTimeout(poll, 300);
  }

  // -- the timeline ---------------------------------------------------------------------------

  function timelineRows(trace) {
    const rows = [];
    const now = new Date().toISOString();
    let lastEnd = trace.created_at;
    for (const op of trace.operations) {
      const name = op.branch != null ? `${op.fan_out} branch ${op.name}` : `${op.index} ${op.kind} ${op.name}`;
      for (const a of op.attempts) {
        const known = a.started_at || a.claimed_at;
        const start = known || lastEnd;
        const end = a.ended_at || a.taken_over_at || (a.outcome === "running" ? now : start);
        const bars = [{ cls: `${a.outcome}${known ? "" : " unknown-start"}`, start, end, title: a.ended_because || a.outcome }];
        if (a.outcome === "failed" && a.next_attempt_at) bars.push({ cls: "backoff", start: a.ended_at || end, end: a.next_attempt_at, title: "retry backoff" });
        const marks = [];
        if (a.outcome === "crashed") marks.push({ at: end, text: "✕", title: a.ended_because });
        if (a.reclaimed_from) marks.push({ at: a.claimed_at || start, text: "⤳", title: `took over from ${a.reclaimed_from}` });
        rows.push({
          label: [`${name} · attempt ${a.attempt} · ${a.worker_id} · fence ${a.fence}`,
            a.outcome === "crashed" ? h("span", { class: "takeover" }, ` — crashed: ${a.ended_because}`) : null,
            a.reclaimed_from ? h("span", { class: "takeover" }, ` — took over from ${a.reclaimed_from}`) : null],
          title: `${name} · attempt ${a.attempt} · ${a.worker_id} · fence ${a.fence} · ${a.ended_because || a.outcome}`,
          data: { "data-kind": "attempt", "data-op": op.index, "data-outcome": a.outcome, "data-worker": a.worker_id, "data-fence": a.fence },
          bars, marks,
        });
        lastEnd = end;
      }
      if (op.wait) {
        const start = op.wait.parked_at || (op.signal && op.signal.arrived_at) || op.started_at || lastEnd;
        const end = (op.signal && op.signal.consumed_at) || op.wait.timed_out_at || now;
        rows.push({ label: `${name} · wait for signal ${op.wait.signal}${op.signal ? " · released by " + op.signal.signal_id : ""}`, data: { "data-kind": "wait", "data-op": op.index, "data-outcome": op.state }, bars: [{ cls: "wait", start, end, title: op.state }], marks: [] });
        lastEnd = end;
      }
      if (op.timer) {
        const end = op.timer.fired_at || now;
        rows.push({ label: `${name} · timer until ${when(op.timer.fire_at)}`, data: { "data-kind": "timer", "data-op": op.index, "data-outcome": op.state }, bars: [{ cls: "timer", start: op.timer.started_at, end, title: op.state }], marks: [] });
        lastEnd = end;
      }
      if (op.kind === "fanout" && op.started_at) {
        // The fan-out's span; its branches follow as rows of their own, side by side in time.
        const end = op.ended_at || now;
        rows.push({ label: `${name} · fan-out · ${op.state}`, data: { "data-kind": "fanout", "data-op": op.index, "data-outcome": op.state }, bars: [{ cls: "wait", start: op.started_at, end, title: op.state }], marks: [] });
      } else if (op.child_id) {
        const end = op.ended_at || now;
        rows.push({ label: [`${name} · child job `, jobLink(op.child_id), ` · ${op.state}`], title: `${name} · child job ${op.child_id}`, data: { "data-kind": "child", "data-op": op.index, "data-outcome": op.state }, bars: [{ cls: "wait", start: op.started_at || lastEnd, end, title: op.state }], marks: [] });
      } else if (!op.attempts.length && !op.wait && !op.timer) {
        const at = op.ended_at || op.started_at || lastEnd;
        rows.push({ label: `${name} · ${op.state}`, data: { "data-kind": op.kind, "data-op": op.index, "data-outcome": op.state }, bars: [], marks: [{ at, text: "■", title: op.state }] });
      }
    }
    return rows;
  }

  function timeline(trace) {
    const rows = timelineRows(trace);
    if (!rows.length) return h("p", { class: "muted" }, "Nothing ran yet.");
    const times = rows.flatMap((r) => [...r.bars.flatMap((b) => [b.start, b.end]), ...r.marks.map((m) => m.at)]).filter(Boolean).map((t) => Date.parse(t));
    const t0 = Math.min(Date.parse(trace.created_at), ...times);
    const t1 = Math.max(t0 + 1, ...times);
    const x = (t) => `${(((Date.parse(t) - t0) / (t1 - t0)) * 100).toFixed(3)}%`;
    const width = (a, b) => `${Math.max(((Date.parse(b) - Date.parse(a)) / (t1 - t0)) * 100, 0.3).toFixed(3)}%`;
    return h("div", { class: "timeline", id: "timeline" },
      rows.map((r) => h("div", { class: "tl-row", ...r.data },
        h("div", { class: "tl-label", title: r.title || r.label }, r.label),
        h("div", { class: "tl-track" },
          r.bars.map((b) => h("div", { class: `tl-bar ${b.cls}`, style: { left: x(b.start), width: width(b.start, b.end) }, title: `${b.title} (${when(b.start)} → ${when(b.end)})` })),
          r.marks.map((m) => h("span", { class: "tl-mark", style: { left: x(m.at) }, title: m.title }, m.text))))),
      h("div", { class: "tl-axis" }, h("span", {}, when(new Date(t0).toISOString())), h("span", {}, `${((t1 - t0) / 1000).toFixed(1)} s`), h("span", {}, when(new Date(t1).toISOString()))));
  }

  function effects(trace) {
    const rows = trace.operations.flatMap((op) => op.effects.map((e) => ({ op, e })));
    if (!rows.length) return h("p", { class: "muted" }, "No recorded effects.");
    return h("table", { id: "effects" },
      h("thead", {}, h("tr", {}, ["operation", "effect", "state", "semantics", "idempotency key", "claims", "worker", "claimed", "recorded", "input", "output"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map(({ op, e }) => h("tr", { "data-effect": e.name },
        h("td", {}, `${op.index} ${op.name}`), h("td", {}, `${e.kind} ${e.name}${e.call ? " #" + e.call : ""}`), h("td", {}, badge(e.state)),
        h("td", {}, e.semantics || "—"), h("td", { class: "id" }, e.idempotency_key || "—"), h("td", {}, e.claims),
        h("td", {}, e.claimed_by ? `${e.worker_id} (claimed by ${e.claimed_by})` : e.worker_id || "—"),
        h("td", {}, when(e.claimed_at)), h("td", {}, when(e.recorded_at)), h("td", {}, json(e.input)),
        h("td", {}, e.error ? json(e.error) : json(e.result))))));
  }

  function signals(trace) {
    const used = trace.operations.filter((op) => op.signal || op.wait);
    const rows = used.map((op) => ({
      wait: `${op.index} ${op.name}`, state: op.state, signal_id: op.signal ? op.signal.signal_id : null,
      payload: op.signal ? op.signal.payload : null, arrived: op.signal ? when(op.signal.arrived_at) : null,
      consumed: op.signal ? when(op.signal.consumed_at) : null, parked: op.wait ? when(op.wait.parked_at) : null,
      deadline: op.wait && op.wait.deadline ? when(op.wait.deadline) : null,
    }));
    const parts = [];
    if (trace.waiting_for) parts.push(h("p", {}, "Waiting for signal ", h("code", {}, trace.waiting_for), "."));
    parts.push(rows.length ? table(rows) : h("p", { class: "muted" }, "No waits or signals."));
    return h("div", { id: "signals" }, parts);
  }

  function causes(trace) {
    const depth = {};
    return h("ul", { class: "tree", id: "causes" }, (trace.causes || []).map((node) => {
      depth[node.id] = node.parent ? (depth[node.parent] || 0) + 1 : 0;
      return h("li", { style: { paddingLeft: `${0.6 + depth[node.id] * 1.4}rem` }, "data-node": node.id, "data-kind": node.kind },
        badge(node.state), " ", node.label,
        (node.links || []).map((l) => h("span", { class: "link" }, `${l.rel} → ${l.to}`)));
    }));
  }

  async function stuckPage() {
    try {
      const stuck = await api("observability/stuck");
      const jobs = stuck.jobs || [];
      return [h("h1", {}, "Stuck jobs"),
        h("p", { class: "muted" }, stuck.threshold_seconds !== undefined ? `No progress for more than ${stuck.threshold_seconds} s, a lost tick, or a message in a dead-letter queue.` : ""),
        jobs.length ? h("div", { id: "stuck" }, table(jobs)) : h("p", { id: "stuck" }, "Nothing is stuck.")];
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return [h("h1", {}, "Stuck jobs"), h("p", { class: "muted", id: "stuck" }, "This API has no GET /observability/stuck yet.")];
      throw error;
    }
  }

  async function summaryPage() {
    try {
      const summary = await api("observability/summary");
      const { queues, ...rest } = summary;
      const queueRows = queues && typeof queues === "object" ? Object.entries(queues).map(([queue, depth]) => ({ queue, ...(depth || {}) })) : [];
      return [h("h1", {}, "Summary"), h("div", { class: "panel", id: "summary" }, generic(rest)),
        queueRows.length ? [h("h2", {}, "Queues"), table(queueRows)] : null];
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return [h("h1", {}, "Summary"), h("p", { class: "muted", id: "summary" }, "This API has no GET /observability/summary yet.")];
      throw error;
    }
  }

  // -- routing --------------------------------------------------------------------------------

  async function route(keepFlash) {
    const mine = ++renderToken;
    if (!keepFlash) flash("");
    showAuthState();
    const hash = location.hash.replace(/^#\/?/, "") || "jobs";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    const parts = path.split("/");
    for (const link of document.querySelectorAll("[data-nav]")) link.classList.toggle("active", link.dataset.nav === (parts[0] === "job" ? "jobs" : parts[0]));
    let content;
    try {
      if (parts[0] === "job" && parts[1]) content = await jobPage(decodeURIComponent(parts.slice(1).join("/")));
      else if (parts[0] === "stuck") content = await stuckPage();
      else if (parts[0] === "summary") content = await summaryPage();
      else content = await jobsPage(params);
    } catch (error) {
      content = failed(error);
    }
    if (mine !== renderToken) return;
    view.replaceChildren(...[content].flat(3).filter(Boolean));
  }

  window.addEventListener("hashchange", () => {
    navToken += 1;
    route();
  });
  route();
})();
