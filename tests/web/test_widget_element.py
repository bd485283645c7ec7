"""The <threadline-chat> element in Chromium: attributes and theming, the keyboard, the
actions under an answer (copy, regenerate, feedback), citations and cache hits, a new
conversation, and Markdown that must stay inert."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from ..chat_server import ChatServer, chat_server, echo
from .apps import SHOWCASE_CODE, showcase
from .test_widget import CHROMIUM_ARGS, assistant_texts, send, wait_idle

pytestmark = pytest.mark.browser

STYLE = """<style>
  body { font: 40px/2 "Comic Sans MS", cursive; color: rgb(200, 0, 0); }
  button, div, section, header { background: yellow !important; }
  threadline-chat { --tl-accent: rgb(255, 0, 128); --tl-radius: 3px; --tl-font: Georgia, serif; }
</style>"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def showroom(database_url: str) -> AsyncIterator[ChatServer]:
    from threadline.demo import support

    shown = dataclasses.replace(support, show_cached=True)  # the widget's "instant answer"
    async with chat_server(database_url, [echo, shown, showcase]) as server:
        yield server


async def host_page(page: Page, chat: ChatServer, body: str) -> None:
    """A page of the server's origin with `body`: a plain HTML page of the server (the
    dashboard's login form) rewritten. Chromium lets a page reach a local server only when
    it came from a local address (a fulfilled route would not), and builds the custom
    elements a script is written before only in an HTML document (not the JSON of a 404)."""
    await page.goto(f"{chat.url}/dashboard/login")
    await page.set_content(f"<!doctype html><html><head>{STYLE}</head><body>{body}</body></html>")


async def in_widget(page: Page, agent: str, script: str) -> Any:
    """Evaluates `script`, an arrow function of the agent's shadow root."""
    return await page.evaluate(f"({script})(window.threadlineWidget[{json.dumps(agent)}].root)")


async def answered(page: Page, count: int = 1) -> None:
    """Until `count` answers have ended (their footers show) and the next can be sent."""
    await page.locator(".answer .foot").nth(count - 1).wait_for(timeout=20_000)
    await wait_idle(page)


async def session_of(page: Page, agent: str = "echo") -> dict[str, Any]:
    saved: dict[str, Any] = await page.evaluate(
        "(agent) => JSON.parse(localStorage.getItem(Object.keys(localStorage)"
        ".find(k => k.endsWith(':' + agent))) || '{}')",
        agent,
    )
    return saved


async def test_the_element_takes_its_attributes_and_the_pages_css_properties(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page(viewport={"width": 1000, "height": 700})
    await host_page(
        page,
        chat,
        '<p>Shop</p><script src="/widget.js"></script><threadline-chat agent="echo" '
        'title="Help desk" greeting="Hi! Ask me anything." placeholder="Ask away" '
        'position="bottom-left" show-cost="false"></threadline-chat>',
    )
    launcher = page.locator(".bubble")
    box = await launcher.bounding_box()
    assert box is not None and box["x"] < 100 and box["y"] > 500  # bottom left
    assert await launcher.get_attribute("aria-label") == "Open chat: Help desk"
    assert await launcher.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 0, 128)"
    await launcher.click()
    panel = page.locator(".panel")
    style = await panel.evaluate(
        "e => [getComputedStyle(e).borderTopLeftRadius, getComputedStyle(e).fontFamily,"
        " getComputedStyle(e).fontSize, getComputedStyle(e).color]"
    )
    assert style == [
        "3px",
        "Georgia, serif",
        "14px",
        "rgb(26, 32, 44)",
    ]  # the page's 40 px stays out
    assert await page.locator("header .title").inner_text() == "Help desk"
    assert await page.locator("textarea").get_attribute("placeholder") == "Ask away"
    assert await assistant_texts(page) == ["Hi! Ask me anything."]  # before any session
    await send(page, "Hello")
    await answered(page)
    assert await page.locator(".foot .meta").count() == 1
    assert not await page.locator(".foot .meta").is_visible()  # show-cost="false"
    # Attributes change what shows, live.
    await page.evaluate(
        "() => { const e = document.querySelector('threadline-chat');"
        " e.setAttribute('title', 'Support'); e.setAttribute('position', 'bottom-right'); }"
    )
    assert await page.locator("header .title").inner_text() == "Support"
    box = await panel.bounding_box()
    assert box is not None and box["x"] > 500


async def test_the_one_tag_embed_makes_an_element_and_leaves_the_pages_globals_alone(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page()
    await host_page(page, chat, "<p>Shop</p>")
    before: list[str] = await page.evaluate("Object.keys(window)")
    await page.evaluate(
        """() => new Promise((done) => {
          const s = document.createElement('script');
          s.src = '/widget.js';
          Object.entries({agent: 'echo', title: 'Help', theme: 'dark', position: 'bottom-left',
                          greeting: 'Hello!', placeholder: 'Your question'})
            .forEach(([k, v]) => s.setAttribute('data-' + k, v));
          s.onload = done;
          document.body.appendChild(s);
        })"""
    )
    element = await page.evaluate(
        """() => { const e = document.querySelector('threadline-chat');
          return Object.fromEntries([...e.attributes].map(a => [a.name, a.value])); }"""
    )
    assert element == {
        "agent": "echo",
        "title": "Help",
        "theme": "dark",
        "position": "bottom-left",
        "greeting": "Hello!",
        "placeholder": "Your question",
        "server": chat.url,
    }
    added = set(await page.evaluate("Object.keys(window)")) - set(before)
    assert added == {"threadlineWidget"}
    leaked = await page.evaluate(
        "[typeof hljs, typeof marked, typeof markdown, typeof WIDGET_CSS, typeof module]"
    )
    assert leaked == ["undefined"] * 5
    assert await page.evaluate(
        "window.threadlineWidget.echo.root === document.querySelector('threadline-chat').shadowRoot"
    )


async def test_dark_and_auto_themes(browser: Browser, chat: ChatServer) -> None:
    page = await browser.new_page()
    await host_page(
        page,
        chat,
        '<script src="/widget.js"></script><threadline-chat agent="echo" theme="dark">'
        "</threadline-chat>",
    )
    await page.click(".bubble")
    panel = page.locator(".panel")
    background = "e => getComputedStyle(e).backgroundColor"
    assert await panel.evaluate(background) == "rgb(23, 25, 35)"
    assert await page.locator("textarea").evaluate("e => getComputedStyle(e).color") == (
        "rgb(226, 232, 240)"
    )
    await page.evaluate("document.querySelector('threadline-chat').setAttribute('theme', 'auto')")
    assert await panel.evaluate(background) == "rgb(255, 255, 255)"  # the page prefers light
    await page.emulate_media(color_scheme="dark")
    await page.wait_for_function(
        "() => getComputedStyle(window.threadlineWidget.echo.root.querySelector('.panel'))"
        ".backgroundColor === 'rgb(23, 25, 35)'"
    )
    await page.evaluate("document.querySelector('threadline-chat').setAttribute('theme', 'light')")
    assert await panel.evaluate(background) == "rgb(255, 255, 255)"


async def test_the_dialog_traps_focus_and_escape_gives_it_back(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page()
    await page.goto(f"{chat.url}/?agent=echo")
    launcher = page.locator(".bubble")
    await launcher.focus()
    await page.keyboard.press("Enter")
    panel = page.locator(".panel")
    assert await panel.get_attribute("role") == "dialog"
    assert await panel.get_attribute("aria-modal") == "false"  # a corner of the page
    labelled = await in_widget(
        page,
        "echo",
        "r => r.getElementById(r.querySelector('.panel').getAttribute('aria-labelledby'))"
        ".textContent",
    )
    assert labelled == "Support"
    assert await page.locator(".log").get_attribute("aria-live") == "polite"
    focused = "r => r.activeElement && (r.activeElement.className || r.activeElement.tagName)"
    assert await in_widget(page, "echo", focused) == "TEXTAREA"
    seen = []
    for _ in range(6):  # new, close, textarea, send, new, ...: round and round
        await page.keyboard.press("Tab")
        seen.append(await in_widget(page, "echo", focused))
    assert seen == ["send", "new", "close", "TEXTAREA", "send", "new"], seen
    await page.keyboard.press("Shift+Tab")  # from the first, back to the last
    assert await in_widget(page, "echo", focused) == "send"
    unlabelled = await in_widget(
        page,
        "echo",
        "r => [...r.querySelectorAll('button')].filter(b => b.getClientRects().length"
        " && !b.getAttribute('aria-label') && !b.textContent.trim()).length",
    )
    assert unlabelled == 0
    await page.keyboard.press("Escape")
    await launcher.wait_for(state="visible")
    assert await in_widget(page, "echo", focused) == "bubble"
    assert await launcher.get_attribute("aria-expanded") == "false"
    await page.set_viewport_size({"width": 375, "height": 700})
    await page.keyboard.press("Enter")
    assert await panel.get_attribute("aria-modal") == "true"  # the whole screen


async def test_feedback_is_stored_shown_after_a_reload_and_taken_back(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page()
    await page.goto(f"{chat.url}/?agent=echo")
    await page.click(".bubble")
    await send(page, "Hello")
    await answered(page)
    down, up = page.locator(".rate.down"), page.locator(".rate.up")
    assert await down.get_attribute("aria-pressed") == "false"
    await down.click()
    assert await down.get_attribute("aria-pressed") == "true"
    session_id = (await session_of(page))["sessionId"]

    async def ratings() -> list[tuple[str, int]]:
        rows = await chat.sessions.engine.pool.fetch(
            "SELECT turn_id, rating FROM threadline.session_feedback WHERE session_id = $1",
            session_id,
        )
        return [(r["turn_id"], r["rating"]) for r in rows]

    await page.wait_for_timeout(300)
    turn = await page.locator(".answer").get_attribute("data-turn")
    assert await ratings() == [(turn, -1)]
    await page.reload()
    await page.locator(".rate.down").wait_for()
    assert await down.get_attribute("aria-pressed") == "true"
    assert await up.get_attribute("aria-pressed") == "false"
    await up.click()  # changes it
    await page.wait_for_timeout(300)
    assert await ratings() == [(turn, 1)]
    await up.click()  # the pressed one again takes it back
    assert await up.get_attribute("aria-pressed") == "false"
    await page.wait_for_timeout(300)
    assert await ratings() == []


async def test_copy_puts_the_answers_markdown_on_the_clipboard(
    browser: Browser, showroom: ChatServer
) -> None:
    context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    await page.goto(f"{showroom.url}/?agent=showcase")
    await page.click(".bubble")
    await send(page, "Show me some code")
    await answered(page)
    await page.locator(".act.copy").click()
    await page.wait_for_function("() => navigator.clipboard.readText().then(t => t.length > 0)")
    assert await page.evaluate("navigator.clipboard.readText()") == SHOWCASE_CODE
    await page.locator(".code button.copy").first.click()  # one code block
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("import time\n") and copied.endswith('attempts")')
    await context.close()


async def test_regenerate_asks_the_same_question_again(browser: Browser, chat: ChatServer) -> None:
    page = await browser.new_page()
    await page.goto(f"{chat.url}/?agent=echo")
    await page.click(".bubble")
    await send(page, "Tell me about filters")
    await answered(page)
    await page.locator(".act.regen").click()
    await answered(page, 2)
    users = await page.locator(".msg.user").all_inner_texts()
    assert users == ["Tell me about filters"] * 2
    answers = await assistant_texts(page)
    assert len(answers) == 2 and all(a.startswith("[demo model]") for a in answers)
    session = await session_of(page)
    stored = (
        await chat.http.get(
            f"/v1/sessions/{session['sessionId']}/messages?token={session['token']}"
        )
    ).json()
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[0]["client_id"] != stored[2]["client_id"]


async def test_a_new_conversation_forgets_the_last(browser: Browser, chat: ChatServer) -> None:
    page = await browser.new_page()
    await page.goto(f"{chat.url}/?agent=echo")
    await page.click(".bubble")
    await send(page, "First conversation")
    await answered(page)
    first = (await session_of(page))["sessionId"]
    await page.locator("header .new").click()
    assert await page.locator(".log > *").count() == 0
    assert "sessionId" not in await session_of(page)
    await send(page, "Second conversation")
    await answered(page)
    second = (await session_of(page))["sessionId"]
    assert second and second != first
    await page.reload()
    await page.wait_for_selector(".msg.user")
    assert await page.locator(".msg.user").all_inner_texts() == ["Second conversation"]


SOURCES = [
    {"n": 1, "title": "Warranty", "source": "warranty.md", "url": None, "page": None},
    {
        "n": 2,
        "title": "Catalogue",
        "source": "https://example.com/c",
        "url": "https://example.com/c",
    },
    {"n": 3, "title": "Trick", "source": "x", "url": "javascript:alert(1)", "page": 4},
]


async def test_citations_link_to_the_numbered_sources_under_the_answer(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page()
    await page.goto(f"{chat.url}/?agent=echo")
    await page.click(".bubble")
    text = "Two years [1], parts in the catalogue [2][3]; not a source: [7] or [x]."
    for frame in (
        {"type": "message.start", "turn_id": "t1", "ts": 1.0},
        {"type": "message.sources", "turn_id": "t1", "sources": SOURCES},
        {"type": "message.delta", "turn_id": "t1", "text": text, "offset": 0},
        {
            "type": "message.end",
            "turn_id": "t1",
            "text": text,
            "sources": SOURCES,
            "cached": True,
            "model": "demo:threadline-demo",
            "cost": "0.0004",
        },
    ):
        await page.evaluate("(f) => window.threadlineWidget.echo.receive(f)", frame)
    answer = page.locator(".answer")
    assert await answer.locator(".cite button").all_inner_texts() == ["[1]", "[2]", "[3]"]
    assert await answer.locator(".msg").inner_text() == text  # the markers read as written
    items = await answer.locator(".sources li").evaluate_all("els => els.map(e => e.textContent)")
    assert items == ["[1]Warranty · warranty.md", "[2]Catalogue", "[3]Trick · x, p. 4"]
    links = await answer.locator(".sources a").evaluate_all(
        "els => els.map(a => [a.textContent, a.href, a.target, a.rel])"
    )
    assert links == [
        ["Catalogue", "https://example.com/c", "_blank", "noopener noreferrer nofollow"]
    ]
    await answer.locator(".cite button", has_text="[2]").click()
    assert await in_widget(page, "echo", "r => r.activeElement.dataset.n") == "2"
    assert await answer.locator(".foot .cached").inner_text() == "instant answer"
    assert await answer.locator(".foot .meta").inner_text() == "demo:threadline-demo · $0.0004"


async def test_support_answers_cite_their_sources_and_a_repeat_comes_from_the_cache(
    browser: Browser, showroom: ChatServer
) -> None:
    page = await browser.new_page()
    await page.goto(f"{showroom.url}/?agent=support")
    await page.click(".bubble")
    await send(page, "What is the warranty on the leak sensor?")
    await answered(page)
    await page.locator(".answer .foot").wait_for()
    assert await page.locator(".answer .cite button").count() >= 1
    cited = await page.locator(".answer .sources li").count()
    assert cited >= 1
    assert await page.locator(".answer .cached").count() == 0
    await page.reload()  # the stored answer keeps its sources
    await page.locator(".answer .foot").wait_for()
    assert await page.locator(".answer .sources li").count() == cited
    await page.locator("header .new").click()
    await send(page, "what is the warranty on the leak sensor")
    await answered(page)
    assert await page.locator(".answer .cached").is_visible()
    await page.reload()
    await page.locator(".answer .foot").wait_for()
    assert await page.locator(".answer .cached").is_visible()


HIGHLIGHTED = """```python
print("<script>window.__xss = 1</script>")  # <img src=x onerror="window.__xss = 2">
```

```html
<img src=x onerror="window.__xss = 3"><script>window.__xss = 4</script>
```

```
<b>no language: plain</b>
```
"""


async def test_highlighted_code_stays_text(browser: Browser, chat: ChatServer) -> None:
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.goto(f"{chat.url}/?agent=echo")
    await page.click(".bubble")
    shown = await page.evaluate(
        """(text) => {
          const el = window.threadlineWidget.echo.render(text);
          document.body.appendChild(el);  // live in the page: an injected handler would run
          return [...el.querySelectorAll('pre code')].map(c => ({
            text: c.textContent, spans: c.querySelectorAll('span').length,
            other: c.querySelectorAll(':not(span)').length, hljs: c.classList.contains('hljs'),
          }));
        }""",
        HIGHLIGHTED,
    )
    await page.wait_for_timeout(200)
    assert await page.evaluate("window.__xss") is None and dialogs == []
    assert [s["text"] for s in shown] == [
        'print("<script>window.__xss = 1</script>")  # <img src=x onerror="window.__xss = 2">',
        '<img src=x onerror="window.__xss = 3"><script>window.__xss = 4</script>',
        "<b>no language: plain</b>",
    ]
    assert [s["hljs"] for s in shown] == [True, True, False]
    assert shown[0]["spans"] >= 3 and shown[1]["spans"] >= 3 and shown[2]["spans"] == 0
    assert all(s["other"] == 0 for s in shown)  # spans and text, nothing else


async def test_markdown_edge_cases_render_quickly_and_inertly(
    browser: Browser, chat: ChatServer
) -> None:
    """Raw HTML as text, `javascript:` links refused, a fence inside a longer fence, and a
    200 × 10 table that scrolls inside the answer."""
    page = await browser.new_page()
    await page.goto(f"{chat.url}/?agent=echo")
    await page.click(".bubble")
    header = "| " + " | ".join(f"col {c}" for c in range(10)) + " |\n"
    rule = "|" + "---|" * 10 + "\n"
    rows = "".join(
        "| " + " | ".join(f"r{r}c{c} <i>x</i>" for c in range(10)) + " |\n" for r in range(200)
    )
    text = (
        "Look: <iframe src=javascript:alert(1)></iframe> [go](javascript:alert(2)) "
        "[ok](https://example.com)\n\n````md\n```js\nalert(3)\n```\n````\n\n" + header + rule + rows
    )
    shown = await page.evaluate(
        """(text) => {
          const started = performance.now();
          const el = window.threadlineWidget.echo.render(text);
          el.className = 'msg assistant';
          window.threadlineWidget.echo.root.querySelector('.log').appendChild(el);
          const wrapper = el.querySelector('.table');
          return {
            ms: performance.now() - started,
            rows: el.querySelectorAll('tbody tr').length,
            cells: el.querySelectorAll('tbody td').length,
            scrolls: wrapper.scrollWidth > wrapper.clientWidth
              && wrapper.scrollHeight > wrapper.clientHeight,
            width: el.getBoundingClientRect().width,
            links: [...el.querySelectorAll('a')].map(a => a.getAttribute('href')),
            elements: el.querySelectorAll('iframe,script,img,i').length,
            fence: el.querySelector('pre code').textContent,
            text: el.querySelector('p').textContent,
          };
        }""",
        text,
    )
    assert shown["rows"] == 200 and shown["cells"] == 2000 and shown["scrolls"]
    assert shown["ms"] < 1000, shown["ms"]
    assert shown["width"] <= 360
    assert shown["links"] == ["https://example.com"] and shown["elements"] == 0
    assert shown["fence"] == "```js\nalert(3)\n```"
    assert shown["text"] == "Look: <iframe src=javascript:alert(1)></iframe> go ok"
