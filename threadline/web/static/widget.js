/* threadline chat: the <threadline-chat> element, and the one-tag embed
 *
 *   <script src="https://HOST/widget.js" data-agent="support" data-title="Help"></script>
 *
 * creates <threadline-chat agent="support" title="Help"> (every data-* attribute below becomes
 * the element's attribute); a page can also place the element itself after loading the script.
 * Attributes: agent, server (default: the script's origin), title, greeting, placeholder,
 * position (bottom-right, bottom-left, inline), theme (light, dark, auto), show-cost; session
 * and token: a session the site's backend created for its signed-in user (docs/deploy.md).
 *
 * The chat lives in a Shadow DOM (the host page's styles neither leak in nor out; --tl-*
 * custom properties theme it, see widget.css), streams answers over a WebSocket, keeps its
 * session (id + token) in localStorage so a reload shows the history, reconnects after a
 * network drop and resumes from the last event it saw, so nothing is missed or shown twice.
 * Text from the server is only ever inserted as text nodes (markdown.js builds answers as
 * elements). `/widget.js` serves this file in one function scope with markdown.js, its
 * styles and the vendored libraries: nothing but `window.threadlineWidget` (a handle per
 * agent, for diagnostics and tests) and the custom element reach the host page.
 *
 * Events (bubbling, on the element): `threadline:session` {sessionId, token} when a session
 * is created, opened or gets a fresh token; `threadline:message` {sessionId, text} when the
 * user sends one; `threadline:answer` {sessionId, turnId} when an answer ends;
 * `threadline:new` when a new conversation begins (none stored until its first message);
 * `threadline:ended` {sessionId} when the session cannot be opened any more.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var scriptOrigin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  var ATTRIBUTES = ["agent", "server", "title", "greeting", "placeholder", "position", "theme", "show-cost", "session", "token"];
  var TOKEN_REFRESH_MS = 20 * 60 * 1000; // tokens last an hour: an open chat renews them
  var ICONS = {
    chat: '<path d="M21 11.5a8.4 8.4 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.4 8.4 0 0 1-3.8-.9L3 21l1.9-5.7a8.4 8.4 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.4 8.4 0 0 1 3.8-.9h.5a8.5 8.5 0 0 1 8 8v.5z"/>',
    close: '<path d="M18 6 6 18M6 6l12 12"/>',
    compose: '<path d="M12 20h9"/><path d="M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z"/>',
    send: '<path d="M22 2 11 13"/><path d="M22 2 15 22l-4-9-9-4z"/>',
    stop: '<rect x="6" y="6" width="12" height="12" rx="2"/>',
    copy: '<rect x="9" y="9" width="13" height="13" rx="2"/><path d="M5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1"/>',
    check: '<path d="M20 6 9 17l-5-5"/>',
    regenerate: '<path d="M1 4v6h6"/><path d="M3.5 15a9 9 0 1 0 2.1-9.4L1 10"/>',
    up: '<path d="M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.3a2 2 0 0 0 2-1.7l1.4-9a2 2 0 0 0-2-2.3z"/><path d="M7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3"/>',
    down: '<path d="M10 15v4a3 3 0 0 0 3 3l4-9V2H5.7a2 2 0 0 0-2 1.7l-1.4 9a2 2 0 0 0 2 2.3z"/><path d="M17 2h2.7A2.3 2.3 0 0 1 22 4v7a2.3 2.3 0 0 1-2.3 2H17"/>',
    zap: '<path d="M13 2 3 14h9l-1 8 10-12h-9z"/>',
  };
  var SKELETON = [
    '<div class="tl" title="">',
    '<button class="bubble" type="button" aria-haspopup="dialog" aria-expanded="false">' + svg("chat") + "</button>",
    '<section class="panel" role="dialog" aria-labelledby="tl-title">',
    '<header><slot name="header-start"></slot><h2 class="title" id="tl-title"></h2>',
    '<button class="new" type="button" aria-label="New conversation" title="New conversation">' + svg("compose") + "</button>",
    '<button class="close" type="button" aria-label="Close chat" title="Close">' + svg("close") + "</button></header>",
    '<div class="log" role="log" aria-live="polite" aria-relevant="additions text" tabindex="-1"></div>',
    '<div class="status" role="status"></div>',
    '<form><label class="sr" for="tl-input">Message</label>',
    '<textarea id="tl-input" rows="1" maxlength="8000"></textarea>',
    '<button type="submit" class="send" aria-label="Send message">' + svg("send") + "</button></form>",
    "</section></div>",
  ].join("");

  function svg(name) {
    return '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">' + ICONS[name] + "</svg>";
  }

  /* Everything one element shows and does; `host` is the <threadline-chat>. */
  function createChat(host) {
    var root = host.attachShadow({ mode: "open" });
    root.innerHTML = "<style>" + WIDGET_CSS + "</style>" + SKELETON; // constants only
    var $ = function (sel) { return root.querySelector(sel); };
    var wrap = $(".tl"), panel = $(".panel"), launcher = $(".bubble"), log = $(".log");
    var status = $(".status"), input = $("textarea"), form = $("form"), sendButton = $("form button");
    var phone = window.matchMedia("(max-width: 480px)");
    var darkScheme = window.matchMedia("(prefers-color-scheme: dark)");

    var agent, server, storeKey, saved = {};
    var ws = null, lastSeq = 0, retry = 0, busy = false, answering = null, attached = false;
    var epoch = 0; // bumped when the conversation changes: late callbacks of the last one stop
    var lastSent = null; // the text of the user's last message, for "Try again"
    var turns = {}; // turn_id -> the element its text streams into
    var questions = {}; // user message seq -> its text (an answer's turn id names it), to regenerate
    var outbox = []; // frames waiting for an open connection
    var refreshTimer = null, retryTimer = null, renderQueued = {};
    var loaded = false, starting = null; // the stored session's history shown; a start under way

    function attr(name) { return host.getAttribute(name); }
    function inline() { return attr("position") === "inline"; }
    function showCost() { return attr("show-cost") !== "false"; }
    function emit(name, detail) { host.dispatchEvent(new CustomEvent("threadline:" + name, { bubbles: true, detail: detail })); }

    function configure() {
      agent = attr("agent") || "support";
      server = (attr("server") || scriptOrigin).replace(/\/+$/, "");
      // A session the site's backend created for its signed-in user (`session` + `token`):
      // kept apart from this browser's own conversations, and the only one shown.
      var given = attr("session"), givenToken = attr("token");
      storeKey = "threadline:" + server + ":" + agent + (given ? ":" + given : "");
      try { saved = JSON.parse(localStorage.getItem(storeKey) || "{}") || {}; } catch (e) { saved = {}; }
      if (given && givenToken) {
        if (saved.sessionId !== given) saved = { open: saved.open };
        saved.sessionId = given;
        saved.token = givenToken; // the backend's is the newest
      }
      $(".new").style.display = given ? "none" : "";
      lastSeq = saved.lastSeq || 0;
    }

    function save() {
      saved.lastSeq = lastSeq;
      try { localStorage.setItem(storeKey, JSON.stringify(saved)); } catch (e) { /* private mode */ }
    }

    function look() {
      var title = attr("title") || "Chat";
      $(".title").textContent = title;
      launcher.setAttribute("aria-label", "Open chat: " + title);
      input.placeholder = attr("placeholder") || "Type a message";
      var position = attr("position");
      wrap.classList.toggle("inline", position === "inline");
      wrap.classList.toggle("left", position === "bottom-left");
      var theme = attr("theme");
      wrap.classList.toggle("dark", theme === "dark" || (theme === "auto" && darkScheme.matches));
      if (inline()) {
        panel.setAttribute("role", "region");
        panel.removeAttribute("aria-modal");
      } else {
        panel.setAttribute("role", "dialog");
        panel.setAttribute("aria-modal", phone.matches ? "true" : "false"); // full-screen: modal
      }
      root.querySelectorAll(".meta").forEach(function (m) { m.hidden = !showCost(); });
    }

    // -- the conversation on screen -------------------------------------------------------

    function node(tag, parent, text, className) {
      var n = document.createElement(tag);
      if (text !== undefined && text !== null) n.textContent = text;
      if (className) n.className = className;
      if (parent) parent.appendChild(n);
      return n;
    }

    function iconButton(className, label, icon) {
      var b = node("button", null, null, "act " + className);
      b.type = "button";
      b.setAttribute("aria-label", label);
      b.title = label;
      b.innerHTML = svg(icon); // a constant
      return b;
    }

    var nearBottom = true;
    log.addEventListener("scroll", function () {
      nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    });
    function scrollDown(force) { if (force || nearBottom) log.scrollTop = log.scrollHeight; }

    function bubble(role, text, key) {
      var el = node("div", null, null, "msg " + role);
      el.setAttribute("data-role", role);
      if (key) el.setAttribute("data-key", key);
      el._text = text || "";
      markdown.render(el, el._text);
      log.appendChild(el);
      scrollDown(role === "user");
      return el;
    }

    /* An answer: its text, the sources it cites, and a footer once it has ended. */
    function answerBubble(turnId) {
      var box = node("div", null, null, "answer");
      box.setAttribute("data-turn", turnId);
      var el = node("div", box, null, "msg assistant");
      el.setAttribute("data-role", "assistant");
      el.setAttribute("data-key", turnId);
      el._text = "";
      el._box = box;
      el._turn = turnId;
      el._sources = {};
      log.appendChild(box);
      scrollDown();
      return el;
    }

    function turnBubble(turnId) {
      if (!turns[turnId]) turns[turnId] = answerBubble(turnId);
      return turns[turnId];
    }

    function drawAnswer(el) {
      delete renderQueued[el._turn];
      var cited = markdown.render(el, el._text, el._sources);
      drawSources(el, cited);
    }

    /* Pieces arrive faster than frames are painted: draw at most once a frame. */
    function drawSoon(el) {
      if (renderQueued[el._turn]) return;
      renderQueued[el._turn] = true;
      requestAnimationFrame(function () {
        if (renderQueued[el._turn]) { drawAnswer(el); scrollDown(); }
      });
    }

    function setSources(el, list) {
      el._sources = {};
      (list || []).forEach(function (s) { if (s && s.n !== undefined) el._sources[s.n] = s; });
    }

    /* The numbered list of the sources the answer cites, under it. */
    function drawSources(el, cited) {
      var box = el._box, list = box.querySelector(".sources");
      cited = cited.slice().sort(function (a, b) { return a - b; });
      var key = cited.join(",");
      if (list && list._key === key) return;
      if (list) list.remove();
      if (!cited.length) return;
      list = node("div", null, null, "sources");
      list._key = key;
      list.setAttribute("role", "group");
      list.setAttribute("aria-label", "Sources");
      node("div", list, "Sources", "label");
      var ol = node("ol", list);
      cited.forEach(function (n) {
        var s = el._sources[n];
        var li = node("li", ol);
        li.setAttribute("data-n", String(n));
        li.tabIndex = -1;
        node("span", li, "[" + n + "]", "n");
        var what = node("span", li);
        var label = s.title || s.source || "Source " + n;
        if (typeof s.url === "string" && /^https?:\/\//i.test(s.url)) {
          var a = node("a", what, label);
          a.href = s.url;
          a.target = "_blank";
          a.rel = "noopener noreferrer nofollow";
        } else {
          what.appendChild(document.createTextNode(label));
        }
        var where = [];
        if (s.source && s.source !== label && s.source !== s.url) where.push(s.source);
        if (s.page !== null && s.page !== undefined) where.push("p. " + s.page);
        if (where.length) node("span", what, " · " + where.join(", "), "where");
      });
      var foot = box.querySelector(".foot");
      box.insertBefore(list, foot);
    }

    /* After the answer ends: copy, regenerate, thumbs up and down; the cache mark; the model
     * and cost. `info`: {model, cost, cached, rating}. */
    function finishAnswer(el, info) {
      var box = el._box;
      box.removeAttribute("aria-busy");
      var old = box.querySelector(".foot");
      if (old) old.remove();
      var foot = node("div", box, null, "foot");
      var actions = node("div", foot, null, "actions");
      actions.setAttribute("role", "group");
      actions.setAttribute("aria-label", "Answer actions");
      var copy = iconButton("copy", "Copy answer", "copy");
      copy.addEventListener("click", function () {
        markdown.copyText(el._text).then(function () {
          copy.innerHTML = svg("check");
          copy.setAttribute("aria-label", "Copied");
          setTimeout(function () { copy.innerHTML = svg("copy"); copy.setAttribute("aria-label", "Copy answer"); }, 1500);
        }, function () { status.textContent = "Could not copy the answer."; });
      });
      var regen = iconButton("regen", "Regenerate answer", "regenerate");
      regen.addEventListener("click", function () { regenerate(el); });
      var up = iconButton("rate up", "Good answer", "up");
      var down = iconButton("rate down", "Bad answer", "down");
      up.addEventListener("click", function () { rate(el, "up"); });
      down.addEventListener("click", function () { rate(el, "down"); });
      [copy, regen, up, down].forEach(function (b) { actions.appendChild(b); });
      el._rating = info.rating || null;
      showRating(el);
      if (info.cached) {
        var mark = node("span", foot, null, "cached");
        mark.innerHTML = svg("zap");
        mark.appendChild(document.createTextNode("instant answer"));
        mark.title = "An earlier answer to the same question, from the answer cache";
      }
      var parts = [];
      if (info.model) parts.push(info.model);
      if (info.cost !== null && info.cost !== undefined) parts.push(money(info.cost));
      if (parts.length) {
        var meta = node("span", foot, parts.join(" · "), "meta");
        meta.hidden = !showCost();
      }
    }

    function showRating(el) {
      el._box.querySelectorAll(".rate").forEach(function (b) {
        var value = b.classList.contains("up") ? "up" : "down";
        b.setAttribute("aria-pressed", el._rating === value ? "true" : "false");
      });
    }

    /* Thumbs up or down; the pressed one again takes it back. */
    function rate(el, value) {
      var before = el._rating || null;
      var after = before === value ? null : value;
      el._rating = after;
      showRating(el);
      var my = epoch;
      api("POST", "/feedback", { turn_id: el._turn, rating: after }).then(null, function () {
        if (my !== epoch) return;
        el._rating = before;
        showRating(el);
        status.textContent = "Could not save your feedback; try again.";
      });
    }

    /* The same question again, as a new message: the server answers it as a new turn. */
    function regenerate(el) {
      if (busy) return;
      var seq = String(el._turn).split(":").pop();
      var question = questions[seq];
      for (var n = el._box.previousElementSibling; !question && n; n = n.previousElementSibling) {
        if (n.classList.contains("user")) question = n._text;
      }
      if (question) send(question);
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
      wrap.classList.toggle("busy", value);
      log.setAttribute("aria-busy", value ? "true" : "false");
      sendButton.className = value ? "stop" : "send";
      sendButton.innerHTML = svg(value ? "stop" : "send");
      sendButton.setAttribute("aria-label", value ? "Stop the answer" : "Send message");
    }

    function intro() {
      var text = attr("greeting");
      var el = log.querySelector(".intro");
      if (!text || log.querySelector('.msg[data-greeting]')) { if (el) el.remove(); return; }
      if (!el) { el = node("div", null, null, "msg assistant intro"); log.insertBefore(el, log.firstChild); }
      el._text = text;
      markdown.render(el, text);
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
          el.setAttribute("data-greeting", "");
          log.insertBefore(el, log.firstChild); // it opens the conversation, whatever came first
          intro();
          return;
        case "message.reminder":
          bubble("assistant", frame.text);
          return;
        case "message.user":
          if (frame.message_seq !== undefined) questions[frame.message_seq] = frame.text;
          if (!log.querySelector('[data-key="' + CSS.escape(frame.client_id) + '"]')) bubble("user", frame.text, frame.client_id);
          setBusy(true);
          return;
        case "message.sources":
          el = turnBubble(frame.turn_id);
          setSources(el, frame.sources);
          drawAnswer(el);
          return;
        case "message.start":
        case "message.restart": // a repeated start is a restart too: the text begins again,
          // keeping its first `keep` code points (rounds said before a wait or a crash)
          el = turnBubble(frame.turn_id);
          var keep = frame.keep > 0 ? frame.keep : 0;
          el._text = keep ? Array.from(el._text || "").slice(0, keep).join("") : "";
          el._shown = Array.from(el._text).length;
          el._started = frame.ts;
          el._cached = !!frame.cached;
          el._box.setAttribute("aria-busy", "true");
          if (frame.type === "message.start") { answering = frame.turn_id; setBusy(true); }
          drawAnswer(el);
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
          drawSoon(el);
          return;
        case "message.end":
          el = turnBubble(frame.turn_id);
          if (frame.text) el._text = frame.text;
          if (frame.sources) setSources(el, frame.sources);
          drawAnswer(el);
          if (answering === frame.turn_id) answering = null;
          setBusy(false);
          finishAnswer(el, { model: frame.model, cost: frame.cost, cached: frame.cached || el._cached });
          scrollDown();
          if (frame.budget && frame.budget.exhausted) { // the answer was the agent's closing words
            status.textContent = "This conversation has reached its budget.";
          } else if (showCost() && frame.budget) {
            status.textContent = money(frame.budget.left) + " of " + money(frame.budget.limit) + " left";
          }
          emit("answer", { sessionId: saved.sessionId, turnId: frame.turn_id });
          return;
        case "budget.update":
          status.textContent = "This conversation has used " + Math.round(Number(frame.percent)) + "% of its budget.";
          return;
        case "budget.capped":
          status.textContent = "A shorter answer keeps this conversation within its budget.";
          return;
        case "budget.exceeded": // what the agent does about it (on_budget_exhausted)
          status.textContent = frame.action === "handoff" ? "This conversation has reached its budget: a colleague takes over."
            : frame.action === "cheaper" ? "Answering with a smaller model to stay within the budget."
            : "This conversation has reached its budget.";
          return;
        case "model.fallback":
          status.textContent = "Answering with " + frame.to + " (" + frame.reason + ").";
          return;
        case "message.error": // the turn failed: say so, and offer a retry where it can help
          if (answering === frame.turn_id) answering = null;
          setBusy(false);
          el = turns[frame.turn_id];
          if (el && !el._text) { el._box.remove(); delete turns[frame.turn_id]; }
          el = bubble("error", frame.message || "Something went wrong.", frame.turn_id + ":error");
          el.setAttribute("role", "alert");
          if (frame.retryable && lastSent) {
            var again = node("button", el, "Try again");
            again.type = "button";
            var text = lastSent;
            again.addEventListener("click", function () { again.remove(); send(text); });
          }
          return;
        case "message.cancelled":
          setBusy(false);
          Object.keys(turns).forEach(function (id) { turns[id]._box.removeAttribute("aria-busy"); });
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
      var step = node("details", null, null, "step");
      step.setAttribute("data-call", frame.call_id);
      node("summary", step, "Using " + frame.name + "…");
      node("pre", step, JSON.stringify(frame.arguments || {}, null, 2));
      var answer = frame.turn_id && turns[frame.turn_id];
      if (answer && answer._box.parentNode === log) log.insertBefore(step, answer._box); else log.appendChild(step);
      scrollDown();
      return step;
    }

    /* A tool that needs the user's yes: what it would do, with its arguments, and two buttons. */
    function askApproval(frame) {
      if (log.querySelector('.approval[data-call="' + CSS.escape(frame.call_id) + '"]')) return;
      var card = node("div", null, null, "msg approval");
      card.setAttribute("data-call", frame.call_id);
      card.setAttribute("role", "group");
      card.setAttribute("aria-label", "Approve " + frame.name);
      node("div", card, "The assistant wants to run " + frame.name + ":", "ask");
      var args = node("dl", card);
      Object.keys(frame.arguments || {}).forEach(function (key) {
        var value = frame.arguments[key];
        node("dt", args, key);
        node("dd", args, typeof value === "string" ? value : JSON.stringify(value));
      });
      var buttons = node("div", card, null, "choices");
      [["Approve", true], ["Decline", false]].forEach(function (choice) {
        var b = node("button", buttons, choice[0], choice[1] ? "approve" : "decline");
        b.type = "button";
        b.addEventListener("click", function () {
          if (ws && ws.readyState === 1) {
            ws.send(JSON.stringify({ type: "tool.confirm", call_id: frame.call_id, approve: choice[1] }));
            card.remove();
            input.focus();
          }
        });
      });
      log.appendChild(card);
      scrollDown(true);
      card.querySelector("button.approve").focus();
    }

    // -- the server ----------------------------------------------------------------------

    function sessionUrl(path) {
      return server + "/v1/sessions/" + encodeURIComponent(saved.sessionId) + path +
        (path.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(saved.token);
    }

    function api(method, path, body) {
      var options = { method: method };
      if (body !== undefined) {
        options.headers = { "content-type": "application/json" };
        options.body = JSON.stringify(body);
      }
      return fetch(sessionUrl(path), options).then(function (r) {
        if (!r.ok) { var e = new Error("the server answered " + r.status); e.status = r.status; throw e; }
        return r.status === 204 ? null : r.json();
      });
    }

    function connect() {
      if (!saved.sessionId || !attached || ws) return;
      var my = epoch;
      var socket = new WebSocket(sessionUrl("/ws").replace(/^http/, "ws"));
      ws = socket;
      socket.onopen = function () {
        if (my !== epoch) return;
        retry = 0;
        if (status.textContent === "Reconnecting…") status.textContent = "";
        // Pieces of an answer arrive before they are logged (no seq): say how much of the
        // answer in progress is on screen, so that the server does not send it again.
        var resume = { type: "resume", after_seq: lastSeq };
        if (answering && turns[answering]) {
          resume.turn_id = answering;
          resume.started = turns[answering]._started;
          resume.shown = turns[answering]._shown || 0;
        }
        socket.send(JSON.stringify(resume));
        while (outbox.length) socket.send(outbox.shift());
      };
      socket.onmessage = function (e) {
        if (my !== epoch) return;
        var frame;
        try { frame = JSON.parse(e.data); } catch (err) { return; } // a frame we cannot read
        onEvent(frame);
      };
      socket.onclose = function (e) {
        if (ws === socket) ws = null;
        if (my !== epoch || !attached) return;
        if (e.code === 4401 || e.code === 4404) { ended(); return; } // expired or unknown
        status.textContent = "Reconnecting…";
        retry = Math.min(retry + 1, 6);
        retryTimer = setTimeout(connect, 250 * Math.pow(2, retry - 1));
      };
    }

    /* The session cannot be opened any more (deleted, or its token expired): start afresh. */
    function ended() {
      var gone = saved.sessionId;
      saved = { open: saved.open }; lastSeq = 0; save();
      status.textContent = "Your session ended; a new one starts with your next message.";
      if (gone) emit("ended", { sessionId: gone });
    }

    function loadHistory() {
      return api("GET", "/messages").then(function (messages) {
        messages.forEach(function (m) {
          if (m.role === "user") {
            questions[m.seq] = m.content;
            bubble("user", m.content, m.client_id);
          } else if (m.role === "assistant" && m.turn_id) {
            var el = turns[m.turn_id] = answerBubble(m.turn_id);
            var meta = m.meta || {};
            el._text = m.content;
            setSources(el, meta.sources);
            drawAnswer(el);
            finishAnswer(el, { model: meta.model, cost: meta.cost, cached: meta.cached, rating: m.rating });
          } else {
            var b = bubble(m.role, m.content);
            if (m.role === "assistant" && m.seq === 1) b.setAttribute("data-greeting", "");
          }
        });
        intro();
        scrollDown(true);
      });
    }

    function renewToken() {
      var my = epoch;
      return api("POST", "/token").then(function (r) {
        if (my !== epoch || !r || !r.token) return;
        saved.token = r.token;
        save();
        emit("session", { sessionId: saved.sessionId, token: saved.token });
      });
    }

    function refreshToken() { return renewToken().then(null, function () {}); }

    function start() {
      var my = epoch;
      if (saved.sessionId) {
        // A conversation opened afresh (switched to) has seen none of its events: the
        // history shows what the log has up to its last one, the connection the rest.
        // Its token first: one that expired while the page was away (within the server's
        // refresh window) is exchanged for a fresh one; a revoked one ends the session here.
        var known = renewToken().then(function () {
          return lastSeq ? null : api("GET", "").then(function (s) {
            if (my === epoch) lastSeq = s.last_seq || 0;
          });
        });
        return known.then(loadHistory).then(function () {
          if (my !== epoch) return;
          loaded = true;
          connect();
        }, function () { if (my === epoch) ended(); });
      }
      return fetch(server + "/v1/sessions", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ agent: agent }),
      }).then(function (r) {
        if (!r.ok) throw new Error("the server answered " + r.status);
        return r.json();
      }).then(function (s) {
        if (my !== epoch) throw new Error("the conversation changed");
        saved = { sessionId: s.session_id, token: s.token, lastSeq: 0, open: saved.open };
        lastSeq = 0;
        loaded = true;
        save();
        emit("session", { sessionId: saved.sessionId, token: saved.token });
        connect();
      }).catch(function (err) {
        // A site not on the server's allowed-origins list fails here (CORS or 403).
        if (my === epoch) status.textContent = "Could not start a chat: " + err.message;
        throw err;
      });
    }

    /* The stored session shown and connected, or a new one; once, however often asked. */
    function ensureSession() {
      if (saved.sessionId && loaded) return Promise.resolve();
      if (!starting) {
        var my = epoch;
        starting = start().then(function () {
          if (my === epoch) starting = null;
        }, function (e) {
          if (my === epoch) starting = null;
          throw e;
        });
      }
      return starting;
    }

    /* For a message: a session that turned out to have ended is replaced by a new one. */
    function withSession() {
      return ensureSession().then(function () { if (!saved.sessionId) return ensureSession(); });
    }

    function send(text) {
      lastSent = text;
      var clientId = "c_" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
      bubble("user", text, clientId);
      var frame = JSON.stringify({ type: "message.send", client_id: clientId, text: text });
      if (ws && ws.readyState === 1) ws.send(frame); else { outbox.push(frame); connect(); }
      emit("message", { sessionId: saved.sessionId, text: text });
    }

    /* Empties the screen and drops the connection (the stored session stays as it is). */
    function clear() {
      epoch++;
      if (ws) { var old = ws; ws = null; old.onclose = null; old.close(); }
      clearTimeout(retryTimer);
      log.textContent = "";
      turns = {}; questions = {}; outbox = []; renderQueued = {};
      answering = null; lastSent = null; lastSeq = 0; retry = 0; starting = null; loaded = false;
      setBusy(false);
      status.textContent = "";
      intro();
    }

    // -- opening, closing, the keyboard ---------------------------------------------------

    function open() {
      wrap.classList.add("open");
      launcher.setAttribute("aria-expanded", "true");
      look();
      saved.open = true;
      if (saved.sessionId) save();
      input.focus();
      if (!attached) return;
      if (loaded) connect();
      else ensureSession().then(null, function () {}); // a new session: its greeting shows
    }

    function close(returnFocus) {
      if (inline()) return;
      wrap.classList.remove("open");
      launcher.setAttribute("aria-expanded", "false");
      saved.open = false;
      if (saved.sessionId) save();
      if (returnFocus) launcher.focus();
    }

    function focusable() {
      return Array.prototype.filter.call(
        panel.querySelectorAll("button, a[href], textarea, input, summary, [tabindex]:not([tabindex='-1'])"),
        function (el) { return !el.disabled && el.getClientRects().length > 0; }
      );
    }

    /* Tab and Shift+Tab go round the open panel. */
    function trapFocus(e) {
      var list = focusable();
      if (!list.length) return;
      var first = list[0], last = list[list.length - 1], active = root.activeElement;
      var inside = active && panel.contains(active);
      if (e.shiftKey && (active === first || !inside)) { e.preventDefault(); last.focus(); }
      else if (!e.shiftKey && (active === last || !inside)) { e.preventDefault(); first.focus(); }
    }

    root.addEventListener("keydown", function (e) {
      if (inline() || !wrap.classList.contains("open")) return;
      if (e.key === "Escape") { e.preventDefault(); close(true); }
      else if (e.key === "Tab") trapFocus(e);
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (busy) {
        if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "cancel" }));
        return;
      }
      var text = input.value.trim();
      if (!text) return;
      input.value = "";
      grow();
      withSession().then(function () { send(text); }, function () { input.value = text; });
    });
    function grow() {
      input.style.height = "";
      if (input.scrollHeight > input.clientHeight) input.style.height = Math.min(input.scrollHeight + 2, 140) + "px";
    }
    input.addEventListener("input", grow);
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    });
    launcher.addEventListener("click", open);
    $(".close").addEventListener("click", function () { close(true); });
    $(".new").addEventListener("click", function () { newConversation(); input.focus(); });
    log.addEventListener("click", function (e) { // a citation: show its source
      var b = e.target.closest && e.target.closest("button[data-cite]");
      if (!b) return;
      var item = b.closest(".answer").querySelector('.sources li[data-n="' + b.getAttribute("data-cite") + '"]');
      if (!item) return;
      item.scrollIntoView({ block: "nearest" });
      item.classList.add("flash");
      item.focus();
      setTimeout(function () { item.classList.remove("flash"); }, 1200);
    });
    phone.addEventListener("change", look);
    darkScheme.addEventListener("change", look);

    function newConversation() {
      if (attr("session")) return; // the backend's session is the conversation
      clear();
      saved = { open: saved.open };
      save();
      emit("new", {});
    }

    function switchTo(session) {
      clear();
      saved = { sessionId: session.sessionId, token: session.token, lastSeq: 0, open: true };
      save();
      if (attached) ensureSession().then(null, function () {});
    }

    /* Shows the stored conversation once attached: an inline chat, or a floating one that
     * was open when the page was left. */
    function resume() {
      if (!saved.sessionId) return;
      if (loaded) { connect(); return; }
      if (inline() || saved.open !== false) {
        if (!inline()) { wrap.classList.add("open"); launcher.setAttribute("aria-expanded", "true"); look(); }
        ensureSession().then(null, function () {});
      }
    }

    // window.threadlineWidget[agent]: for diagnostics and tests
    var handle = {
      root: root,
      element: host,
      open: function () { launcher.click(); },
      // Drops the connection as a network failure would.
      drop: function () { if (ws) ws.close(); },
      // An answer's text as the widget shows it (an element, not attached).
      render: function (text, sources) {
        var el = document.createElement("div");
        var map = {};
        (sources || []).forEach(function (s) { map[s.n] = s; });
        markdown.render(el, text, map);
        return el;
      },
      // Shows a frame as if the server had sent it.
      receive: function (frame) { onEvent(frame); },
    };

    configure();
    look();
    intro();

    return {
      attach: function () {
        attached = true;
        if (!refreshTimer) {
          refreshTimer = setInterval(function () { if (saved.sessionId && loaded) refreshToken(); }, TOKEN_REFRESH_MS);
        }
        window.threadlineWidget = window.threadlineWidget || {};
        window.threadlineWidget[agent] = handle;
        resume();
      },
      detach: function () {
        attached = false;
        clearInterval(refreshTimer);
        refreshTimer = null;
        clearTimeout(retryTimer);
        if (ws) { var old = ws; ws = null; old.onclose = null; old.close(); }
      },
      attribute: function (name) {
        if (name === "agent" || name === "server" || name === "session") {
          clear();
          configure();
          if (attached) { window.threadlineWidget[agent] = handle; resume(); }
        }
        if (name === "token" && attr("session") === saved.sessionId && attr("token")) {
          saved.token = attr("token"); // the backend handed the page a fresh one
          save();
        }
        look();
        intro();
      },
      open: open,
      close: function () { close(false); },
      newConversation: newConversation,
      switchTo: switchTo,
      sessionId: function () { return saved.sessionId || null; },
    };
  }

  if (!customElements.get("threadline-chat")) {
    customElements.define("threadline-chat", class extends HTMLElement {
      static get observedAttributes() { return ATTRIBUTES; }
      connectedCallback() {
        if (!this._chat) this._chat = createChat(this);
        this._chat.attach();
      }
      disconnectedCallback() { if (this._chat) this._chat.detach(); }
      attributeChangedCallback(name, before, after) {
        if (this._chat && before !== after) this._chat.attribute(name);
      }
      open() { if (this._chat) this._chat.open(); }
      close() { if (this._chat) this._chat.close(); }
      newConversation() { if (this._chat) this._chat.newConversation(); }
      switchTo(session) { if (this._chat) this._chat.switchTo(session); }
      get sessionId() { return this._chat ? this._chat.sessionId() : null; }
    });
  }

  // The one-tag embed: the script's data-* attributes make an element on the page.
  if (script && script.hasAttribute("data-agent")) {
    var element = document.createElement("threadline-chat");
    ATTRIBUTES.forEach(function (name) {
      var value = script.getAttribute("data-" + name);
      if (value !== null) element.setAttribute(name, value);
    });
    if (!element.hasAttribute("server")) element.setAttribute("server", scriptOrigin);
    var place = function () { document.body.appendChild(element); };
    if (document.body) place(); else document.addEventListener("DOMContentLoaded", place);
  }
})();
