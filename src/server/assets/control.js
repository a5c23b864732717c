// Mission control's page script: follows the mission's feed (server-sent events)
// and re-renders the page from every `mission` event, without reload. It builds
// the same markup as the server (src/server/page.rs) with DOM calls only: every
// text goes in as text, never as HTML, and only http(s) links become links.
"use strict";

(function () {
  const main = document.getElementById("mission");
  if (!main) return;
  const live = document.querySelector("[data-testid=live]");
  const repoWeb = main.dataset.repoWeb || "";
  // For tests and the curious: how many `mission` events arrived since load.
  window.__updates = 0;
  let current = null;
  let receivedAt = 0;

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "testid") el.dataset.testid = v;
      else if (k === "class") el.className = v;
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function link(url, text) {
    if (typeof url === "string" && (url.startsWith("https://") || url.startsWith("http://"))) {
      return h("a", { href: url, rel: "noopener noreferrer" }, text);
    }
    return document.createTextNode(text);
  }

  function cls(word) {
    return String(word).replace(/[^A-Za-z0-9]/g, "-").toLowerCase();
  }

  function dollars(micros) {
    const m = Math.max(0, Math.floor(Number(micros) || 0));
    return Math.floor(m / 1e6) + "." + String(Math.floor((m % 1e6) / 1e4)).padStart(2, "0");
  }

  function duration(secs) {
    const s = Math.max(0, Math.floor(secs));
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + pad(s % 60) + "s";
    return Math.floor(s / 3600) + "h " + pad(Math.floor((s % 3600) / 60)) + "m";
  }

  function when(at) {
    const d = new Date(at * 1000);
    if (isNaN(d.getTime())) return String(at);
    return d.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function progress(done, total) {
    return h("progress", { max: Math.max(1, total), value: done });
  }

  function render(v) {
    const out = [];
    // Head.
    const state = h("p", { class: "state" }, "State: ",
      h("span", { class: "phase phase-" + cls(v.phase), testid: "phase" }, v.phase));
    if (v.paused) append(state, [" ", h("span", { class: "paused", testid: "paused" }, "paused: " + v.paused)]);
    out.push(h("section", { class: "head" },
      h("h1", {}, link(v.issue_url, v.repo + "#" + v.issue), " ",
        h("span", { testid: "title" }, v.title || "(no plan yet)")),
      state));

    // Figures.
    const b = v.budget, t = b.tokens;
    const budget = h("div", { class: "card", testid: "budget" }, h("h2", {}, "Budget"));
    if (b.limit_micros !== null && b.limit_micros !== undefined) {
      budget.append(h("progress", { max: Math.max(1, b.limit_micros), value: Math.min(b.spent_micros, b.limit_micros) }));
    }
    append(budget, [
      h("p", {}, h("span", { class: "big" }, "$", h("span", { testid: "budget-spent" }, b.spent)), " of ",
        h("span", { testid: "budget-limit" }, b.limit ? "$" + b.limit : "no limit"),
        b.estimated ? h("span", { testid: "budget-estimated" }, " ($" + b.estimated + " of it estimated)") : null),
      h("p", { class: "small", testid: "budget-tokens" }, "tokens: ",
        h("span", { testid: "tokens-in" }, t.input_tokens), " in · ",
        h("span", { testid: "tokens-out" }, t.output_tokens), " out · ",
        h("span", { testid: "tokens-cache-read" }, t.cache_read_tokens), " cache read · ",
        h("span", { testid: "tokens-cache-write" }, t.cache_write_tokens), " cache write"),
    ]);
    const card = (testid, title, p, word) => h("div", { class: "card", testid }, h("h2", {}, title),
      h("progress", { max: Math.max(1, p.total), value: p.done, testid: testid === "milestones" ? "milestone-bar" : null }),
      h("p", {}, h("span", { class: "big", testid: testid + "-done" }, p.done), " of ",
        h("span", { testid: testid + "-total" }, p.total), " " + word));
    out.push(h("section", { class: "cards" },
      card("milestones", "Milestones", v.milestone, "merged"),
      card("features", "Features", v.features, "done"),
      card("assertions", "Assertions", v.assertions, "passing"),
      budget));
    if (v.warnings && v.warnings.length) {
      out.push(h("section", { class: "panel", testid: "warnings" }, h("h2", {}, "Warnings"),
        v.warnings.map((w) => h("p", {}, w))));
    }

    // Active job, last handoff, pull requests.
    const job = h("div", { class: "panel", testid: "active-job" }, h("h2", {}, "Active job"));
    const j = v.active_job;
    if (j) {
      append(job, [
        h("p", {}, h("code", { testid: "active-job-key" }, j.key), " (" + j.role + ") on ", h("code", {}, j.branch)),
        h("p", {}, "running for ", h("span", { class: "big", testid: "active-job-elapsed" }, duration(j.elapsed_secs))),
        h("p", {}, link(j.run_url, "the job's run")),
      ]);
    } else {
      job.append(h("p", { class: "none" }, "none"));
    }
    const handoff = h("div", { class: "panel", testid: "last-handoff" }, h("h2", {}, "Last handoff"));
    const ho = v.last_handoff;
    if (ho) {
      append(handoff, [
        h("p", {}, h("code", {}, ho.feature), " at " + when(ho.at),
          ho.needs_triage ? [" ", h("span", { class: "flag" }, "triage needed")] : null),
        h("p", { class: "prose" }, ho.summary),
      ]);
    } else {
      handoff.append(h("p", { class: "none" }, "none yet"));
    }
    const pull = (n) => link(repoWeb + "/pull/" + n, "#" + n);
    const prs = h("ul", {});
    prs.append(v.plan_pr !== null && v.plan_pr !== undefined
      ? h("li", { testid: "plan-pr" }, "plan ", pull(v.plan_pr))
      : h("li", { class: "none" }, "no plan PR yet"));
    for (const ms of v.milestones) {
      prs.append(h("li", { testid: "milestone-" + ms.id }, h("code", {}, ms.id), " " + ms.title + " ",
        ms.pull_request !== null && ms.pull_request !== undefined ? pull(ms.pull_request) : "", " ",
        h("span", { class: "ms ms-" + cls(ms.state) }, ms.state)));
    }
    // The repository's own CI on the ready commit, which must pass too.
    const ci = v.ci && v.ci.length
      ? h("div", { class: "panel", testid: "repository-checks" }, h("h2", {}, "Repository checks"),
        h("ul", {}, v.ci.map((c) => h("li", {}, link(c.url, c.name), " ",
          h("span", { class: "ms ms-" + cls(c.state) }, c.state)))))
      : null;
    out.push(h("section", { class: "panels" }, job, handoff,
      h("div", { class: "panel", testid: "pull-requests" }, h("h2", {}, "Pull requests"), prs), ci));

    // Cost over time.
    const roles = h("tbody", {});
    for (const [role, u] of Object.entries(b.by_role)) {
      roles.append(h("tr", { testid: "role-" + role }, h("td", {}, role),
        h("td", { class: "num" }, "$" + dollars(u.cost_micros)),
        h("td", { class: "num" }, u.input_tokens), h("td", { class: "num" }, u.output_tokens),
        h("td", { class: "num" }, u.cache_read_tokens), h("td", { class: "num" }, u.cache_write_tokens)));
    }
    out.push(h("section", { testid: "cost" }, h("h2", {}, "Cost over time, by role"),
      h("div", { class: "chart", testid: "cost-chart" }, chart(v.usage, v.timeline)),
      h("table", { class: "roles", testid: "by-role" },
        h("thead", {}, h("tr", {}, ["role", "cost", "tokens in", "tokens out", "cache read", "cache write"].map((c) => h("th", {}, c)))),
        roles)));

    // Contract.
    const contract = h("tbody", {});
    for (const row of v.contract) {
      const sc = cls(row.status);
      const evidence = h("td", { testid: "evidence" });
      if (row.verdicts.length === 0) {
        evidence.append(h("span", { class: "none" }, "not judged yet"));
      } else {
        evidence.append(h("ul", {}, row.verdicts.map((vd) => h("li", { testid: "verdict-" + vd.validator },
          h("b", {}, vd.validator), " " + (vd.passed ? "✓ passed" : "✗ failed") + " ",
          h("span", { class: "small" }, "(" + vd.milestone + ", round " + vd.round + ")"), " " + vd.evidence))));
      }
      contract.append(h("tr", { testid: "contract-row-" + row.id, class: "st-" + sc },
        h("td", { testid: "id" }, h("code", {}, row.id)),
        h("td", { testid: "text" }, row.text),
        h("td", { testid: "covered-by" }, row.features.join(", ")),
        h("td", {}, h("span", { class: "status st-" + sc, testid: "status" }, row.status)),
        evidence));
    }
    if (v.contract.length === 0) {
      contract.append(h("tr", {}, h("td", { colspan: 5, class: "none" }, "no contract yet (it comes with the plan)")));
    }
    out.push(h("section", {}, h("h2", {}, "Validation contract"),
      h("table", { class: "contract", testid: "contract" },
        h("thead", {}, h("tr", {}, ["id", "assertion", "covered by", "status", "evidence"].map((c) => h("th", {}, c)))),
        contract)));

    // Timeline.
    const timeline = h("tbody", {});
    for (const e of v.timeline) {
      timeline.append(h("tr", { testid: "timeline-row" },
        h("td", { class: "small" }, when(e.ended_at)), h("td", {}, h("code", {}, e.key)),
        h("td", {}, e.role || ""), h("td", {}, e.outcome),
        h("td", { class: "num" }, duration(e.ended_at - e.started_at)),
        h("td", { class: "num", title: e.estimated ? "estimated: the run left no record of what it spent" : null },
          (e.estimated ? "~$" : "$") + dollars(e.cost_micros)),
        h("td", { class: "num" }, e.tokens), h("td", {}, link(e.run_url, "run"))));
    }
    if (v.timeline.length === 0) {
      timeline.append(h("tr", {}, h("td", { colspan: 8, class: "none" }, "no job has finished yet")));
    }
    out.push(h("section", {}, h("h2", {}, "Timeline"),
      h("table", { class: "timeline", testid: "timeline" },
        h("thead", {}, h("tr", {}, ["ended", "job", "role", "outcome", "took", "cost", "tokens", "run"].map((c) => h("th", {}, c)))),
        timeline)));
    return out;
  }

  // The chart: cumulative cost over time, one line per role and one for the total.
  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  // An axis label: cents, or tenths of a cent below a dime.
  function money(micros, scale) {
    return "$" + (micros / 1e6).toFixed(scale < 100000 ? 3 : 2);
  }

  function chart(usage, timeline) {
    if (!usage || usage.length === 0) return h("p", { class: "none" }, "no usage yet");
    const W = 1000, H = 260, L = 64, R = 16, T = 12, B = 32;
    // From the first job's start: its cost arrives when it ends.
    const t0 = Math.min(...usage.map((u) => u.at), ...(timeline || []).map((e) => e.started_at));
    const t1 = Math.max(...usage.map((u) => u.at), t0 + 1);
    const total = Math.max(...usage.map((u) => u.total_cost_micros), 1);
    const x = (at) => L + ((at - t0) / (t1 - t0)) * (W - L - R);
    const y = (c) => T + (1 - c / total) * (H - T - B);
    const series = new Map([["total", []]]);
    const sums = new Map();
    for (const u of usage) {
      const role = u.role || "other";
      sums.set(role, (sums.get(role) || 0) + u.cost_micros);
      if (!series.has(role)) series.set(role, [[t0, 0]]);
      series.get(role).push([u.at, sums.get(role)]);
      series.get("total").push([u.at, u.total_cost_micros]);
    }
    series.get("total").unshift([t0, 0]);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "cumulative cost over time by role", class: "cost" });
    for (const f of [0, 0.5, 1]) {
      svg.append(s("line", { x1: L, x2: W - R, y1: y(total * f), y2: y(total * f), class: "grid" }));
      svg.append(s("text", { x: L - 6, y: y(total * f) + 4, "text-anchor": "end", class: "axis" }, money(total * f, total)));
    }
    svg.append(s("text", { x: L, y: H - 10, class: "axis" }, when(t0).slice(11)));
    svg.append(s("text", { x: W - R, y: H - 10, "text-anchor": "end", class: "axis" }, when(t1).slice(11)));
    const legend = h("ul", { class: "legend", testid: "cost-legend" });
    let i = 0;
    for (const [role, points] of series) {
      const colour = role === "total" ? "c-total" : "c" + (i++ % 6);
      // Steps: the cost arrives when a job ends.
      let d = "";
      let last = null;
      for (const [at, c] of points) {
        d += last === null ? `M${x(at)},${y(c)}` : `H${x(at)}V${y(c)}`;
        last = c;
      }
      d += `H${x(t1)}`;
      svg.append(s("path", { d, class: "series " + colour }));
      legend.append(h("li", {}, h("span", { class: "swatch " + colour }), role + " $" + dollars(last)));
    }
    return [svg, legend];
  }

  function tick() {
    const el = main.querySelector("[data-testid=active-job-elapsed]");
    if (el && current && current.active_job) {
      el.textContent = duration(current.active_job.elapsed_secs + (Date.now() - receivedAt) / 1000);
    }
  }

  function show(view) {
    current = view;
    receivedAt = Date.now();
    main.replaceChildren(...render(view));
    if (live) {
      live.textContent = "live · updated " + new Date().toTimeString().slice(0, 8);
      live.className = "live on";
    }
  }

  // The feed sends the view on connect, after every change, and every few seconds.
  const feed = new EventSource(main.dataset.events);
  feed.addEventListener("mission", (event) => {
    let view;
    try { view = JSON.parse(event.data); } catch (e) { return; }
    window.__updates += 1;
    show(view);
  });
  feed.addEventListener("error", () => {
    if (live) {
      live.textContent = "reconnecting…";
      live.className = "live off";
    }
  });
  setInterval(tick, 1000);
})();
