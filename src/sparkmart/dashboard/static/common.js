// Shared helpers of the three pages: fetching JSON, the error banner, panel states, charts.
"use strict";

const SM = (() => {
  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const money = new Intl.NumberFormat("en-US", {
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
  });
  const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

  class DashError extends Error {
    constructor(message, kind) {
      super(message);
      this.kind = kind;
    }
  }

  // GET a JSON endpoint; a failure becomes a DashError carrying the server's one-line message.
  async function getJSON(path, params) {
    const url = params ? `${path}?${query(params)}` : path;
    let response;
    try {
      response = await fetch(url, { cache: "no-store" });
    } catch (err) {
      throw new DashError(`The dashboard server is not answering (${err.message}).`, "server");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const message = (body && body.error) || `HTTP ${response.status} from ${path}`;
      throw new DashError(message, (body && body.kind) || "http");
    }
    return body;
  }

  // A query string from the parameters that have a value.
  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") search.set(key, value);
    }
    return search.toString();
  }

  // The banner under the header: a message (PostgreSQL unreachable...) or hidden.
  function banner(message, kind) {
    const element = document.getElementById("banner");
    if (!message) {
      element.hidden = true;
      element.textContent = "";
      delete element.dataset.kind;
      setStatus(null);
      return;
    }
    const retry = kind === "unreachable" || kind === "server" ? " Retrying…" : "";
    element.textContent = message + retry;
    element.dataset.kind = kind || "error";
    element.hidden = false;
    if (kind === "unreachable" || kind === "server") setStatus("down", "PostgreSQL unreachable");
  }

  // A request succeeded: a "PostgreSQL unreachable" banner is out of date.
  function recovered() {
    const element = document.getElementById("banner");
    if (["unreachable", "server"].includes(element.dataset.kind)) banner(null);
  }

  function setStatus(state, text) {
    const dot = document.querySelector("header.top .status .dot");
    const label = document.querySelector("header.top .status .text");
    if (!dot || !label) return;
    if (state === null) {
      if (dot.classList.contains("down")) {
        dot.className = "dot";
        label.textContent = "";
      }
      return;
    }
    dot.className = `dot ${state}`;
    label.textContent = text;
  }

  // A panel shows its chart/table ("ready") or a message ("empty", "error").
  function panelState(panel, state, message) {
    const element = typeof panel === "string" ? document.getElementById(panel) : panel;
    element.dataset.state = state;
    const box = element.querySelector(".empty-message");
    if (box) box.textContent = message || "";
  }

  // Show a panel's payload: true when it has data to draw, false when it is an empty state.
  function ready(panel, payload) {
    if (payload && payload.empty) {
      panelState(panel, "empty", payload.empty);
      return false;
    }
    panelState(panel, "ready");
    return true;
  }

  function failed(panel, err) {
    panelState(panel, "error", err.message);
  }

  const chartConfig = {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "toggleSpikelines"],
  };

  // plotly.js loads asynchronously, so the first queries run while the browser compiles it.
  const plotlyReady = new Promise((resolve, reject) => {
    if (window.Plotly) {
      resolve();
      return;
    }
    const script = document.getElementById("plotly-js");
    script.addEventListener("load", () => resolve());
    script.addEventListener("error", () =>
      reject(new DashError("plotly.js did not load from /assets/plotly.min.js.", "server")),
    );
  });

  async function plot(id, traces, layout) {
    await plotlyReady;
    const element = document.getElementById(id);
    const base = {
      margin: { l: 60, r: 20, t: 10, b: 40 },
      font: { family: "system-ui, sans-serif", size: 12, color: "#1f2933" },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      hovermode: "closest",
      legend: { orientation: "h", y: 1.12, x: 0 },
      xaxis: { gridcolor: "#eef1f5" },
      yaxis: { gridcolor: "#eef1f5", rangemode: "tozero" },
    };
    const merged = { ...base, ...layout };
    for (const axis of ["xaxis", "yaxis", "yaxis2"]) {
      if (layout && layout[axis]) merged[axis] = { ...(base[axis] || {}), ...layout[axis] };
    }
    return Plotly.react(element, traces, merged, chartConfig);
  }

  function text(value) {
    return value === null || value === undefined ? "—" : String(value);
  }

  // Build table rows from objects: columns = [{key, label, num, format}].
  function fillTable(tableId, columns, rows) {
    const table = document.getElementById(tableId);
    const head = columns
      .map((c) => `<th class="${c.num ? "num" : ""}">${escape(c.label)}</th>`)
      .join("");
    const body = rows
      .map((row) => {
        const cells = columns.map((c) => {
          const value = c.format ? c.format(row[c.key], row) : text(row[c.key]);
          return `<td class="${c.num ? "num" : ""}">${c.html ? value : escape(value)}</td>`;
        });
        return `<tr>${cells.join("")}</tr>`;
      })
      .join("");
    table.innerHTML = `<thead><tr>${head}</tr></thead><tbody>${body}</tbody>`;
  }

  function escape(value) {
    return String(value).replace(/[&<>"']/g, (ch) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[ch]);
  }

  function num(value, format) {
    return value === null || value === undefined ? "—" : (format || integer).format(value);
  }

  function bytes(value) {
    if (value === null || value === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let size = Number(value);
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    return `${unit === 0 ? size : size.toFixed(1)} ${units[unit]}`;
  }

  // "12:03:04" (UTC) from an ISO instant; dates stay dates.
  function clock(iso) {
    return iso ? iso.slice(11, 19) : "—";
  }

  function dateTime(iso) {
    return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}` : "—";
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }

  // Fill a <select> of categories once (from /api/categories), keeping "all" first.
  async function loadCategories(selectId) {
    const select = document.getElementById(selectId);
    try {
      const data = await getJSON("/api/categories");
      for (const name of data.rows) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        select.appendChild(option);
      }
      select.dataset.loaded = "true";
    } catch (err) {
      select.dataset.loaded = "error";
    }
  }

  return {
    getJSON, query, banner, recovered, setStatus, panelState, ready, failed, plot, fillTable, escape,
    num, money, decimal, integer, bytes, clock, dateTime, ago, text, loadCategories,
  };
})();
