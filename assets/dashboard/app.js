/*
 * Plexus dashboard, the page: polls the admin endpoints every second, keeps the last
 * minutes of history in the browser, and renders the top line, router and service cards,
 * the client and instance table and the recent requests. Numbers come from model.js.
 */
(function () {
  "use strict";

  const M = window.PlexusModel;
  const POLL_MS = 1000;
  const RECENT_EVERY = 2; // polls between two reads of /requests.json
  const HISTORY_SECS = 15 * 60;
  const RATE_SECS = 10;
  const SUCCESS_SECS = 60;
  const FETCH_TIMEOUT_MS = 5000;
  const SERVICE_PAGE = 48;
  const RECENT_ROWS = 100;

  const state = {
    prev: null, // the last snapshot
    steps: [], // per-interval differences, HISTORY_SECS of them
    series: { t: [], rps: [], fps: [], success: [], p50: [], p95: [], p99: [] },
    routerSeries: {}, // label -> requests/s, aligned with series.t
    clientState: {},
    config: null,
    routerConfigs: {},
    polls: 0,
    lastOk: 0,
    error: null,
    showAll: false,
    clientSort: { key: "rps", dir: -1 },
  };

  // ---- small DOM helpers: text only, never HTML, since names come from requests ----

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function set(root, field, text, title) {
    const e = root.querySelector('[data-field="' + field + '"]');
    if (!e) return;
    if (e.textContent !== text) e.textContent = text;
    if (title !== undefined && e.title !== title) e.title = title;
  }

  /** A success-rate class for colouring: good, warn, bad or none. */
  function health(rate) {
    if (rate === null) return "none";
    if (rate >= 0.995) return "good";
    if (rate >= 0.95) return "warn";
    return "bad";
  }

  function setHealth(e, rate) {
    const cls = "health-" + health(rate);
    for (const c of [...e.classList]) if (c.startsWith("health-")) e.classList.remove(c);
    e.classList.add(cls);
  }

  /**
   * Keeps one element per key in `container`, in `keys` order, creating missing ones
   * with `make` and refreshing each with `update`; elements of vanished keys go.
   */
  function reconcile(container, keys, make, update) {
    const items = container._items || (container._items = new Map());
    const keep = new Set(keys);
    for (const [k, e] of items) {
      if (!keep.has(k)) {
        e.remove();
        items.delete(k);
      }
    }
    let prev = null;
    for (const k of keys) {
      let e = items.get(k);
      if (!e) {
        e = make(k);
        items.set(k, e);
      }
      update(e, k);
      const want = prev ? prev.nextSibling : container.firstChild;
      if (e !== want) container.insertBefore(e, want);
      prev = e;
    }
  }

  function filterText() {
    return $("filter").value.trim().toLowerCase();
  }

  function matches(...texts) {
    const f = filterText();
    return f === "" || texts.some((t) => String(t).toLowerCase().includes(f));
  }

  // ---- fetching ----

  async function getJson(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const rsp = await fetch(path, { cache: "no-store", signal: ctl.signal });
      const body = await rsp.text();
      if (!rsp.ok) {
        const err = new Error(path + ": " + rsp.status + " " + body.trim().slice(0, 200));
        err.status = rsp.status;
        throw err;
      }
      return JSON.parse(body);
    } finally {
      clearTimeout(timer);
    }
  }

  async function loadConfig() {
    try {
      const config = await getJson("/config.json");
      state.config = config;
      state.routerConfigs = {};
      for (const r of Array.isArray(config.routers) ? config.routers : []) {
        state.routerConfigs[M.routerLabel(r)] = r;
      }
    } catch (e) {
      // The dashboard works without it: only protocols and balancers go unnamed.
      state.config = null;
    }
  }

  async function poll() {
    const now = Date.now();
    try {
      const [tree, clients] = await Promise.all([
        getJson("/admin/metrics.json?tree=1"),
        getJson("/client_state.json"),
      ]);
      const snap = M.snapshot(tree, now);
      if (M.restarted(state.prev, snap)) {
        showNotice("Plexus restarted at " + clock(now) + ": its counters started again from zero.");
        loadConfig();
      }
      const step = M.step(state.prev, snap);
      if (state.prev) state.steps.push(step);
      state.prev = snap;
      state.clientState = clients && typeof clients === "object" ? clients : {};
      trim(now);
      record(step, snap);
      state.lastOk = now;
      state.error = null;
      render(now);
    } catch (e) {
      state.error = e && e.message ? e.message : String(e);
      gap(now);
      renderStatus(now);
    }
    if (state.polls++ % RECENT_EVERY === 0) pollRecent();
    setTimeout(poll, POLL_MS);
  }

  function trim(now) {
    const oldest = now - HISTORY_SECS * 1000;
    while (state.steps.length && state.steps[0].t < oldest) state.steps.shift();
    const s = state.series;
    let n = 0;
    while (n < s.t.length && s.t[n] * 1000 < oldest) n++;
    if (n > 0) {
      for (const k of Object.keys(s)) s[k].splice(0, n);
      for (const k of Object.keys(state.routerSeries)) state.routerSeries[k].splice(0, n);
    }
  }

  // ---- history for the charts ----

  function pushPoint(t, values, routers) {
    const s = state.series;
    s.t.push(t / 1000);
    for (const k of ["rps", "fps", "success", "p50", "p95", "p99"]) s[k].push(values[k]);
    for (const label of Object.keys(routers)) {
      if (!state.routerSeries[label]) {
        state.routerSeries[label] = new Array(s.t.length - 1).fill(null);
      }
    }
    for (const label of Object.keys(state.routerSeries)) {
      state.routerSeries[label].push(label in routers ? routers[label] : null);
    }
  }

  function record(step, snap) {
    if (step.dt <= 0) return;
    const lat = M.combineLatency(
      Object.values(snap.routers).map((r) => M.routerTotals(r).latency),
    );
    const routers = {};
    for (const [label, r] of Object.entries(step.routers)) {
      routers[label] = M.perSecond(r.total.requests, step.dt);
    }
    const sr = M.successRate(step.all.success, step.all.failures);
    pushPoint(
      step.t,
      {
        rps: M.perSecond(step.all.requests, step.dt),
        fps: M.perSecond(step.all.failures, step.dt),
        success: sr === null ? null : sr * 100,
        p50: lat ? lat.p50 : null,
        p95: lat ? lat.p95 : null,
        p99: lat ? lat.p99 : null,
      },
      routers,
    );
  }

  /** An unreachable Plexus leaves a gap in the charts rather than a misleading line. */
  function gap(now) {
    const s = state.series;
    if (s.t.length && s.rps[s.rps.length - 1] === null) return;
    pushPoint(now, { rps: null, fps: null, success: null, p50: null, p95: null, p99: null }, {});
    updateCharts();
  }

  // ---- charts ----

  const AXIS = {
    stroke: "#6b7280",
    grid: { stroke: "#eef0f4", width: 1 },
    ticks: { stroke: "#e3e6eb", width: 1 },
    font: "11px system-ui, sans-serif",
  };
  const charts = {};

  function chartWidth(e) {
    return Math.max(200, Math.floor(e.getBoundingClientRect().width));
  }

  function lineChart(id, series, fmt, range, floor) {
    const e = $(id);
    const opts = {
      width: chartWidth(e),
      height: 170,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: { x: { time: true }, y: range ? { range } : { range: (u, min, max) => [0, niceMax(Math.max(M.num(max) || 0, floor || 1))] } },
      axes: [
        Object.assign({}, AXIS, { space: 70, values: (u, vals) => vals.map((v) => clock(v * 1000)) }),
        Object.assign({}, AXIS, { size: 58, values: (u, vals) => vals.map(fmt) }),
      ],
      series: [{}].concat(
        series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.6,
          fill: s.fill,
          points: s.points ? { size: 5 } : { show: false },
          value: (u, v) => (v === null || v === undefined ? M.NONE : fmt(v)),
        })),
      ),
    };
    charts[id] = { plot: new uPlot(opts, [[]].concat(series.map(() => [])), e), el: e };
  }

  /** A round axis top a little above `max`. */
  function niceMax(max) {
    const m = M.num(max) === null ? null : max * 1.1;
    if (m === null || m <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(m)));
    for (const k of [1, 2, 2.5, 5, 10]) if (k * p >= m) return k * p;
    return 10 * p;
  }

  function initCharts() {
    if (typeof uPlot !== "function") return;
    lineChart(
      "chart-rps",
      [
        { label: "requests/s", color: "#2563eb", fill: "rgba(37,99,235,0.08)" },
        { label: "failures/s", color: "#dc2626" },
      ],
      (v) => M.fmtRate(v),
    );
    lineChart(
      "chart-success",
      [{ label: "success", color: "#059669", fill: "rgba(5,150,105,0.08)" }],
      (v) => (M.num(v) === null ? M.NONE : +v.toFixed(2) + "%"),
      (u, min) => {
        const lo = M.num(min);
        return [lo === null ? 90 : Math.max(0, Math.floor(Math.min(lo, 99) - 1)), 100];
      },
    );
    lineChart(
      "chart-latency",
      [
        { label: "p50", color: "#0891b2", points: true },
        { label: "p95", color: "#d97706", points: true },
        { label: "p99", color: "#9333ea", points: true },
      ],
      (v) => M.fmtMs(v),
      null,
      10,
    );
    window.addEventListener("resize", () => {
      for (const c of Object.values(charts)) {
        c.plot.setSize({ width: chartWidth(c.el), height: c.plot.height });
      }
    });
  }

  function updateCharts() {
    const s = state.series;
    const data = {
      "chart-rps": [s.t, s.rps, s.fps],
      "chart-success": [s.t, s.success],
      "chart-latency": [s.t, s.p50, s.p95, s.p99],
    };
    for (const [id, d] of Object.entries(data)) if (charts[id]) charts[id].plot.setData(d);
  }

  function sparkline(e) {
    if (typeof uPlot !== "function") return null;
    return new uPlot(
      {
        width: chartWidth(e),
        height: 44,
        legend: { show: false },
        cursor: { show: false },
        select: { show: false },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, niceMax(max)] } },
        axes: [{ show: false }, { show: false }],
        series: [{}, { stroke: "#2563eb", width: 1.4, fill: "rgba(37,99,235,0.10)", points: { show: false } }],
      },
      [[], []],
      e,
    );
  }

  // ---- rendering ----

  function clock(ms) {
    const d = new Date(ms);
    const p = (n, w) => String(n).padStart(w || 2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function showNotice(text) {
    const n = $("notice");
    n.textContent = text;
    n.hidden = false;
  }

  function renderStatus(now) {
    const s = $("status");
    if (state.error) {
      s.className = "status down";
      $("status-text").textContent =
        "cannot reach Plexus (" + state.error + ")" +
        (state.lastOk ? "; last update " + clock(state.lastOk) : "") + "; retrying";
    } else {
      s.className = "status live";
      $("status-text").textContent = "live · updated " + clock(now);
    }
  }

  function render(now) {
    renderStatus(now);
    renderTop(now);
    renderRouters(now);
    renderServices(now);
    renderClients(now);
    updateCharts();
  }

  function renderTop(now) {
    const root = $("top-line");
    const snap = state.prev;
    const totals = Object.values(snap.routers).map(M.routerTotals);
    const all = totals.reduce(
      (a, t) => ({
        requests: a.requests + t.requests,
        success: a.success + t.success,
        failures: a.failures + t.failures,
      }),
      { requests: 0, success: 0, failures: 0 },
    );
    const lat = M.combineLatency(totals.map((t) => t.latency));
    const rate = M.windowSum(state.steps, now, RATE_SECS, (s) => s.all);
    const win = M.windowSum(state.steps, now, SUCCESS_SECS, (s) => s.all);
    const sr = M.successRate(win.success, win.failures);
    set(root, "success-rate", M.fmtPercent(sr));
    setHealth(root.querySelector('[data-field="success-rate"]'), sr);
    set(root, "success-all", M.fmtPercent(M.successRate(all.success, all.failures)));
    set(root, "rps", M.fmtRate(M.perSecond(rate.requests, rate.secs)));
    set(root, "fps", M.fmtRate(M.perSecond(rate.failures, rate.secs)));
    const hint = lat && lat.combined ? "highest of the routers' servers (an upper bound)" : "";
    set(root, "p50", M.fmtMs(lat && lat.p50), hint);
    set(root, "p95", M.fmtMs(lat && lat.p95), hint);
    set(root, "p99", M.fmtMs(lat && lat.p99), hint);
    set(root, "requests", M.fmtInt(all.requests));
    set(root, "retry-share", M.fmtPercent(M.ratio(win.retries, win.requests), 1));
  }

  function kpi(label, field, extra) {
    return el(
      "div",
      { class: "mini" },
      el("div", { class: "mini-label", text: label }),
      el("div", { class: "mini-value " + (extra || ""), "data-field": field, text: M.NONE }),
    );
  }

  function renderRouters(now) {
    const labels = Object.keys(state.prev.routers).sort();
    $("router-count").textContent = labels.length ? labels.length + (labels.length === 1 ? " router" : " routers") : "";
    $("routers-empty").hidden = labels.length > 0;
    reconcile(
      $("router-cards"),
      labels,
      (label) => {
        const card = el(
          "article",
          { class: "card router-card", "data-kind": "router", "data-router": label },
          el(
            "header",
            { class: "card-head" },
            el("h3", { class: "card-title", text: label }),
            el("span", { class: "badge", "data-field": "protocol" }),
            el("span", { class: "muted small addr", "data-field": "servers" }),
          ),
          el(
            "div",
            { class: "card-body" },
            el(
              "div",
              { class: "headline" },
              el("div", { class: "big", "data-field": "success-rate", text: M.NONE }),
              el("div", { class: "muted small", text: "success, last 1 min" }),
            ),
            el(
              "div",
              { class: "minis" },
              kpi("req/s", "rps"),
              kpi("p50", "p50"),
              kpi("p95", "p95"),
              kpi("p99", "p99"),
              kpi("retries", "retry-share"),
              kpi("connections", "connections"),
            ),
          ),
          el("div", { class: "spark" }),
          el(
            "footer",
            { class: "card-foot" },
            el("span", {}, el("span", { class: "muted", text: "requests " }), el("span", { "data-field": "requests" })),
            el("span", {}, el("span", { class: "muted", text: "all-time success " }), el("span", { "data-field": "success-all" })),
          ),
        );
        return card;
      },
      (card, label) => {
        const r = state.prev.routers[label];
        const t = M.routerTotals(r);
        const cfg = state.routerConfigs[label];
        const pick = (s) => s.routers[label] && s.routers[label].total;
        const rate = M.windowSum(state.steps, now, RATE_SECS, pick);
        const win = M.windowSum(state.steps, now, SUCCESS_SECS, pick);
        const sr = M.successRate(win.success, win.failures);
        set(card, "protocol", cfg && cfg.protocol ? String(cfg.protocol) : "router");
        set(card, "servers", Object.keys(r.servers).map(M.serverAddress).join(", "));
        set(card, "success-rate", M.fmtPercent(sr));
        setHealth(card.querySelector('[data-field="success-rate"]'), sr);
        set(card, "rps", M.fmtRate(M.perSecond(rate.requests, rate.secs)));
        const hint = t.latency && t.latency.combined ? "highest of the servers' (an upper bound)" : "";
        set(card, "p50", M.fmtMs(t.latency && t.latency.p50), hint);
        set(card, "p95", M.fmtMs(t.latency && t.latency.p95), hint);
        set(card, "p99", M.fmtMs(t.latency && t.latency.p99), hint);
        set(card, "retry-share", M.fmtPercent(M.ratio(win.retries, win.requests), 1));
        set(card, "connections", M.fmtInt(t.connections));
        set(card, "requests", M.fmtInt(t.requests));
        set(card, "success-all", M.fmtPercent(M.successRate(t.success, t.failures)));
      },
    );
    // Sparklines measure their card, so they are drawn once it is in the page.
    for (const card of $("router-cards").children) {
      const spark = card.querySelector(".spark");
      if (!card._spark) card._spark = sparkline(spark);
      if (!card._spark) continue;
      if (card._spark.width !== chartWidth(spark)) {
        card._spark.setSize({ width: chartWidth(spark), height: 44 });
      }
      card._spark.setData([state.series.t, state.routerSeries[card.dataset.router] || []]);
    }
    const sel = $("router-filter");
    const have = new Set([...sel.options].map((o) => o.value));
    for (const label of labels) if (!have.has(label)) sel.append(el("option", { value: label, text: label }));
  }

  function serviceRows(now) {
    const rows = [];
    const only = $("router-filter").value;
    for (const [label, r] of Object.entries(state.prev.routers)) {
      if (only && label !== only) continue;
      for (const [id, s] of Object.entries(r.services)) {
        if (!matches("/" + id, label)) continue;
        const pick = (st) => st.routers[label] && st.routers[label].services[id];
        const rate = M.windowSum(state.steps, now, RATE_SECS, pick);
        const win = M.windowSum(state.steps, now, SUCCESS_SECS, pick);
        rows.push({
          key: label + " " + id,
          label,
          id,
          s,
          rps: M.perSecond(rate.requests, rate.secs),
          success: M.successRate(win.success, win.failures),
          retryShare: M.ratio(win.retries, win.requests),
        });
      }
    }
    return rows;
  }

  function sortServices(rows) {
    const by = $("service-sort").value;
    const name = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.label < b.label ? -1 : a.label > b.label ? 1 : 0);
    // Missing values sort last whatever the direction.
    const desc = (f) => (a, b) => {
      const x = f(a);
      const y = f(b);
      if (x === y) return name(a, b);
      if (x === null) return 1;
      if (y === null) return -1;
      return y - x;
    };
    const cmp = {
      rps: desc((r) => r.rps),
      success: (a, b) => {
        const x = a.success;
        const y = b.success;
        if (x === y) return name(a, b);
        if (x === null) return 1;
        if (y === null) return -1;
        return x - y;
      },
      p99: desc((r) => (r.s.latency ? r.s.latency.p99 : null)),
      requests: desc((r) => r.s.requests),
      name,
    }[by] || name;
    return rows.sort(cmp);
  }

  function renderServices(now) {
    const all = sortServices(serviceRows(now));
    const total = Object.values(state.prev.routers).reduce((n, r) => n + Object.keys(r.services).length, 0);
    const shown = state.showAll ? all : all.slice(0, SERVICE_PAGE);
    $("service-count").textContent = total
      ? (all.length === total ? total : all.length + " of " + total) + (total === 1 ? " service" : " services")
      : "";
    $("services-empty").hidden = all.length > 0;
    $("services-empty").textContent = total ? "No service matches the filter." : "No service has been identified yet.";
    $("services-more").hidden = all.length <= SERVICE_PAGE;
    $("show-all").textContent = state.showAll ? "Show the first " + SERVICE_PAGE : "Show all " + all.length;
    const byKey = new Map(shown.map((r) => [r.key, r]));
    reconcile(
      $("service-cards"),
      shown.map((r) => r.key),
      (key) => {
        const r = byKey.get(key);
        return el(
          "article",
          { class: "card service-card", "data-kind": "service", "data-router": r.label, "data-id": r.id },
          el(
            "header",
            { class: "card-head" },
            el("h3", { class: "card-title mono", text: "/" + r.id, title: "/" + r.id }),
            el("span", { class: "badge", text: r.label }),
          ),
          el(
            "div",
            { class: "card-body" },
            el(
              "div",
              { class: "headline" },
              el("div", { class: "big", "data-field": "success-rate", text: M.NONE }),
              el("div", { class: "bar" }, el("div", { class: "bar-fill" })),
            ),
            el(
              "div",
              { class: "minis" },
              kpi("req/s", "rps"),
              kpi("p50", "p50"),
              kpi("p99", "p99"),
              kpi("retries", "retry-share"),
            ),
          ),
          el(
            "footer",
            { class: "card-foot" },
            el("span", {}, el("span", { class: "muted", text: "requests " }), el("span", { "data-field": "requests" })),
            el("span", {}, el("span", { class: "muted", text: "all time " }), el("span", { "data-field": "success-all" })),
          ),
        );
      },
      (card, key) => {
        const r = byKey.get(key);
        set(card, "success-rate", M.fmtPercent(r.success));
        setHealth(card, r.success);
        const fill = card.querySelector(".bar-fill");
        const width = r.success === null ? "0%" : (r.success * 100).toFixed(1) + "%";
        if (fill.style.width !== width) fill.style.width = width;
        set(card, "rps", M.fmtRate(r.rps));
        set(card, "p50", M.fmtMs(r.s.latency && r.s.latency.p50));
        set(card, "p99", M.fmtMs(r.s.latency && r.s.latency.p99));
        set(card, "retry-share", M.fmtPercent(r.retryShare, 1));
        set(card, "requests", M.fmtInt(r.s.requests));
        set(card, "success-all", M.fmtPercent(M.successRate(r.s.success, r.s.failures)));
      },
    );
  }

  function clientRows(now) {
    const rows = new Map();
    for (const [label, r] of Object.entries(state.prev.routers)) {
      for (const [id, s] of Object.entries(r.clients)) {
        rows.set(label + " /" + id, { label, id: "/" + id, scope: id, s });
      }
    }
    for (const [id, c] of Object.entries(state.clientState)) {
      if (!c || typeof c !== "object") continue;
      const label = typeof c.router === "string" ? c.router : "";
      const key = label + " " + id;
      const row = rows.get(key) || { label, id, scope: id.replace(/^\//, ""), s: null };
      row.addresses = Array.isArray(c.addresses) ? c.addresses.map(String) : [];
      row.ejected = Array.isArray(c.ejected) ? c.ejected : [];
      row.bound = c.state;
      rows.set(key, row);
    }
    const only = $("router-filter").value;
    const out = [];
    for (const [key, row] of rows) {
      if (only && row.label !== only) continue;
      const addrs = row.addresses || [];
      if (!matches(row.id, row.label, ...addrs)) continue;
      const pick = (st) => st.routers[row.label] && st.routers[row.label].clients[row.scope];
      const rate = M.windowSum(state.steps, now, RATE_SECS, pick);
      const win = M.windowSum(state.steps, now, SUCCESS_SECS, pick);
      const s = row.s;
      out.push(
        Object.assign(row, {
          key,
          rps: M.perSecond(rate.requests, rate.secs),
          success: M.successRate(win.success, win.failures),
          requeues: win.requests > 0 ? M.ratio(win.retries, win.requests) : null,
          p50: s && s.latency ? s.latency.p50 : null,
          p99: s && s.latency ? s.latency.p99 : null,
          removals: s ? s.removals : null,
          requests: s ? s.requests : null,
          instances: addrs.length,
        }),
      );
    }
    const { key, dir } = state.clientSort;
    const text = (r) => (key === "router" ? r.label : r.id);
    out.sort((a, b) => {
      if (key === "name" || key === "router") {
        const x = text(a);
        const y = text(b);
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      }
      const x = M.num(a[key]);
      const y = M.num(b[key]);
      if (x === y) return a.id < b.id ? -1 : 1;
      if (x === null) return 1;
      if (y === null) return -1;
      return (x - y) * dir;
    });
    return out;
  }

  function instanceList(row) {
    const ejected = new Map();
    for (const e of row.ejected || []) if (e && typeof e.address === "string") ejected.set(e.address, e);
    const list = el("ul", { class: "instances" });
    const addrs = row.addresses || [];
    for (const a of addrs) {
      const e = ejected.get(a);
      const item = el("li", {}, el("span", { class: "mono", text: a }));
      if (e) {
        const probe = M.num(e.next_probe_in_ms);
        item.append(
          el("span", {
            class: "pill bad",
            text: "ejected" + (probe === null ? "" : " · probe in " + (probe / 1000).toFixed(1) + " s"),
            title:
              String(e.reason || "circuit breaker") +
              "; out for " + M.fmtMs(e.removed_for_ms) +
              "; ejected " + M.fmtInt(e.ejections) + " time(s)",
          }),
        );
      } else {
        item.append(el("span", { class: "pill good", text: "in rotation" }));
      }
      list.append(item);
    }
    for (const [a, e] of ejected) {
      if (!addrs.includes(a)) {
        list.append(el("li", {}, el("span", { class: "mono", text: a }), el("span", { class: "pill bad", text: "ejected", title: String(e.reason || "") })));
      }
    }
    if (addrs.length === 0 && ejected.size === 0) {
      // client_state.json is keyed by client id: another router's entry may hold it.
      list.append(
        el("li", {
          class: "muted",
          text: row.bound ? "no instances" : "no instance state",
          title: row.bound ? null : "/client_state.json has no entry for this router's client",
        }),
      );
    }
    return list;
  }

  function renderClients(now) {
    const rows = clientRows(now);
    const total = new Set([
      ...Object.keys(state.clientState),
      ...Object.values(state.prev.routers).flatMap((r) => Object.keys(r.clients).map((id) => "/" + id)),
    ]).size;
    $("client-count").textContent = total ? rows.length + " of " + total + (total === 1 ? " client" : " clients") : "";
    $("clients-empty").hidden = rows.length > 0;
    $("clients-empty").textContent = total ? "No client matches the filter." : "No client has been bound yet.";
    for (const th of document.querySelectorAll("#client-table th[data-sort]")) {
      th.classList.toggle("sorted", th.dataset.sort === state.clientSort.key);
      th.classList.toggle("asc", th.dataset.sort === state.clientSort.key && state.clientSort.dir > 0);
    }
    const byKey = new Map(rows.map((r) => [r.key, r]));
    reconcile(
      $("client-rows"),
      rows.map((r) => r.key),
      (key) => {
        const r = byKey.get(key);
        const cells = ["rps", "success", "p50", "p99", "requeues", "removals", "requests"].map((f) =>
          el("td", { class: "num", "data-field": f }),
        );
        return el(
          "tr",
          { "data-kind": "client", "data-router": r.label, "data-id": r.id },
          el(
            "td",
            {},
            el("div", { class: "mono strong", text: r.id }),
            el("div", { class: "muted small", "data-field": "balancer" }),
          ),
          el("td", { text: r.label }),
          el("td", { "data-field": "instances" }),
          ...cells,
        );
      },
      (tr, key) => {
        const r = byKey.get(key);
        const cfg = state.routerConfigs[r.label];
        set(tr, "balancer", "balancer: " + M.balancerFor(cfg, r.id));
        const inst = tr.querySelector('[data-field="instances"]');
        const list = instanceList(r);
        if (!inst.firstChild || inst.firstChild.outerHTML !== list.outerHTML) {
          inst.replaceChildren(list);
        }
        set(tr, "rps", M.fmtRate(r.rps));
        set(tr, "success", M.fmtPercent(r.success));
        setHealth(tr.querySelector('[data-field="success"]'), r.success);
        set(tr, "p50", M.fmtMs(r.p50));
        set(tr, "p99", M.fmtMs(r.p99));
        set(tr, "requeues", M.fmtPercent(r.requeues, 1));
        set(tr, "removals", M.fmtInt(r.removals));
        set(tr, "requests", M.fmtInt(r.requests));
      },
    );
  }

  // ---- recent requests ----

  let recent = null; // null: not read yet; "off"; or the rows

  async function pollRecent() {
    let message = null;
    try {
      const body = await getJson("/requests.json");
      recent = body && Array.isArray(body.requests) ? body.requests : [];
    } catch (e) {
      if (e.status === 404) {
        recent = "off";
      } else {
        message = "Cannot read recent requests: " + (e.message || e);
      }
    }
    renderRecent(message);
  }

  function renderRecent(error) {
    const msg = $("recent-message");
    const table = $("recent-table");
    if (error) {
      msg.hidden = false;
      msg.textContent = error;
      return;
    }
    if (recent === "off" || recent === null) {
      msg.hidden = false;
      msg.textContent = "Recent requests are off (add the io.l5d.recentRequests telemeter).";
      msg.dataset.state = "off";
      table.hidden = true;
      $("recent-count").textContent = "";
      return;
    }
    const rows = recent
      .filter((r) => r && typeof r === "object")
      .filter((r) => matches(r.router, r.method, r.host, r.uri, r.dstService, r.dstClient, r.status, r.source))
      .slice(0, RECENT_ROWS);
    msg.dataset.state = "on";
    msg.hidden = rows.length > 0;
    msg.textContent = recent.length ? "No recent request matches the filter." : "No request sampled yet.";
    table.hidden = rows.length === 0;
    $("recent-count").textContent = recent.length ? "newest first, " + rows.length + " shown" : "";
    const body = $("recent-rows");
    body.replaceChildren(
      ...rows.map((r) => {
        const status = M.num(r.status);
        const cls = status === null ? "none" : status >= 500 ? "bad" : status >= 400 ? "warn" : "good";
        const ts = M.num(r.timestampMs);
        const time = ts === null ? M.NONE : clock(ts) + "." + String(Math.floor(ts % 1000)).padStart(3, "0");
        const dur = M.num(r.durationMs);
        return el(
          "tr",
          {},
          el("td", { class: "mono", text: time }),
          el("td", { text: String(r.router || "") }),
          el(
            "td",
            {},
            el("span", { class: "method", text: String(r.method || "") }),
            el("span", { class: "mono", text: " " + String(r.host || "") + String(r.uri || "") }),
          ),
          el("td", { class: "mono", text: String(r.dstService || "") }),
          el("td", { class: "mono", text: String(r.dstClient || "") }),
          el("td", { class: "num" }, el("span", { class: "pill " + cls, text: status === null ? M.NONE : String(status) })),
          el("td", { class: "num", text: dur === null ? M.NONE : dur.toFixed(1) + " ms" }),
          el("td", { class: "mono", text: String(r.source || "") }),
        );
      }),
    );
  }

  // ---- controls ----

  function rerender() {
    if (state.prev) render(Date.now());
    if (recent !== null) renderRecent(null);
  }

  function initControls() {
    $("filter").addEventListener("input", rerender);
    $("router-filter").addEventListener("change", rerender);
    $("service-sort").addEventListener("change", rerender);
    $("show-all").addEventListener("click", () => {
      state.showAll = !state.showAll;
      rerender();
    });
    for (const th of document.querySelectorAll("#client-table th[data-sort]")) {
      th.tabIndex = 0;
      const sort = () => {
        const key = th.dataset.sort;
        const text = key === "name" || key === "router";
        state.clientSort =
          state.clientSort.key === key
            ? { key, dir: -state.clientSort.dir }
            : { key, dir: text ? 1 : -1 };
        rerender();
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          sort();
        }
      });
    }
    const params = new URLSearchParams(location.search);
    if (params.get("q")) $("filter").value = params.get("q");
  }

  // For a look from the browser console (and the browser test): the samples and history.
  window.PlexusDashboard = state;

  initControls();
  initCharts();
  loadConfig().then(poll);
})();
