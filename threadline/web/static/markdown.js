/* Answers as elements: GitHub-flavoured Markdown read by marked's lexer (vendored), built
 * here node by node. Text from the server is only ever inserted as text nodes; raw HTML is
 * shown as written; links go only to http(s) and mailto. Fenced code is highlighted by
 * highlight.js (vendored), whose escaped HTML is read in an inert document and copied as
 * spans and text, then checked against the code. `[n]` markers that name a known source
 * become buttons (the widget lists the sources under the answer).
 *
 * /widget.js serves this file in one function scope with marked (`marked`), highlight.js
 * (`hljs`) and widget.js, which uses `markdown.render`.
 */
var markdown = (function () {
  "use strict";
  var CITE = /\[(\d{1,3})\]/g;
  var MAX_HIGHLIGHT = 50000; // characters: longer code is shown plain (it stays fast)

  /* Renders `text` into `el` (emptied first). `sources`: n -> source, for the `[n]` markers.
   * Returns the numbers cited, in the order they first appear. */
  function render(el, text, sources) {
    el.textContent = "";
    var ctx = { sources: sources || {}, cited: [], seen: {} };
    var tokens;
    try { tokens = marked.lexer(text || "", { gfm: true, breaks: true }); }
    catch (e) { el.textContent = text || ""; return []; }
    blocks(tokens, el, ctx);
    return ctx.cited;
  }

  function node(tag, parent, text) {
    var n = document.createElement(tag);
    if (text !== undefined) n.textContent = text;
    parent.appendChild(n);
    return n;
  }

  function blocks(tokens, parent, ctx) {
    tokens.forEach(function (t) {
      switch (t.type) {
        case "space": return;
        case "paragraph": inline(t.tokens, node("p", parent), ctx); return;
        case "heading": inline(t.tokens, node("h" + Math.min(6, t.depth + 2), parent), ctx); return;
        case "code": codeBlock(t, parent); return;
        case "blockquote": blocks(t.tokens, node("blockquote", parent), ctx); return;
        case "hr": node("hr", parent); return;
        case "list": list(t, parent, ctx); return;
        case "table": table(t, parent, ctx); return;
        case "text":
          if (t.tokens) inline(t.tokens, parent, ctx); else text(t.text, parent, ctx);
          return;
        default: // html and anything unknown: as it was written, as text
          parent.appendChild(document.createTextNode(t.raw || t.text || ""));
      }
    });
  }

  function list(t, parent, ctx) {
    var el = node(t.ordered ? "ol" : "ul", parent);
    if (t.ordered && t.start !== "" && t.start !== 1) el.setAttribute("start", String(t.start));
    t.items.forEach(function (item) {
      var li = node("li", el);
      if (item.task) {
        var box = node("input", li);
        box.type = "checkbox";
        box.checked = !!item.checked;
        box.disabled = true;
      }
      blocks(item.tokens, li, ctx);
    });
  }

  function inline(tokens, parent, ctx) {
    var pending = ""; // plain text runs are joined first: a marker may span two tokens
    function flush() { if (pending) { text(pending, parent, ctx); pending = ""; } }
    (tokens || []).forEach(function (t) {
      if ((t.type === "text" && !t.tokens) || t.type === "escape") { pending += t.text; return; }
      flush();
      switch (t.type) {
        case "text": inline(t.tokens, parent, ctx); return;
        case "strong": case "em": case "del":
          inline(t.tokens, node(t.type === "strong" ? "strong" : t.type === "em" ? "em" : "del", parent), ctx);
          return;
        case "codespan": node("code", parent, t.text); return;
        case "br": node("br", parent); return;
        case "link": link(t, parent, ctx); return;
        case "image": // not loaded: a link to it, named by its text
          link({ href: t.href, title: t.title, tokens: [{ type: "text", text: t.text || t.href }] }, parent, ctx);
          return;
        default:
          parent.appendChild(document.createTextNode(t.raw || t.text || ""));
      }
    });
    flush();
  }

  /* Plain text, with `[n]` markers of known sources as buttons (not inside links). */
  function text(value, parent, ctx) {
    if (ctx.inLink || value.indexOf("[") < 0) { parent.appendChild(document.createTextNode(value)); return; }
    var at = 0, m;
    CITE.lastIndex = 0;
    while ((m = CITE.exec(value))) {
      var source = ctx.sources[m[1]];
      if (!source) continue;
      if (m.index > at) parent.appendChild(document.createTextNode(value.slice(at, m.index)));
      cite(Number(m[1]), source, parent, ctx);
      at = m.index + m[0].length;
    }
    if (at < value.length) parent.appendChild(document.createTextNode(value.slice(at)));
  }

  function cite(n, source, parent, ctx) {
    if (!ctx.seen[n]) { ctx.seen[n] = true; ctx.cited.push(n); }
    var sup = node("sup", parent);
    sup.className = "cite";
    var b = node("button", sup, "[" + n + "]");
    b.type = "button";
    b.setAttribute("data-cite", String(n));
    b.setAttribute("aria-label", "Source " + n + ": " + (source.title || source.source || ""));
    b.title = source.title || source.source || "";
  }

  function link(t, parent, ctx) {
    var href = String(t.href || "").trim();
    if (!/^(https?:|mailto:)/i.test(href)) { inline(t.tokens, parent, ctx); return; } // javascript: and the like
    var a = node("a", parent);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    if (t.title) a.title = t.title;
    inline(t.tokens, a, { sources: ctx.sources, cited: ctx.cited, seen: ctx.seen, inLink: true });
  }

  function codeBlock(t, parent) {
    var box = node("div", parent);
    box.className = "code";
    var lang = String(t.lang || "").split(/\s/)[0];
    if (lang) box.setAttribute("data-lang", lang);
    var copy = node("button", box, "Copy");
    copy.type = "button";
    copy.className = "copy";
    copy.setAttribute("aria-label", "Copy the code");
    copy.addEventListener("click", function () {
      copyText(t.text).then(function () { copy.textContent = "Copied"; }, function () {});
    });
    var code = node("code", node("pre", box));
    if (lang) code.setAttribute("data-lang", lang);
    highlight(t.text, lang, code);
  }

  /* highlight.js returns HTML with the code escaped and tokens wrapped in spans. It is parsed
   * in an inert document (no scripts run, nothing loads) and only spans (their classes) and
   * text are copied; if the copy's text is not exactly the code, the code is shown plain. */
  function highlight(code, lang, target) {
    var language = lang && typeof hljs !== "undefined" ? hljs.getLanguage(lang.toLowerCase()) : null;
    if (!language || code.length > MAX_HIGHLIGHT) { target.textContent = code; return; }
    try {
      var html = hljs.highlight(code, { language: lang.toLowerCase(), ignoreIllegals: true }).value;
      var doc = new DOMParser().parseFromString("<!doctype html><body>" + html, "text/html");
      var copied = document.createDocumentFragment();
      if (copySpans(doc.body, copied) && copied.textContent === code) {
        target.classList.add("hljs");
        target.appendChild(copied);
        return;
      }
    } catch (e) { /* shown plain below */ }
    target.textContent = code;
  }

  function copySpans(from, to) {
    for (var n = from.firstChild; n; n = n.nextSibling) {
      if (n.nodeType === 3) { to.appendChild(document.createTextNode(n.data)); continue; }
      if (n.nodeType !== 1 || n.tagName !== "SPAN") return false;
      var span = document.createElement("span");
      var classes = (n.getAttribute("class") || "").split(/\s+/).filter(function (c) {
        return /^[A-Za-z][\w-]*$/.test(c);
      });
      if (classes.length) span.className = classes.join(" ");
      if (!copySpans(n, span)) return false;
      to.appendChild(span);
    }
    return true;
  }

  function table(t, parent, ctx) {
    var wrapper = node("div", parent);
    wrapper.className = "table";
    wrapper.tabIndex = 0; // it scrolls: keyboard users can too
    wrapper.setAttribute("role", "region");
    wrapper.setAttribute("aria-label", "Table");
    var tbl = node("table", wrapper);
    var head = node("tr", node("thead", tbl));
    t.header.forEach(function (cell, i) { cellOf("th", cell, t.align[i], head, ctx); });
    var body = node("tbody", tbl);
    t.rows.forEach(function (row) {
      var tr = node("tr", body);
      row.forEach(function (cell, i) { cellOf("td", cell, t.align[i], tr, ctx); });
    });
  }

  function cellOf(tag, cell, align, row, ctx) {
    var c = node(tag, row);
    if (align) c.style.textAlign = align;
    inline(cell.tokens, c, ctx);
  }

  /* The clipboard, where the page may use it (https or localhost), else a hidden textarea. */
  function copyText(value) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(value);
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = value;
      area.setAttribute("readonly", "");
      area.style.cssText = "position:fixed;top:-1000px;opacity:0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  return { render: render, copyText: copyText };
})();
