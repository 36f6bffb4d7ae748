// The live page: polls /api/live and redraws without reloading.
"use strict";

(() => {
  let refreshMs = 1000;
  let freshness = null; // {updatedAt: ms, serverTime: ms, receivedAt: ms, batch}
  let polls = 0;
  let timer = null;
  let inFlight = false;
  let again = false; // a filter changed while a poll was running

  const minutes = document.getElementById("minutes");
  const category = document.getElementById("category");

  function drawSales(panel) {
    if (!SM.ready("p-sales", panel)) return null;
    const rows = panel.rows;
    const x = rows.map((r) => r.window_start);
    const state = rows.map((r) => (r.is_closed ? "closed" : "open"));
    return SM.plot(
      "sales-chart",
      [
        {
          name: "revenue",
          x,
          y: rows.map((r) => r.revenue),
          customdata: state,
          type: "scatter",
          mode: "lines+markers",
          line: { color: "#2563eb", width: 2 },
          marker: { size: 4 },
          hovertemplate: "%{x|%H:%M} UTC<br>revenue %{y:,.2f}<br>%{customdata}<extra></extra>",
        },
        {
          name: "orders",
          x,
          y: rows.map((r) => r.orders),
          yaxis: "y2",
          type: "scatter",
          mode: "lines",
          line: { color: "#f59e0b", width: 1.5, dash: "dot" },
          hovertemplate: "%{x|%H:%M} UTC<br>%{y:,} orders<extra></extra>",
        },
      ],
      {
        hovermode: "x unified",
        margin: { l: 70, r: 60, t: 10, b: 40 },
        yaxis: { title: { text: "revenue" }, tickformat: ",.0f" },
        yaxis2: {
          title: { text: "orders" }, overlaying: "y", side: "right", rangemode: "tozero",
          showgrid: false, tickformat: ",d", tickmode: "auto", nticks: 6,
        },
      },
    );
  }

  function drawTop(panel) {
    const windowLabel = document.getElementById("top-window");
    if (panel.window_start) {
      windowLabel.textContent =
        `Revenue in the sliding window ${SM.clock(panel.window_start)}–${SM.clock(panel.window_end)} UTC` +
        (category.value ? ` · ${category.value}` : "");
    }
    if (!SM.ready("p-top", panel)) return null;
    const rows = panel.rows.slice().reverse(); // best at the top of a horizontal bar chart
    const labels = rows.map((r) => (r.name ? `${r.name} (#${r.product_id})` : `#${r.product_id}`));
    return SM.plot(
      "top-chart",
      [
        {
          type: "bar",
          orientation: "h",
          x: rows.map((r) => r.revenue),
          y: labels,
          customdata: rows.map((r) => [r.orders, r.units, r.category || "—", r.product_id]),
          marker: { color: "#2563eb" },
          hovertemplate:
            "%{y}<br>revenue %{x:,.2f}<br>%{customdata[0]:,} orders · %{customdata[1]:,} units" +
            "<br>%{customdata[2]}<extra></extra>",
        },
      ],
      { margin: { l: 220, r: 20, t: 10, b: 40 }, xaxis: { tickformat: ",.0f" }, yaxis: { automargin: true } },
    );
  }

  function drawCounters(counters) {
    const box = document.getElementById("counters");
    if (counters.empty) {
      box.dataset.state = "empty";
      return;
    }
    box.dataset.state = "ready";
    const minute = counters.minute;
    document.getElementById("c-orders").textContent = SM.num(minute.orders);
    document.getElementById("c-minute").textContent =
      `minute ${SM.clock(minute.window_start).slice(0, 5)} UTC` + (minute.is_closed ? "" : " · still filling");
    document.getElementById("c-revenue").textContent = SM.num(minute.revenue, SM.money);
    document.getElementById("c-units").textContent = `${SM.num(minute.units)} units`;
    const active = counters.active;
    document.getElementById("c-active").textContent = active ? SM.num(active.active_customers_recent) : "—";
    document.getElementById("c-active-detail").textContent = active
      ? `in the last ${active.recent_minutes} min · ${SM.num(active.active_customers)} in the latest minute`
      : "";
    const revenue = counters.revenue;
    document.getElementById("c-today").textContent = revenue ? SM.num(revenue.revenue, SM.money) : "—";
    document.getElementById("c-running").textContent = revenue
      ? `${revenue.day} · since the start ${SM.num(revenue.running_revenue, SM.money)} (${SM.num(revenue.running_orders)} orders)`
      : "";
  }

  function drawAlerts(panel) {
    if (!SM.ready("p-alerts", panel)) return;
    document.getElementById("alerts").innerHTML = panel.rows
      .map(
        (a) => `<li data-alert="${SM.escape(a.alert_id)}">
          <span class="time" title="detected ${SM.escape(SM.dateTime(a.detected_at))} UTC">${SM.escape(SM.clock(a.detected_at))}</span>
          <span><span class="badge ${SM.escape(a.severity)}">${SM.escape(a.severity)}</span></span>
          <span><span class="type">${SM.escape(a.alert_type)}</span> ${SM.escape(a.message)}</span>
        </li>`,
      )
      .join("");
  }

  function updateFreshness() {
    const label = document.querySelector("#freshness .text");
    if (!freshness) return;
    if (freshness.updatedAt === null) {
      SM.setStatus("stale", "no stream data yet");
      return;
    }
    // server-side age at the poll, plus the time since the poll arrived
    const age = (freshness.serverTime - freshness.updatedAt + (Date.now() - freshness.receivedAt)) / 1000;
    const batch = freshness.batch !== null && freshness.batch !== undefined ? ` · batch #${freshness.batch}` : "";
    SM.setStatus(age <= 30 ? "fresh" : "stale", `updated ${SM.ago(age)}${batch}`);
    label.dataset.ageSeconds = String(Math.round(age));
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }

  async function poll() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    try {
      const data = await SM.getJSON("/api/live", { minutes: minutes.value, category: category.value });
      SM.banner(null);
      refreshMs = Math.round(1000 * data.refresh_seconds);
      document.getElementById("refresh").textContent = String(data.refresh_seconds);
      await Promise.all([drawSales(data.sales_per_minute), drawTop(data.top_products)]);
      drawCounters(data.counters);
      drawAlerts(data.alerts);
      const f = data.freshness;
      freshness = {
        updatedAt: f.updated_at ? Date.parse(f.updated_at) : null,
        serverTime: Date.parse(f.server_time),
        receivedAt: Date.now(),
        batch: f.batch_id,
      };
      updateFreshness();
      polls += 1;
      document.body.dataset.polls = String(polls);
      delete document.body.dataset.error;
    } catch (err) {
      SM.banner(err.message, err.kind);
      document.body.dataset.error = err.kind || "error";
    } finally {
      inFlight = false;
      schedule(again ? 0 : refreshMs);
      again = false;
    }
  }

  minutes.addEventListener("change", () => schedule(0));
  category.addEventListener("change", () => schedule(0));
  setInterval(updateFreshness, 500);
  SM.loadCategories("category");
  poll();
})();
