/*
 * Hera UI: one page over the public /api routes, no framework and no build step.
 *
 * Flow: start a session → interview with Hera → photo and portraits → complete →
 * family chat → story and letter. The session id lives in the URL (?session=<id>), so a
 * reload restores everything from the API. `window.HERA_API_BASE` (optional) points the
 * page at an API on another origin; by default it is the page's own origin.
 */
"use strict";

(function () {
  const API_BASE = String(window.HERA_API_BASE || "").replace(/\/+$/, "");

  const FIELD_LABELS = {
    age: "年齢",
    gender: "性別",
    relationship_status: "交際・婚姻の状況",
    location: "お住まいの地域",
    income_range: "年収",
    user_personality_traits: "あなたの性格",
    partner_face_description: "パートナーの顔立ち",
    ideal_partner: "理想のパートナー（名前・性格・外見）",
    current_partner: "今のパートナー（名前・性格・外見）",
    children_info: "子どもの名前と性別",
  };

  const PROGRESS_GROUPS = [
    ["basic_info", "基本情報"],
    ["relationship", "パートナー"],
    ["personality", "性格"],
    ["children_info", "子ども"],
  ];

  const NETWORK_ERROR =
    "サーバーに接続できませんでした。通信環境を確認して、もう一度お試しください。";

  /* ------------------------------------------------------------------ state */

  const state = {
    sessionId: null,
    busy: 0,
    busyKind: null,
    profile: {},
    profileComplete: false,
    familyStarted: false,
    familyComplete: false,
    members: [],
    images: new Map(), // name → absolute URL
    sendKeys: { interview: null, family: null }, // the Idempotency-Key of an unanswered send
  };

  /* ------------------------------------------------------------------ DOM */

  const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

  const el = {
    errorBanner: byTestId("error-banner"),
    errorMessage: byTestId("error-message"),
    errorDismiss: byTestId("error-dismiss"),
    loading: byTestId("loading-view"),
    sessionBadge: byTestId("session-badge"),
    startButton: byTestId("start-button"),
    progressOverall: byTestId("progress-overall"),
    progressPercent: byTestId("progress-percent"),
    progressGroups: byTestId("progress-groups"),
    missingList: byTestId("missing-list"),
    missingNone: byTestId("missing-none"),
    interviewLog: byTestId("interview-log"),
    interviewHistory: byTestId("interview-history"),
    interviewHistoryLog: byTestId("interview-history-log"),
    interviewTyping: byTestId("interview-typing"),
    interviewForm: byTestId("interview-form"),
    interviewInput: byTestId("interview-input"),
    photoInput: byTestId("photo-input"),
    photoButton: byTestId("photo-button"),
    generatePartner: byTestId("generate-partner"),
    generateChildren: byTestId("generate-children"),
    imagesTyping: byTestId("images-typing"),
    imagesTypingText: byTestId("images-typing-text"),
    gallery: byTestId("gallery"),
    completeBox: byTestId("complete-box"),
    completeButton: byTestId("complete-interview"),
    familyMembers: byTestId("family-members"),
    tripDestination: byTestId("trip-destination"),
    tripActivities: byTestId("trip-activities"),
    tripActivitiesEmpty: byTestId("trip-activities-empty"),
    proposalHint: byTestId("proposal-hint"),
    familyLog: byTestId("family-log"),
    familyTyping: byTestId("family-typing"),
    familyForm: byTestId("family-form"),
    familyInput: byTestId("family-input"),
    planSummary: byTestId("plan-summary"),
    planStory: byTestId("plan-story"),
    planLetter: byTestId("plan-letter"),
    restartButton: byTestId("restart-button"),
    messageTemplate: document.getElementById("message-template"),
  };

  /* ------------------------------------------------------------------ API */

  class ApiError extends Error {
    constructor(message, status, body) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.body = body;
    }
  }

  function sessionPath(suffix) {
    return `/api/sessions/${encodeURIComponent(state.sessionId)}${suffix || ""}`;
  }

  /** The absolute URL of an API path (API URLs in responses are root-relative). */
  function apiUrl(path) {
    return /^https?:\/\//.test(path) ? path : API_BASE + path;
  }

  /** A readable message for a failed response: the API's `error`, else the HTTP status. */
  function errorText(response, body) {
    let text = body && typeof body.error === "string" && body.error.trim()
      ? body.error.trim()
      : `エラーが発生しました（HTTP ${response.status}）。`;
    if (body && Array.isArray(body.missing_fields) && body.missing_fields.length) {
      text += ` 未入力: ${body.missing_fields.map(fieldLabel).join("、")}`;
    }
    return text;
  }

  /** A random Idempotency-Key (getRandomValues also works on plain-http origins). */
  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /**
   * fetch + JSON. Resolves to the parsed body on 2xx; otherwise throws an ApiError
   * whose message is readable (network failures included).
   */
  async function api(path, { method = "GET", json, form, key } = {}) {
    const init = { method, headers: { Accept: "application/json" } };
    if (method === "POST") {
      // One key per user action: a retry of the same action is answered, not done twice.
      init.headers["Idempotency-Key"] = key || newKey();
    }
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form !== undefined) {
      init.body = form; // the browser sets the multipart boundary
    }
    let response;
    try {
      response = await fetch(apiUrl(path), init);
    } catch (cause) {
      throw new ApiError(NETWORK_ERROR, 0, null);
    }
    let body = null;
    if (response.status !== 204) {
      const text = await response.text().catch(() => "");
      try {
        body = text ? JSON.parse(text) : null;
      } catch (_) {
        body = null;
      }
    }
    if (!response.ok) {
      throw new ApiError(errorText(response, body), response.status, body);
    }
    return body;
  }

  /** Splits server-sent events out of a growing text; returns the events and the rest. */
  function takeEvents(buffer) {
    const events = [];
    const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
    const rest = blocks.pop();
    for (const block of blocks) {
      let kind = "message";
      const data = [];
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (!line || line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") kind = value;
        else if (field === "data") data.push(value);
      }
      if (data.length) events.push({ kind, data: data.join("\n") });
    }
    return { events, rest };
  }

  /**
   * A chat turn streamed as server-sent events: `onEvent(kind, data)` gets each `delta`,
   * `story` and `letter` as the model writes; resolves to the `done` body (the same body
   * the JSON route answers). An `error` event throws like a failed request. When the
   * stream cannot be read or breaks off, the same request (same Idempotency-Key) is sent
   * again as plain JSON: a turn the server already stored is answered from the record.
   */
  async function streamApi(path, { json, key, onEvent }) {
    const fallback = () => api(path, { method: "POST", json, key });
    if (!window.TextDecoder || !window.ReadableStream) return fallback();
    let response;
    try {
      response = await fetch(apiUrl(path), {
        method: "POST",
        headers: {
          Accept: "text/event-stream",
          "Content-Type": "application/json",
          "Idempotency-Key": key,
        },
        body: JSON.stringify(json),
      });
    } catch (_) {
      return fallback();
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.startsWith("text/event-stream") || !response.body) {
      const text = await response.text().catch(() => "");
      let body = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch (_) {
        body = null;
      }
      if (!response.ok) throw new ApiError(errorText(response, body), response.status, body);
      return body;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const taken = takeEvents(buffer);
        buffer = taken.rest;
        for (const event of taken.events) {
          const data = JSON.parse(event.data);
          if (event.kind === "done") return data;
          if (event.kind === "error") {
            throw new ApiError(errorText({ status: 0 }, data), 0, data);
          }
          onEvent(event.kind, data);
        }
      }
    } catch (error) {
      if (error instanceof ApiError) throw error;
    }
    return fallback(); // the stream broke off before `done`
  }

  /* ------------------------------------------------------------------ busy / errors */

  function showError(message) {
    el.errorMessage.textContent = message;
    el.errorBanner.hidden = false;
  }

  function clearError() {
    el.errorBanner.hidden = true;
    el.errorMessage.textContent = "";
  }

  function renderBusy() {
    const busy = state.busy > 0;
    document.body.dataset.busy = String(busy);
    // Buttons and the file picker wait; the text boxes stay editable and keep their text.
    document.querySelectorAll("button, input").forEach((control) => {
      if (control !== el.errorDismiss) control.disabled = busy;
    });
    el.photoButton.classList.toggle("is-disabled", busy);
    el.interviewTyping.hidden = !(busy && state.busyKind === "interview");
    el.familyTyping.hidden = !(busy && state.busyKind === "family");
    const imageTexts = {
      "images:upload": "写真をアップロードしています…",
      "images:partner": "パートナーを描いています…",
      "images:children": "子どもたちを描いています…",
      complete: "未来の家族を呼んでいます…",
    };
    el.imagesTyping.hidden = !(busy && state.busyKind in imageTexts);
    el.imagesTypingText.textContent = imageTexts[state.busyKind] || "";
    el.startButton.textContent = busy && state.busyKind === "start" ? "準備しています…" : "はじめる";
  }

  /**
   * Runs one request-bound action: the UI is busy (controls disabled, typing indicator)
   * while it runs, and any failure is shown readably. Returns whether it succeeded.
   */
  async function run(kind, action) {
    if (state.busy > 0) return false;
    clearError();
    state.busy += 1;
    state.busyKind = kind;
    renderBusy();
    try {
      await action();
      return true;
    } catch (error) {
      showError(error instanceof ApiError ? error.message : `予期しないエラー: ${error}`);
      if (!(error instanceof ApiError)) console.error(error);
      return false;
    } finally {
      state.busy -= 1;
      state.busyKind = null;
      renderBusy();
    }
  }

  /* ------------------------------------------------------------------ stages */

  /** Shows the sections of the current stage (and nothing else). */
  function renderStage() {
    let stage = "start";
    if (state.sessionId) stage = state.familyStarted ? "family" : "interview";
    document.body.dataset.stage = stage;
    el.loading.hidden = true;

    const visible = {
      start: stage === "start",
      interview: stage === "interview",
      images:
        (stage === "interview" && state.profileComplete) ||
        (stage === "family" && (state.images.size > 0 || !state.familyComplete)),
      family: stage === "family",
      plan: stage === "family" && state.familyComplete,
      history: stage === "family",
      restart: stage !== "start",
    };
    document.querySelectorAll("[data-view]").forEach((section) => {
      section.hidden = !visible[section.dataset.view];
    });
    el.completeBox.hidden = stage !== "interview" || !state.profileComplete;
    // With the family met and the children drawn, the section is just their portraits.
    const portraitsOnly =
      stage === "family" && (state.familyComplete || state.images.has("child_1"));
    byTestId("images-steps").hidden = !state.profileComplete || portraitsOnly;
    byTestId("images-lead").hidden = portraitsOnly;
    byTestId("images-title").textContent = stage === "family" ? "未来の家族" : "写真と似顔絵";

    el.sessionBadge.hidden = !state.sessionId;
    el.sessionBadge.textContent = state.sessionId ? `セッション ${state.sessionId.slice(0, 8)}` : "";
  }

  function setSessionInUrl(sessionId) {
    const url = new URL(window.location.href);
    if (sessionId) url.searchParams.set("session", sessionId);
    else url.searchParams.delete("session");
    window.history.replaceState(null, "", url);
  }

  /* ------------------------------------------------------------------ rendering */

  function fieldLabel(name) {
    return FIELD_LABELS[name] || name;
  }

  function clearChildren(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function formatTime(timestamp) {
    const date = new Date(timestamp);
    if (Number.isNaN(date.getTime())) return "";
    return date.toLocaleTimeString("ja-JP", { hour: "2-digit", minute: "2-digit" });
  }

  function makeMessage({ who, text, side, timestamp, avatar, pending }) {
    const item = el.messageTemplate.content.firstElementChild.cloneNode(true);
    item.classList.add(`message--${side}`);
    if (pending) item.classList.add("message--pending");
    item.dataset.speaker = side;
    const whoLine = item.querySelector(".message__who");
    if (avatar) {
      const img = document.createElement("img");
      img.className = "message__avatar";
      img.src = avatar;
      img.alt = "";
      whoLine.append(img);
    }
    const name = document.createElement("span");
    name.className = "message__name";
    name.textContent = who;
    whoLine.append(name);
    const time = timestamp ? formatTime(timestamp) : "";
    if (time) {
      const stamp = document.createElement("time");
      stamp.className = "message__time";
      stamp.dateTime = timestamp;
      stamp.textContent = time;
      whoLine.append(stamp);
    }
    item.querySelector(".message__text").textContent = text;
    return item;
  }

  function scrollToEnd(log) {
    log.scrollTop = log.scrollHeight;
  }

  function interviewMessage(entry) {
    const isUser = entry.speaker === "user";
    return makeMessage({
      who: isUser ? "あなた" : "ヘーラー",
      text: entry.message,
      side: isUser ? "user" : "hera",
      timestamp: entry.timestamp,
    });
  }

  function renderInterviewHistory(history) {
    for (const log of [el.interviewLog, el.interviewHistoryLog]) {
      clearChildren(log);
      if (!history.length && log === el.interviewLog) {
        log.append(
          makeMessage({
            who: "ヘーラー",
            text:
              "こんにちは、家族の女神ヘーラーです。あなたの未来の家族を一緒に思い描きましょう。" +
              "まずは年齢・性別・今の交際や結婚の状況を教えてください。",
            side: "hera",
          }),
        );
      }
      history.forEach((entry) => log.append(interviewMessage(entry)));
      scrollToEnd(log);
    }
  }

  function renderProgress(progress, missing) {
    let collected = 0;
    let total = 0;
    clearChildren(el.progressGroups);
    for (const [key, label] of PROGRESS_GROUPS) {
      const group = (progress && progress[key]) || { collected: 0, total: 1 };
      collected += group.collected;
      total += group.total;
      const item = document.createElement("li");
      item.className = "progress__group";
      item.dataset.testid = `progress-${key}`;
      const head = document.createElement("span");
      head.className = "progress__label";
      head.textContent = label;
      const count = document.createElement("span");
      count.className = "progress__count";
      count.textContent = `${group.collected} / ${group.total}`;
      const meter = document.createElement("span");
      meter.className = "meter meter--small";
      meter.setAttribute("role", "progressbar");
      meter.setAttribute("aria-label", label);
      meter.setAttribute("aria-valuemin", "0");
      meter.setAttribute("aria-valuemax", String(group.total));
      meter.setAttribute("aria-valuenow", String(group.collected));
      const fill = document.createElement("span");
      fill.className = "meter__fill";
      fill.style.width = `${Math.round((100 * group.collected) / group.total)}%`;
      meter.append(fill);
      if (group.collected >= group.total) item.classList.add("is-done");
      item.append(head, count, meter);
      el.progressGroups.append(item);
    }
    const percent = total ? Math.round((100 * collected) / total) : 0;
    el.progressOverall.setAttribute("aria-valuenow", String(percent));
    el.progressOverall.querySelector(".meter__fill").style.width = `${percent}%`;
    el.progressPercent.textContent = `${percent}%`;

    clearChildren(el.missingList);
    (missing || []).forEach((name) => {
      const chip = document.createElement("li");
      chip.className = "chip";
      chip.dataset.field = name;
      chip.textContent = fieldLabel(name);
      el.missingList.append(chip);
    });
    el.missingNone.hidden = (missing || []).length > 0;
  }

  function applyInterview(body) {
    state.profile = body.user_profile || {};
    state.profileComplete = Boolean(body.profile_complete ?? body.information_complete);
    renderInterviewHistory(body.conversation_history || []);
    renderProgress(body.information_progress, body.missing_fields);
  }

  function childName(index) {
    const children = Array.isArray(state.profile.children_info) ? state.profile.children_info : [];
    const child = children[index - 1];
    return child && child.name ? child.name : `子ども ${index}`;
  }

  function imageLabel(name) {
    if (name === "user") return "あなた";
    if (name === "partner") {
      const partner = state.members.find((m) => m.kind === "partner");
      return partner ? `${partner.name}（${partner.role}）` : "パートナー";
    }
    const match = /^child_(\d+)$/.exec(name);
    return match ? childName(Number(match[1])) : name;
  }

  function imageOrder(name) {
    if (name === "user") return 0;
    if (name === "partner") return 1;
    const match = /^child_(\d+)$/.exec(name);
    return match ? 1 + Number(match[1]) : 1000;
  }

  function renderGallery() {
    clearChildren(el.gallery);
    const names = [...state.images.keys()].sort((a, b) => imageOrder(a) - imageOrder(b));
    for (const name of names) {
      const figure = document.createElement("figure");
      figure.className = "portrait";
      const img = document.createElement("img");
      img.className = "portrait__image";
      img.src = state.images.get(name);
      img.alt = `${imageLabel(name)}の画像`;
      img.dataset.testid = `image-${name}`;
      img.decoding = "async";
      const caption = document.createElement("figcaption");
      caption.textContent = imageLabel(name);
      figure.append(img, caption);
      el.gallery.append(figure);
    }
    el.gallery.hidden = names.length === 0;
    el.generateChildren.title = state.images.has("user") && state.images.has("partner")
      ? ""
      : "写真とパートナーの似顔絵が必要です";
  }

  function memberAvatar(member) {
    if (member.kind === "partner") return state.images.get("partner") || null;
    const children = state.members.filter((m) => m.kind !== "partner");
    const index = children.indexOf(member) + 1;
    return index > 0 ? state.images.get(`child_${index}`) || null : null;
  }

  function familyMessage(entry) {
    if (entry.speaker === "user") {
      return makeMessage({ who: "あなた", text: entry.message, side: "user", timestamp: entry.timestamp });
    }
    const member = state.members.find((m) => m.name === entry.speaker);
    const role = entry.role || (member && member.role);
    const message = makeMessage({
      who: role ? `${entry.speaker}（${role}）` : entry.speaker,
      text: entry.message,
      side: member && member.kind === "partner" ? "partner" : "family",
      timestamp: entry.timestamp,
      avatar: member ? memberAvatar(member) : null,
    });
    message.dataset.role = role || "";
    return message;
  }

  function renderMembers() {
    clearChildren(el.familyMembers);
    state.members.forEach((member) => {
      const item = document.createElement("li");
      item.className = "members__item";
      const avatar = memberAvatar(member);
      if (avatar) {
        const img = document.createElement("img");
        img.className = "members__avatar";
        img.src = avatar;
        img.alt = "";
        item.append(img);
      }
      const text = document.createElement("span");
      const age = typeof member.age === "number" ? `・${member.age}歳` : "";
      text.textContent = `${member.name}（${member.role}${age}）`;
      item.append(text);
      el.familyMembers.append(item);
    });
  }

  function renderTrip(trip, proposalPending) {
    const destination = trip && trip.destination;
    el.tripDestination.textContent = destination || "まだ決まっていません";
    el.tripDestination.classList.toggle("is-empty", !destination);
    clearChildren(el.tripActivities);
    const activities = (trip && trip.activities) || [];
    activities.forEach((activity) => {
      const chip = document.createElement("li");
      chip.className = "chip chip--activity";
      chip.textContent = activity;
      el.tripActivities.append(chip);
    });
    el.tripActivitiesEmpty.hidden = activities.length > 0;
    el.proposalHint.hidden = !proposalPending || state.familyComplete;
  }

  /** Splits a long text into paragraphs (on newlines); a letter gets its greeting and
   * signature lines set apart. */
  function renderProse(container, text, { letter = false } = {}) {
    clearChildren(container);
    const parts = String(text || "")
      .split(/\n+/)
      .map((part) => part.trim())
      .filter(Boolean);
    parts.forEach((part, index) => {
      const p = document.createElement("p");
      p.textContent = part;
      if (letter && index === 0 && part.length <= 20 && /へ$/.test(part)) {
        p.className = "prose__salutation";
      } else if (letter && index === parts.length - 1 && /より$/.test(part)) {
        p.className = "prose__signature";
      }
      container.append(p);
    });
  }

  function applyFamily(body) {
    if (Array.isArray(body.members) && body.members.length) state.members = body.members;
    state.familyComplete = Boolean(body.conversation_complete);
    renderMembers();
    clearChildren(el.familyLog);
    (body.conversation_history || []).forEach((entry) => el.familyLog.append(familyMessage(entry)));
    scrollToEnd(el.familyLog);
    renderTrip(body.family_trip_info, body.proposal_pending);
    const plan = body.family_plan;
    if (plan) {
      const activities = (plan.activities || []).join("・");
      el.planSummary.textContent = `行き先: ${plan.destination}${activities ? `　やりたいこと: ${activities}` : ""}`;
      renderProse(el.planStory, plan.story);
      renderProse(el.planLetter, plan.letter, { letter: true });
    }
    el.familyInput.placeholder = state.familyComplete
      ? "計画は決まりました。家族にひとこと伝えられます"
      : "どこに行きたい？（Ctrl+Enter で送信）";
  }

  /* ------------------------------------------------------------------ actions */

  async function startSession() {
    await run("start", async () => {
      const created = await api("/api/sessions", { method: "POST" });
      resetState();
      state.sessionId = created.session_id;
      setSessionInUrl(state.sessionId);
      applyInterview(await api(sessionPath("/status")));
      renderGallery();
      renderStage();
      el.interviewInput.focus();
    });
  }

  /**
   * Sends the composer's text. The text stays in the box until the API accepted it; the
   * message is shown right away as "pending" and removed again if the request fails.
   */
  async function sendChat(kind) {
    const input = kind === "interview" ? el.interviewInput : el.familyInput;
    const log = kind === "interview" ? el.interviewLog : el.familyLog;
    const text = input.value;
    if (!text.trim()) {
      input.focus();
      return;
    }
    const pending = makeMessage({ who: "あなた", text, side: "user", pending: true });
    let placed = false;
    const wasComplete = state.familyComplete;
    // Sending the same text again after a failure is the same action: the same key, so a
    // turn that was stored but whose answer was lost is shown, not taken twice.
    const earlier = state.sendKeys[kind];
    const key = earlier && earlier.text === text ? earlier.key : newKey();
    state.sendKeys[kind] = { text, key };
    const ok = await run(kind, async () => {
      log.append(pending);
      placed = true;
      scrollToEnd(log);
      const live = liveReply(kind, log);
      const request = { json: { message: text }, key, onEvent: live.add };
      try {
        if (kind === "interview") {
          applyInterview(await streamApi(sessionPath("/messages"), request));
        } else {
          applyFamily(await streamApi(sessionPath("/family/messages"), request));
        }
      } finally {
        live.end();
      }
      renderGallery();
      renderStage();
    });
    if (ok) {
      state.sendKeys[kind] = null;
      if (input.value === text) input.value = "";
    } else if (placed && pending.isConnected) {
      pending.remove();
    }
    if (ok && kind === "family" && state.familyComplete && !wasComplete) {
      byTestId("plan-view").scrollIntoView({ behavior: "smooth", block: "start" });
    } else {
      input.focus();
    }
  }

  /**
   * What a streamed turn shows while it is written: one growing bubble per line (Hera's
   * reply, each member's line), and the story and letter as they come. The `done` body
   * then re-renders everything from what was stored.
   */
  function liveReply(kind, log) {
    const bubbles = new Map(); // line index → its text node
    const prose = { story: "", letter: "" };
    function bubble(data) {
      let node = bubbles.get(data.line);
      if (!node) {
        const entry = { speaker: data.speaker, role: data.role, message: "" };
        const item = kind === "interview" ? interviewMessage(entry) : familyMessage(entry);
        item.classList.add("message--streaming");
        item.dataset.testid = "streaming-message";
        el[kind === "interview" ? "interviewTyping" : "familyTyping"].hidden = true;
        log.append(item);
        node = item.querySelector(".message__text");
        bubbles.set(data.line, node);
      }
      return node;
    }
    return {
      add(event, data) {
        if (event === "delta") {
          const node = bubble(data);
          node.textContent += data.text;
          scrollToEnd(log);
        } else if (event === "story" || event === "letter") {
          prose[event] += data.text;
          byTestId("plan-view").hidden = false;
          const target = event === "story" ? el.planStory : el.planLetter;
          renderProse(target, prose[event], { letter: event === "letter" });
        }
      },
      end() {
        // After `done` the stored turn was rendered; after a failure nothing was stored.
        log.querySelectorAll(".message--streaming").forEach((node) => node.remove());
        if ((prose.story || prose.letter) && !state.familyComplete) {
          clearChildren(el.planStory);
          clearChildren(el.planLetter);
          byTestId("plan-view").hidden = true;
        }
      },
    };
  }

  function rememberImage(name, url) {
    state.images.set(name, apiUrl(url));
  }

  async function uploadPhoto(file) {
    await run("images:upload", async () => {
      const form = new FormData();
      form.append("file", file, file.name || "photo.jpg");
      const body = await api(sessionPath("/photos/user"), { method: "POST", form });
      rememberImage("user", body.image_url);
      renderGallery();
      renderStage();
    });
    el.photoInput.value = ""; // choosing the same file again uploads again
  }

  async function generatePartner() {
    await run("images:partner", async () => {
      const body = await api(sessionPath("/generate-image"), {
        method: "POST",
        json: { target: "partner" },
      });
      rememberImage("partner", body.image_url);
      renderGallery();
      renderMembers();
      renderStage();
    });
  }

  async function generateChildren() {
    await run("images:children", async () => {
      const body = await api(sessionPath("/generate-child-image"), { method: "POST" });
      const drawn = body.images || [body];
      drawn.forEach((image, index) => rememberImage(`child_${index + 1}`, image.image_url));
      renderGallery();
      renderMembers();
      renderStage();
    });
  }

  async function completeInterview() {
    await run("complete", async () => {
      const body = await api(sessionPath("/complete"), { method: "POST" });
      applyInterview(body);
      applyFamily(await api(sessionPath("/family/status")));
      state.familyStarted = true;
      renderGallery();
      renderStage();
      el.familyInput.focus();
    });
  }

  function resetState() {
    state.sessionId = null;
    state.profile = {};
    state.profileComplete = false;
    state.familyStarted = false;
    state.familyComplete = false;
    state.members = [];
    state.images = new Map();
    state.sendKeys = { interview: null, family: null };
  }

  function restart() {
    resetState();
    setSessionInUrl(null);
    el.interviewInput.value = "";
    el.familyInput.value = "";
    clearError();
    renderStage();
  }

  /** Restores a session from the URL: summary (images), interview and family state. */
  async function restore(sessionId) {
    state.sessionId = sessionId;
    const ok = await run("restore", async () => {
      const [summary, interview, family] = await Promise.all([
        api(sessionPath("")),
        api(sessionPath("/status")),
        api(sessionPath("/family/status")),
      ]);
      // The API's own URLs: versioned, and signed where the session is a person's own.
      Object.entries(summary.image_urls || {}).forEach(([name, url]) => rememberImage(name, url));
      applyInterview(interview);
      state.familyStarted = summary.family_status !== "not_started";
      applyFamily(family);
      renderGallery();
      renderStage();
    });
    if (!ok) {
      const message = el.errorMessage.textContent;
      resetState();
      setSessionInUrl(null);
      renderStage();
      showError(`前回のセッションを読み込めませんでした: ${message}`);
    }
  }

  /* ------------------------------------------------------------------ wiring */

  function wireComposer(form, kind) {
    const input = form.querySelector("textarea");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sendChat(kind);
    });
    input.addEventListener("keydown", (event) => {
      // Ctrl/⌘+Enter sends; plain Enter stays a newline (and confirms IME conversion).
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.isComposing) {
        event.preventDefault();
        sendChat(kind);
      }
    });
  }

  function init() {
    el.startButton.addEventListener("click", startSession);
    el.errorDismiss.addEventListener("click", clearError);
    el.restartButton.addEventListener("click", restart);
    el.photoInput.addEventListener("change", () => {
      const file = el.photoInput.files && el.photoInput.files[0];
      if (file) uploadPhoto(file);
    });
    el.generatePartner.addEventListener("click", generatePartner);
    el.generateChildren.addEventListener("click", generateChildren);
    el.completeButton.addEventListener("click", completeInterview);
    wireComposer(el.interviewForm, "interview");
    wireComposer(el.familyForm, "family");

    const sessionId = new URL(window.location.href).searchParams.get("session");
    if (sessionId) {
      restore(sessionId);
    } else {
      renderStage();
    }
  }

  init();
})();
