// The local workspace page: what the chosen person sees in Slack, kept live by server-sent events.
// Everything they do goes to the local workspace (/workspace/...), which sends the app the same signed
// requests Slack sends. No build step, no dependencies besides blocks.js.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const { esc } = BlockKit;
  const LOCK = '<svg class="lock" viewBox="0 0 16 16" width="12" height="12" aria-label="private"><rect x="3" y="7" width="10" height="8" rx="1.5" fill="currentColor"/><path d="M5 7V5a3 3 0 0 1 6 0v2" stroke="currentColor" stroke-width="1.6" fill="none"/></svg>';
  const params = new URLSearchParams(location.search);
  const S = { as: params.get("as") || "", open: params.get("channel") || "", thread: params.get("thread") || "",
    tab: params.get("tab") || "home", data: null, errors: {}, modalKey: "", loading: null, again: false };

  async function call(path, body) {
    const response = await fetch(`/workspace/${path}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ as: S.as, ...body }),
    });
    const answer = await response.json().catch(() => ({ ok: false, error: `HTTP ${response.status}` }));
    if (!answer.ok) toast(answer.error || "That did not work.");
    return answer;
  }

  function toast(text) {
    const el = $("#toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  // ----- loading --------------------------------------------------------------------------------
  async function refresh() {
    if (S.loading) { S.again = true; return S.loading; }
    const query = new URLSearchParams({ as: S.as, channel: S.open === "app" ? appChannel() : S.open, thread: S.thread });
    S.loading = fetch(`/workspace/state?${query}`).then((r) => r.json()).then((data) => {
      S.data = data;
      if (!S.as) S.as = data.me.id;
      if (!S.open || (S.open !== "app" && !data.conversations.some((c) => c.id === S.open))) {
        const first = data.conversations.find((c) => !c.is_im);
        S.open = first ? first.id : "app";
        S.thread = "";
        if (S.open !== "app") return refreshSoon();
      }
      if (S.open === "app" && !data.channel && S.tab === "messages") return refreshSoon();
      render();
    }).catch((err) => toast(`The workspace did not answer (${err}).`)).finally(() => {
      S.loading = null;
      if (S.again) { S.again = false; refresh(); }
    });
    return S.loading;
  }
  function refreshSoon() { S.loading = null; return refresh(); }
  function appChannel() {
    const im = S.data && S.data.conversations.find((c) => c.is_im);
    return im ? im.id : "";
  }
  function remember() {
    const q = new URLSearchParams({ as: S.as, channel: S.open });
    if (S.thread) q.set("thread", S.thread);
    if (S.open === "app") q.set("tab", S.tab);
    history.replaceState(null, "", `?${q}`);
  }

  function ctx() {
    const d = S.data, users = {}, channels = {};
    for (const u of d.people) users[u.id] = u;
    users[d.bot.id] = { id: d.bot.id, real_name: d.bot.name };
    for (const c of d.conversations) channels[c.id] = c;
    return { users, channels, people: d.people, tz: d.me.tz, now: d.now, errors: S.errors };
  }

  // ----- rendering ------------------------------------------------------------------------------
  function render() {
    remember();
    renderTop();
    renderSidebar();
    renderMain();
    renderThread();
    renderModal();
  }

  function renderTop() {
    const d = S.data, c = ctx();
    $("#team").textContent = d.team.name;
    const people = $("#as");
    const options = groupedPeople(d.people).map(([label, list]) => `<optgroup label="${esc(label)}">${list.map((u) => `<option value="${esc(u.id)}"${u.id === S.as ? " selected" : ""}>${esc(u.real_name)}${u.profile.title ? ` — ${esc(u.profile.title)}` : ""}</option>`).join("")}</optgroup>`).join("");
    if (people.dataset.options !== options) { people.innerHTML = options; people.dataset.options = options; }
    people.value = S.as;
    const now = BlockKit.formatDate(d.now, "{date_long} {time}", c);
    const clock = d.clock;
    let html = `<span class="now" title="in ${esc(d.me.tz)}, the timezone of ${esc(d.me.real_name)}">Now: <b id="now">${esc(now)}</b></span>`;
    if (clock.movable) {
      const ahead = clock.ahead_seconds > 60 ? ` <span class="ahead">(${esc(aheadText(clock.ahead_seconds))} ahead of real time)</span>` : "";
      html += `${ahead}<span class="moves">${clock.targets.map((t) => `<button type="button" class="clock-move" data-clock="${esc(t.to)}">${esc(t.label)} →</button>`).join("")}</span><span class="demo-note" title="Demo mode only: these buttons move the bot's own clock (bot/clock.py) and run its scheduler on the way. A real Slack workspace has no such control.">demo clock</span>`;
    }
    const el = $("#clock");
    if (!el.querySelector(".clock-move[disabled]")) el.innerHTML = html;
    else $("#now").textContent = now;
  }
  function aheadText(seconds) {
    const days = Math.floor(seconds / 86400), hours = Math.round((seconds % 86400) / 3600);
    return days ? `${days} day${days === 1 ? "" : "s"}${hours ? ` ${hours} h` : ""}` : `${hours} h`;
  }
  function groupedPeople(people) {
    const groups = new Map();
    for (const u of people) {
      const title = u.profile.title || "";
      const label = u.team_id === S.data.team.id ? "The agency" : title.startsWith("Client contact") ? title.replace(/^Client contact, /, "Client: ") : "Outside";
      if (!groups.has(label)) groups.set(label, []);
      groups.get(label).push(u);
    }
    return [...groups.entries()];
  }

  function renderSidebar() {
    const d = S.data;
    const channels = d.conversations.filter((c) => !c.is_im);
    const item = (id, label, extra = "") => `<button type="button" class="side-item${S.open === id ? " active" : ""}" data-open="${esc(id)}">${label}${extra}</button>`;
    swap($("#sidebar"), `
      <div class="side-title">Channels</div>
      ${channels.map((c) => item(c.id, `<span class="hash">${c.is_private ? LOCK : "#"}</span>${esc(c.name)}`, c.is_ext_shared ? '<span class="shared" title="Shared with another organisation (Slack Connect)">⇄</span>' : "")).join("") || '<div class="side-empty">No channels</div>'}
      <div class="side-title">Apps</div>
      ${item("app", '<span class="app-icon">R</span>Retainer Bot')}`);
  }

  function renderMain() {
    const d = S.data, main = $("#main");
    if (S.open === "app") {
      const tabs = `<div class="tabs"><button type="button" class="tab${S.tab === "home" ? " active" : ""}" data-tab="home">Home</button><button type="button" class="tab${S.tab === "messages" ? " active" : ""}" data-tab="messages">Messages</button></div>`;
      const head = `<div class="channel-head"><span class="app-icon big">R</span><h1>Retainer Bot</h1>${tabs}</div>`;
      if (S.tab === "home") {
        const home = d.home;
        const body = home ? `<div class="home view" data-view-id="${esc(home.id)}">${BlockKit.blocks(home.blocks, ctx())}</div>` : '<div class="empty">Opening the Home tab…</div>';
        setMain(main, head, `<div class="scroll">${body}</div>`, "", { keepScroll: true });
        return;
      }
      setMain(main, head, messagesHtml(d.channel), composer("Message Retainer Bot"));
      return;
    }
    const channel = d.conversations.find((c) => c.id === S.open);
    const shared = channel.is_ext_shared ? '<span class="head-note">Shared with an external organisation</span>' : "";
    const head = `<div class="channel-head"><h1><span class="hash">${channel.is_private ? LOCK : "#"}</span>${esc(channel.name)}</h1>${shared}</div>`;
    setMain(main, head, messagesHtml(d.channel), composer(`Message #${channel.name}`));
  }

  function setMain(main, head, body, compose, { keepScroll = false } = {}) {
    const key = `${S.open}|${S.tab}`;
    const list = main.dataset.key === key ? main.querySelector(".scroll") : null;
    const atBottom = !list || list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const was = list ? list.scrollTop : 0;
    if (main.dataset.key !== key) {
      main.dataset.key = key;
      main.innerHTML = `<div class="head"></div><div class="body"></div><div class="compose"></div>`;
      if (compose) main.querySelector(".compose").innerHTML = compose;
    }
    swap(main.querySelector(".head"), head);
    if (!swap(main.querySelector(".body"), body)) return;  // unchanged: leave the DOM (hover, menus) be
    if (!compose) main.querySelector(".compose").innerHTML = "";
    const scroll = main.querySelector(".scroll");
    if (scroll && keepScroll) scroll.scrollTop = was;  // a Home tab reads from the top
    else if (scroll && atBottom) scroll.scrollTop = scroll.scrollHeight;
  }

  // Replace an element's content only when it changed; true if it did.
  function swap(el, html) {
    if (el.dataset.html === html) return false;
    el.dataset.html = html;
    el.innerHTML = html;
    return true;
  }

  function composer(placeholder, thread = "") {
    return `<form class="composer" data-thread="${esc(thread)}"><textarea rows="1" placeholder="${esc(placeholder)}" aria-label="${esc(placeholder)}"></textarea><button type="submit" class="send" aria-label="Send">Send</button><div class="compose-hint">Type <code>/retainer help</code> to talk to the app; Enter sends.</div></form>`;
  }

  function messagesHtml(channel) {
    if (!channel) return '<div class="scroll"><div class="empty">Nothing here yet.</div></div>';
    let lastDay = "", html = "";
    const c = ctx();
    for (const m of channel.messages) {
      const day = BlockKit.formatDate(Number(m.ts), "{date_long_pretty}", c);
      if (day !== lastDay) { html += `<div class="day"><span>${esc(day)}</span></div>`; lastDay = day; }
      html += messageHtml(m, channel.id, c, true);
    }
    return `<div class="scroll">${html || '<div class="empty">Nothing here yet.</div>'}</div>`;
  }

  function messageHtml(m, channelId, c, inChannel) {
    const bot = Boolean(m.bot_id), slackbot = Boolean(m.slackbot);
    const author = slackbot ? "Slackbot" : bot ? "Retainer Bot" : (c.users[m.user] && c.users[m.user].real_name) || m.user;
    const initial = slackbot ? "S" : bot ? "R" : author.slice(0, 1);
    const time = BlockKit.formatDate(Number(m.ts), "{time}", c);
    const external = !bot && c.users[m.user] && c.users[m.user].team_id !== S.data.team.id;
    const ephemeral = Boolean(m.is_ephemeral);
    const edited = m.edited ? ' <span class="edited">(edited)</span>' : "";
    const replies = inChannel && m.reply_count ? `<button type="button" class="replies" data-thread="${esc(m.ts)}">${m.reply_count} repl${m.reply_count === 1 ? "y" : "ies"}</button>` : "";
    const only = ephemeral ? `<div class="only-you">Only visible to you · <button type="button" class="link" data-dismiss="${esc(m.ts)}">Dismiss</button></div>` : "";
    const shortcuts = S.data.shortcuts.map((s) => `<button type="button" data-shortcut="${esc(s.callback_id)}">${esc(s.name)}</button>`).join("");
    const tools = ephemeral ? "" : `<div class="msg-tools">${inChannel ? `<button type="button" data-reply="${esc(m.ts)}" title="Reply in thread" aria-label="Reply in thread">Reply</button>` : ""}<button type="button" data-more title="More actions" aria-label="More actions">⋮</button><div class="msg-menu" hidden><div class="menu-title">Shortcuts</div>${shortcuts}</div></div>`;
    return `<div class="msg${ephemeral ? " ephemeral" : ""}" data-channel="${esc(channelId)}" data-ts="${esc(m.ts)}"${ephemeral ? ' data-ephemeral="1"' : ""}>
      <div class="avatar${bot || slackbot ? " bot" : ""}">${esc(initial)}</div>
      <div class="msg-body"><div class="meta"><b class="author">${esc(author)}</b>${bot || slackbot ? '<span class="app-badge">APP</span>' : ""}${external ? '<span class="ext" title="From another organisation">⇄</span>' : ""}<span class="time" title="${esc(BlockKit.formatDate(Number(m.ts), "{date_long} {time_secs}", c))}">${esc(time)}</span>${edited}</div>
      <div class="content">${BlockKit.message(m, c)}</div>${only}${replies}</div>${tools}</div>`;
  }

  function renderThread() {
    const pane = $("#thread"), thread = S.data.channel && S.data.channel.thread;
    if (!S.thread || !thread) { pane.hidden = true; pane.dataset.key = ""; return; }
    pane.hidden = false;
    const c = ctx(), key = `${S.open}|${S.thread}`;
    if (pane.dataset.key !== key) {
      pane.dataset.key = key;
      pane.innerHTML = `<div class="thread-head"><b>Thread</b><button type="button" class="link" data-close-thread aria-label="Close thread">✕</button></div><div class="thread-body"></div>${composer("Reply…", S.thread)}`;
    }
    const body = pane.querySelector(".thread-body");
    const replies = thread.replies.map((m) => messageHtml(m, S.data.channel.id, c, false)).join("");
    if (swap(body, `${messageHtml(thread.parent, S.data.channel.id, c, false)}<div class="reply-count">${thread.replies.length} repl${thread.replies.length === 1 ? "y" : "ies"}</div>${replies}`)) {
      body.scrollTop = body.scrollHeight;
    }
  }

  function renderModal() {
    const root = $("#modal-root"), modals = S.data.modals, top = modals[modals.length - 1];
    if (!top) { root.innerHTML = ""; S.modalKey = ""; S.errors = {}; return; }
    const key = `${top.id}|${top.hash}|${JSON.stringify(S.errors)}`;
    if (key === S.modalKey) return;  // keep what the person typed
    const typed = S.modalKey.startsWith(`${top.id}|${top.hash}|`) ? collectValues(root) : null;
    S.modalKey = key;
    const c = ctx(), general = S.errors[""] ? `<div class="bk-error" role="alert">${esc(S.errors[""])}</div>` : "";
    root.innerHTML = `<div class="overlay"><form class="modal view" role="dialog" aria-label="${esc(BlockKit.plain(top.title))}" data-view-id="${esc(top.id)}">
      <div class="modal-head"><h2>${esc(BlockKit.plain(top.title))}</h2><button type="button" class="link" data-close-modal aria-label="Close">✕</button></div>
      <div class="modal-body">${general}${BlockKit.blocks(top.blocks, c)}</div>
      <div class="modal-foot"><button type="button" class="bk-button" data-close-modal>${esc(BlockKit.plain(top.close) || "Cancel")}</button>${top.submit ? `<button type="submit" class="bk-button primary">${esc(BlockKit.plain(top.submit))}</button>` : ""}</div></form></div>`;
    if (typed) restoreValues(root, typed);
    loadExternalOptions(root, top);
  }

  async function loadExternalOptions(root, view) {
    for (const select of root.querySelectorAll('select[data-type$="external_select"]')) {
      const answer = await call("suggest", { view_id: view.id, block_id: select.dataset.blockId, action_id: select.dataset.actionId, value: "" });
      const el = findElement(view, select.dataset.blockId, select.dataset.actionId);
      if (!answer.ok || !el) continue;
      el._loaded = answer.options;
      const chosen = select.value;
      select.insertAdjacentHTML("beforeend", answer.options.map((o) => `<option value="${esc(o.value)}">${esc(BlockKit.plain(o.text))}</option>`).join(""));
      if (chosen) select.value = chosen;
    }
  }

  // ----- modal values (Slack's view.state.values) -----------------------------------------------
  function findElement(view, blockId, actionId) {
    for (const b of view.blocks) {
      if (blockId && b.block_id && b.block_id !== blockId) continue;
      for (const el of [b.element, b.accessory, ...(b.elements || [])]) if (el && el.action_id === actionId) return el;
    }
    return null;
  }
  function option(el, value) {
    return BlockKit.optionList(el || {}).find((o) => o.value === value) || { text: { type: "plain_text", text: value }, value };
  }
  function stateOf(control, el) {
    const type = control.dataset.type;
    const picked = control.tagName === "SELECT" ? [...control.selectedOptions].map((o) => o.value).filter(Boolean) : [];
    switch (type) {
      case "static_select": case "external_select": return { type, selected_option: picked[0] ? option(el, picked[0]) : null };
      case "multi_static_select": case "multi_external_select": return { type, selected_options: picked.map((v) => option(el, v)) };
      case "users_select": return { type, selected_user: picked[0] || null };
      case "multi_users_select": return { type, selected_users: picked };
      case "conversations_select": return { type, selected_conversation: picked[0] || null };
      case "multi_conversations_select": return { type, selected_conversations: picked };
      case "channels_select": return { type, selected_channel: picked[0] || null };
      case "multi_channels_select": return { type, selected_channels: picked };
      case "datepicker": return { type, selected_date: control.value || null };
      case "timepicker": return { type, selected_time: control.value || null };
      case "checkboxes": return { type, selected_options: [...control.querySelectorAll("input:checked")].map((i) => option(el, i.value)) };
      case "radio_buttons": { const i = control.querySelector("input:checked"); return { type, selected_option: i ? option(el, i.value) : null }; }
      default: return { type, value: control.value === "" ? null : control.value };
    }
  }
  function collectValues(root) {
    const form = root.querySelector("[data-view-id]"), values = {};
    if (!form) return values;
    const view = currentView(form.dataset.viewId);
    for (const block of root.querySelectorAll("[data-input-block]")) {
      const control = block.querySelector("[data-action-id]");
      if (!control || !view) continue;
      const el = findElement(view, block.dataset.inputBlock, control.dataset.actionId);
      values[block.dataset.inputBlock] = { [control.dataset.actionId]: stateOf(control, el) };
    }
    return values;
  }
  function restoreValues(root, values) {
    for (const [blockId, byAction] of Object.entries(values)) {
      const control = root.querySelector(`[data-input-block="${CSS.escape(blockId)}"] [data-action-id]`);
      const state = Object.values(byAction)[0];
      if (!control || !state) continue;
      if ("value" in state) control.value = state.value ?? "";
      else if (state.selected_option && control.tagName === "SELECT") control.value = state.selected_option.value;
      else if ("selected_date" in state) control.value = state.selected_date ?? "";
    }
  }
  function currentView(id) {
    const d = S.data;
    return d.modals.find((v) => v.id === id) || (d.home && d.home.id === id ? d.home : null);
  }

  // ----- acting ---------------------------------------------------------------------------------
  function open(id) {
    S.open = id;
    S.thread = "";
    if (id === "app") openTab(S.tab);
    refresh();
  }
  function openTab(tab) {
    S.tab = tab;
    call("open", { tab });
    refresh();
  }

  async function act(target, value) {
    const view = target.closest("[data-view-id]");
    const base = { action_id: target.dataset.actionId, block_id: target.dataset.blockId, value };
    if (target.dataset.url) window.open(target.dataset.url, "_blank", "noopener");
    if (view) {
      const modal = view.classList.contains("modal");
      return call("action", { ...base, view_id: view.dataset.viewId, values: modal ? collectValues($("#modal-root")) : undefined });
    }
    const msg = target.closest(".msg");
    return call("action", { ...base, channel: msg.dataset.channel, ts: msg.dataset.ts, ephemeral: Boolean(msg.dataset.ephemeral) });
  }

  document.addEventListener("click", async (event) => {
    const t = event.target.closest("button, [data-open]");
    if (!t) { closeMenus(); return; }
    if (t.dataset.open) return open(t.dataset.open);
    if (t.dataset.tab) return openTab(t.dataset.tab);
    if (t.dataset.clock) return moveClock(t);
    if (t.dataset.act === "button") return act(t, t.dataset.value);
    if (t.dataset.act === "overflow") { const menu = t.nextElementSibling; const was = menu.hidden; closeMenus(); menu.hidden = !was; return; }
    if (t.dataset.act === "pick") { closeMenus(); return act(t, t.dataset.value); }
    if ("more" in t.dataset) { const menu = t.nextElementSibling; const was = menu.hidden; closeMenus(); menu.hidden = !was; return; }
    if (t.dataset.shortcut) {
      closeMenus();
      const msg = t.closest(".msg");
      return call("shortcut", { channel: msg.dataset.channel, ts: msg.dataset.ts, callback_id: t.dataset.shortcut });
    }
    if (t.dataset.reply || t.dataset.thread) { S.thread = t.dataset.reply || t.dataset.thread; return refresh(); }
    if ("closeThread" in t.dataset) { S.thread = ""; return refresh(); }
    if (t.dataset.dismiss) { const msg = t.closest(".msg"); await call("dismiss", { channel: msg.dataset.channel, ts: t.dataset.dismiss }); return refresh(); }
    if ("closeModal" in t.dataset) {
      const view = t.closest("[data-view-id]");
      S.errors = {};
      await call("close", { view_id: view.dataset.viewId });
      return refresh();
    }
  });
  function closeMenus() {
    document.querySelectorAll(".msg-menu, .bk-menu").forEach((m) => { m.hidden = true; });
  }

  document.addEventListener("change", (event) => {
    const t = event.target;
    if (t.id === "as") {
      S.as = t.value; S.open = ""; S.thread = ""; S.errors = {}; S.modalKey = "";
      $("#main").dataset.key = "";
      return refresh();
    }
    if (t.dataset.act === "select" || t.dataset.act === "date") return act(t, t.value);
  });

  document.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    if (form.classList.contains("composer")) return send(form);
    if (form.classList.contains("modal")) {
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      const answer = await call("submit", { view_id: form.dataset.viewId, values: collectValues($("#modal-root")) });
      button.disabled = false;
      S.errors = (answer.ok && answer.errors) || {};
      S.modalKey = S.modalKey.replace(/\|[^|]*$/, "|__typed__");  // re-render with the errors, keeping input
      refresh();
    }
  });
  document.addEventListener("keydown", (event) => {
    const t = event.target;
    if (t.tagName === "TEXTAREA" && t.closest(".composer") && event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send(t.closest(".composer"));
    }
  });

  async function send(form) {
    const box = form.querySelector("textarea"), text = box.value.trim();
    if (!text) return;
    box.value = "";
    const channel = S.open === "app" ? appChannel() : S.open;
    await call("send", { channel, text, thread_ts: form.dataset.thread || undefined });
    refresh();
  }

  async function moveClock(button) {
    const buttons = document.querySelectorAll(".clock-move");
    buttons.forEach((b) => { b.disabled = true; });
    button.classList.add("moving");
    try { await call("clock", { to: button.dataset.clock }); } finally {
      buttons.forEach((b) => { b.disabled = false; });
      button.classList.remove("moving");
      refresh();
    }
  }

  // ----- live -----------------------------------------------------------------------------------
  function listen() {
    const events = new EventSource("/workspace/events");
    events.onmessage = () => refresh();
    events.onerror = () => { $("#live").classList.add("off"); };
    events.onopen = () => { $("#live").classList.remove("off"); };
  }

  refresh().then(() => { if (S.open === "app") call("open", { tab: S.tab }); });
  listen();
})();
