// The analytics page: batch marts and ML outputs, each panel from its own endpoint.
"use strict";

(() => {
  const dateFrom = document.getElementById("date-from");
  const dateTo = document.getElementById("date-to");
  const category = document.getElementById("category");
  const grain = document.getElementById("grain");
  const customer = document.getElementById("customer");
  let loading = 0;

  const dates = () => ({ date_from: dateFrom.value, date_to: dateTo.value });

  // Run one panel's loader; its failure is shown in the panel (and the banner when PG is down).
  // A loader draws only if no newer request for its panel started meanwhile (filters changed
  // quickly): answers can arrive out of order.
  const latest = {};
  async function load(panelId, loader) {
    loading += 1;
    document.body.dataset.loading = String(loading);
    const token = (latest[panelId] = (latest[panelId] || 0) + 1);
    const current = () => latest[panelId] === token;
    try {
      await loader(current);
      SM.recovered();
    } catch (err) {
      if (!current()) return;
      SM.failed(panelId, err);
      if (err.kind === "unreachable" || err.kind === "server") SM.banner(err.message, err.kind);
    } finally {
      loading -= 1;
      document.body.dataset.loading = String(loading);
    }
  }

  async function trends(current) {
    const data = await SM.getJSON("/api/analytics/trends", { ...dates(), grain: grain.value });
    if (!current()) return;
    if (!SM.ready("p-trends", data.rows && data.rows.length ? data : { empty: data.empty || "no sales in this range" })) return;
    const rows = data.rows;
    const x = rows.map((r) => r.period_start);
    const traces = [
      {
        name: `revenue per ${data.grain}`,
        type: "bar",
        x,
        y: rows.map((r) => r.revenue),
        customdata: rows.map((r) => [r.orders, r.units, r.period_end, r.is_complete ? "" : " (incomplete)"]),
        marker: { color: rows.map((r) => (r.is_complete ? "#93c5fd" : "#cbd5e1")) },
        hovertemplate:
          "%{x}–%{customdata[2]}%{customdata[3]}<br>revenue %{y:,.2f}<br>%{customdata[0]:,} orders · %{customdata[1]:,} units<extra></extra>",
      },
    ];
    if (data.grain === "day") {
      traces.push(
        { name: "7-day mean", type: "scatter", mode: "lines", x, y: rows.map((r) => r.revenue_ma_7d),
          line: { color: "#1d4ed8", width: 2 }, hovertemplate: "7-day mean %{y:,.2f}<extra></extra>" },
        { name: "28-day mean", type: "scatter", mode: "lines", x, y: rows.map((r) => r.revenue_ma_28d),
          line: { color: "#f59e0b", width: 2 }, hovertemplate: "28-day mean %{y:,.2f}<extra></extra>" },
      );
    }
    document.getElementById("trends-sub").textContent =
      `Realised revenue per ${data.grain}` + (data.grain === "day" ? ", with its 7- and 28-day means." : ".");
    await SM.plot("trends-chart", traces, { hovermode: "x unified", yaxis: { tickformat: ",.0f" }, bargap: 0.1 });
  }

  async function forecast(current) {
    const data = await SM.getJSON("/api/analytics/trends", { ...dates(), grain: "day" });
    if (!current()) return;
    const fc = data.forecast || { empty: data.empty || "no forecast yet" };
    if (!SM.ready("p-forecast", fc)) return;
    const rows = fc.rows;
    const column = fc.history_column;
    const first = rows[0].date;
    // without a chosen start, show the 120 days before the forecast as context
    const since = dateFrom.value || new Date(Date.parse(first) - 120 * 86400000).toISOString().slice(0, 10);
    const history = (data.rows || []).filter((r) => r.period_start >= since && r.period_start < first);
    const measure = fc.target === "revenue" ? "revenue" : "orders placed";
    const money = fc.target === "revenue";
    const fmt = money ? ",.2f" : ",.0f";
    const x = rows.map((r) => r.date);
    await SM.plot(
      "forecast-chart",
      [
        { name: `${measure} (actual)`, type: "scatter", mode: "lines", x: history.map((r) => r.period_start),
          y: history.map((r) => r[column]), line: { color: "#64748b", width: 1.5 },
          hovertemplate: `%{x}<br>actual %{y:${fmt}}<extra></extra>` },
        { name: "interval", type: "scatter", mode: "lines", x, y: rows.map((r) => r.upper),
          line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
        { name: "forecast interval", type: "scatter", mode: "lines", x, y: rows.map((r) => r.lower),
          fill: "tonexty", fillcolor: "rgba(37,99,235,0.15)", line: { width: 0 },
          customdata: rows.map((r) => r.upper),
          hovertemplate: `%{x}<br>interval %{y:${fmt}} – %{customdata:${fmt}}<extra></extra>` },
        { name: "forecast", type: "scatter", mode: "lines+markers", x, y: rows.map((r) => r.forecast),
          line: { color: "#2563eb", width: 2 }, marker: { size: 4 },
          hovertemplate: `%{x}<br>forecast %{y:${fmt}}<extra></extra>` },
      ],
      { hovermode: "x unified", yaxis: { tickformat: money ? ",.0f" : ",d" } },
    );
    document.getElementById("forecast-sub").textContent =
      `${measure} per day: the last days and the ${rows.length}-day forecast with its interval.`;
  }

  async function clv(current) {
    const data = await SM.getJSON("/api/analytics/clv", { ...dates(), category: category.value });
    if (!current()) return;
    if (!SM.ready("p-clv", data)) return;
    const s = data.stats;
    const bins = data.bins;
    const labels = bins.map((b) => (b.end === null ? `≥ ${SM.num(b.start)}` : `${SM.num(b.start)}–${SM.num(b.end)}`));
    await SM.plot(
      "clv-chart",
      [
        {
          type: "bar",
          x: bins.map((b) => (b.end === null ? b.start + (bins[1].start - bins[0].start) / 2 : (b.start + b.end) / 2)),
          y: bins.map((b) => b.customers),
          width: bins.map(() => (bins[1].start - bins[0].start) * 0.95),
          customdata: labels,
          marker: { color: bins.map((b) => (b.end === null ? "#f59e0b" : "#2563eb")) },
          hovertemplate: "CLV %{customdata}<br>%{y:,} customers<extra></extra>",
        },
      ],
      { xaxis: { title: { text: "predicted CLV" }, tickformat: ",.0f" }, yaxis: { title: { text: "customers" } }, bargap: 0 },
    );
    document.getElementById("clv-sub").textContent =
      `${SM.num(s.customers)} customers · mean ${SM.num(s.mean, SM.money)} · median ${SM.num(s.median, SM.money)} · ` +
      `90th percentile ${SM.num(s.p90, SM.money)} (last bar: above the 99th percentile, ${SM.num(s.p99, SM.money)})`;
  }

  async function products(current) {
    const data = await SM.getJSON("/api/analytics/products", { category: category.value });
    if (!current()) return;
    if (SM.ready("p-categories", data.categories ? {} : data)) {
      const c = data.categories;
      await SM.plot(
        "categories-chart",
        [
          { name: "revenue", type: "bar", x: c.map((r) => r.category), y: c.map((r) => r.revenue),
            customdata: c.map((r) => [r.products, r.units_sold]), marker: { color: "#2563eb" },
            hovertemplate: "%{x}<br>revenue %{y:,.2f}<br>%{customdata[0]:,} products · %{customdata[1]:,} units<extra></extra>" },
          { name: "margin", type: "bar", x: c.map((r) => r.category), y: c.map((r) => r.margin),
            marker: { color: "#10b981" }, hovertemplate: "%{x}<br>margin %{y:,.2f}<extra></extra>" },
        ],
        { barmode: "group", yaxis: { tickformat: ",.0f" }, margin: { l: 70, r: 10, t: 10, b: 90 } },
      );
    }
    document.getElementById("products-sub").textContent =
      `The ${data.rows ? data.rows.length : 20} best products by revenue` + (category.value ? ` in ${category.value}.` : ", all categories.");
    if (!SM.ready("p-products", data)) return;
    const rows = data.rows.slice().reverse();
    await SM.plot(
      "products-chart",
      [
        {
          type: "bar",
          orientation: "h",
          x: rows.map((r) => r.revenue),
          y: rows.map((r) => `${r.name || "?"} (#${r.product_id})`),
          customdata: rows.map((r) => [r.category, r.units_sold, r.margin, (r.margin_rate || 0) * 100, r.category_rank]),
          marker: { color: "#2563eb" },
          hovertemplate:
            "%{y}<br>%{customdata[0]} (rank %{customdata[4]} in category)<br>revenue %{x:,.2f}<br>" +
            "%{customdata[1]:,} units · margin %{customdata[2]:,.2f} (%{customdata[3]:.1f}%)<extra></extra>",
        },
      ],
      { margin: { l: 230, r: 20, t: 10, b: 40 }, xaxis: { tickformat: ",.0f" }, yaxis: { automargin: true } },
    );
  }

  async function cohorts(current) {
    const data = await SM.getJSON("/api/analytics/cohorts", dates());
    if (!current()) return;
    if (!SM.ready("p-cohorts", data)) return;
    const months = [...new Set(data.rows.map((r) => r.cohort_month.slice(0, 7)))];
    // month 0 is 100% by definition: scale the colours on the later months
    const later = data.rows.filter((r) => r.months_since_first > 0 && r.retention_rate !== null);
    const top = later.length ? Math.max(...later.map((r) => r.retention_rate * 100)) : 100;
    const maxOffset = Math.max(...data.rows.map((r) => r.months_since_first));
    const offsets = Array.from({ length: maxOffset + 1 }, (_, i) => i);
    const z = months.map(() => offsets.map(() => null));
    const info = months.map(() => offsets.map(() => null));
    for (const r of data.rows) {
      const i = months.indexOf(r.cohort_month.slice(0, 7));
      z[i][r.months_since_first] = r.retention_rate === null ? null : r.retention_rate * 100;
      info[i][r.months_since_first] = `${SM.num(r.active_customers)} of ${SM.num(r.cohort_size)}`;
    }
    await SM.plot(
      "cohorts-chart",
      [
        {
          type: "heatmap",
          x: offsets,
          y: months,
          z,
          customdata: info,
          colorscale: [[0, "#f7fbff"], [0.5, "#6baed6"], [1, "#08306b"]],
          zmin: 0,
          zmax: Math.max(top, 1),
          hoverongaps: false,
          colorbar: { title: { text: "%" }, thickness: 12, ticksuffix: "%" },
          hovertemplate: "cohort %{y}, month %{x}<br>retention %{z:.1f}%<br>%{customdata} customers<extra></extra>",
        },
      ],
      { xaxis: { title: { text: "months since first order" }, dtick: 1 }, yaxis: { autorange: "reversed", type: "category" },
        margin: { l: 70, r: 10, t: 10, b: 45 } },
    );
  }

  async function segments(current) {
    const data = await SM.getJSON("/api/analytics/segments", { category: category.value });
    if (!current()) return;
    if (!SM.ready("p-segments", data)) return;
    const rows = data.rows;
    await SM.plot(
      "segments-chart",
      [
        {
          type: "bar",
          x: rows.map((r) => r.segment),
          y: rows.map((r) => r.customers),
          customdata: rows.map((r) => [r.avg_lifetime_value, r.avg_activity_score]),
          marker: { color: rows.map((r) => r.avg_lifetime_value), showscale: true,
            colorscale: [[0, "#bfdbfe"], [1, "#1e3a8a"]],
            colorbar: { title: { text: "mean LTV" }, thickness: 12 } },
          hovertemplate: "%{x}<br>%{y:,} customers<br>mean lifetime value %{customdata[0]:,.2f}<br>mean activity %{customdata[1]:.2f}<extra></extra>",
        },
      ],
      { margin: { l: 60, r: 10, t: 10, b: 90 } },
    );
    SM.fillTable("segments-table", [
      { key: "segment", label: "segment" },
      { key: "customers", label: "customers", num: true, format: (v) => SM.num(v) },
      { key: "avg_lifetime_value", label: "mean lifetime value", num: true, format: (v) => SM.num(v, SM.money) },
      { key: "avg_activity_score", label: "mean activity", num: true, format: (v) => SM.num(v, SM.decimal) },
      { key: "top_categories", label: "commonest categories", format: (v) => v.join(", ") },
    ], rows);
  }

  async function recommendations(current) {
    const data = await SM.getJSON("/api/analytics/recommendations", { customer_id: customer.value });
    if (!current()) return;
    const list = document.getElementById("customer-suggestions");
    list.innerHTML = (data.suggestions || []).map((id) => `<option value="${id}">`).join("");
    if (!customer.value && data.customer_id !== undefined) customer.value = data.customer_id;
    const c = data.customer;
    document.getElementById("rec-customer").textContent = c
      ? `${c.first_name || ""} ${c.last_name || ""} · ${c.segment || "no segment"} · lifetime value ${SM.num(c.lifetime_value, SM.money)} · prefers ${c.preferred_category || "—"}`
      : "";
    if (!SM.ready("p-recs", data)) return;
    SM.fillTable("recs-table", [
      { key: "rank", label: "#", num: true },
      { key: "name", label: "product", format: (v, r) => `${v || "?"} (#${r.product_id})` },
      { key: "category", label: "category" },
      { key: "price", label: "price", num: true, format: (v) => SM.num(v, SM.money) },
      // a null score is a "buy again" slot (bought before), not an ALS prediction
      { key: "score", label: "score", num: true, format: (v) => (v === null || v === undefined) ? "buy again" : SM.num(v, new Intl.NumberFormat("en-US", { maximumFractionDigits: 3 })) },
    ], data.rows);
  }

  function reload(which) {
    const all = { trends, forecast, clv, products, cohorts, segments, recommendations };
    const panels = { trends: "p-trends", forecast: "p-forecast", clv: "p-clv", products: "p-products",
      cohorts: "p-cohorts", segments: "p-segments", recommendations: "p-recs" };
    return Promise.all(which.map((name) => load(panels[name], all[name])));
  }

  async function bounds() {
    try {
      const span = await SM.getJSON("/api/analytics/bounds");
      for (const input of [dateFrom, dateTo]) {
        if (span.first_day) input.min = span.first_day;
        if (span.last_day) input.max = span.last_day;
      }
    } catch (err) {
      SM.banner(err.message, err.kind);
    }
  }

  // Everything at once: the panels do not wait for the filters' choices.
  async function start() {
    await Promise.all([
      bounds(),
      SM.loadCategories("category"),
      reload(["trends", "forecast", "clv", "products", "cohorts", "segments", "recommendations"]),
    ]);
    document.body.dataset.ready = "true";
  }

  dateFrom.addEventListener("change", () => reload(["trends", "forecast", "clv", "cohorts"]));
  dateTo.addEventListener("change", () => reload(["trends", "forecast", "clv", "cohorts"]));
  category.addEventListener("change", () => reload(["clv", "products", "segments"]));
  grain.addEventListener("change", () => reload(["trends"]));
  document.getElementById("rec-form").addEventListener("submit", () => reload(["recommendations"]));
  document.getElementById("reset").addEventListener("click", () => {
    dateFrom.value = "";
    dateTo.value = "";
    category.value = "";
    reload(["trends", "forecast", "clv", "products", "cohorts", "segments"]);
  });
  start();
})();
