/* The full-page chat (/chat/{agent}): the sidebar of this browser's conversations with the
 * agent, beside a <threadline-chat position="inline"> (widget.js) that shows the current one.
 *
 * The list lives in localStorage ("threadline:{server}:{agent}:conversations": id, token,
 * title, updated time); the server has each one's title and last change
 * (GET /v1/sessions/{id}). New chat, switch, rename (PATCH) and delete (DELETE, after a
 * confirm step) go through the element and the session API; the first message a
 * conversation gets becomes its title. Text is only ever inserted as text.
 */
(function () {
  "use strict";
  var chat = document.querySelector("threadline-chat");
  var sidebar = document.querySelector(".sidebar");
  var listEl = document.querySelector(".conversations");
  var empty = document.querySelector(".empty");
  var toggle = document.querySelector(".toggle");
  var server = (chat.getAttribute("server") || location.origin).replace(/\/+$/, "");
  var key = "threadline:" + server + ":" + chat.getAttribute("agent") + ":conversations";
  var TITLE_LENGTH = 80;
  var ICONS = {
    rename: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 20h9"/><path d="M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z"/></svg>',
    delete: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 6h18"/><path d="M19 6v14a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V6m3 0V4a2 2 0 0 1 2-2h4a2 2 0 0 1 2 2v2"/></svg>',
  };
  var conversations = load();

  function load() {
    try {
      var list = JSON.parse(localStorage.getItem(key) || "[]");
      return Array.isArray(list) ? list.filter(function (c) { return c && c.id && c.token; }) : [];
    } catch (e) { return []; }
  }

  function save() {
    try { localStorage.setItem(key, JSON.stringify(conversations)); } catch (e) { /* private mode */ }
  }

  function find(id) {
    for (var i = 0; i < conversations.length; i++) if (conversations[i].id === id) return conversations[i];
    return null;
  }

  function url(c, path) {
    return server + "/v1/sessions/" + encodeURIComponent(c.id) + (path || "") + "?token=" + encodeURIComponent(c.token);
  }

  function failed(r) {
    var e = new Error("the server answered " + r.status);
    e.status = r.status;
    return e;
  }

  /* A conversation's token that expired while the page was away: exchanged for a fresh one
   * (the server takes it for a while after it expires), once per request. */
  function request(method, c, body, renewed) {
    var options = { method: method };
    if (body) { options.headers = { "content-type": "application/json" }; options.body = JSON.stringify(body); }
    return fetch(url(c), options).then(function (r) {
      if (r.status === 401 && !renewed) {
        return fetch(url(c, "/token"), { method: "POST" }).then(function (t) {
          if (!t.ok) throw failed(r);
          return t.json();
        }).then(function (fresh) {
          c.token = fresh.token;
          save();
          return request(method, c, body, true);
        });
      }
      if (!r.ok) throw failed(r);
      return r.status === 204 ? null : r.json();
    });
  }

  function titleOf(text) {
    var line = String(text).replace(/\s+/g, " ").trim();
    return line.length > TITLE_LENGTH ? line.slice(0, TITLE_LENGTH - 1) + "…" : line;
  }

  function when(ms) {
    var s = (Date.now() - ms) / 1000;
    if (!isFinite(s)) return "";
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    if (s < 2 * 86400) return "yesterday";
    return new Date(ms).toLocaleDateString();
  }

  function el(tag, parent, text, className) {
    var n = document.createElement(tag);
    if (text !== undefined && text !== null) n.textContent = text;
    if (className) n.className = className;
    if (parent) parent.appendChild(n);
    return n;
  }

  function button(parent, text, className, label) {
    var b = el("button", parent, text, className);
    b.type = "button";
    if (label) { b.setAttribute("aria-label", label); b.title = label; }
    return b;
  }

  // -- the list ---------------------------------------------------------------------------

  function render() {
    conversations.sort(function (a, b) { return (b.updated || 0) - (a.updated || 0); });
    var current = chat.sessionId;
    listEl.textContent = "";
    conversations.forEach(function (c) {
      var li = el("li", listEl, null, "conv");
      li.setAttribute("data-id", c.id);
      if (c.id === current) li.classList.add("current");
      if (c.expired) li.classList.add("expired");
      var name = c.title || "New conversation";
      var open = button(li, null, "open");
      el("span", open, name, "t");
      el("span", open, c.expired ? "can no longer be opened here" : when(c.updated), "when");
      if (c.id === current) open.setAttribute("aria-current", "true");
      open.addEventListener("click", function () { switchTo(c); });
      var tools = el("span", li, null, "tools");
      var rename = button(tools, null, "tool rename", "Rename “" + name + "”");
      rename.innerHTML = ICONS.rename; // constants
      rename.addEventListener("click", function () { renaming(li, c); });
      var remove = button(tools, null, "tool delete", "Delete “" + name + "”");
      remove.innerHTML = ICONS.delete;
      remove.addEventListener("click", function () { confirming(li, c); });
    });
    empty.hidden = conversations.length > 0;
  }

  function renaming(li, c) {
    li.textContent = "";
    var form = el("form", li);
    var input = el("input", form);
    input.value = c.title || "";
    input.maxLength = 200;
    input.setAttribute("aria-label", "New title");
    el("button", form, "Save").type = "submit";
    button(form, "Cancel", "cancel").addEventListener("click", back(c));
    form.addEventListener("keydown", cancelOnEscape(c));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var title = input.value.replace(/\s+/g, " ").trim();
      if (!title) { back(c)(); return; }
      var before = c.title;
      c.title = title;
      save();
      back(c)();
      request("PATCH", c, { title: title }).then(null, function () {
        c.title = before;
        save();
        render();
      });
    });
    input.focus();
    input.select();
  }

  function confirming(li, c) {
    li.textContent = "";
    var box = el("div", li, null, "confirm");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Delete this conversation?");
    el("span", box, "Delete “" + (c.title || "New conversation") + "”?");
    var yes = button(box, "Delete", "yes");
    var no = button(box, "Cancel", "no");
    no.addEventListener("click", back(c));
    box.addEventListener("keydown", cancelOnEscape(c));
    yes.addEventListener("click", function () {
      yes.disabled = true;
      request("DELETE", c).then(forget, function (err) {
        if (err.status === 404 || err.status === 401) forget(); // gone, or no longer ours
        else back(c)();
      });
    });
    no.focus(); // the safe choice first
    function forget() {
      conversations = conversations.filter(function (x) { return x.id !== c.id; });
      save();
      if (chat.sessionId === c.id) chat.newConversation();
      render();
    }
  }

  /* Leaving a rename or a confirm step: the list again, the focus on the conversation. */
  function back(c) {
    return function () {
      render();
      var row = listEl.querySelector('.conv[data-id="' + CSS.escape(c.id) + '"] .open');
      if (row) row.focus();
    };
  }

  /* Escape in a rename or a confirm step cancels it (and leaves the list open). */
  function cancelOnEscape(c) {
    var cancel = back(c);
    return function (e) {
      if (e.key !== "Escape") return;
      e.preventDefault();
      e.stopPropagation();
      cancel();
    };
  }

  function switchTo(c) {
    if (chat.sessionId !== c.id) chat.switchTo({ sessionId: c.id, token: c.token });
    showSidebar(false);
    render();
  }

  function newChat() {
    chat.newConversation();
    showSidebar(false);
    render();
  }

  function showSidebar(shown) {
    sidebar.classList.toggle("shown", shown);
    if (toggle) toggle.setAttribute("aria-expanded", shown ? "true" : "false");
  }

  /* Titles and times as the server has them; conversations deleted elsewhere go. */
  function refresh() {
    conversations.forEach(function (c) {
      request("GET", c).then(function (s) {
        if (s.title) c.title = s.title;
        var updated = Date.parse(s.updated_at);
        if (isFinite(updated)) c.updated = Math.max(c.updated || 0, updated);
        c.expired = false;
        save();
        render();
      }, function (err) {
        if (err.status === 404) conversations = conversations.filter(function (x) { return x !== c; });
        else if (err.status === 401) c.expired = true;
        save();
        render();
      });
    });
  }

  // -- what the chat tells --------------------------------------------------------------

  chat.addEventListener("threadline:session", function (e) {
    var c = find(e.detail.sessionId);
    if (!c) {
      c = { id: e.detail.sessionId, token: e.detail.token, title: "", updated: Date.now() };
      conversations.push(c);
    }
    c.token = e.detail.token;
    c.expired = false;
    save();
    render();
  });
  chat.addEventListener("threadline:message", function (e) {
    var c = find(e.detail.sessionId);
    if (!c) return;
    c.updated = Date.now();
    if (!c.title) { // the first message names the conversation
      c.title = titleOf(e.detail.text);
      request("PATCH", c, { title: c.title }).then(null, function () {});
    }
    save();
    render();
  });
  chat.addEventListener("threadline:answer", function (e) {
    var c = find(e.detail.sessionId);
    if (c) { c.updated = Date.now(); save(); render(); }
  });
  chat.addEventListener("threadline:new", render);
  chat.addEventListener("threadline:ended", function (e) {
    var c = find(e.detail.sessionId);
    if (c) { c.expired = true; save(); render(); }
  });
  document.querySelector(".new-chat").addEventListener("click", newChat);
  if (toggle) toggle.addEventListener("click", function () { showSidebar(!sidebar.classList.contains("shown")); });
  document.querySelector(".scrim").addEventListener("click", function () { showSidebar(false); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && sidebar.classList.contains("shown")) { showSidebar(false); toggle.focus(); }
  });
  window.addEventListener("storage", function (e) { if (e.key === key) { conversations = load(); render(); } });

  render();
  refresh();
})();
