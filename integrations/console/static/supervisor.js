// Xinqiao supervisor view: the figures of the line (cases a day by level, time to claim, follow-ups,
// counsellors' load) and reassigning one role of a case. No framework, no build step, no markup from
// strings. Every word on screen is in supervisor.html: this file only reads it (the legend, the hidden
// #words block, the tables' heads) and writes numbers. Sign-in is the console's: the same cookie, and the
// CSRF token from the `me` answer on every POST.
"use strict";

(() => {
  // Every path the page calls, with its method. Nothing else in this file names an API path.
  const API = {
    me: ["GET", "/console/api/me"],
    figures: ["GET", "/console/api/supervision/figures"],
    counsellors: ["GET", "/console/api/supervision/counsellors"],
    reassign: ["POST", "/console/api/supervision/cases/{id}/reassign"],
  };
  const REFRESH_MS = 30000;
  const SVG = "http://www.w3.org/2000/svg";
  const MAY_SEE = new Set(["supervisor", "admin"]);

  const $ = (id) => document.getElementById(id);
  const ui = {
    loading: $("loading"), signedOut: $("signed-out"), forbidden: $("forbidden"), view: $("supervisor-view"),
    meName: $("me-name"), days: $("days"), refresh: $("refresh"), updatedAt: $("updated-at"),
    loadError: $("load-error"), legend: $("legend"), chart: $("cases-chart"), casesTotal: $("cases-total"),
    claimRows: $("claim-rows"), followUpsOpen: $("follow-ups-open"), followUpsOverdue: $("follow-ups-overdue"),
    overdueBox: $("overdue-box"), followUpRows: $("follow-up-rows"), loadRows: $("load-rows"),
    form: $("reassign-form"), caseInput: $("reassign-case"), role: $("reassign-role"),
    counsellor: $("reassign-counsellor"), submit: $("reassign-submit"),
    result: $("reassign-result"), error: $("reassign-error"),
  };

  // ---- the words, read once from the page -----------------------------------------------------------

  function wordsBy(selector, attribute) {
    const found = {};
    for (const node of document.querySelectorAll(selector)) found[node.getAttribute(attribute)] = node.textContent;
    return found;
  }

  const WORDS = {
    levels: wordsBy("#legend [data-level]", "data-level"),
    roles: wordsBy("#role-names [data-role]", "data-role"),
    kinds: wordsBy("#kind-names [data-kind]", "data-kind"),
    errors: wordsBy("#error-texts [data-code]", "data-code"),
    onShift: $("word-on-shift").textContent,
    offShift: $("word-off-shift").textContent,
    none: $("word-none").textContent,
    hours: $("word-hours").textContent,
    minutes: $("word-minutes").textContent,
    seconds: $("word-seconds").textContent,
    separator: $("word-separator").textContent,
    done: $("reassign-done").textContent,
    moved: $("reassign-moved").textContent,
  };

  // ---- small helpers --------------------------------------------------------------------------------

  function el(tag, opts, children) {
    const node = document.createElement(tag);
    const o = opts || {};
    if (o.id) { node.id = o.id; node.setAttribute("data-testid", o.id); }
    if (o.className) node.className = o.className;
    if (o.text !== undefined && o.text !== null) node.textContent = String(o.text);
    for (const [name, value] of Object.entries(o.data || {})) node.setAttribute(`data-${name}`, String(value));
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function svg(tag, attributes, children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function say(node, text) {
    node.textContent = text || "";
    node.hidden = !text;
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));
  }

  // 75 s → 1 minute 15 seconds, 3725 s → 1 hour 2 minutes, null → a dash: the units come from the page.
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return WORDS.none;
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = s % 60;
    if (h) return `${h}${WORDS.hours}${m}${WORDS.minutes}`;
    if (m) return `${m}${WORDS.minutes}${rest}${WORDS.seconds}`;
    return `${rest}${WORDS.seconds}`;
  }

  function shortDay(iso) {
    const [, month, day] = iso.split("-");
    return `${Number(month)}/${Number(day)}`;
  }

  function clock(date) {
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  // ---- the API --------------------------------------------------------------------------------------

  // The JSON API (api.js): the CSRF token from the `me` answer, in memory only and sent on every POST.
  const client = XinqiaoApi.client({ api: API, onSignedOut: () => showOnly(ui.signedOut) });
  const { call } = client;

  function errorText(err) {
    if (WORDS.errors[err.code]) return WORDS.errors[err.code];
    if (err.status >= 500) return WORDS.errors.server;
    return WORDS.errors.unknown;
  }

  // ---- the chart: cases a day, stacked by level -----------------------------------------------------

  // Pixels of the drawing; a day's slot widens to fill the panel, down to minSlot (then it scrolls).
  const CHART = { height: 220, top: 18, bottom: 26, left: 34, right: 8, minSlot: 30, maxBar: 44 };
  let lastChart = null;

  function niceMax(value) {
    if (value <= 4) return 4;
    const step = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function drawChart(days, levels) {
    lastChart = [days, levels];
    const { height, top, bottom, left, right, minSlot, maxBar } = CHART;
    const room = (ui.chart.parentNode.clientWidth || 0) - left - right;
    const slot = Math.max(minSlot, Math.floor(room / Math.max(1, days.length)));
    const bar = Math.min(maxBar, Math.round(slot * 0.65));
    const width = left + right + slot * days.length;
    const plot = height - top - bottom;
    const max = niceMax(Math.max(0, ...days.map((d) => d.total)));
    const y = (n) => top + plot - (n / max) * plot;
    const labelEvery = Math.max(1, Math.ceil(36 / slot));  // a date label needs about 36 px
    const nodes = [];
    for (const tick of Number.isInteger(max / 2) ? [0, max / 2, max] : [0, max]) {
      nodes.push(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(tick), y2: y(tick) }));
      nodes.push(svg("text", { class: "axis", x: left - 6, y: y(tick) + 4, "text-anchor": "end" }));
      nodes[nodes.length - 1].textContent = String(tick);
    }
    days.forEach((day, i) => {
      const x = left + i * slot + (slot - bar) / 2;
      const group = svg("g", { "data-testid": `day-${day.day}`, "data-total": day.total, class: "day" });
      let base = 0;
      // the most serious at the foot of the bar, where the eye starts
      for (const level of levels) {
        const n = day.levels[level] || 0;
        if (!n) continue;
        const rect = svg("rect", {
          class: `bar level-${level}`,
          x, width: bar, y: y(base + n), height: y(base) - y(base + n),
          "data-testid": `bar-${day.day}-${level}`, "data-count": n,
        });
        const tip = svg("title");
        tip.textContent = `${shortDay(day.day)} ${WORDS.levels[level] || level} ${n}`;
        rect.appendChild(tip);
        group.appendChild(rect);
        base += n;
      }
      if (day.total) {
        const total = svg("text", { class: "bar-total", x: x + bar / 2, y: y(day.total) - 4, "text-anchor": "middle" });
        total.textContent = String(day.total);
        group.appendChild(total);
      }
      if (i % labelEvery === 0 || i === days.length - 1) {
        const label = svg("text", { class: "axis", x: x + bar / 2, y: height - 8, "text-anchor": "middle" });
        label.textContent = shortDay(day.day);
        group.appendChild(label);
      }
      nodes.push(group);
    });
    ui.chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    ui.chart.setAttribute("width", String(width));
    ui.chart.setAttribute("height", String(height));
    ui.chart.replaceChildren(...nodes);
    ui.casesTotal.textContent = String(days.reduce((sum, d) => sum + d.total, 0));
  }

  // ---- the tables -----------------------------------------------------------------------------------

  function cell(id, text, className) {
    return el("td", { id, text, className });
  }

  function drawClaims(rows) {
    ui.claimRows.replaceChildren(...rows.map((r) => {
      const id = (what) => `claim-${r.level}-${what}`;
      return el("tr", { id: `claim-row-${r.level}`, className: `level-row level-${r.level}` }, [
        el("th", { text: WORDS.levels[r.level] || r.level, className: "level-name" }),
        cell(id("opened"), r.opened),
        cell(id("claimed"), r.claimed),
        cell(id("median"), duration(r.median_seconds)),
        cell(id("p90"), duration(r.p90_seconds)),
        cell(id("late"), r.late, r.late ? "warn" : ""),
        cell(id("unclaimed"), r.unclaimed, r.unclaimed ? "warn" : ""),
        cell(id("unclaimed-overdue"), r.unclaimed_overdue, r.unclaimed_overdue ? "alarm" : ""),
      ]);
    }));
  }

  function drawFollowUps(found) {
    ui.followUpsOpen.textContent = String(found.open);
    ui.followUpsOverdue.textContent = String(found.overdue);
    ui.overdueBox.classList.toggle("alarm", found.overdue > 0);
    ui.followUpRows.replaceChildren(...found.by_kind.map((k) => el("tr", { id: `follow-up-row-${k.kind}` }, [
      el("th", { text: WORDS.kinds[k.kind] || k.kind }),
      cell(`follow-up-${k.kind}-open`, k.open),
      cell(`follow-up-${k.kind}-overdue`, k.overdue, k.overdue ? "alarm" : ""),
    ])));
  }

  function drawLoad(people, levels) {
    ui.loadRows.replaceChildren(...people.map((p) => el("tr", { id: `load-row-${p.id}` }, [
      el("th", { id: `load-${p.id}-name`, text: p.display_name }),
      cell(`load-${p.id}-role`, WORDS.roles[p.role] || p.role, "text"),
      cell(`load-${p.id}-shift`, p.on_shift ? WORDS.onShift : WORDS.offShift, p.on_shift ? "text on-shift" : "text off-shift"),
      ...levels.map((level) => cell(`load-${p.id}-${level}`, p.open_cases[level] || 0, `level-${level}`)),
      cell(`load-${p.id}-total`, p.open_total),
      cell(`load-${p.id}-holding`, p.holding),
    ])));
  }

  function drawCounsellors(people) {
    const chosen = ui.counsellor.value;
    const first = ui.counsellor.options[0];  // the "choose" line, from the page
    ui.counsellor.replaceChildren(first, ...people.map((p) => {
      const option = el("option", {
        text: [p.display_name, WORDS.roles[p.role] || p.role, p.on_shift ? WORDS.onShift : WORDS.offShift]
          .join(WORDS.separator),
      });
      option.value = String(p.id);
      return option;
    }));
    ui.counsellor.value = people.some((p) => String(p.id) === chosen) ? chosen : "";
  }

  // ---- loading --------------------------------------------------------------------------------------

  let timer = null;
  let people = [];

  async function refresh() {
    clearTimeout(timer);
    try {
      const [figures, staff] = await Promise.all([
        call("figures", null, null, { days: ui.days.value }),
        call("counsellors"),
      ]);
      drawChart(figures.cases_per_day, figures.levels);
      drawClaims(figures.time_to_claim);
      drawFollowUps(figures.follow_ups);
      drawLoad(figures.load, figures.levels);
      people = staff.counsellors;
      drawCounsellors(people);
      ui.updatedAt.textContent = clock(new Date());
      show(ui.loadError, false);
    } catch (err) {
      if (err.code === "signed_out") return;
      if (err.code === "forbidden") { showOnly(ui.forbidden); return; }
      show(ui.loadError, true);
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function showOnly(node) {
    for (const each of [ui.loading, ui.signedOut, ui.forbidden, ui.view]) show(each, each === node);
    if (node !== ui.view) clearTimeout(timer);
  }

  async function start() {
    let me;
    try {
      me = await call("me");
    } catch (err) {
      if (err.code !== "signed_out") { showOnly(ui.view); show(ui.loadError, true); }
      return;
    }
    client.setToken(me.csrf);
    ui.meName.textContent = me.counsellor.display_name || me.counsellor.handle;
    show(ui.meName, true);
    if (!MAY_SEE.has(me.counsellor.role)) { showOnly(ui.forbidden); return; }
    showOnly(ui.view);
    await refresh();
  }

  // ---- reassigning ----------------------------------------------------------------------------------

  ui.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say(ui.result, "");
    say(ui.error, "");
    const caseId = Number(ui.caseInput.value);
    const counsellorId = Number(ui.counsellor.value);
    if (!Number.isInteger(caseId) || caseId < 1 || !counsellorId) {
      say(ui.error, WORDS.errors.bad_request);
      return;
    }
    ui.submit.disabled = true;
    try {
      const done = await call("reassign", caseId, { role: ui.role.value, counsellor_id: counsellorId });
      const person = people.find((p) => p.id === done.counsellor_id);
      const name = person ? person.display_name : String(done.counsellor_id);
      const role = WORDS.roles[done.role] || done.role;
      let text = fill(WORDS.done, { case: done.case_id, role, name });
      if (done.moved_hold) text += fill(WORDS.moved, { name });
      say(ui.result, text);
      await refresh();
    } catch (err) {
      say(ui.error, errorText(err));
    } finally {
      ui.submit.disabled = false;
    }
  });

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => { if (lastChart) drawChart(...lastChart); }, 150);
  });
  ui.days.addEventListener("change", refresh);
  ui.refresh.addEventListener("click", refresh);
  start();
})();
