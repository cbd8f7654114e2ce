// Block Kit and mrkdwn, rendered to HTML the way Slack shows them: close enough to judge a layout.
// Unknown block and element types are shown as such, never dropped. No dependencies.
"use strict";

const BlockKit = (() => {
  const EMOJI = {
    white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️", red_circle: "🔴",
    large_yellow_circle: "🟡", large_green_circle: "🟢", large_orange_circle: "🟠", rotating_light: "🚨",
    calendar: "📅", clock3: "🕒", memo: "📝", bell: "🔔", tada: "🎉", eyes: "👀", hourglass: "⌛",
    chart_with_upwards_trend: "📈", chart_with_downwards_trend: "📉", bar_chart: "📊", pushpin: "📌",
    wave: "👋", thumbsup: "👍", "+1": "👍", sparkles: "✨", fire: "🔥", inbox_tray: "📥", link: "🔗",
    information_source: "ℹ️", question: "❓", zzz: "💤", spiral_calendar_pad: "🗓️",
  };
  const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December"];

  function esc(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => (
      { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function unslack(text) {  // Slack escapes only these three in message text
    return String(text ?? "").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }
  function emoji(html) {
    return html.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
  }

  // ----- dates in the viewer's timezone -------------------------------------------------------
  function parts(seconds, tz) {
    const f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, year: "numeric", month: "numeric", day: "numeric", weekday: "long",
      hour: "numeric", minute: "2-digit", second: "2-digit", hour12: true,
    });
    const p = {};
    for (const { type, value } of f.formatToParts(new Date(seconds * 1000))) p[type] = value;
    return p;
  }
  function ordinal(n) {
    const s = ["th", "st", "nd", "rd"], v = n % 100;
    return n + (s[(v - 20) % 10] || s[v] || s[0]);
  }
  function dayNumber(seconds, tz) {
    const p = parts(seconds, tz);
    return Date.UTC(+p.year, +p.month - 1, +p.day) / 86400000;
  }
  function formatDate(seconds, format, ctx) {
    const tz = ctx.tz || "UTC", p = parts(seconds, tz), month = MONTHS[+p.month - 1];
    const relative = () => {
      const d = dayNumber(seconds, tz) - dayNumber(ctx.now, tz);
      return d === 0 ? "Today" : d === -1 ? "Yesterday" : d === 1 ? "Tomorrow" : null;
    };
    const tokens = {
      date_num: `${p.year}-${p.month.padStart(2, "0")}-${p.day.padStart(2, "0")}`,
      date: `${month} ${ordinal(+p.day)}, ${p.year}`,
      date_short: `${month.slice(0, 3)} ${+p.day}, ${p.year}`,
      date_long: `${p.weekday}, ${month} ${ordinal(+p.day)}, ${p.year}`,
      time: `${p.hour}:${p.minute} ${p.dayPeriod}`,
      time_secs: `${p.hour}:${p.minute}:${p.second} ${p.dayPeriod}`,
      ago: ago(ctx.now - seconds),
    };
    tokens.date_pretty = relative() || tokens.date;
    tokens.date_short_pretty = relative() || tokens.date_short;
    tokens.date_long_pretty = relative() || tokens.date_long;
    return format.replace(/\{(\w+)\}/g, (m, name) => tokens[name] ?? m);
  }
  function ago(seconds) {
    const future = seconds < 0, s = Math.abs(seconds);
    const [n, unit] = s < 60 ? [Math.round(s), "second"] : s < 3600 ? [Math.round(s / 60), "minute"]
      : s < 86400 ? [Math.round(s / 3600), "hour"] : [Math.round(s / 86400), "day"];
    const text = `${n} ${unit}${n === 1 ? "" : "s"}`;
    return future ? `in ${text}` : `${text} ago`;
  }

  // ----- mrkdwn -------------------------------------------------------------------------------
  function token(inner, ctx) {
    const [target, label] = splitOnce(inner, "|");
    if (target.startsWith("@")) {
      const id = target.slice(1), name = label || (ctx.users[id] && ctx.users[id].real_name) || id;
      return `<span class="mention" data-user="${esc(id)}">@${esc(name)}</span>`;
    }
    if (target.startsWith("#")) {
      const id = target.slice(1), name = label || (ctx.channels[id] && ctx.channels[id].name) || id;
      return `<span class="mention channel">#${esc(name)}</span>`;
    }
    if (target.startsWith("!date^")) {
      const [, ts, format, link] = target.split("^");
      const text = esc(formatDate(Number(ts), format || "{date}", ctx));
      return link ? `<a href="${esc(link)}" target="_blank" rel="noopener" title="${esc(label || "")}">${text}</a>`
        : `<time data-ts="${esc(ts)}" title="${esc(label || "")}">${text}</time>`;
    }
    if (target.startsWith("!subteam^")) return `<span class="mention">${esc(label || "@group")}</span>`;
    if (target.startsWith("!")) return `<span class="mention">@${esc(target.slice(1))}</span>`;
    const href = target;
    const shown = label || href.replace(/^mailto:/, "");
    return `<a href="${esc(href)}" target="_blank" rel="noopener">${esc(shown)}</a>`;
  }
  function splitOnce(text, sep) {
    const i = text.indexOf(sep);
    return i < 0 ? [text, ""] : [text.slice(0, i), text.slice(i + 1)];
  }
  function styles(html) {
    const edge = "(^|[\\s(\\[{>\"'])", end = "(?=$|[\\s).,!?:;\\]}<\"'])";
    return html
      .replace(new RegExp(`${edge}\\*(?!\\s)([^*\\n]+?)\\*${end}`, "g"), "$1<b>$2</b>")
      .replace(new RegExp(`${edge}_(?!\\s)([^_\\n]+?)_${end}`, "g"), "$1<i>$2</i>")
      .replace(new RegExp(`${edge}~(?!\\s)([^~\\n]+?)~${end}`, "g"), "$1<s>$2</s>");
  }
  function mrkdwn(text, ctx) {
    const held = [];
    const hold = (html) => `\u0000${held.push(html) - 1}\u0000`;
    let source = String(text ?? "");
    source = source.replace(/```([\s\S]*?)```/g, (m, code) => hold(`<pre>${esc(unslack(code))}</pre>`));
    source = source.replace(/`([^`\n]+)`/g, (m, code) => hold(`<code>${esc(unslack(code))}</code>`));
    source = source.replace(/<([^<>\n]+)>/g, (m, inner) => hold(token(unslack(inner), ctx)));
    let html = styles(emoji(esc(unslack(source))));
    html = html.split("\n").map((line) => (line.startsWith("&gt; ") || line === "&gt;"
      ? `<blockquote>${line.replace(/^&gt; ?/, "")}</blockquote>` : line)).join("\n");
    html = html.replace(/<\/blockquote>\n<blockquote>/g, "<br>").replace(/\n/g, "<br>");
    return html.replace(/\u0000(\d+)\u0000/g, (m, i) => held[+i]);
  }
  function text(obj, ctx) {
    if (!obj) return "";
    if (typeof obj === "string") return mrkdwn(obj, ctx);
    if (obj.type === "mrkdwn") return obj.verbatim ? esc(unslack(obj.text)) : mrkdwn(obj.text, ctx);
    return emoji(esc(obj.text));
  }
  function plain(obj) {
    return obj ? String(obj.text ?? "") : "";
  }

  // ----- elements -----------------------------------------------------------------------------
  function data(el, block) {
    return `data-action-id="${esc(el.action_id || "")}" data-block-id="${esc(block.block_id || "")}"`;
  }
  function optionList(el) {
    const groups = el.option_groups ? el.option_groups.flatMap((g) => g.options) : [];
    return [...(el.options || []), ...groups, ...(el._loaded || [])];
  }
  function selectHtml(el, block, ctx, { input = false, multiple = false } = {}) {
    const initial = new Set([el.initial_option, ...(el.initial_options || [])].filter(Boolean).map((o) => o.value));
    let options;
    if (/users_select$/.test(el.type)) {
      const chosen = new Set([el.initial_user, ...(el.initial_users || [])].filter(Boolean));
      options = ctx.people.map((u) => `<option value="${esc(u.id)}"${chosen.has(u.id) ? " selected" : ""}>${esc(u.real_name)}</option>`);
    } else if (/(conversations|channels)_select$/.test(el.type)) {
      const chosen = new Set([el.initial_conversation, el.initial_channel, ...(el.initial_conversations || [])]);
      options = Object.values(ctx.channels).filter((c) => c.name).map((c) => `<option value="${esc(c.id)}"${chosen.has(c.id) ? " selected" : ""}>#${esc(c.name)}</option>`);
    } else {
      options = optionList(el).map((o) => `<option value="${esc(o.value)}"${initial.has(o.value) ? " selected" : ""}>${esc(plain(o.text))}</option>`);
    }
    const placeholder = multiple ? "" : `<option value=""${initial.size || el.initial_user ? "" : " selected"}>${esc(plain(el.placeholder) || "Select an item")}</option>`;
    const act = input ? "" : ` data-act="select"`;
    return `<select class="bk-select" data-type="${esc(el.type)}" ${data(el, block)}${act}${multiple ? " multiple" : ""} aria-label="${esc(plain(el.placeholder) || el.action_id || "select")}">${placeholder}${options.join("")}</select>`;
  }
  function element(el, block, ctx, { input = false } = {}) {
    if (!el) return "";
    switch (el.type) {
      case "button": {
        const style = el.style ? ` ${esc(el.style)}` : "";
        const url = el.url ? ` data-url="${esc(el.url)}"` : "";
        return `<button type="button" class="bk-button${style}" data-act="button" ${data(el, block)} data-value="${esc(el.value ?? "")}"${url}>${emoji(esc(plain(el.text)))}</button>`;
      }
      case "overflow":
        return `<span class="bk-overflow"><button type="button" class="bk-button overflow" data-act="overflow" aria-label="More options">⋯</button><span class="bk-menu" hidden>${el.options.map((o) => `<button type="button" data-act="pick" ${data(el, block)} data-value="${esc(o.value)}">${esc(plain(o.text))}</button>`).join("")}</span></span>`;
      case "static_select": case "external_select": case "users_select": case "conversations_select": case "channels_select":
        return selectHtml(el, block, ctx, { input });
      case "multi_static_select": case "multi_external_select": case "multi_users_select": case "multi_conversations_select": case "multi_channels_select":
        return selectHtml(el, block, ctx, { input: true, multiple: true });
      case "datepicker":
        return `<input type="date" class="bk-input" data-type="datepicker" ${data(el, block)}${input ? "" : ' data-act="date"'} value="${esc(el.initial_date || "")}">`;
      case "timepicker":
        return `<input type="time" class="bk-input" data-type="timepicker" ${data(el, block)} value="${esc(el.initial_time || "")}">`;
      case "plain_text_input": case "email_text_input": case "url_text_input": case "number_input": {
        const ph = esc(plain(el.placeholder)), value = esc(el.initial_value ?? "");
        if (el.multiline) return `<textarea class="bk-input" rows="4" data-type="${el.type}" ${data(el, block)} placeholder="${ph}">${value}</textarea>`;
        const kind = { email_text_input: "email", url_text_input: "url", number_input: "text" }[el.type] || "text";
        return `<input type="${kind}" class="bk-input" data-type="${el.type}" ${data(el, block)} placeholder="${ph}" value="${value}">`;
      }
      case "checkboxes": case "radio_buttons": {
        const kind = el.type === "checkboxes" ? "checkbox" : "radio";
        const initial = new Set([el.initial_option, ...(el.initial_options || [])].filter(Boolean).map((o) => o.value));
        const name = `r${Math.random().toString(36).slice(2)}`;
        return `<div class="bk-choices" data-type="${el.type}" ${data(el, block)}>${el.options.map((o) => `<label><input type="${kind}" name="${name}" value="${esc(o.value)}"${initial.has(o.value) ? " checked" : ""}> ${text(o.text, ctx)}</label>`).join("")}</div>`;
      }
      case "image":
        return `<img class="bk-image-el" src="${esc(el.image_url)}" alt="${esc(el.alt_text)}">`;
      case "mrkdwn": case "plain_text":
        return `<span>${text(el, ctx)}</span>`;
      default:
        return unknown("element", el);
    }
  }
  function unknown(what, obj) {
    return `<div class="bk-unknown">Unsupported ${what}: <code>${esc(obj.type)}</code><pre>${esc(JSON.stringify(obj, null, 1).slice(0, 400))}</pre></div>`;
  }

  // ----- blocks -------------------------------------------------------------------------------
  function block(b, ctx) {
    const id = esc(b.block_id || "");
    switch (b.type) {
      case "header":
        return `<div class="bk-header" data-block-id="${id}">${text(b.text, ctx)}</div>`;
      case "divider":
        return `<hr class="bk-divider">`;
      case "section": {
        const body = b.text ? `<div class="bk-text">${text(b.text, ctx)}</div>` : "";
        const fields = b.fields ? `<div class="bk-fields">${b.fields.map((f) => `<div class="bk-field">${text(f, ctx)}</div>`).join("")}</div>` : "";
        const accessory = b.accessory ? `<div class="bk-accessory">${element(b.accessory, b, ctx)}</div>` : "";
        return `<div class="bk-section" data-block-id="${id}"><div class="bk-main">${body}${fields}</div>${accessory}</div>`;
      }
      case "context":
        return `<div class="bk-context" data-block-id="${id}">${b.elements.map((e) => (e.type === "image"
          ? `<img class="bk-context-img" src="${esc(e.image_url)}" alt="${esc(e.alt_text)}">` : `<span>${text(e, ctx)}</span>`)).join("")}</div>`;
      case "actions":
        return `<div class="bk-actions" data-block-id="${id}">${b.elements.map((e) => element(e, b, ctx)).join("")}</div>`;
      case "image":
        return `<figure class="bk-image" data-block-id="${id}">${b.title ? `<figcaption>${text(b.title, ctx)}</figcaption>` : ""}<img src="${esc(b.slack_file && b.slack_file.id ? `/workspace/files/${encodeURIComponent(b.slack_file.id)}` : b.image_url)}" alt="${esc(b.alt_text)}"></figure>`;
      case "input": {
        const optional = b.optional ? ' <span class="bk-optional">(optional)</span>' : "";
        const hint = b.hint ? `<div class="bk-hint">${text(b.hint, ctx)}</div>` : "";
        const error = ctx.errors && ctx.errors[b.block_id] ? `<div class="bk-error" role="alert">${esc(ctx.errors[b.block_id])}</div>` : "";
        return `<div class="bk-input-block${error ? " invalid" : ""}" data-input-block="${id}"><label class="bk-label">${esc(plain(b.label))}${optional}</label>${element(b.element, b, ctx, { input: true })}${hint}${error}</div>`;
      }
      case "rich_text":
        return `<div class="bk-rich" data-block-id="${id}">${richText(b.elements || [], ctx)}</div>`;
      case "data_visualization":
        return `<figure class="bk-chart" data-block-id="${id}"><figcaption>${esc(b.title)}</figcaption>${chart(b.chart || {})}</figure>`;
      case "table":
        return `<table class="bk-table" data-block-id="${id}">${(b.rows || []).map((row, r) => `<tr>${row.map((cell, c) => {
          const tag = r === 0 ? "th" : "td";
          const align = ((b.column_settings || [])[c] || {}).align || "left";
          const body = cell.type === "rich_text" ? richText(cell.elements || [], ctx) : esc(cell.text);
          return `<${tag} style="text-align:${esc(align)}">${body}</${tag}>`;
        }).join("")}</tr>`).join("")}</table>`;
      default:
        return unknown("block", b);
    }
  }
  // Slack's native chart, drawn as SVG: grouped bars, or lines (an area's filled), one colour a series.
  const SERIES = ["#1264a3", "#9aa5b1", "#2eb67d", "#ecb22e", "#e01e5a", "#36c5f0"];
  function chart(c) {
    if (c.type === "pie") {
      const total = (c.segments || []).reduce((a, x) => a + x.value, 0) || 1;
      return `<ul class="bk-chart-pie">${(c.segments || []).map((x, i) => `<li><span class="bk-swatch" style="background:${SERIES[i % 6]}"></span>${esc(x.label)} ${Math.round((100 * x.value) / total)}%</li>`).join("")}</ul>`;
    }
    const cats = (c.axis_config || {}).categories || [];
    const series = c.series || [];
    const value = (s, cat) => ((s.data || []).find((p) => p.label === cat) || {}).value;
    const top = Math.max(1, ...series.flatMap((s) => (s.data || []).map((p) => p.value))) * 1.1;
    const W = 560, H = 240, L = 44, B = 28, plotW = W - L - 8, plotH = H - B - 8;
    const x0 = (i) => L + (plotW * i) / Math.max(cats.length, 1);
    const y = (v) => 8 + plotH - (plotH * v) / top;
    const step = plotW / Math.max(cats.length, 1);
    let marks = "";
    if (c.type === "bar") {
      const w = (step * 0.8) / Math.max(series.length, 1);
      series.forEach((s, k) => cats.forEach((cat, i) => {
        const v = value(s, cat);
        if (v === undefined) return;
        marks += `<rect class="bk-bar" x="${x0(i) + step * 0.1 + k * w}" y="${y(v)}" width="${w - 2}" height="${y(0) - y(v)}" fill="${SERIES[k % 6]}"><title>${esc(s.name)} · ${esc(cat)}: ${v}</title></rect>`;
      }));
    } else {
      series.forEach((s, k) => {
        const pts = cats.map((cat, i) => [x0(i) + step / 2, value(s, cat)]).filter((p) => p[1] !== undefined);
        const line = pts.map((p) => `${p[0]},${y(p[1])}`).join(" ");
        if (c.type === "area" && pts.length) marks += `<polygon points="${pts[0][0]},${y(0)} ${line} ${pts[pts.length - 1][0]},${y(0)}" fill="${SERIES[k % 6]}" opacity="0.3"/>`;
        marks += `<polyline class="bk-line" points="${line}" fill="none" stroke="${SERIES[k % 6]}" stroke-width="3"><title>${esc(s.name)}</title></polyline>`;
      });
    }
    const labels = cats.map((cat, i) => `<text x="${x0(i) + step / 2}" y="${H - 8}" text-anchor="middle">${esc(cat)}</text>`).join("");
    const ticks = [0, top / 2, top / 1.1].map((v) => `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v)}</text>`).join("");
    const axis = `<line x1="${L}" y1="${y(0)}" x2="${W - 8}" y2="${y(0)}" stroke="#616061"/>`;
    const legend = series.map((s, k) => `<span><span class="bk-swatch" style="background:${SERIES[k % 6]}"></span>${esc(s.name)}</span>`).join(" ");
    const yLabel = (c.axis_config || {}).y_label ? `<span class="bk-chart-axis">${esc(c.axis_config.y_label)}</span>` : "";
    return `<svg class="bk-chart-svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img">${axis}${marks}${labels}${ticks}</svg><div class="bk-chart-legend">${legend}${yLabel}</div>`;
  }
  function richText(elements, ctx) {
    return elements.map((e) => {
      if (e.type === "rich_text_section") return `<div>${(e.elements || []).map((x) => richInline(x, ctx)).join("")}</div>`;
      if (e.type === "rich_text_list") return `<${e.style === "ordered" ? "ol" : "ul"}>${(e.elements || []).map((x) => `<li>${richText([x], ctx)}</li>`).join("")}</${e.style === "ordered" ? "ol" : "ul"}>`;
      if (e.type === "rich_text_quote") return `<blockquote>${(e.elements || []).map((x) => richInline(x, ctx)).join("")}</blockquote>`;
      if (e.type === "rich_text_preformatted") return `<pre>${(e.elements || []).map((x) => esc(x.text || "")).join("")}</pre>`;
      return unknown("rich text element", e);
    }).join("");
  }
  function richInline(x, ctx) {
    let html;
    if (x.type === "text") html = esc(x.text).replace(/\n/g, "<br>");
    else if (x.type === "link") html = `<a href="${esc(x.url)}" target="_blank" rel="noopener">${esc(x.text || x.url)}</a>`;
    else if (x.type === "user") html = token(`@${x.user_id}`, ctx);
    else if (x.type === "channel") html = token(`#${x.channel_id}`, ctx);
    else if (x.type === "emoji") html = EMOJI[x.name] || `:${esc(x.name)}:`;
    else return unknown("rich text element", x);
    const s = x.style || {};
    if (s.code) html = `<code>${html}</code>`;
    if (s.bold) html = `<b>${html}</b>`;
    if (s.italic) html = `<i>${html}</i>`;
    if (s.strike) html = `<s>${html}</s>`;
    return html;
  }
  function blocks(list, ctx) {
    return (list || []).map((b) => block(b, ctx)).join("");
  }
  function attachments(list, ctx) {
    return (list || []).map((a) => {
      const color = a.color ? (a.color.startsWith("#") ? a.color : { good: "#2eb67d", warning: "#ecb22e", danger: "#e01e5a" }[a.color] || a.color) : "#ddd";
      const inner = a.blocks ? blocks(a.blocks, ctx)
        : `${a.title ? `<div class="bk-text"><b>${esc(a.title)}</b></div>` : ""}${a.text ? `<div class="bk-text">${mrkdwn(a.text, ctx)}</div>` : ""}${(a.fields || []).map((f) => `<div class="bk-field"><b>${esc(f.title)}</b><br>${mrkdwn(f.value, ctx)}</div>`).join("")}`;
      return `<div class="bk-attachment" style="border-left-color:${esc(color)}">${inner || esc(a.fallback || "")}</div>`;
    }).join("");
  }

  // A message: its blocks if it has any, else its text; then its legacy attachments.
  function message(m, ctx) {
    const body = m.blocks && m.blocks.length ? blocks(m.blocks, ctx) : `<div class="bk-text">${mrkdwn(m.text, ctx)}</div>`;
    return body + attachments(m.attachments, ctx);
  }

  return { message, blocks, mrkdwn, text, plain, formatDate, esc, optionList };
})();
