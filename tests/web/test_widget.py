"""The widget in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from threadline.testing.browser import CHROMIUM_ARGS

from ..chat_server import ChatServer

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def open_widget(page: Page, chat: ChatServer) -> None:
    await page.goto(f"{chat.url}/?agent=echo")
    await page.click(".bubble")


async def send(page: Page, text: str) -> None:
    await page.fill("textarea", text)
    await page.press("textarea", "Enter")


async def assistant_texts(page: Page) -> list[str]:
    texts: list[str] = await page.eval_on_selector_all(
        ".msg.assistant", "els => els.map(e => e.textContent)"
    )
    return texts


async def wait_idle(page: Page) -> None:
    """Until the answer has ended (the stop button turned back into send)."""
    await page.wait_for_selector("form button.send", timeout=20_000)


async def test_an_answer_streams_in_piece_by_piece(browser: Browser, chat: ChatServer) -> None:
    page = await browser.new_page()
    await open_widget(page, chat)
    # Record every length the answer's text takes, as the page renders it.
    await page.evaluate(
        """() => {
          window.__lengths = [];
          const log = window.threadlineWidget.echo.root.querySelector('.log');
          new MutationObserver(() => {
            const all = log.querySelectorAll('.msg.assistant');
            if (all.length) window.__lengths.push(all[all.length - 1].textContent.length);
          }).observe(log, {childList: true, subtree: true, characterData: true});
        }"""
    )
    await send(page, "Hello there")
    await page.wait_for_selector("form button.stop")
    await wait_idle(page)
    lengths: list[int] = await page.evaluate("window.__lengths")
    growth = sorted({n for n in lengths if n > 0})
    assert len(growth) >= 3, growth  # seen at three or more lengths on the way
    assert (await assistant_texts(page))[-1].startswith("[demo model]")


async def test_a_reload_shows_the_history(browser: Browser, chat: ChatServer) -> None:
    page = await browser.new_page()
    await open_widget(page, chat)
    await send(page, "Remember me")
    await page.wait_for_selector("form button.stop")
    await wait_idle(page)
    before = await assistant_texts(page)
    await page.reload()
    await page.wait_for_selector(".msg.user")
    user = await page.eval_on_selector_all(".msg.user", "els => els.map(e => e.textContent)")
    assert user == ["Remember me"]
    assert await assistant_texts(page) == before


async def test_a_dropped_connection_mid_answer_loses_nothing(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page()
    await open_widget(page, chat)
    await send(page, "Tell me a long story")
    await page.wait_for_function(
        "() => [...window.threadlineWidget.echo.root.querySelectorAll('.msg.assistant')]"
        ".some(e => e.textContent.length > 10)"
    )
    await page.evaluate("window.threadlineWidget.echo.drop()")
    await wait_idle(page)
    shown = (await assistant_texts(page))[-1]
    stored = (await chat.http.get(*await history_request(page, chat))).json()
    assert shown == stored[-1]["content"]


async def history_request(page: Page, chat: ChatServer) -> tuple[str]:
    saved = await page.evaluate("JSON.parse(localStorage.getItem(Object.keys(localStorage)[0]))")
    return (f"/v1/sessions/{saved['sessionId']}/messages?token={saved['token']}",)


async def test_two_tabs_on_one_session_both_see_the_answer(
    browser: Browser, chat: ChatServer
) -> None:
    context = await browser.new_context()
    first = await context.new_page()
    await open_widget(first, chat)
    await send(first, "Hello from tab one")
    await first.wait_for_selector("form button.stop")
    second = await context.new_page()  # shares localStorage: the same session
    await second.goto(f"{chat.url}/?agent=echo")
    await wait_idle(first)
    await wait_idle(second)
    await second.wait_for_function(
        "() => window.threadlineWidget.echo.root.querySelectorAll('.msg.assistant').length > 0"
    )
    assert (await assistant_texts(first))[-1] == (await assistant_texts(second))[-1]


async def test_html_in_a_message_stays_text(browser: Browser, chat: ChatServer) -> None:
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await open_widget(page, chat)
    await send(page, XSS)
    await wait_idle(page)
    user = await page.eval_on_selector_all(".msg.user", "els => els.map(e => e.textContent)")
    assert user == [XSS]
    assert await page.query_selector(".msg img") is None
    await page.reload()
    await page.wait_for_selector(".msg.user")
    assert await page.query_selector(".msg img") is None
    assert dialogs == []


@pytest.fixture
def other_origin(tmp_path: Path, chat: ChatServer) -> AsyncIterator[str]:
    """A page on another origin (not in the allowed list) that embeds the widget."""
    (tmp_path / "index.html").write_text(
        f'<!doctype html><html><body><p>Shop</p><script src="{chat.url}/widget.js" '
        f'data-agent="echo"></script></body></html>'
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/index.html"
    server.shutdown()


async def test_a_page_from_a_disallowed_origin_is_refused(
    browser: Browser, chat: ChatServer, other_origin: str
) -> None:
    page = await browser.new_page()
    await page.goto(other_origin)
    await page.click(".bubble")
    await send(page, "Hello from elsewhere")
    await page.wait_for_function(
        "() => window.threadlineWidget.echo.root.querySelector('.status').textContent.length > 0"
    )
    status = await page.text_content(".status")
    assert status is not None and "could not" in status.lower()
    listed = await chat.http.get("/v1/sessions", headers={"authorization": "Bearer admin-key"})
    assert listed.json() == []


async def test_the_cost_line_shows_the_money_left_with_its_digits(
    browser: Browser, chat: ChatServer
) -> None:
    """A $0.002 session budget reads as such (not "$0.00"), and what is left is limit minus
    spent minus reserved, as the server sent it; the answer's footer names model and cost."""
    page = await browser.new_page()
    await page.goto(f"{chat.url}/?agent=thrifty")
    await page.click(".bubble")
    await send(page, "Hello")
    await page.wait_for_selector("form button.stop")
    await wait_idle(page)
    meta = await page.locator(".answer .foot .meta").last.inner_text()
    assert meta.startswith("demo:threadline-demo · $"), meta
    line = await page.locator(".status").inner_text()
    assert line.endswith(" of $0.002 left"), line


async def test_on_a_phone_the_open_chat_fills_the_screen(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page(viewport={"width": 375, "height": 667})
    await open_widget(page, chat)
    box = await page.locator(".panel").bounding_box()
    assert box is not None
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 375, 667)
    await send(page, "Hello")
    await wait_idle(page)
    send_box = await page.locator("form button.send").bounding_box()
    assert send_box is not None and send_box["x"] + send_box["width"] <= 375
    await page.keyboard.press("Escape")  # focus is in the widget: Escape closes it
    await page.locator(".bubble").wait_for(state="visible")


MARKDOWN = """Here is **bold**, *em* and `a<b`.

```python
print("<script>alert(1)</script>")
```

| part | price |
|---|--:|
| TL-4471 | **14.00** |

- one
- [safe](https://example.com) and [bad](javascript:alert(1)) and [data](data:text/html,x)

<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>

````
```
nested fence
```
````
"""


async def test_answers_render_markdown_safely(browser: Browser, chat: ChatServer) -> None:
    """GitHub-flavoured Markdown (marked's lexer) built as elements: code in <pre> with a copy
    button, tables, lists, safe links; raw HTML and `javascript:` links stay text."""
    page = await browser.new_page()
    await open_widget(page, chat)
    shown = await page.evaluate(
        """(text) => {
          const el = window.threadlineWidget.echo.render(text);
          document.body.appendChild(el);  // live in the page: an injected handler would run
          const q = (s) => [...el.querySelectorAll(s)];
          return {
            strong: q('strong').map(e => e.textContent),
            inline: q('p code').map(e => e.textContent),
            pre: q('pre code').map(e => [e.textContent, e.dataset.lang || null]),
            copy: q('.code button.copy').length,
            th: q('th').map(e => e.textContent),
            td: q('td').map(e => [e.textContent, e.style.textAlign]),
            links: q('a').map(e => [e.textContent, e.getAttribute('href'), e.rel, e.target]),
            li: q('li').length,
            elements: q('img,script,iframe').length,
            text: el.textContent,
          };
        }""",
        MARKDOWN,
    )
    await page.wait_for_timeout(200)
    assert await page.evaluate("window.__xss") is None
    assert shown["strong"] == ["bold", "14.00"] and shown["inline"] == ["a<b"]
    assert shown["pre"] == [
        ['print("<script>alert(1)</script>")', "python"],
        ["```\nnested fence\n```", None],
    ]
    assert shown["copy"] == 2
    assert shown["th"] == ["part", "price"] and shown["td"] == [["TL-4471", ""], ["14.00", "right"]]
    assert shown["links"] == [
        ["safe", "https://example.com", "noopener noreferrer nofollow", "_blank"]
    ]
    assert shown["li"] == 2 and shown["elements"] == 0
    assert "bad" in shown["text"] and "data" in shown["text"]
    assert '<img src=x onerror="window.__xss=1">' in shown["text"]  # shown as written


async def test_a_huge_table_scrolls_inside_the_answer(browser: Browser, chat: ChatServer) -> None:
    page = await browser.new_page()
    await open_widget(page, chat)
    rows = "\n".join(f"| {i} | {'x' * 80} | {i * 2} |" for i in range(300))
    width = await page.evaluate(
        """(text) => {
          const el = window.threadlineWidget.echo.render(text);
          el.className = 'msg assistant';
          window.threadlineWidget.echo.root.querySelector('.log').appendChild(el);
          return [el.getBoundingClientRect().width, el.querySelectorAll('tr').length,
                  el.querySelector('.table').scrollWidth > el.querySelector('.table').clientWidth];
        }""",
        "| n | text | twice |\n|---|---|---|\n" + rows,
    )
    assert width[0] <= 360 and width[1] == 301 and width[2]


async def test_a_tool_step_and_an_approval_card(browser: Browser, chat: ChatServer) -> None:
    """Tools show as collapsed steps above the answer; one that needs approval asks with a
    card of its arguments (not JSON), and the answer goes on once approved."""
    page = await browser.new_page()
    await page.goto(f"{chat.url}/?agent=support")
    await page.click(".bubble")
    await send(page, "Can you place an order for part TL-4472?")
    card = page.locator(".approval")
    await card.wait_for(timeout=20_000)
    assert "wants to run place_order" in await card.inner_text()
    terms = await card.locator("dt").all_inner_texts()
    values = await card.locator("dd").all_inner_texts()
    assert dict(zip(terms, values, strict=True))["code"] == "TL-4472"
    await card.locator("button.approve").click()
    await wait_idle(page)
    assert await page.locator(".approval").count() == 0
    step = page.locator("details.step", has_text="place_order")
    assert await step.locator("summary").inner_text() == "Used place_order"
    assert not await step.evaluate("e => e.open")  # collapsed until asked
    await step.locator("summary").click()
    assert "ORD-" in await step.inner_text()
    assert "ORD-" in (await assistant_texts(page))[-1]
