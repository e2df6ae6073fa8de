// Spillway dashboard: reads JSON snapshots from /dashboard/events (Server-Sent Events) and
// draws them. No libraries, nothing loaded from elsewhere.
"use strict";
(function () {
  var HISTORY = 120; // seconds of the traffic chart
  var history = [];
  var source = null;

  // --- small DOM helpers (text goes in as text, never as markup) ---
  function h(tag, attrs, kids) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") el.textContent = attrs[k];
        else if (k === "style") el.style.cssText = attrs[k];
        else el.setAttribute(k, attrs[k]);
      });
    }
    (kids || []).forEach(function (kid) {
      if (kid !== null && kid !== undefined) {
        el.appendChild(typeof kid === "string" ? document.createTextNode(kid) : kid);
      }
    });
    return el;
  }
  function $(id) { return document.getElementById(id); }
  function replace(el, kids) {
    while (el.firstChild) el.removeChild(el.firstChild);
    kids.forEach(function (k) { if (k) el.appendChild(k); });
  }

  // --- number formats ---
  function rate(x) { return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2); }
  function count(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(n);
  }
  function usd(x) {
    if (x === 0) return "$0";
    if (x < 0.01) return "$" + x.toFixed(5);
    if (x < 1) return "$" + x.toFixed(4);
    return "$" + x.toFixed(2);
  }
  function ms(x) {
    if (x === null || x === undefined) return "–";
    return x >= 1000 ? (x / 1000).toFixed(2) + " s" : x.toFixed(0) + " ms";
  }
  function secs(msLeft) { return (msLeft / 1000).toFixed(1) + " s"; }
  function shortModel(id) { return id.replace(/^[^.]+\./, "").replace(/:\d+$/, ""); }

  // --- totals ---
  function kpi(label, value, unit, note) {
    return h("div", { class: "kpi" }, [
      h("div", { class: "label", text: label }),
      h("div", { class: "value" }, [value, unit ? h("small", { text: " " + unit }) : null]),
      note ? h("div", { class: "note", text: note }) : null,
    ]);
  }
  function drawKpis(s) {
    var t = s.totals;
    var throttled = t.throttled_quota_per_s + t.throttled_capacity_per_s;
    replace($("kpis"), [
      kpi("Requests", rate(t.requests_per_s), "/s", count(t.requests) + " since start"),
      kpi("Served", rate(t.served_per_s), "/s", count(t.served) + " served · " + count(t.errors) + " errors"),
      kpi("Spilled", rate(t.spilled_per_s), "/s", count(t.spilled) + " served outside their source"),
      kpi("Throttled", rate(throttled), "/s", "quota " + count(t.throttled_quota) + " · capacity " + count(t.throttled_capacity)),
      kpi("First byte p50", ms(t.ttft_ms.p50), "", "p99 " + ms(t.ttft_ms.p99) + " · " + t.ttft_ms.count + " streams, " + s.ttft_window_s + " s"),
      kpi("Cost", usd(t.cost_usd), "", usd(t.cost_usd_per_s * 60) + "/min · " + count(t.input_tokens + t.output_tokens) + " tokens"),
    ]);
  }

  // --- traffic chart (canvas: no markup namespaces, nothing external) ---
  function drawChart() {
    var c = $("spark");
    var w = c.clientWidth, ht = c.clientHeight, dpr = window.devicePixelRatio || 1;
    if (!w) return;
    c.width = w * dpr; c.height = ht * dpr;
    var g = c.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, ht);
    var max = 1;
    history.forEach(function (p) { max = Math.max(max, p.req, p.spill, p.thr); });
    var top = 14, bottom = ht - 4, left = 34;
    g.strokeStyle = "#e3e7ee"; g.fillStyle = "#6b7686"; g.lineWidth = 1;
    g.font = "11px system-ui, sans-serif";
    [0, 0.5, 1].forEach(function (f) {
      var y = bottom - f * (bottom - top);
      g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
      g.fillText(rate(max * f), 0, y + 4);
    });
    var step = (w - left) / (HISTORY - 1);
    function line(key, colour) {
      g.strokeStyle = colour; g.lineWidth = 2; g.beginPath();
      var off = HISTORY - history.length;
      history.forEach(function (p, i) {
        var x = left + (off + i) * step, y = bottom - (p[key] / max) * (bottom - top);
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    }
    line("thr", "#d64545");
    line("spill", "#e07b24");
    line("req", "#3b6fd8");
  }

  // --- regions ---
  function regionCard(r) {
    var util = r.capacity > 0 ? r.in_flight / r.capacity : 0;
    var cls = util >= 1 ? "full" : util >= 0.75 ? "hot" : "";
    var deps = r.deployments.map(function (d) {
      var flag = null;
      if (d.ejected_ms !== null) flag = h("span", { class: "flag", text: "ejected " + secs(d.ejected_ms) });
      else if (d.cooldown_ms !== null) flag = h("span", { class: "flag cool", text: "cooldown " + secs(d.cooldown_ms) });
      else if (!d.healthy) flag = h("span", { class: "flag", text: "unhealthy" });
      var lim = d.limit === d.max_in_flight ? String(d.limit) : d.limit + " (of " + d.max_in_flight + ")";
      return h("div", { class: "dep" }, [
        h("span", { text: shortModel(d.model) }),
        h("span", {}, [flag, flag ? " " : null, d.in_flight + " / " + lim]),
      ]);
    });
    function stat(label, value) { return h("div", {}, [h("span", { text: label }), value]); }
    return h("div", { class: "region " + r.health, "data-region": r.name }, [
      h("div", { class: "name" }, [r.name, h("span", { class: "badge " + r.health, text: r.health })]),
      h("div", { class: "load" }, [
        h("div", { class: "nums" }, [
          h("span", {}, [h("b", { text: String(r.in_flight) }), " in flight"]),
          h("span", { text: "capacity " + r.capacity + (r.capacity !== r.declared_capacity ? " of " + r.declared_capacity : "") }),
        ]),
        h("div", { class: "bar" }, [h("span", { class: cls, style: "width:" + Math.min(100, util * 100).toFixed(1) + "%" })]),
      ]),
      h("div", { class: "stats" }, [
        stat("arriving", rate(r.requests_per_s) + "/s"),
        stat("served here", rate(r.served_per_s) + "/s"),
        stat("spilled out", rate(r.spilled_out_per_s) + "/s"),
        stat("throttled", rate(r.throttled_per_s) + "/s"),
        stat("TTFT p50", ms(r.ttft_ms.p50)),
        stat("TTFT p99", ms(r.ttft_ms.p99)),
        stat("cost", usd(r.cost_usd)),
        stat("streams", String(r.ttft_ms.count)),
      ]),
      deps.length ? h("div", { class: "deps" }, deps) : h("div", { class: "empty", text: "no deployments" }),
    ]);
  }

  // --- flows: a source → destination matrix and the live arrows ---
  function matrix(g) {
    var names = g.regions.map(function (r) { return r.name; });
    var byPair = {};
    var max = 0;
    g.flows.forEach(function (f) { byPair[f.from + "\u0000" + f.to] = f; max = Math.max(max, f.per_s); });
    var head = h("tr", {}, [h("th", { text: "from \\ to" })].concat(names.map(function (n) { return h("th", { text: n }); })));
    var rows = names.map(function (from) {
      return h("tr", {}, [h("th", { text: from, style: "text-align:left" })].concat(names.map(function (to) {
        if (from === to) return h("td", { class: "cell self", text: "·" });
        var f = byPair[from + "\u0000" + to];
        if (!f) return h("td", { class: "cell", text: "–" });
        var a = max > 0 ? 0.1 + 0.6 * (f.per_s / max) : 0;
        var bg = f.per_s > 0 ? "background: rgba(224, 123, 36, " + a.toFixed(2) + ")" : "";
        return h("td", { class: "cell", style: bg }, [rate(f.per_s) + "/s", h("span", { class: "tot", text: count(f.total) + " total" })]);
      })));
    });
    return h("table", { class: "grid matrix" }, [h("thead", {}, [head]), h("tbody", {}, rows)]);
  }
  function arrows(g) {
    var live = g.flows.filter(function (f) { return f.per_s > 0; });
    if (!live.length) return h("div", { class: "empty", text: "No spill or failover in the last " + lastState.rate_window_s + " s: every request is served in its source region." });
    var max = Math.max.apply(null, live.map(function (f) { return f.per_s; }));
    return h("div", { class: "arrows" }, live.map(function (f) {
      var kind = f.failover_per_s > f.spill_per_s ? "failover" : "spill";
      return h("div", { class: "arrow", "data-flow": f.from + ">" + f.to }, [
        h("span", { class: "ends" }, [f.from, h("i", { text: "→" }), f.to]),
        h("div", { class: "track" }, [h("span", { class: kind, style: "width:" + (100 * f.per_s / max).toFixed(1) + "%" })]),
        h("span", { class: "rate", text: rate(f.per_s) + "/s " + kind }),
      ]);
    }));
  }
  function drawGeos(s) {
    replace($("geos"), s.geographies.map(function (g) {
      var inflight = 0, cap = 0;
      g.regions.forEach(function (r) { inflight += r.in_flight; cap += r.capacity; });
      return h("section", { class: "card geo", "data-geo": g.name }, [
        h("div", { class: "geo-head" }, [h("h2", { text: g.name }), h("span", { class: "muted", text: inflight + " / " + cap + " in flight across " + g.regions.length + " regions" })]),
        h("div", { class: "regions" }, g.regions.map(regionCard)),
        h("div", { class: "flows" }, [
          h("div", {}, [h("h2", {}, ["Flows now ", h("span", { class: "muted", text: "source → serving region, last " + s.rate_window_s + " s" })]), arrows(g)]),
          h("div", {}, [h("h2", {}, ["Flow matrix ", h("span", { class: "muted", text: "rate now, total since start" })]), h("div", { class: "scroll" }, [matrix(g)])]),
        ]),
      ]);
    }));
  }

  // --- tenants ---
  function drawTenants(s) {
    var head = h("tr", {}, ["tenant", "req/s", "requests", "throttled", "input tok", "output tok", "cost", "cost/min"].map(function (t) { return h("th", { text: t }); }));
    var rows = s.tenants.map(function (t) {
      return h("tr", { "data-tenant": t.name }, [t.name, rate(t.requests_per_s), count(t.requests), count(t.throttled), count(t.input_tokens), count(t.output_tokens), usd(t.cost_usd), usd(t.cost_usd_per_s * 60)].map(function (v) { return h("td", { text: v }); }));
    });
    if (!rows.length) rows = [h("tr", {}, [h("td", { class: "empty", text: "no tenants configured", colspan: "8" })])];
    replace($("tenants"), [h("thead", {}, [head]), h("tbody", {}, rows)]);
  }

  var lastState = null;
  function draw(s) {
    lastState = s;
    history.push({
      req: s.totals.requests_per_s,
      spill: s.totals.spilled_per_s,
      thr: s.totals.throttled_quota_per_s + s.totals.throttled_capacity_per_s,
    });
    while (history.length > HISTORY) history.shift();
    drawKpis(s);
    drawGeos(s);
    drawTenants(s);
    drawChart();
    $("updated").textContent = "updated " + new Date(s.unix_ms).toLocaleTimeString();
    document.body.setAttribute("data-snapshots", String(history.length));
  }

  function status(cls, text) {
    var el = $("conn");
    el.className = "pill " + cls;
    el.textContent = text;
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/dashboard/events");
    source.onopen = function () { status("live", "live"); };
    source.onmessage = function (ev) {
      try {
        draw(JSON.parse(ev.data));
        status("live", "live");
      } catch (e) {
        status("lost", "bad snapshot");
      }
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        // The server refused or went away for good: start again in a while.
        status("lost", "disconnected, retrying…");
        setTimeout(connect, 3000);
      } else {
        status("wait", "reconnecting…");
      }
    };
  }

  window.addEventListener("resize", drawChart);
  document.addEventListener("DOMContentLoaded", connect);
})();
