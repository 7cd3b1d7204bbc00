/*
 * Plexus dtab playground: pick a router, type a path and optionally edit the dtab, and
 * see the delegation tree /delegator.json explains with the router's live namers, as
 * nested lists: each node's path, the dentry that rewrote it, and where it ends (bound
 * addresses, neg, fail). Alternatives show which branch decides and which are not reached.
 */
(function () {
  "use strict";

  const M = window.PlexusModel;
  const routers = {}; // label -> router config

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

  function obj(x) {
    return x !== null && typeof x === "object" && !Array.isArray(x) ? x : null;
  }

  // ---- what the proxy would do with a tree ----

  function addrType(bound) {
    const a = obj(bound) && obj(bound.addr);
    return a && typeof a.type === "string" ? a.type : "pending";
  }

  /** Whether a branch decides an alternative: everything but a negative one does. */
  function decides(n) {
    if (!obj(n)) return false;
    switch (n.type) {
      case "neg":
        return false;
      case "leaf":
        return addrType(n.bound) !== "neg";
      case "delegate":
        return decides(n.delegate);
      case "transformation":
        return decides(n.tree);
      case "alt":
        return (n.alt || []).some(decides);
      case "union":
        return (n.union || []).some((m) => obj(m) && decides(m.tree));
      default: // fail, empty, exception: they end the search
        return true;
    }
  }

  /** Where a tree ends up: `[{kind, node, weight}]`, empty when it is negative. */
  function outcome(n, weight) {
    if (!obj(n)) return [];
    switch (n.type) {
      case "leaf":
        return addrType(n.bound) === "neg" ? [] : [{ kind: "bound", node: n, weight }];
      case "neg":
        return [];
      case "delegate":
        return outcome(n.delegate, weight);
      case "transformation":
        return outcome(n.tree, weight);
      case "alt": {
        const first = (n.alt || []).find(decides);
        return first ? outcome(first, weight) : [];
      }
      case "union":
        return (n.union || [])
          .filter((m) => obj(m) && decides(m.tree))
          .flatMap((m) => outcome(m.tree, m.weight));
      default:
        return [{ kind: n.type, node: n, weight }];
    }
  }

  // ---- rendering ----

  function hostPort(a) {
    const ip = String(a.ip);
    return (ip.includes(":") ? "[" + ip + "]" : ip) + ":" + a.port;
  }

  function boundBlock(bound, heading) {
    const b = obj(bound) || {};
    const addr = obj(b.addr) || {};
    const block = el(
      "div",
      { class: "bound" },
      el("span", { class: "muted small", text: (heading || "bound") + " " }),
      el("span", { class: "id", text: String(b.id || "") }),
    );
    if (b.path && b.path !== "/") {
      block.append(el("span", { class: "muted small", text: "  residual " }), el("span", { class: "mono", text: String(b.path) }));
    }
    const chips = el("div", { class: "addrs" });
    switch (addr.type) {
      case "bound": {
        const addrs = Array.isArray(addr.addrs) ? addr.addrs : [];
        if (addrs.length === 0) chips.append(el("span", { class: "pill warn", text: "no addresses" }));
        for (const a of addrs) {
          if (!obj(a)) continue;
          const meta = obj(a.meta) || {};
          const extra = Object.entries(meta)
            .map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v)))
            .join(" ");
          chips.append(el("span", { class: "addr-chip", text: hostPort(a), title: extra || null }));
          if (extra) chips.append(el("span", { class: "addr-chip meta", text: extra }));
        }
        break;
      }
      case "neg":
        chips.append(el("span", { class: "pill none", text: "neg: the namer has no such name" }));
        break;
      case "failed":
        chips.append(el("span", { class: "pill bad", text: "failed: " + String(addr.cause || "") }));
        break;
      default:
        chips.append(el("span", { class: "pill warn", text: "pending: discovery has not answered yet" }));
    }
    block.append(chips);
    return block;
  }

  const KIND_NAMES = {
    delegate: "delegate",
    alt: "alternatives",
    union: "union",
    leaf: "bound",
    neg: "neg",
    fail: "fail",
    empty: "empty",
    exception: "error",
    transformation: "transform",
  };

  function renderNode(n, opts) {
    const li = el("li");
    if (!obj(n)) {
      li.append(el("span", { class: "muted", text: "(unreadable node)" }));
      return li;
    }
    const row = el(
      "div",
      { class: "node" + (opts.unused ? " unused" : ""), "data-type": String(n.type) },
      el("span", { class: "kind " + String(n.type), text: KIND_NAMES[n.type] || String(n.type) }),
    );
    if (opts.weight !== undefined) row.append(el("span", { class: "weight", text: "\u00d7" + opts.weight }));
    row.append(el("span", { class: "path", text: String(n.path || "") }));
    const d = obj(n.dentry);
    if (d) row.append(el("span", { class: "dentry", text: "via " + d.prefix + " => " + d.dst }));
    if (opts.note) row.append(el("span", { class: "note", text: opts.note }));
    li.append(row);
    const kids = el("ul");
    switch (n.type) {
      case "delegate":
        kids.append(renderNode(n.delegate, { unused: opts.unused }));
        break;
      case "alt": {
        const children = Array.isArray(n.alt) ? n.alt : [];
        const chosen = children.findIndex(decides);
        children.forEach((c, i) => {
          let note;
          if (chosen < 0 || i < chosen) note = "negative: falls through";
          else if (i === chosen) note = children.length > 1 ? "first that resolves: used" : undefined;
          else note = "not reached";
          kids.append(renderNode(c, { unused: opts.unused || (chosen >= 0 && i > chosen), note }));
        });
        break;
      }
      case "union":
        for (const m of Array.isArray(n.union) ? n.union : []) {
          if (obj(m)) kids.append(renderNode(m.tree, { unused: opts.unused, weight: m.weight }));
        }
        break;
      case "leaf":
        li.append(boundBlock(n.bound));
        break;
      case "transformation":
        li.append(boundBlock(n.bound, String(n.name || "transformer") + " rewrites"));
        kids.append(renderNode(n.tree, { unused: opts.unused }));
        break;
      case "exception":
        li.append(el("div", { class: "error", text: String(n.message || "error") }));
        break;
      case "neg":
        row.append(el("span", { class: "note", text: "no dentry or namer binds this" }));
        break;
      case "fail":
        row.append(el("span", { class: "note", text: "fails: requests for it are refused" }));
        break;
      case "empty":
        row.append(el("span", { class: "note", text: "empty: bound to no address" }));
        break;
    }
    if (kids.childNodes.length) li.append(kids);
    return li;
  }

  function renderSummary(tree) {
    const s = $("summary");
    const ends = outcome(tree);
    s.replaceChildren(el("span", { class: "label", text: "Resolves to" }));
    if (ends.length === 0) {
      s.append(el("span", { class: "pill none", text: "neg: nothing binds this name" }));
    }
    for (const e of ends) {
      if (e.kind === "bound") {
        const b = obj(e.node.bound) || {};
        const addr = obj(b.addr) || {};
        s.append(el("span", { class: "mono strong", text: (e.weight !== undefined ? "\u00d7" + e.weight + " " : "") + String(b.id || "") }));
        if (addr.type === "bound") {
          for (const a of Array.isArray(addr.addrs) ? addr.addrs : []) {
            if (obj(a)) s.append(el("span", { class: "addr-chip", text: hostPort(a) }));
          }
          if (!Array.isArray(addr.addrs) || addr.addrs.length === 0) {
            s.append(el("span", { class: "pill warn", text: "no addresses" }));
          }
        } else if (addr.type === "failed") {
          s.append(el("span", { class: "pill bad", text: "discovery failed" }));
        } else {
          s.append(el("span", { class: "pill warn", text: "pending" }));
        }
      } else if (e.kind === "fail") {
        s.append(el("span", { class: "pill bad", text: "fail (!)" }));
      } else if (e.kind === "empty") {
        s.append(el("span", { class: "pill warn", text: "empty ($)" }));
      } else {
        s.append(el("span", { class: "pill bad", text: String(e.node.message || e.kind) }));
      }
    }
    s.hidden = false;
  }

  // ---- the form ----

  function selectedRouter() {
    return routers[$("router").value];
  }

  function routerDtab() {
    const r = selectedRouter();
    return M.dtabLines(r && typeof r.dtab === "string" ? r.dtab : "");
  }

  function syncUrl() {
    const params = new URLSearchParams();
    params.set("router", $("router").value);
    params.set("path", $("path").value);
    if ($("dtab").value.trim() !== routerDtab().trim()) params.set("dtab", $("dtab").value);
    history.replaceState(null, "", "/delegator?" + params.toString());
  }

  async function explain() {
    const namespace = $("router").value;
    const path = $("path").value.trim();
    const dtab = $("dtab").value;
    $("result-panel").hidden = false;
    $("error").hidden = true;
    $("summary").hidden = true;
    $("result").replaceChildren(el("p", { class: "muted", text: "Resolving…" }));
    $("result-meta").textContent = namespace + " · " + path;
    syncUrl();
    let rsp;
    let body;
    try {
      rsp = await fetch("/delegator.json", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ namespace, path, dtab }),
        cache: "no-store",
      });
      body = await rsp.text();
    } catch (e) {
      return showError("Cannot reach Plexus: " + (e.message || e));
    }
    if (!rsp.ok) {
      const hint = rsp.status === 503 ? "\n(discovery has not answered yet; try again)" : "";
      return showError(body.trim() + hint || "HTTP " + rsp.status);
    }
    let tree;
    try {
      tree = JSON.parse(body);
    } catch (e) {
      return showError("Unreadable answer from Plexus: " + e.message);
    }
    renderSummary(tree);
    $("result").replaceChildren(el("ul", { class: "tree", id: "tree" }, renderNode(tree, {})));
  }

  function showError(text) {
    $("result").replaceChildren();
    $("summary").hidden = true;
    const e = $("error");
    e.textContent = text;
    e.hidden = false;
  }

  async function init() {
    const params = new URLSearchParams(location.search);
    const select = $("router");
    try {
      const rsp = await fetch("/config.json", { cache: "no-store" });
      const config = await rsp.json();
      for (const r of Array.isArray(config.routers) ? config.routers : []) {
        const label = M.routerLabel(r);
        routers[label] = r;
        select.append(el("option", { value: label, text: label + (r.protocol ? " (" + r.protocol + ")" : "") }));
      }
    } catch (e) {
      $("result-panel").hidden = false;
      showError("Cannot read the routers from /config.json: " + (e.message || e));
    }
    if (params.get("router") && routers[params.get("router")]) select.value = params.get("router");
    if (params.get("path")) $("path").value = params.get("path");
    $("dtab").value = params.has("dtab") ? params.get("dtab") : routerDtab();
    select.addEventListener("change", () => {
      $("dtab").value = routerDtab();
    });
    $("reset-dtab").addEventListener("click", () => {
      $("dtab").value = routerDtab();
    });
    $("delegate-form").addEventListener("submit", (e) => {
      e.preventDefault();
      explain();
    });
    $("dtab").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        explain();
      }
    });
    if (params.get("path") && select.value) explain();
    else $("path").focus();
  }

  init();
})();
