/*
 * Plexus dashboard, the pure part: reads the metrics tree (/admin/metrics.json?tree=1)
 * into per-scope counters, turns successive samples into per-interval differences that
 * survive counter resets (a restarted Plexus, an evicted and re-created service), sums
 * them over time windows, and formats numbers. No DOM and no clock here, so the page and
 * the browser test call the same functions.
 */
(function (root) {
  "use strict";

  /** A finite number, or null: nothing below ever yields NaN or Infinity. */
  function num(x) {
    return typeof x === "number" && Number.isFinite(x) ? x : null;
  }

  function obj(x) {
    return x !== null && typeof x === "object" && !Array.isArray(x) ? x : null;
  }

  function counter(node, name) {
    const n = obj(node) && obj(node[name]);
    return (n && num(n.counter)) || 0;
  }

  function gauge(node, name) {
    const n = obj(node) && obj(node[name]);
    return (n && num(n.gauge)) || 0;
  }

  /** A histogram's last complete window, or null when it saw no sample. */
  function stat(node, name) {
    const n = obj(node) && obj(node[name]);
    if (!n || !(num(n["stat.count"]) > 0)) return null;
    const s = { count: n["stat.count"] };
    for (const f of ["p50", "p90", "p95", "p99", "p9990", "max", "min", "avg"]) {
      s[f] = num(n["stat." + f]);
    }
    return s;
  }

  const KINDS = [
    ["server", "servers"],
    ["service", "services"],
    ["client", "clients"],
  ];

  /** The numbers the dashboard shows for one scope. */
  function readScope(node, kind) {
    const retries = obj(node.retries);
    return {
      requests: counter(node, "requests"),
      success: counter(node, "success"),
      failures: counter(node, "failures"),
      // Linkerd's retry share: service retries plus client requeues.
      retries:
        kind === "service"
          ? counter(retries, "total")
          : kind === "client"
            ? counter(retries, "requeues")
            : 0,
      pending: gauge(node, "pending"),
      connections: gauge(node, "connections"),
      removals: counter(obj(node.failure_accrual), "removals"),
      latency: stat(node, "request_latency_ms"),
    };
  }

  /** `{t, routers: {label: {servers, services, clients}}}` from the metrics tree. */
  function snapshot(tree, t) {
    const routers = {};
    const rt = obj(obj(tree) && tree.rt) || {};
    for (const label of Object.keys(rt)) {
      const node = obj(rt[label]);
      if (!node) continue;
      const r = { servers: {}, services: {}, clients: {} };
      for (const [kind, key] of KINDS) {
        const scopes = obj(node[kind]) || {};
        for (const id of Object.keys(scopes)) {
          const s = obj(scopes[id]);
          if (s) r[key][id] = readScope(s, kind);
        }
      }
      routers[label] = r;
    }
    return { t: num(t) || 0, routers };
  }

  const FIELDS = ["requests", "success", "failures", "retries"];

  function zero() {
    return { requests: 0, success: 0, failures: 0, retries: 0 };
  }

  /**
   * What a scope counted between two samples. A counter lower than before was reset (a
   * restarted Plexus, or a scope evicted and created again) and has counted its whole
   * value since; a scope missing before is new and likewise.
   */
  function delta(prev, cur) {
    const d = zero();
    for (const f of FIELDS) {
      const c = cur[f];
      const p = prev ? prev[f] : 0;
      d[f] = c >= p ? c - p : c;
    }
    return d;
  }

  function add(into, d) {
    for (const f of FIELDS) into[f] += d[f];
    return into;
  }

  /** Whether Plexus restarted between two samples: a server counter went back (server
   * scopes are never evicted). */
  function restarted(prev, cur) {
    if (!prev) return false;
    for (const label of Object.keys(cur.routers)) {
      const was = prev.routers[label];
      if (!was) continue;
      for (const id of Object.keys(cur.routers[label].servers)) {
        const p = was.servers[id];
        if (p && cur.routers[label].servers[id].requests < p.requests) return true;
      }
    }
    return false;
  }

  /**
   * One interval: `{t, dt, all, routers: {label: {total, services, clients}}}`. A router's
   * requests, successes and failures are its servers' (everything it accepted); its
   * retries are its services' retries plus its clients' requeues.
   */
  function step(prev, cur) {
    const dt = prev ? (cur.t - prev.t) / 1000 : 0;
    const out = { t: cur.t, dt: dt > 0 ? dt : 0, all: zero(), routers: {} };
    for (const label of Object.keys(cur.routers)) {
      const r = cur.routers[label];
      const was = (prev && prev.routers[label]) || {
        servers: {},
        services: {},
        clients: {},
      };
      const rec = { total: zero(), services: {}, clients: {} };
      let retries = 0;
      for (const id of Object.keys(r.servers)) {
        const d = delta(was.servers[id], r.servers[id]);
        rec.total.requests += d.requests;
        rec.total.success += d.success;
        rec.total.failures += d.failures;
      }
      for (const id of Object.keys(r.services)) {
        const d = delta(was.services[id], r.services[id]);
        rec.services[id] = d;
        retries += d.retries;
      }
      for (const id of Object.keys(r.clients)) {
        const d = delta(was.clients[id], r.clients[id]);
        rec.clients[id] = d;
        retries += d.retries;
      }
      rec.total.retries = retries;
      out.routers[label] = rec;
      add(out.all, rec.total);
    }
    return out;
  }

  /**
   * Sums what `pick(step)` returns over the steps ending within `seconds` of `now`
   * (milliseconds). `secs` is the time those steps cover, so rates stay right across
   * gaps and right after the page opens.
   */
  function windowSum(steps, now, seconds, pick) {
    const sum = zero();
    let secs = 0;
    for (let i = steps.length - 1; i >= 0; i--) {
      const s = steps[i];
      if (s.t <= now - seconds * 1000) break;
      secs += s.dt;
      const d = pick(s);
      if (d) add(sum, d);
    }
    sum.secs = secs;
    return sum;
  }

  function ratio(part, whole) {
    const p = num(part);
    const w = num(whole);
    return p === null || w === null || w <= 0 ? null : num(p / w);
  }

  /** Success rate in [0, 1], or null without any finished request. */
  function successRate(success, failures) {
    return ratio(success, (num(success) || 0) + (num(failures) || 0));
  }

  /** Per second, or null when no time was covered. */
  function perSecond(count, secs) {
    return ratio(count, secs);
  }

  /**
   * Percentiles of several histograms together. Merged exactly they cannot be: each
   * field is the highest of the parts', which is an upper bound of the combined value.
   */
  function combineLatency(stats) {
    const present = stats.filter(Boolean);
    if (present.length === 0) return null;
    if (present.length === 1) return present[0];
    const out = { count: 0, combined: true };
    for (const s of present) out.count += s.count;
    for (const f of ["p50", "p90", "p95", "p99", "p9990", "max"]) {
      const vals = present.map((s) => s[f]).filter((v) => v !== null);
      out[f] = vals.length ? Math.max(...vals) : null;
    }
    return out;
  }

  /** Totals of a router at one sample: its servers' counters and latency. */
  function routerTotals(r) {
    const t = zero();
    let connections = 0;
    let pending = 0;
    const lat = [];
    for (const id of Object.keys(r.servers)) {
      const s = r.servers[id];
      t.requests += s.requests;
      t.success += s.success;
      t.failures += s.failures;
      connections += s.connections;
      pending += s.pending;
      lat.push(s.latency);
    }
    for (const kind of ["services", "clients"]) {
      for (const id of Object.keys(r[kind])) t.retries += r[kind][id].retries;
    }
    t.connections = connections;
    t.pending = pending;
    t.latency = combineLatency(lat);
    return t;
  }

  // ---- formatting: every function takes anything and shows "—" for no value ----

  const NONE = "\u2014";

  function fmtInt(n) {
    const v = num(n);
    if (v === null) return NONE;
    const s = Math.round(Math.abs(v)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (v < 0 ? "-" : "") + s;
  }

  function fmtPercent(x, digits) {
    const v = num(x);
    return v === null ? NONE : (v * 100).toFixed(digits === undefined ? 2 : digits) + "%";
  }

  function fmtRate(r) {
    const v = num(r);
    if (v === null) return NONE;
    if (v >= 100) return fmtInt(v);
    return v.toFixed(v >= 10 ? 1 : 2);
  }

  function fmtMs(ms) {
    const v = num(ms);
    if (v === null) return NONE;
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    return fmtInt(v) + " ms";
  }

  /** `127.0.0.1/4140` (a server scope id) as an address. */
  function serverAddress(id) {
    const i = id.lastIndexOf("/");
    return i < 0 ? id : id.slice(0, i) + ":" + id.slice(i + 1);
  }

  // ---- configuration ----

  /** A router's label as Plexus uses it: `label`, else the protocol's name. */
  function routerLabel(r) {
    return (obj(r) && (r.label || r.protocol)) || "http";
  }

  function segments(path) {
    return String(path || "")
      .split("/")
      .filter((s) => s !== "");
  }

  /** Whether an `io.l5d.static` prefix (`*` segments, `{name}` captures) matches `id`. */
  function prefixMatches(prefix, id) {
    const want = segments(prefix);
    const have = segments(id);
    if (want.length > have.length) return false;
    return want.every((seg, i) => {
      if (seg === "*") return true;
      const re = seg
        .split(/\{[A-Za-z0-9_-]+\}/)
        .map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
        .join(".*");
      return new RegExp("^" + re + "$").test(have[i]);
    });
  }

  /** The load balancer configured for client `id` (`/#/...`) of a router's config. */
  function balancerFor(routerConfig, id) {
    const client = obj(routerConfig) && obj(routerConfig.client);
    let kind = "p2c";
    if (!client) return kind;
    if (client.kind === "io.l5d.static") {
      for (const c of Array.isArray(client.configs) ? client.configs : []) {
        const lb = obj(c) && obj(c.loadBalancer);
        if (lb && typeof lb.kind === "string" && prefixMatches(c.prefix, id)) kind = lb.kind;
      }
      return kind;
    }
    const lb = obj(client.loadBalancer);
    return lb && typeof lb.kind === "string" ? lb.kind : kind;
  }

  /** A dtab as text with one dentry per line, for editing. */
  function dtabLines(dtab) {
    const text = String(dtab || "").trim();
    if (text.includes("\n")) return text;
    return text
      .split(";")
      .map((d) => d.trim())
      .filter((d) => d !== "")
      .map((d) => d + ";")
      .join("\n");
  }

  root.PlexusModel = {
    num,
    snapshot,
    delta,
    step,
    restarted,
    windowSum,
    successRate,
    perSecond,
    ratio,
    combineLatency,
    routerTotals,
    fmtInt,
    fmtPercent,
    fmtRate,
    fmtMs,
    serverAddress,
    routerLabel,
    prefixMatches,
    balancerFor,
    dtabLines,
    NONE,
  };
})(window);
