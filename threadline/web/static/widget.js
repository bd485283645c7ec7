/* threadline chat widget: <script src="https://HOST/widget.js" data-agent="support"></script>
 *
 * Draws a chat bubble inside a Shadow DOM (the host page's styles neither leak in nor out),
 * streams answers over a WebSocket, keeps its session (id + token) in localStorage so a
 * reload shows the history, reconnects after a network drop and resumes from the last event
 * it saw, so nothing is missed or shown twice. Text from the server is only ever inserted as
 * text nodes: Markdown (marked's lexer, vendored, see static/vendor) is rendered by building
 * elements, never through innerHTML. `/widget.js` serves this file wrapped with the lexer.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var agent = script.getAttribute("data-agent") || "support";
  var title = script.getAttribute("data-title") || "Chat";
  var showCost = script.getAttribute("data-show-cost") !== "false";
  var base = new URL(script.src, location.href);
  var server = base.origin;
  var storeKey = "threadline:" + server + ":" + agent;

  var host = document.createElement("div");
  host.setAttribute("data-threadline-widget", agent);
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML = [
    "<style>",
    ":host{all:initial}",
    ".tl{position:fixed;right:20px;bottom:20px;font:14px/1.45 system-ui,sans-serif;z-index:2147483000;color:#1a202c}",
    ".bubble{width:56px;height:56px;border-radius:50%;border:0;background:#2b6cb0;color:#fff;font-size:24px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)}",
    ".panel{display:none;flex-direction:column;width:360px;height:520px;max-height:80vh;background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden}",
    ".open .panel{display:flex}.open .bubble{display:none}",
    "header{display:flex;align-items:center;justify-content:space-between;padding:10px 14px;background:#2b6cb0;color:#fff;font-weight:600}",
    "header button{background:none;border:0;color:#fff;font-size:18px;cursor:pointer}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px}",
    ".msg{max-width:85%;padding:8px 11px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}",
    ".user{align-self:flex-end;background:#2b6cb0;color:#fff}",
    ".assistant,.operator{align-self:flex-start;background:#edf2f7}",
    ".msg code{background:rgba(0,0,0,.07);padding:0 3px;border-radius:3px;font-family:ui-monospace,monospace}",
    ".assistant,.operator{white-space:normal}.msg p{margin:0 0 6px}.msg p:last-child{margin:0}",
    ".msg ul,.msg ol{margin:4px 0;padding-left:20px}.msg h3,.msg h4,.msg h5,.msg h6{margin:6px 0 4px;font-size:1em}",
    ".msg .code{position:relative;margin:6px 0}.msg pre{margin:0;padding:8px;background:#1a202c;color:#edf2f7;border-radius:6px;overflow-x:auto;white-space:pre}",
    ".msg pre code{background:none;padding:0;color:inherit}",
    ".msg .copy{position:absolute;top:4px;right:4px;font:11px system-ui,sans-serif;border:0;border-radius:4px;padding:2px 6px;background:#4a5568;color:#fff;cursor:pointer}",
    ".msg .table{overflow-x:auto;margin:6px 0}.msg table{border-collapse:collapse}.msg th,.msg td{border:1px solid #cbd5e0;padding:3px 6px;text-align:left}",
    ".approval{align-self:flex-start;background:#fffaf0;border:1px solid #f6ad55}.approval dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:6px 0}.approval dt{color:#718096}.approval dd{margin:0;font-weight:600}",
    ".approval .choices{display:flex;gap:6px}.approval button{border:0;border-radius:6px;padding:4px 12px;cursor:pointer;font:inherit}.approval .approve{background:#2f855a;color:#fff}.approval .decline{background:#e2e8f0}",
    ".step{align-self:flex-start;max-width:85%;font-size:12px;color:#4a5568}.step summary{cursor:pointer}.step pre{margin:4px 0;padding:6px;background:#f7fafc;border-radius:4px;overflow-x:auto;white-space:pre-wrap}",
    ".msg blockquote{margin:4px 0;padding-left:8px;border-left:3px solid #cbd5e0;color:#4a5568}.msg a{color:#2b6cb0}",
    ".msg.error{align-self:flex-start;background:#fff5f5;color:#742a2a;border:1px solid #feb2b2}",
    ".msg.error button{margin-left:8px;border:1px solid #c53030;background:#fff;color:#c53030;border-radius:6px;cursor:pointer;font:inherit}",
    ".status{font-size:12px;color:#718096;padding:0 14px 4px;min-height:16px}",
    "form{display:flex;gap:6px;padding:10px;border-top:1px solid #e2e8f0}",
    "textarea{flex:1;resize:none;border:1px solid #cbd5e0;border-radius:8px;padding:7px;font:inherit;height:38px}",
    "form button{border:0;border-radius:8px;padding:0 12px;background:#2b6cb0;color:#fff;cursor:pointer;font:inherit}",
    "form button.stop{background:#c53030}",
    // A phone: the open chat takes the whole screen (a 360 px panel 20 px from the edge
    // does not fit 375 px).
    "@media (max-width:480px){.tl.open{inset:0}.open .panel{width:100%;height:100%;max-height:none;border-radius:0}}",
    "</style>",
    '<div class="tl">',
    '<button class="bubble" aria-label="Open chat">&#128172;</button>',
    '<section class="panel" role="dialog" aria-label="Chat">',
    '<header><span class="title"></span><button class="close" aria-label="Close chat">&times;</button></header>',
    '<div class="log" role="log" aria-live="polite" aria-relevant="additions text"></div>',
    '<div class="status" aria-live="polite"></div>',
    '<form><label style="position:absolute;left:-9999px" for="tl-input">Message</label>',
    '<textarea id="tl-input" placeholder="Type a message" maxlength="8000"></textarea>',
    '<button type="submit" class="send">Send</button></form>',
    "</section></div>",
  ].join("");
  document.body.appendChild(host);

  var $ = function (sel) { return root.querySelector(sel); };
  var wrap = $(".tl"), log = $(".log"), status = $(".status"), input = $("textarea");
  var sendButton = $(".send");
  $(".title").textContent = title;

  var saved = {};
  try { saved = JSON.parse(localStorage.getItem(storeKey) || "{}"); } catch (e) { saved = {}; }
  var ws = null, lastSeq = saved.lastSeq || 0, retry = 0, busy = false, answering = null;
  var lastSent = null; // the text of the user's last message, for "Try again"
  var turns = {}; // turn_id -> the element its text streams into
  var outbox = []; // frames waiting for an open connection

  function save() {
    saved.lastSeq = lastSeq;
    localStorage.setItem(storeKey, JSON.stringify(saved));
  }

  /* Markdown (GitHub-flavoured) from marked's lexer: the elements are built here, text only
   * ever as text nodes; raw HTML is shown as text; links only to http(s) and mailto. */
  function render(el, text) {
    el.textContent = "";
    var tokens;
    try { tokens = marked.lexer(text || "", { gfm: true, breaks: true }); }
    catch (e) { el.textContent = text; return; }
    blocks(tokens, el);
  }

  function node(tag, parent, text) {
    var n = document.createElement(tag);
    if (text !== undefined) n.textContent = text;
    parent.appendChild(n);
    return n;
  }

  function blocks(tokens, parent) {
    tokens.forEach(function (t) {
      switch (t.type) {
        case "space": return;
        case "paragraph": inline(t.tokens, node("p", parent)); return;
        case "heading": inline(t.tokens, node("h" + Math.min(6, t.depth + 2), parent)); return;
        case "code": codeBlock(t, parent); return;
        case "blockquote": blocks(t.tokens, node("blockquote", parent)); return;
        case "hr": node("hr", parent); return;
        case "list":
          var list = node(t.ordered ? "ol" : "ul", parent);
          if (t.ordered && t.start !== "" && t.start !== 1) list.setAttribute("start", String(t.start));
          t.items.forEach(function (item) {
            var li = node("li", list);
            if (item.task) { var box = node("input", li); box.type = "checkbox"; box.checked = !!item.checked; box.disabled = true; }
            blocks(item.tokens, li);
          });
          return;
        case "table": table(t, parent); return;
        case "text":
          if (t.tokens) inline(t.tokens, parent); else parent.appendChild(document.createTextNode(t.text));
          return;
        default: // html and anything unknown: as it was written, as text
          parent.appendChild(document.createTextNode(t.raw || t.text || ""));
      }
    });
  }

  function inline(tokens, parent) {
    (tokens || []).forEach(function (t) {
      switch (t.type) {
        case "text":
          if (t.tokens) inline(t.tokens, parent); else parent.appendChild(document.createTextNode(t.text));
          return;
        case "strong": case "em": case "del":
          inline(t.tokens, node(t.type === "strong" ? "strong" : t.type === "em" ? "em" : "del", parent));
          return;
        case "codespan": node("code", parent, t.text); return;
        case "br": node("br", parent); return;
        case "link": link(t, parent); return;
        case "image": // not loaded: a link to it, named by its text
          link({ href: t.href, title: t.title, tokens: [{ type: "text", text: t.text || t.href }] }, parent);
          return;
        case "escape": parent.appendChild(document.createTextNode(t.text)); return;
        default:
          parent.appendChild(document.createTextNode(t.raw || t.text || ""));
      }
    });
  }

  function link(t, parent) {
    var href = String(t.href || "").trim();
    if (!/^(https?:|mailto:)/i.test(href)) { inline(t.tokens, parent); return; } // javascript: and the like
    var a = node("a", parent);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    if (t.title) a.title = t.title;
    inline(t.tokens, a);
  }

  function codeBlock(t, parent) {
    var box = node("div", parent);
    box.className = "code";
    var copy = node("button", box, "Copy");
    copy.type = "button";
    copy.className = "copy";
    copy.setAttribute("aria-label", "Copy the code");
    copy.addEventListener("click", function () {
      if (navigator.clipboard) navigator.clipboard.writeText(t.text).then(function () { copy.textContent = "Copied"; }, function () {});
    });
    var code = node("code", node("pre", box), t.text);
    if (t.lang) code.setAttribute("data-lang", String(t.lang).split(/\s/)[0]);
  }

  function table(t, parent) {
    var wrapper = node("div", parent);
    wrapper.className = "table";
    var tbl = node("table", wrapper);
    var head = node("tr", node("thead", tbl));
    t.header.forEach(function (cell, i) { cellOf("th", cell, t.align[i], head); });
    var body = node("tbody", tbl);
    t.rows.forEach(function (row) {
      var tr = node("tr", body);
      row.forEach(function (cell, i) { cellOf("td", cell, t.align[i], tr); });
    });
  }

  function cellOf(tag, cell, align, row) {
    var c = node(tag, row);
    if (align) c.style.textAlign = align;
    inline(cell.tokens, c);
  }

  function bubble(role, text, key) {
    var el = document.createElement("div");
    el.className = "msg " + role;
    el.setAttribute("data-role", role);
    if (key) el.setAttribute("data-key", key);
    el._text = text || "";
    render(el, el._text);
    log.appendChild(el);
    log.scrollTop = log.scrollHeight;
    return el;
  }

  // Dollars with the digits that matter: $0.10, $0.006, $0.00042 (never $0.01 for $0.006).
  function money(value) {
    var n = Number(value);
    if (!isFinite(n)) return "";
    if (n === 0 || Math.abs(n) >= 0.995) return "$" + n.toFixed(2);
    var digits = Math.max(2, 1 - Math.floor(Math.log10(Math.abs(n)))); // two significant
    return "$" + n.toFixed(digits).replace(/(\.\d\d\d*?)0+$/, "$1");
  }

  function setBusy(value) {
    busy = value;
    sendButton.textContent = value ? "Stop" : "Send";
    sendButton.className = value ? "stop" : "send";
    sendButton.setAttribute("aria-label", value ? "Stop the answer" : "Send message");
  }

  function turnBubble(turnId) {
    if (!turns[turnId]) turns[turnId] = bubble("assistant", "", turnId);
    return turns[turnId];
  }

  function onEvent(frame) {
    if (typeof frame.seq === "number") {
      if (frame.seq <= lastSeq) return; // already shown
      lastSeq = frame.seq;
      save();
    }
    var el;
    switch (frame.type) {
      case "session.state":
        return;
      case "message.greeting":
        el = bubble("assistant", frame.text);
        log.insertBefore(el, log.firstChild); // it opens the conversation, whatever came first
        return;
      case "message.reminder":
        bubble("assistant", frame.text);
        return;
      case "message.user":
        if (!log.querySelector('[data-key="' + CSS.escape(frame.client_id) + '"]')) bubble("user", frame.text, frame.client_id);
        setBusy(true);
        return;
      case "message.start":
        el = turnBubble(frame.turn_id);
        el._text = ""; // a repeated start is a restart: the text begins again
        el._shown = 0;
        el._started = frame.ts;
        answering = frame.turn_id;
        render(el, "");
        setBusy(true);
        return;
      case "message.restart":
        el = turnBubble(frame.turn_id);
        el._text = "";
        el._shown = 0;
        el._started = frame.ts;
        render(el, "");
        return;
      case "message.delta":
        el = turnBubble(frame.turn_id);
        var piece = frame.text;
        if (typeof frame.offset === "number") { // place it in the answer: no overlap
          var chars = Array.from(piece), have = el._shown || 0; // offsets count code points
          if (frame.offset + chars.length <= have) return; // already shown
          if (frame.offset < have) piece = chars.slice(have - frame.offset).join("");
          el._shown = frame.offset + chars.length;
        }
        el._text += piece;
        render(el, el._text);
        log.scrollTop = log.scrollHeight;
        return;
      case "message.end":
        el = turnBubble(frame.turn_id);
        if (frame.text && el._text !== frame.text) { el._text = frame.text; render(el, frame.text); }
        if (answering === frame.turn_id) answering = null;
        setBusy(false);
        if (showCost && frame.cost !== null && frame.cost !== undefined) {
          var parts = [];
          if (frame.model) parts.push(frame.model, money(frame.cost));
          if (frame.budget) parts.push(money(frame.budget.left) + " of " + money(frame.budget.limit) + " left");
          status.textContent = parts.join(" · ");
        }
        return;
      case "budget.update":
        status.textContent = "This conversation has used " + frame.percent + "% of its budget.";
        return;
      case "budget.exceeded":
        status.textContent = "This conversation has reached its budget.";
        return;
      case "model.fallback":
        status.textContent = "Answering with " + frame.to + " (" + frame.reason + ").";
        return;
      case "message.error": // the turn failed: say so, and offer a retry where it can help
        if (answering === frame.turn_id) answering = null;
        setBusy(false);
        el = turns[frame.turn_id];
        if (el && !el._text) el.remove();
        el = bubble("error", frame.message || "Something went wrong.", frame.turn_id + ":error");
        el.setAttribute("role", "alert");
        if (frame.retryable && lastSent) {
          var again = document.createElement("button");
          again.type = "button";
          again.textContent = "Try again";
          var text = lastSent;
          again.addEventListener("click", function () { again.remove(); send(text); });
          el.appendChild(again);
        }
        return;
      case "message.cancelled":
        setBusy(false);
        status.textContent = "Stopped.";
        return;
      case "tool.confirm":
        askApproval(frame);
        return;
      case "tool.call":
        toolStep(frame);
        return;
      case "tool.result":
        el = log.querySelector('.approval[data-call="' + CSS.escape(frame.call_id) + '"]');
        if (el) el.remove();
        el = toolStep(frame);
        var result = frame.result || {};
        el.querySelector("summary").textContent = (result.error ? "Tried " : "Used ") + frame.name + (result.error ? " (it failed)" : "");
        node("pre", el, JSON.stringify(result.error ? result : result.result, null, 2));
        return;
      case "operator.message":
        bubble("operator", frame.text);
        return;
      case "error":
        status.textContent = frame.message || "Something went wrong.";
        return;
    }
  }

  /* A tool the answer used: a collapsed step above the turn's text (its arguments, then its
   * result). Returns its element. */
  function toolStep(frame) {
    var found = log.querySelector('details.step[data-call="' + CSS.escape(frame.call_id) + '"]');
    if (found) return found;
    var step = document.createElement("details");
    step.className = "step";
    step.setAttribute("data-call", frame.call_id);
    node("summary", step, "Using " + frame.name + "…");
    node("pre", step, JSON.stringify(frame.arguments || {}, null, 2));
    var answer = frame.turn_id && turns[frame.turn_id];
    if (answer && answer.parentNode === log) log.insertBefore(step, answer); else log.appendChild(step);
    log.scrollTop = log.scrollHeight;
    return step;
  }

  /* A tool that needs the user's yes: what it would do, with its arguments, and two buttons. */
  function askApproval(frame) {
    if (log.querySelector('.approval[data-call="' + CSS.escape(frame.call_id) + '"]')) return;
    var card = document.createElement("div");
    card.className = "msg approval";
    card.setAttribute("data-call", frame.call_id);
    card.setAttribute("role", "group");
    card.setAttribute("aria-label", "Approve " + frame.name);
    node("div", card, "The assistant wants to run " + frame.name + ":").className = "ask";
    var args = node("dl", card);
    Object.keys(frame.arguments || {}).forEach(function (key) {
      var value = frame.arguments[key];
      node("dt", args, key);
      node("dd", args, typeof value === "string" ? value : JSON.stringify(value));
    });
    var buttons = node("div", card);
    buttons.className = "choices";
    [["Approve", true], ["Decline", false]].forEach(function (choice) {
      var b = node("button", buttons, choice[0]);
      b.type = "button";
      b.className = choice[1] ? "approve" : "decline";
      b.addEventListener("click", function () {
        if (ws && ws.readyState === 1) {
          ws.send(JSON.stringify({ type: "tool.confirm", call_id: frame.call_id, approve: choice[1] }));
          card.remove();
        }
      });
    });
    log.appendChild(card);
    log.scrollTop = log.scrollHeight;
    card.querySelector("button.approve").focus();
  }

  function connect() {
    if (!saved.sessionId) return;
    var url = server.replace(/^http/, "ws") + "/v1/sessions/" + encodeURIComponent(saved.sessionId) +
      "/ws?token=" + encodeURIComponent(saved.token);
    ws = new WebSocket(url);
    ws.onopen = function () {
      retry = 0;
      status.textContent = "";
      // Pieces of an answer arrive before they are logged (no seq): say how much of the
      // answer in progress is on screen, so that the server does not send it again.
      var resume = { type: "resume", after_seq: lastSeq };
      if (answering && turns[answering]) {
        resume.turn_id = answering;
        resume.started = turns[answering]._started;
        resume.shown = turns[answering]._shown || 0;
      }
      ws.send(JSON.stringify(resume));
      while (outbox.length) ws.send(outbox.shift());
    };
    ws.onmessage = function (e) {
      try { onEvent(JSON.parse(e.data)); } catch (err) { /* ignore a frame we cannot read */ }
    };
    ws.onclose = function (e) {
      ws = null;
      if (e.code === 4401 || e.code === 4404) { // expired or unknown: start afresh
        saved = {}; lastSeq = 0; save();
        status.textContent = "Your session ended; a new one starts with your next message.";
        return;
      }
      status.textContent = "Reconnecting…";
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, 250 * Math.pow(2, retry - 1));
    };
  }

  function loadHistory() {
    return fetch(server + "/v1/sessions/" + encodeURIComponent(saved.sessionId) + "/messages?token=" +
      encodeURIComponent(saved.token)).then(function (r) {
      if (!r.ok) throw new Error("history " + r.status);
      return r.json();
    }).then(function (messages) {
      messages.forEach(function (m) {
        var el = bubble(m.role, m.content, m.role === "user" ? m.client_id : m.turn_id);
        if (m.turn_id && m.role === "assistant") turns[m.turn_id] = el;
      });
    });
  }

  function start() {
    if (saved.sessionId) {
      return loadHistory().then(connect, function () { saved = {}; lastSeq = 0; save(); });
    }
    return fetch(server + "/v1/sessions", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ agent: agent }),
    }).then(function (r) {
      if (!r.ok) throw new Error("the server answered " + r.status);
      return r.json();
    }).then(function (s) {
      saved = { sessionId: s.session_id, token: s.token, lastSeq: 0 };
      lastSeq = 0;
      save();
      connect();
    }).catch(function (err) {
      // A site not on the server's allowed-origins list fails here (CORS or 403).
      status.textContent = "Could not start a chat: " + err.message;
      throw err;
    });
  }

  function send(text) {
    lastSent = text;
    var clientId = "c_" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    bubble("user", text, clientId);
    var frame = JSON.stringify({ type: "message.send", client_id: clientId, text: text });
    if (ws && ws.readyState === 1) ws.send(frame); else outbox.push(frame);
  }

  $("form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (busy) {
      if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "cancel" }));
      return;
    }
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    var go = saved.sessionId ? Promise.resolve() : start();
    go.then(function () { send(text); }, function () { input.value = text; });
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
  });
  $(".bubble").addEventListener("click", function () {
    wrap.classList.add("open");
    input.focus();
    if (!ws && saved.sessionId === undefined) start();
  });
  $(".close").addEventListener("click", function () { wrap.classList.remove("open"); });
  root.addEventListener("keydown", function (e) { if (e.key === "Escape") wrap.classList.remove("open"); });

  if (saved.sessionId) { wrap.classList.add("open"); start(); }
  window.threadlineWidget = window.threadlineWidget || {};
  window.threadlineWidget[agent] = {
    root: root,
    open: function () { $(".bubble").click(); },
    // Drops the connection as a network failure would (for diagnostics and tests).
    drop: function () { if (ws) ws.close(); },
    // An answer's text as the widget shows it (an element, not attached), for tests.
    render: function (text) { var el = document.createElement("div"); render(el, text); return el; },
  };
})();
