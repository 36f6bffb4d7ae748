// The run monitor: pipeline runs and their steps, streaming batches, live Spark UIs.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const open = new Set(); // runs the user expanded survive a refresh
  let first = true;

  function shortPipeline(name) {
    // "batch:/abs/out/dir" -> "batch (…/out/dir)"
    const [kind, ...rest] = String(name).split(":");
    const path = rest.join(":");
    if (!path) return kind;
    const parts = path.split("/").filter(Boolean);
    return `${kind} (…/${parts.slice(-2).join("/")})`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 120) return `${seconds.toFixed(1)} s`;
    return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  }

  function stepsTable(steps) {
    const head = ["step", "seconds", "rows in", "rows out", "quarantined", "shuffle read", "shuffle write"];
    const rows = steps.map((s) => `<tr>
        <td>${SM.escape(SM.text(s.name))}</td>
        <td class="num">${s.seconds === null || s.seconds === undefined ? "—" : s.seconds.toFixed(2)}</td>
        <td class="num">${SM.num(s.rows_in)}</td>
        <td class="num">${SM.num(s.rows_out)}</td>
        <td class="num">${SM.num(s.quarantined)}</td>
        <td class="num">${SM.bytes(s.shuffle_read_bytes)}</td>
        <td class="num">${SM.bytes(s.shuffle_write_bytes)}</td>
      </tr>`);
    return `<table class="steps"><thead><tr>${head
      .map((h, i) => `<th class="${i ? "num" : ""}">${h}</th>`)
      .join("")}</tr></thead><tbody>${rows.join("") || '<tr><td colspan="7" class="muted">no steps recorded</td></tr>'}</tbody></table>`;
  }

  // "orders: quantity_positive 1,062 · …" per entity, quarantining rules apart from repairs.
  function rulesSummary(rules) {
    const groups = [
      ["quarantined", rules.filter((r) => r.criticality !== "repair")],
      ["repaired", rules.filter((r) => r.criticality === "repair")],
    ];
    const lines = [];
    for (const [label, members] of groups) {
      const byEntity = new Map();
      for (const r of members) {
        if (!byEntity.has(r.entity)) byEntity.set(r.entity, []);
        byEntity.get(r.entity).push(`${SM.escape(r.rule)} ${SM.num(r.rows)}`);
      }
      for (const [entity, parts] of byEntity) {
        lines.push(`<tr><td>${label}</td><td>${SM.escape(entity)}</td><td>${parts.join(" · ")}</td></tr>`);
      }
    }
    return lines.length ? `<table class="rules"><tbody>${lines.join("")}</tbody></table>` : "";
  }

  function drawRuns(panel) {
    if (!SM.ready("p-runs", panel)) return;
    const header = `<details class="run" open><summary class="head">
        <span>started (UTC)</span><span>status</span><span>pipeline</span><span>mode</span>
        <span class="num">time</span><span class="num">rows in</span><span class="num">silver</span>
        <span class="num">quarantined</span><span class="num">duplicates</span></summary></details>`;
    if (first && panel.rows.length) open.add(panel.rows[0].run_id);
    const runs = panel.rows.map((run) => {
      const t = run.totals;
      const rules = rulesSummary(run.rules);
      return `<details class="run" data-run="${SM.escape(run.run_id)}" ${open.has(run.run_id) ? "open" : ""}>
        <summary>
          <span>${SM.escape(SM.dateTime(run.started_at))}</span>
          <span><span class="badge ${SM.escape(run.status)}">${SM.escape(run.status)}</span></span>
          <span title="${SM.escape(run.pipeline)} · run ${SM.escape(run.run_id)}">${SM.escape(shortPipeline(run.pipeline))}</span>
          <span>${SM.escape(run.mode)}</span>
          <span class="num">${duration(run.seconds)}</span>
          <span class="num">${SM.num(t.rows_in)}</span>
          <span class="num">${SM.num(t.silver)}</span>
          <span class="num">${SM.num(t.quarantined)}</span>
          <span class="num">${SM.num(t.duplicates)}</span>
        </summary>
        <div class="steps">${stepsTable(run.steps)}${rules}</div>
        ${run.error ? `<p class="error">${SM.escape(run.error)}</p>` : ""}
      </details>`;
    });
    const list = document.getElementById("runs-list");
    list.innerHTML = header + runs.join("");
    for (const element of list.querySelectorAll("details.run[data-run]")) {
      element.addEventListener("toggle", () => {
        if (element.open) open.add(element.dataset.run);
        else open.delete(element.dataset.run);
      });
    }
  }

  function drawSteps(panel) {
    const runs = panel.rows ? panel.rows.filter((r) => r.steps.length).slice(0, 8).reverse() : [];
    if (!SM.ready("p-steps", runs.length ? {} : { empty: panel.empty || "no run has recorded steps yet" })) return null;
    const names = [...new Set(runs.flatMap((r) => r.steps.map((s) => s.name)))];
    const labels = runs.map((r) => `${SM.dateTime(r.started_at).slice(5, 16)} ${r.run_id.slice(0, 6)}`);
    const palette = ["#2563eb", "#10b981", "#f59e0b", "#8b5cf6", "#ef4444", "#14b8a6", "#64748b"];
    return SM.plot(
      "steps-chart",
      names.map((name, i) => ({
        name,
        type: "bar",
        orientation: "h",
        y: labels,
        x: runs.map((r) => {
          const step = r.steps.find((s) => s.name === name);
          return step ? step.seconds : null;
        }),
        marker: { color: palette[i % palette.length] },
        hovertemplate: `${name}: %{x:.1f} s<extra>%{y}</extra>`,
      })),
      { barmode: "stack", xaxis: { title: { text: "seconds" } }, yaxis: { automargin: true, type: "category" },
        margin: { l: 120, r: 10, t: 30, b: 40 } },
    );
  }

  function drawBatches(panel) {
    if (!SM.ready("p-batches", panel)) return;
    SM.fillTable("batches-table", [
      { key: "batch_id", label: "batch", num: true },
      { key: "committed_at", label: "committed (UTC)", format: (v) => SM.dateTime(v) },
      { key: "input_rows", label: "input", num: true, format: (v) => SM.num(v) },
      { key: "late_rows", label: "late", num: true, format: (v) => SM.num(v) },
      { key: "malformed_rows", label: "malformed", num: true, format: (v) => SM.num(v) },
      { key: "duration_ms", label: "took ms", num: true, format: (v) => SM.num(v) },
      { key: "latency_p50_ms", label: "latency p50 ms", num: true, format: (v) => SM.num(v) },
      { key: "latency_p95_ms", label: "p95 ms", num: true, format: (v) => SM.num(v) },
    ], panel.rows);
  }

  function drawSessions(sessions) {
    if (!SM.ready("p-sessions", sessions.length ? {} : { empty: "no live Spark session: the links appear while a pipeline or the stream runs" })) return;
    SM.fillTable("sessions-table", [
      { key: "app_name", label: "application" },
      { key: "purpose", label: "started by" },
      { key: "master", label: "master" },
      { key: "started_at", label: "started (UTC)", format: (v) => SM.dateTime(v) },
      { key: "ui_url", label: "Spark UI", html: true,
        format: (v) => `<a href="${SM.escape(v)}" target="_blank" rel="noopener">${SM.escape(v)}</a>` },
    ], sessions);
  }

  async function poll() {
    try {
      const data = await SM.getJSON("/api/runs");
      SM.banner(null);
      drawSessions(data.spark_sessions);
      drawRuns(data.runs);
      await drawSteps(data.runs);
      drawBatches(data.stream_batches);
      first = false;
      document.body.dataset.ready = "true";
    } catch (err) {
      SM.banner(err.message, err.kind);
      for (const id of ["p-sessions", "p-runs", "p-steps", "p-batches"]) SM.failed(id, err);
      document.body.dataset.error = err.kind || "error";
    } finally {
      setTimeout(poll, REFRESH_MS);
    }
  }

  poll();
})();
