// 心桥 counsellor console: sign-in, the queue, one case at a time, the red alert.
// No framework, no build step. Every word a counsellor reads is in this file or in index.html; the
// care plan's words (level, referrals, family, follow-ups, school) are in index.html only, read by word();
// the words of delivery states and reassignments come from data/content/console.yml (GET texts), read by said().
// The live feed (/console/ws) is used while it is connected; without it the page polls the queue every
// 3 s and the open case every 2 s, so it works with polling alone.
"use strict";

(() => {
  // Every path the page calls, with its method. Nothing else in this file names an API path.
  const API = {
    login: ["POST", "/console/api/login"],
    logout: ["POST", "/console/api/logout"],
    me: ["GET", "/console/api/me"],
    queue: ["GET", "/console/api/queue"],
    readCase: ["GET", "/console/api/cases/{id}"],
    claim: ["POST", "/console/api/cases/{id}/claim"],
    say: ["POST", "/console/api/cases/{id}/messages"],
    release: ["POST", "/console/api/cases/{id}/release"],
    note: ["POST", "/console/api/cases/{id}/notes"],
    close: ["POST", "/console/api/cases/{id}/close"],
    quickReplies: ["GET", "/console/api/quick-replies"],
    texts: ["GET", "/console/api/texts"],
    directory: ["GET", "/console/api/directory"],
    level: ["POST", "/console/api/cases/{id}/level"],
    refer: ["POST", "/console/api/cases/{id}/referrals"],
    referralStatus: ["POST", "/console/api/referrals/{id}/status"],
    familyContact: ["POST", "/console/api/cases/{id}/family-contact"],
    followUp: ["POST", "/console/api/cases/{id}/follow-ups"],
    followUpDone: ["POST", "/console/api/follow-ups/{id}/done"],
    returnToSchool: ["POST", "/console/api/cases/{id}/return-to-school"],
  };
  const BACK_AT_SCHOOL_DAYS = 30;  // a return to school may be written down up to a month late
  const FEED_PATH = "/console/ws";
  const FEED_SIGNED_OUT = 4401;

  const QUEUE_POLL_MS = 3000;     // without the feed
  const CASE_POLL_MS = 2000;      // without the feed, or for a case the feed says nothing about
  // With the feed connected the page still reads, more slowly: the feed tells of pages and of the child's
  // messages, not of other counsellors' claims, hand-backs and closes.
  const LIVE_QUEUE_POLL_MS = 10000;
  const LIVE_CASE_POLL_MS = 15000;  // only for a case this counsellor holds; the feed brings its messages
  const FEED_RETRY_MAX_MS = 30000;
  const BEEP_EVERY_MS = 2500;

  const TEXT = {
    errors: {
      bad_credentials: "账号或密码不对",
      locked: "尝试次数太多，请 15 分钟后再试",
      rate_limited: "尝试太频繁了，请过一分钟再试",
      bad_request: "请求不完整，请检查后再试",
      missing_credentials: "请填写账号和密码",
      signed_out: "登录已过期，请重新登录",
      csrf: "页面已过期，请刷新页面后再试",
      forbidden: "你没有查看这个个案的权限",
      held_by_another: "另一位老师正在对话",
      not_holding: "这段对话现在不在你手上，请先接手对话",
      closed: "这个个案已经结案",
      no_case: "找不到这个个案",
      empty: "内容不能为空",
      too_long: "内容太长了，请分几次发",
      no_outcome: "请先选择结案结果",
      network: "暂时连不上服务器，正在重试……",
      server: "服务器暂时出错，请稍后再试",
      conflict: "个案的情况刚刚变了，请看最新状态",
      unknown: "操作没有完成，请再试一次",
    },
    levels: { red: "红色", orange: "橙色", yellow: "黄色", green: "绿色" },
    status: { open: "等待接手", claimed: "已接手", closed: "已结案" },
    authors: { user: "学生", bot: "心桥助手", counsellor: "老师", system: "系统" },
    subjects: { self: "学生本人", other: "为他人求助" },
    roles: { lead: "主责老师", second: "第二位老师", third: "第三位老师" },
    family: { due: "待联系家长", done: "已联系家长", not_safe: "联系家长可能不安全", unreachable: "联系不上家长" },
    followUps: { check_in: "回访", referral: "转介跟进", return_to_school: "返校计划" },
    outcomes: {
      resolved: "已解决，学生情况稳定",
      referred_school: "转介给学校心理老师",
      referred_district: "转介到区心理健康中心",
      referred_hospital: "转介到医院",
      emergency_services: "已联系 110 / 120",
      other: "其他",
    },
    you: "你",
    teacher: (id) => `老师 #${id}`,
    caseTitle: (id) => `个案 #${id}`,
    caseCount: (n) => `（${n}）`,
    waiting: (t) => `已等 ${t}`,
    claimLeft: (t) => `接手时限还剩 ${t}`,
    claimOver: (t) => `已超过接手时限 ${t}`,
    waitingForClaim: "等待接手",
    heldByMe: "你正在对话",
    heldBy: (who) => `${who} 正在对话`,
    claimedBy: (who) => `${who} 已接手，对话在助手那里`,
    assignedToMe: "分配给我",
    newMessage: "新消息",
    live: "实时连接",
    polling: "定时刷新",
    alertCase: (id) => `查看 #${id}`,
    claimed: "你已接手对话，助手暂停回复。",
    released: "已交还给心桥助手。",
    closedDone: "已结案。",
    noteSaved: "记录已保存。",
    none: "暂无",
    done: "已完成",
    safetyFirst: "联系家长前，先确认这样做对学生是安全的",
    due: (t) => `到期 ${t}`,
    facts: {
      level: "风险等级",
      status: "状态",
      subject: "求助对象",
      opened: "开始时间",
      signals: "风险信号",
      rule: "触发规则",
      protocol: "协议版本",
      outcome: "结案结果",
    },
    titleAlert: "【红色个案】心桥 · 老师工作台",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    whoami: $("whoami"), meName: $("me-name"), supervisorLink: $("supervisor-link"), liveStatus: $("live-status"), logout: $("logout"),
    redAlert: $("red-alert"), redAlertCases: $("red-alert-cases"), redAlertAck: $("red-alert-ack"),
    soundHint: $("sound-hint"),
    loginView: $("login-view"), loginForm: $("login-form"), loginHandle: $("login-handle"),
    loginPassword: $("login-password"), loginSubmit: $("login-submit"), loginError: $("login-error"),
    consoleView: $("console-view"), queue: $("queue"), queueCount: $("queue-count"),
    queueError: $("queue-error"), queueEmpty: $("queue-empty"),
    casePlaceholder: $("case-placeholder"), caseError: $("case-error"), caseBody: $("case-body"),
    caseTitle: $("case-title"), caseLevel: $("case-level"), caseState: $("case-state"),
    claim: $("case-claim"), release: $("case-release"), close: $("case-close"), caseDone: $("case-done"),
    closePanel: $("case-close-panel"), outcome: $("case-outcome"),
    closeConfirm: $("case-close-confirm"), closeCancel: $("case-close-cancel"),
    history: $("history"), quickReplies: $("quick-replies"),
    messageForm: $("message-form"), messageInput: $("message-input"), messageSend: $("message-send"),
    messageHint: $("message-hint"),
    facts: $("case-facts"), staff: $("case-staff"), family: $("case-family"), followUps: $("case-follow-ups"),
    notes: $("case-notes"), noteForm: $("note-form"), noteInput: $("note-input"), noteSave: $("note-save"),
    levelForm: $("level-form"), levelSelect: $("level-select"), levelReason: $("level-reason"),
    levelSave: $("level-save"),
    familyForm: $("family-form"), familyStatus: $("family-status"), familyRelation: $("family-relation"),
    familySummary: $("family-summary"), familySave: $("family-save"),
    referrals: $("case-referrals"), referralForm: $("referral-form"), referralEntry: $("referral-entry"),
    referralNone: $("referral-none"), referralDate: $("referral-date"), referralSave: $("referral-save"),
    followUpForm: $("follow-up-form"), followUpDate: $("follow-up-date"), followUpWhat: $("follow-up-what"),
    followUpSave: $("follow-up-save"),
    schoolForm: $("school-form"), schoolFirstDay: $("school-first-day"), schoolSave: $("school-save"),
  };
  const careForms = [ui.levelForm, ui.familyForm, ui.referralForm, ui.followUpForm, ui.schoolForm];

  // The care plan's words, from index.html: <span data-word="key">…{name}…</span>.
  const WORDS = new Map();
  for (const node of document.querySelectorAll("#care-words [data-word]")) {
    WORDS.set(node.dataset.word, node.textContent.trim());
  }

  function word(key, values) {
    let text = WORDS.get(key) || "";
    for (const [name, value] of Object.entries(values || {})) text = text.split(`{${name}}`).join(String(value));
    return text;
  }
  const pageTitle = document.title;

  // The words of delivery states and reassignments, from the content file: {delivery: {...}, reassigned: {...}}.
  // Loaded at sign-in; a page that could not load them asks again at its next read of a case.
  let contentTexts = null;

  function said(path, values) {
    let node = contentTexts;
    for (const part of path.split(".")) node = node && typeof node === "object" ? node[part] : undefined;
    let text = typeof node === "string" ? node : "";
    for (const [name, value] of Object.entries(values || {})) text = text.split(`{${name}}`).join(String(value));
    return text;
  }

  async function loadTexts() {
    try {
      const data = await call("texts");
      if (data && typeof data === "object") contentTexts = data;
    } catch (err) {
      /* asked again with the next read of a case */
    }
    return contentTexts !== null;
  }

  // ---- state -------------------------------------------------------------------------------------

  let me = null;             // {id, handle, display_name, role}
  let clockOffset = 0;       // server time minus this computer's, from the Date header

  // unread: cases with a message from the child; undelivered: cases with a message to the child that failed.
  const queueState = {
    cases: [], fetchedAt: 0, levels: new Map(), first: true, unread: new Set(), undelivered: new Set(),
  };
  const caseState = { id: null, data: null, shown: new Set(), generation: 0, errorFromLoad: false };
  const reassignedAway = new Map();  // case id -> the counsellor it went to (null: not known), from the feed
  const alerts = new Set();  // red case ids not yet acknowledged
  const feed = { ws: null, live: false, retryMs: 1000, timer: null };
  let queueTimer = null;
  let caseTimer = null;
  let tickTimer = null;

  // ---- small helpers ------------------------------------------------------------------------------

  function el(tag, opts, children) {
    const node = document.createElement(tag);
    const o = opts || {};
    if (o.id) { node.id = o.id; node.setAttribute("data-testid", o.id); }
    if (o.className) node.className = o.className;
    if (o.text !== undefined && o.text !== null) node.textContent = String(o.text);
    if (o.type) node.type = o.type;
    if (o.title) node.title = o.title;
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function say(node, text) {
    node.textContent = text || "";
    node.hidden = !text;
  }

  function parseTime(iso) {
    if (typeof iso !== "string" || !iso) return NaN;
    // Python's isoformat may carry microseconds; Date.parse is only sure of milliseconds.
    let text = iso.replace(/(\.\d{3})\d+/, "$1");
    if (!/(Z|[+-]\d\d:?\d\d)$/.test(text)) text += "Z";
    return Date.parse(text);
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function formatClock(iso, withDate) {
    const t = parseTime(iso);
    if (Number.isNaN(t)) return "";
    const d = new Date(t);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    const today = new Date();
    if (!withDate && d.toDateString() === today.toDateString()) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
  }

  function serverNow() { return Date.now() + clockOffset; }

  function noteServerClock(response) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) clockOffset = date - Date.now();
  }

  const names = new Map();   // staff display names by id, from the queue and case answers

  function learnNames(data) {
    for (const [id, name] of Object.entries((data && data.names) || {})) names.set(Number(id), name);
  }

  function who(id) {
    if (id === null || id === undefined) return "";
    return me && id === me.id ? TEXT.you : (names.get(id) || TEXT.teacher(id));
  }

  function levelClass(level) { return TEXT.levels[level] ? `level-${level}` : "level-none"; }

  // ---- the API ------------------------------------------------------------------------------------

  // The JSON API (api.js): the CSRF token from the login or /me answer, in memory only and sent on every
  // POST. A login refusal is shown as it is: never retried, never taken as signing out.
  const client = XinqiaoApi.client({
    api: API,
    signIn: ["login"],
    onSignedOut: () => signedOut(true),
    onResponse: noteServerClock,
  });
  const { call, refreshToken } = client;

  function errorText(err) {
    if (TEXT.errors[err.code]) return TEXT.errors[err.code];
    if (WORDS.has(`error.${err.code}`)) return word(`error.${err.code}`);
    if (err.status === 409) return TEXT.errors.conflict;
    if (err.status === 413) return TEXT.errors.too_long;
    if (err.status >= 500) return TEXT.errors.server;
    return TEXT.errors.unknown;
  }

  // ---- sign-in ------------------------------------------------------------------------------------

  async function start() {
    try {
      const data = await call("me");
      signedIn(data);
    } catch (err) {
      showLogin(err.code === "signed_out" ? "" : errorText(err));
    }
  }

  function showLogin(message) {
    show(ui.consoleView, false);
    show(ui.whoami, false);
    show(ui.loginView, true);
    say(ui.loginError, message);
    ui.loginSubmit.disabled = false;
    ui.loginHandle.focus();
  }

  function signedIn(data) {
    client.setToken(data.csrf);
    me = data.counsellor;
    ui.meName.textContent = me.display_name || me.handle;
    ui.supervisorLink.hidden = !(me.role === "supervisor" || me.role === "admin");
    show(ui.loginView, false);
    show(ui.whoami, true);
    show(ui.consoleView, true);
    say(ui.loginError, "");
    ui.loginPassword.value = "";
    queueState.first = true;
    queueState.levels.clear();
    showLive();
    loadTexts();
    loadQuickReplies();
    loadDirectory();
    refreshQueue();
    connectFeed();
    clearInterval(tickTimer);
    tickTimer = setInterval(tick, 1000);
    const fromHash = /^#case-(\d+)$/.exec(location.hash);
    if (fromHash) openCase(Number(fromHash[1]));
  }

  function signedOut(expired) {
    if (!me && !client.token()) return;
    me = null;
    client.setToken(null);
    clearTimeout(queueTimer);
    clearTimeout(caseTimer);
    clearTimeout(feed.timer);
    clearInterval(tickTimer);
    if (feed.ws) {
      const ws = feed.ws;
      feed.ws = null;
      ws.close();
    }
    feed.live = false;
    alerts.clear();
    renderAlert();
    closeCase();
    queueState.cases = [];
    queueState.unread.clear();
    queueState.undelivered.clear();
    reassignedAway.clear();
    ui.queue.replaceChildren();
    ui.quickReplies.replaceChildren();
    ui.referralEntry.replaceChildren(ui.referralEntry.options[0]);
    showLogin(expired ? TEXT.errors.signed_out : "");
  }

  ui.loginForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const handle = ui.loginHandle.value.trim();
    const password = ui.loginPassword.value;
    if (!handle || !password) {
      say(ui.loginError, TEXT.errors.missing_credentials);
      return;
    }
    ui.loginSubmit.disabled = true;
    say(ui.loginError, "");
    try {
      signedIn(await call("login", null, { handle, password }));
    } catch (err) {
      ui.loginPassword.value = "";
      say(ui.loginError, errorText(err));
      ui.loginPassword.focus();
    } finally {
      ui.loginSubmit.disabled = false;
    }
  });

  ui.logout.addEventListener("click", async () => {
    try { await call("logout"); } catch (err) { /* the cookie expires on its own */ }
    signedOut(false);
    history.replaceState(null, "", location.pathname);
  });

  // ---- the queue ----------------------------------------------------------------------------------

  // One load at a time; a call while one runs makes exactly one more run after it.
  function coalesced(load) {
    let running = null;
    let again = false;
    return function run() {
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        try {
          do {
            again = false;
            await load();
          } while (again && me);
        } finally {
          running = null;
        }
      })();
      return running;
    };
  }

  const refreshQueue = coalesced(async () => {
    if (!me) return;
    clearTimeout(queueTimer);
    try {
      const data = await call("queue");
      if (!me) return;
      learnNames(data);
      queueState.cases = Array.isArray(data.cases) ? data.cases : [];
      queueState.fetchedAt = Date.now();
      say(ui.queueError, "");
      noticeRedCases();
      renderQueue();
    } catch (err) {
      if (err.code !== "signed_out") say(ui.queueError, errorText(err));
    }
    if (me) queueTimer = setTimeout(refreshQueue, feed.live ? LIVE_QUEUE_POLL_MS : QUEUE_POLL_MS);
  });

  function noticeRedCases() {
    const before = queueState.levels;
    const now = new Map();
    for (const c of queueState.cases) {
      now.set(c.id, c.level);
      if (c.level !== "red") continue;
      // On the first load only red cases nobody has claimed; after that any red case that is new or
      // newly raised to red.
      const fresh = queueState.first ? c.status === "open" : before.get(c.id) !== "red";
      if (fresh) raiseAlert(c.id);
    }
    queueState.levels = now;
    queueState.first = false;
  }

  function holderText(c) {
    if (c.held_by !== null && c.held_by !== undefined) {
      return me && c.held_by === me.id ? TEXT.heldByMe : TEXT.heldBy(who(c.held_by));
    }
    if (c.claimed_by !== null && c.claimed_by !== undefined) return TEXT.claimedBy(who(c.claimed_by));
    return TEXT.waitingForClaim;
  }

  function queueItem(c) {
    const id = `queue-item-${c.id}`;
    let item = document.getElementById(id);
    if (!item) {
      item = el("li", { id });
      item.dataset.caseId = String(c.id);
      const open = el("button", { type: "button", className: "queue-open" }, [
        el("span", { className: "queue-row" }, [
          el("span", { className: "level-badge" }),
          el("span", { className: "queue-case" }),
          el("span", { className: "mine", text: TEXT.assignedToMe }),
          el("span", { className: "unread", text: TEXT.newMessage }),
          el("span", { className: "undelivered-tag" }),
          el("span", { className: "assistant-failed-tag" }),
        ]),
        el("span", { className: "holder" }),
        el("span", { className: "queue-row queue-times" }, [
          el("span", { className: "waiting" }),
          el("span", { className: "deadline" }),
        ]),
      ]);
      item.appendChild(open);
    }
    item.className = `queue-item ${levelClass(c.level)}${c.id === caseState.id ? " is-open" : ""}`;
    const badge = item.querySelector(".level-badge");
    badge.className = `level-badge ${levelClass(c.level)}`;
    badge.textContent = TEXT.levels[c.level] || c.level;
    item.querySelector(".queue-case").textContent = TEXT.caseTitle(c.id);
    show(item.querySelector(".mine"), Boolean(c.assigned_to_me));
    show(item.querySelector(".unread"), queueState.unread.has(c.id));
    const undelivered = item.querySelector(".undelivered-tag");
    undelivered.textContent = said("delivery.queue_tag");
    show(undelivered, queueState.undelivered.has(c.id));
    const assistantFailed = item.querySelector(".assistant-failed-tag");
    assistantFailed.textContent = said("queue.assistant_failed");
    show(assistantFailed, Boolean(c.assistant_failed));
    item.querySelector(".holder").textContent = holderText(c);
    return item;
  }

  function renderQueue() {
    const items = queueState.cases.map(queueItem);
    // Moves only what changed place, so a focused item keeps its focus between polls.
    items.forEach((item, n) => {
      if (ui.queue.children[n] !== item) ui.queue.insertBefore(item, ui.queue.children[n] || null);
    });
    while (ui.queue.children.length > items.length) ui.queue.lastElementChild.remove();
    ui.queueCount.textContent = TEXT.caseCount(items.length);
    show(ui.queueEmpty, items.length === 0);
    tick();
  }

  function tick() {
    const elapsed = (Date.now() - queueState.fetchedAt) / 1000;
    for (const c of queueState.cases) {
      const item = document.getElementById(`queue-item-${c.id}`);
      if (!item) continue;
      item.querySelector(".waiting").textContent = TEXT.waiting(formatDuration((c.waiting_seconds || 0) + elapsed));
      const deadline = item.querySelector(".deadline");
      const by = parseTime(c.claim_by);
      if (c.status !== "open" || Number.isNaN(by)) {
        show(deadline, false);
        continue;
      }
      const left = (by - serverNow()) / 1000;
      deadline.textContent = left >= 0 ? TEXT.claimLeft(formatDuration(left)) : TEXT.claimOver(formatDuration(-left));
      deadline.className = `deadline${left < 0 ? " overdue" : left < 60 ? " soon" : ""}`;
      show(deadline, true);
    }
  }

  ui.queue.addEventListener("click", (event) => {
    const item = event.target.closest(".queue-item");
    if (item) openCase(Number(item.dataset.caseId));
  });

  // ---- the red alert ------------------------------------------------------------------------------

  let audio = null;
  let beepTimer = null;

  // Browsers start sound only after a gesture: the first click or key press makes (or wakes) the context.
  function unlockAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!audio) {
      try { audio = new Context(); } catch (err) { return; }
    }
    if (audio.state === "suspended") audio.resume().then(renderSoundHint, () => {});
    renderSoundHint();
  }
  document.addEventListener("pointerdown", unlockAudio, true);
  document.addEventListener("keydown", unlockAudio, true);

  function soundReady() { return Boolean(audio) && audio.state === "running"; }

  function renderSoundHint() { show(ui.soundHint, alerts.size > 0 && !soundReady()); }

  function beep() {
    if (!soundReady()) {
      renderSoundHint();
      return;
    }
    const t = audio.currentTime;
    for (const [offset, frequency] of [[0, 880], [0.32, 660]]) {
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.type = "sine";
      tone.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, t + offset);
      gain.gain.exponentialRampToValueAtTime(0.3, t + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + offset + 0.28);
      tone.connect(gain);
      gain.connect(audio.destination);
      tone.start(t + offset);
      tone.stop(t + offset + 0.3);
    }
  }

  function raiseAlert(caseId) {
    alerts.add(caseId);
    renderAlert();
  }

  function renderAlert() {
    const active = alerts.size > 0;
    const buttons = [...alerts].map((id) => {
      const button = el("button", {
        id: `red-alert-case-${id}`, type: "button", className: "alert-case", text: TEXT.alertCase(id),
      });
      button.dataset.caseId = String(id);
      return button;
    });
    ui.redAlertCases.replaceChildren(...buttons);
    show(ui.redAlert, active);
    document.title = active ? TEXT.titleAlert : pageTitle;
    renderSoundHint();
    if (active && beepTimer === null) {
      beep();
      beepTimer = setInterval(beep, BEEP_EVERY_MS);
    } else if (!active && beepTimer !== null) {
      clearInterval(beepTimer);
      beepTimer = null;
    }
  }

  ui.redAlertAck.addEventListener("click", () => {
    alerts.clear();
    renderAlert();
  });

  ui.redAlertCases.addEventListener("click", (event) => {
    const button = event.target.closest(".alert-case");
    if (button) openCase(Number(button.dataset.caseId));
  });

  // ---- the live feed ------------------------------------------------------------------------------

  function showLive() {
    ui.liveStatus.textContent = feed.live ? TEXT.live : TEXT.polling;
    ui.liveStatus.classList.toggle("live", feed.live);
  }

  function connectFeed() {
    if (!me || feed.ws) return;
    clearTimeout(feed.timer);
    let ws;
    try {
      ws = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${FEED_PATH}`);
    } catch (err) {
      retryFeed();
      return;
    }
    feed.ws = ws;
    ws.addEventListener("open", () => {
      if (feed.ws !== ws) return;
      feed.live = true;
      feed.retryMs = 1000;
      showLive();
      refreshQueue();  // whatever happened while it was down
    });
    ws.addEventListener("message", (event) => {
      if (feed.ws !== ws) return;
      let data;
      try { data = JSON.parse(event.data); } catch (err) { return; }
      onFeedEvent(data);
    });
    ws.addEventListener("close", (event) => {
      if (feed.ws !== ws) return;
      feed.ws = null;
      feed.live = false;
      showLive();
      if (!me) return;
      // back to polling at once
      refreshQueue();
      scheduleCase(0);
      if (event.code === FEED_SIGNED_OUT) refreshToken();  // a signed-out answer signs the page out
      retryFeed();
    });
  }

  function retryFeed() {
    clearTimeout(feed.timer);
    feed.timer = setTimeout(connectFeed, feed.retryMs);
    feed.retryMs = Math.min(feed.retryMs * 2, FEED_RETRY_MAX_MS);
  }

  function onFeedEvent(event) {
    if (!event || typeof event !== "object") return;
    const caseId = Number.isInteger(event.case_id) ? event.case_id : null;
    if (event.level === "red" && caseId !== null) raiseAlert(caseId);
    if (event.kind === "page") {
      refreshQueue();
    } else if (event.kind === "message") {
      if (caseId !== null && caseId === caseState.id) {
        refreshCase();
      } else if (caseId !== null) {
        queueState.unread.add(caseId);
        renderQueue();
      }
    } else if (event.kind === "delivery_failed") {
      // The open case shows the failed message at once; any other case is marked in the queue.
      if (caseId !== null && caseId === caseState.id) {
        refreshCase();
      } else if (caseId !== null) {
        queueState.undelivered.add(caseId);
        renderQueue();
      }
    } else if (event.kind === "case_reassigned_away") {
      if (caseId !== null) {
        reassignedAway.set(caseId, Number.isInteger(event.counsellor_id) ? event.counsellor_id : null);
        if (caseId === caseState.id) showReassignedAway();  // which reads the queue again
        else refreshQueue();
      } else {
        refreshQueue();
      }
    }
  }

  // ---- one case -----------------------------------------------------------------------------------

  function holdsOpenCase() {
    const data = caseState.data;
    return Boolean(me && data && data.case.held_by === me.id && data.case.status !== "closed");
  }

  function deliveryPending() {
    const messages = (caseState.data && caseState.data.messages) || [];
    return messages.some((m) => m.delivery && m.delivery.state === "pending");
  }

  function scheduleCase(ms) {
    clearTimeout(caseTimer);
    if (!me || caseState.id === null) return;
    let wait = ms;
    if (wait === undefined) {
      // The feed tells of a failure, not of a message that went out: while one is on its way, read often.
      const slow = feed.live && holdsOpenCase() && !deliveryPending();
      wait = slow ? LIVE_CASE_POLL_MS : CASE_POLL_MS;
    }
    caseTimer = setTimeout(refreshCase, wait);
  }

  function openCase(id) {
    if (!me || !Number.isInteger(id)) return;
    if (id !== caseState.id) {
      caseState.id = id;
      caseState.data = null;
      caseState.shown.clear();
      caseState.generation += 1;
      ui.history.replaceChildren();
      ui.messageInput.value = "";
      ui.noteInput.value = "";
      ui.outcome.value = "";
      resetCareForms();
      show(ui.closePanel, false);
      show(ui.caseBody, false);
      say(ui.caseDone, "");
      say(reassignedNotice, "");
      history.replaceState(null, "", `#case-${id}`);
    }
    caseError("");
    show(ui.casePlaceholder, false);
    queueState.unread.delete(id);
    queueState.undelivered.delete(id);
    renderQueue();
    refreshCase();
  }

  function seesEveryCase() { return Boolean(me && (me.role === "supervisor" || me.role === "admin")); }

  // Where the page says that a supervisor gave this counsellor's role on the open case to someone else.
  const reassignedNotice = el("p", { id: "case-reassigned", className: "notice" });
  reassignedNotice.setAttribute("role", "status");
  reassignedNotice.hidden = true;
  ui.caseError.before(reassignedNotice);

  function reassignedText(to) {
    return to === null || to === undefined ? said("reassigned.away_unknown") : said("reassigned.away", { who: who(to) });
  }

  // A supervisor or an admin still reads the case (and sees its new staff); anyone else may not: the case
  // is put away, with the notice instead of a refusal.
  async function showReassignedAway() {
    const id = caseState.id;
    if (id === null) return;
    if (contentTexts === null) await loadTexts();
    if (id !== caseState.id) return;
    const to = reassignedAway.get(id);
    say(reassignedNotice, reassignedText(to));
    if (seesEveryCase()) {
      reassignedAway.delete(id);  // told once; the notice stays while the case is open
      refreshCase();
    } else {
      clearTimeout(caseTimer);
      caseState.generation += 1;  // a read on its way is dropped
      caseState.data = null;
      show(ui.caseBody, false);
      caseError("");
    }
    // The queue's answer names whoever holds the case now: the notice then says who, not a number.
    const shown = reassignedNotice.textContent;
    await refreshQueue();
    if (id === caseState.id && reassignedNotice.textContent === shown) say(reassignedNotice, reassignedText(to));
  }

  function caseError(text, fromLoad) {
    say(ui.caseError, text);
    caseState.errorFromLoad = Boolean(text && fromLoad);
  }

  function closeCase() {
    clearTimeout(caseTimer);
    caseState.id = null;
    caseState.data = null;
    caseState.shown.clear();
    caseState.generation += 1;
    ui.history.replaceChildren();
    show(ui.caseBody, false);
    show(ui.casePlaceholder, true);
    caseError("");
    say(reassignedNotice, "");
  }

  const refreshCase = coalesced(async () => {
    const id = caseState.id;
    const generation = caseState.generation;
    if (!me || id === null) return;
    clearTimeout(caseTimer);
    if (contentTexts === null) await loadTexts();
    try {
      const data = await call("readCase", id);
      if (generation !== caseState.generation) return;
      caseState.data = data;
      learnNames(data);
      if (reassignedAway.has(id) && !seesEveryCase()) {
        reassignedAway.delete(id);  // readable again: the case was given back to this counsellor
        say(reassignedNotice, "");
      }
      if (caseState.errorFromLoad) caseError("");  // an action's error stays until the next action
      renderCase(data);
    } catch (err) {
      if (generation !== caseState.generation) return;
      if (err.code === "forbidden" && (caseState.data || reassignedAway.has(id))) {
        // Readable until now: a supervisor gave this counsellor's role to someone else.
        if (!reassignedAway.has(id)) reassignedAway.set(id, null);
        showReassignedAway();
        return;
      }
      if (err.code === "forbidden" || err.code === "no_case") {
        caseState.data = null;
        show(ui.caseBody, false);
        caseError(errorText(err), true);
        return;  // nothing to poll
      }
      if (err.code !== "signed_out") caseError(errorText(err), true);
    }
    // A closed case changes no more; every read is audited, so it is not read again and again.
    const closed = caseState.data && caseState.data.case.status === "closed";
    if (generation === caseState.generation && !closed) scheduleCase();
  });

  function renderCase(data) {
    const c = data.case;
    const mine = me && c.held_by === me.id;
    const closed = c.status === "closed";
    show(ui.caseBody, true);
    ui.caseTitle.textContent = TEXT.caseTitle(c.id);
    ui.caseLevel.className = `level-badge ${levelClass(c.level)}`;
    ui.caseLevel.textContent = TEXT.levels[c.level] || c.level;
    ui.caseState.textContent = closed ? TEXT.status.closed : holderText(c);

    show(ui.claim, !closed && !mine);
    show(ui.release, !closed && mine);
    show(ui.close, !closed);
    if (closed) show(ui.closePanel, false);

    const canWrite = Boolean(mine) && !closed;
    ui.messageInput.disabled = !canWrite;
    ui.messageSend.disabled = !canWrite;
    for (const button of ui.quickReplies.querySelectorAll("button")) button.disabled = !canWrite;
    show(ui.messageHint, !canWrite && !closed);
    show(ui.messageForm, !closed);
    show(ui.quickReplies, !closed);

    renderHistory(data.messages || []);
    renderFacts(c);
    renderList(ui.staff, data.assignments, (a) => `${TEXT.roles[a.role] || a.role}：${who(a.counsellor_id)}`);
    renderCare(data, closed);
    renderNotes(data.notes || []);
  }

  function renderHistory(messages) {
    const list = ui.history;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    let added = false;
    for (const m of messages) {
      if (caseState.shown.has(m.id)) continue;
      caseState.shown.add(m.id);
      const author = TEXT.authors[m.author] ? m.author : "system";
      const risk = TEXT.levels[m.level] && m.level !== "green" ? m.level : null;
      const item = el("li", { id: `history-item-${m.id}`, className: `msg from-${author}${risk ? ` risk-${risk}` : ""}` }, [
        el("div", { className: "meta" }, [
          el("span", { className: "who", text: TEXT.authors[author] }),
          el("time", { text: formatClock(m.at, false) }),
          risk ? el("span", { className: "risk", text: TEXT.levels[risk] }) : null,
        ]),
        el("div", { className: "text", text: m.text }),
      ]);
      list.appendChild(item);
      added = true;
    }
    for (const m of messages) renderDelivery(m);
    if (added && atBottom) list.scrollTop = list.scrollHeight;
  }

  // Under a message pushed to the child's own channel: quiet while on its way, a small tick once sent,
  // red with what to do when it failed for good. Rebuilt only when the state changes.
  function renderDelivery(m) {
    const item = document.getElementById(`history-item-${m.id}`);
    if (!item) return;
    const d = m.delivery && typeof m.delivery === "object" ? m.delivery : null;
    const state = d && ["pending", "sent", "failed"].includes(d.state) ? d.state : null;
    const attempts = d && Number.isInteger(d.attempts) ? d.attempts : 0;
    const signature = state ? `${state}:${attempts}:${contentTexts !== null}` : "";
    if (item.dataset.delivery === signature) return;
    item.dataset.delivery = signature;
    const old = item.querySelector(".delivery");
    if (old) old.remove();
    item.classList.toggle("undelivered", state === "failed");
    if (!state) return;
    let mark;
    if (state === "failed") {
      mark = el("div", { id: `delivery-${m.id}`, className: "delivery delivery-failed", title: d.error || "" }, [
        el("strong", { text: said("delivery.failed") }),
        el("div", { className: "delivery-hint", text: said("delivery.failed_hint") }),
      ]);
      mark.setAttribute("role", "alert");
    } else if (state === "pending") {
      const text = attempts > 0 ? said("delivery.retrying", { attempts }) : said("delivery.pending");
      mark = el("div", { id: `delivery-${m.id}`, className: "delivery delivery-pending", text });
    } else {
      mark = el("div", { id: `delivery-${m.id}`, className: "delivery delivery-sent", text: said("delivery.sent") });
    }
    mark.dataset.state = state;
    item.appendChild(mark);
  }

  function renderFacts(c) {
    const rows = [
      [TEXT.facts.level, TEXT.levels[c.level] || c.level],
      [TEXT.facts.status, TEXT.status[c.status] || c.status],
      [TEXT.facts.subject, TEXT.subjects[c.subject] || c.subject],
      [TEXT.facts.opened, formatClock(c.opened_at, true)],
      [TEXT.facts.signals, Array.isArray(c.signals) && c.signals.length ? c.signals.join("、") : TEXT.none],
      [TEXT.facts.rule, c.rule || TEXT.none],
      [TEXT.facts.protocol, c.protocol_version || ""],
    ];
    if (c.outcome) rows.push([TEXT.facts.outcome, TEXT.outcomes[c.outcome] || c.outcome]);
    const nodes = [];
    for (const [label, value] of rows) {
      nodes.push(el("dt", { text: label }), el("dd", { text: value }));
    }
    ui.facts.replaceChildren(...nodes);
  }

  function renderList(list, rows, line) {
    const items = (rows || []).map((row) => el("li", { text: line(row) }));
    if (!items.length) items.push(el("li", { className: "empty", text: TEXT.none }));
    list.replaceChildren(...items);
  }

  function renderNotes(notes) {
    const items = notes.map((n) => {
      const change = n.level_change && typeof n.level_change === "object" ? n.level_change : null;
      const meta = [who(n.author_id)];
      if (change) {
        meta.push(word("note.level_change", {
          before: TEXT.levels[change.before] || change.before,
          after: TEXT.levels[change.after] || change.after,
        }));
      }
      return el("li", { className: change ? "level-note" : "" }, [
        el("div", { className: "note-meta", text: meta.join(" · ") }),
        el("div", { className: "note-body", text: n.body }),
      ]);
    });
    if (!items.length) items.push(el("li", { className: "empty", text: TEXT.none }));
    ui.notes.replaceChildren(...items);
  }

  // An action on the open case: buttons off while it runs, the error shown, the case and queue reloaded.
  // `target` is the referral's or follow-up's id for the routes that take one; the case's otherwise.
  async function act(name, body, buttons, done, target) {
    const id = caseState.id;
    if (id === null) return false;
    for (const button of buttons) button.disabled = true;
    caseError("");
    say(ui.caseDone, "");
    let ok = false;
    try {
      await call(name, target === undefined ? id : target, body);
      ok = true;
      if (done && id === caseState.id) say(ui.caseDone, done);
    } catch (err) {
      if (id === caseState.id && err.code !== "signed_out") caseError(errorText(err));
    } finally {
      for (const button of buttons) button.disabled = false;
    }
    if (id === caseState.id) await refreshCase();
    refreshQueue();
    return ok;
  }

  ui.claim.addEventListener("click", () => act("claim", null, [ui.claim], TEXT.claimed));
  ui.release.addEventListener("click", () => act("release", null, [ui.release], TEXT.released));

  ui.close.addEventListener("click", () => {
    show(ui.closePanel, true);
    ui.outcome.focus();
  });
  ui.closeCancel.addEventListener("click", () => {
    ui.outcome.value = "";
    show(ui.closePanel, false);
  });
  ui.closeConfirm.addEventListener("click", async () => {
    const outcome = ui.outcome.value;
    if (!TEXT.outcomes[outcome]) {
      caseError(TEXT.errors.no_outcome);
      ui.outcome.focus();
      return;
    }
    if (await act("close", { outcome }, [ui.closeConfirm, ui.close], TEXT.closedDone)) {
      ui.outcome.value = "";
      show(ui.closePanel, false);
    }
  });

  ui.messageForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = ui.messageInput.value.trim();
    if (!text) return;
    if (await act("say", { text }, [ui.messageSend], "")) {
      if (ui.messageInput.value.trim() === text) ui.messageInput.value = "";
      ui.messageInput.focus();
    }
  });
  ui.messageInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.messageForm.requestSubmit();
    }
  });

  ui.noteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = ui.noteInput.value.trim();
    if (!text) {
      caseError(TEXT.errors.empty);
      return;
    }
    if (await act("note", { body: text }, [ui.noteSave], TEXT.noteSaved)) ui.noteInput.value = "";
  });

  // ---- the care plan: level, family, referrals, follow-ups, return to school ------------------------

  const rendered = new Map();  // list id -> what it last showed, so a poll does not rebuild (and unfocus) it

  function renderOnce(list, rows, build) {
    const signature = JSON.stringify(rows);
    if (rendered.get(list.id) === signature) return;
    rendered.set(list.id, signature);
    const items = rows.map(build);
    if (!items.length) items.push(el("li", { className: "empty", text: TEXT.none }));
    list.replaceChildren(...items);
  }

  function isoDay(date) {
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  }

  function dayFromToday(days) {
    const d = new Date(serverNow());
    d.setDate(d.getDate() + days);
    return isoDay(d);
  }

  function resetCareForms() {
    for (const form of careForms) form.reset();
    rendered.clear();
  }

  function renderCare(data, closed) {
    for (const form of careForms) show(form, !closed);
    const family = Array.isArray(data.family_contacts) ? data.family_contacts : [];
    show(ui.familyForm, !closed && family.length > 0);
    const today = dayFromToday(0);
    ui.referralDate.min = today;
    ui.followUpDate.min = today;
    ui.schoolFirstDay.min = dayFromToday(-BACK_AT_SCHOOL_DAYS);
    renderOnce(ui.family, family.map((f) => ({ ...f, closed })), familyItem);
    renderOnce(ui.referrals, (data.referrals || []).map((r) => ({ ...r, closed })), referralItem);
    renderOnce(ui.followUps, (data.follow_ups || []).map((f) => ({ ...f, closed })), followUpItem);
  }

  function familyItem(f) {
    const detail = f.detail && typeof f.detail === "object" ? f.detail : {};
    const parts = [TEXT.family[f.status] || f.status];
    if (f.relation) parts.push(f.relation);
    if (f.contacted_at) parts.push(word("family.contacted", { time: formatClock(f.contacted_at, true) }));
    else if (f.status === "due" && f.due_by) parts.push(TEXT.due(formatClock(f.due_by, true)));
    if (detail.check_safety_first) {
      const because = Array.isArray(detail.because) ? detail.because.join("、") : "";
      parts.push(because ? `${TEXT.safetyFirst}（${because}）` : TEXT.safetyFirst);
    }
    return el("li", { id: `family-${f.id}` }, [
      el("div", { text: parts.join(" · ") }),
      f.summary ? el("div", { className: "care-text", text: f.summary }) : null,
    ]);
  }

  function referralItem(r) {
    const line = [r.entry_name || r.entry_id, word(`referral.${r.status}`) || r.status].join(" · ");
    const buttons = r.closed ? [] : (Array.isArray(r.next) ? r.next : []).map((status) => {
      const button = el("button", {
        id: `referral-${r.id}-${status}`, type: "button", className: "small", text: word(`referral_to.${status}`) || status,
      });
      button.addEventListener("click", () =>
        act("referralStatus", { status }, [button], word("saved.referral_status"), r.id)
      );
      return button;
    });
    return el("li", { id: `referral-${r.id}` }, [
      el("div", { text: line }),
      buttons.length ? el("div", { className: "care-buttons" }, buttons) : null,
    ]);
  }

  function followUpItem(f) {
    const line = [
      TEXT.followUps[f.kind] || f.kind,
      f.what,
      f.done ? TEXT.done : TEXT.due(formatClock(f.due_at, true)),
    ].filter(Boolean).join(" · ");
    let button = null;
    if (!f.done && !f.closed) {
      button = el("button", { id: `follow-up-done-${f.id}`, type: "button", className: "small", text: word("follow_up.done") });
      button.addEventListener("click", () =>
        act("followUpDone", null, [button], word("saved.follow_up_done"), f.id)
      );
    }
    return el("li", { id: `follow-up-${f.id}`, className: f.done ? "care-row is-done" : "care-row" }, [
      el("span", { text: line }),
      button,
    ]);
  }

  // A form's own check before it calls: the field to fix gets the focus, the words come from the page.
  function refuse(code, field) {
    caseError(word(`error.${code}`));
    field.focus();
    return false;
  }

  ui.levelForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const level = ui.levelSelect.value;
    const reason = ui.levelReason.value.trim();
    if (!level) return refuse("bad_level", ui.levelSelect);
    if (!reason) return refuse("need_reason", ui.levelReason);
    if (await act("level", { level, reason }, [ui.levelSave], word("saved.level"))) ui.levelForm.reset();
    return true;
  });

  ui.familyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = ui.familyStatus.value;
    if (!status) return refuse("bad_status", ui.familyStatus);
    const body = { status, relation: ui.familyRelation.value.trim(), summary: ui.familySummary.value.trim() };
    if (await act("familyContact", body, [ui.familySave], word("saved.family"))) ui.familyForm.reset();
    return true;
  });

  ui.referralForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const entry = ui.referralEntry.value;
    if (!entry) return refuse("need_entry", ui.referralEntry);
    if (!ui.referralDate.value) return refuse("bad_date", ui.referralDate);
    const body = { entry_id: entry, follow_up_on: ui.referralDate.value };
    if (await act("refer", body, [ui.referralSave], word("saved.referral"))) ui.referralForm.reset();
    return true;
  });

  ui.followUpForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const what = ui.followUpWhat.value.trim();
    if (!ui.followUpDate.value) return refuse("bad_date", ui.followUpDate);
    if (!what) return refuse("need_what", ui.followUpWhat);
    const body = { due_on: ui.followUpDate.value, what };
    if (await act("followUp", body, [ui.followUpSave], word("saved.follow_up"))) ui.followUpForm.reset();
    return true;
  });

  ui.schoolForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!ui.schoolFirstDay.value) return refuse("bad_date", ui.schoolFirstDay);
    const body = { first_day: ui.schoolFirstDay.value };
    if (await act("returnToSchool", body, [ui.schoolSave], word("saved.school"))) ui.schoolForm.reset();
    return true;
  });

  async function loadDirectory() {
    try {
      const data = await call("directory");
      const entries = Array.isArray(data.entries) ? data.entries : [];
      const options = entries.map((e) => {
        const option = el("option", { text: e.name, title: [e.number, e.hours].filter(Boolean).join(" · ") });
        option.value = e.id;
        return option;
      });
      ui.referralEntry.replaceChildren(ui.referralEntry.options[0], ...options);
      show(ui.referralNone, entries.length === 0);
      ui.referralEntry.disabled = entries.length === 0;
      ui.referralSave.disabled = entries.length === 0;
    } catch (err) {
      /* the rest of the console works without it; the form says the list is empty */
      show(ui.referralNone, true);
    }
  }

  async function loadQuickReplies() {
    try {
      const data = await call("quickReplies");
      const replies = Array.isArray(data.quick_replies) ? data.quick_replies : [];
      const buttons = replies.map((text, n) => {
        const button = el("button", { id: `quick-reply-${n}`, type: "button", text, title: text });
        button.disabled = !holdsOpenCase();
        button.addEventListener("click", () => {
          // Into the box, not sent: the counsellor reads it, may change it, then sends.
          const current = ui.messageInput.value.trim();
          ui.messageInput.value = current ? `${current}\n${text}` : text;
          ui.messageInput.focus();
        });
        return button;
      });
      ui.quickReplies.replaceChildren(...buttons);
    } catch (err) {
      /* the console works without them */
    }
  }

  start();
})();
