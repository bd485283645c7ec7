"""The full-page chat (/chat/{agent}) in Chromium: this browser's conversations beside the
chat, new, switch, rename and delete, and the layout on a phone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from ..chat_server import ChatServer
from .test_widget import CHROMIUM_ARGS, send
from .test_widget_element import answered

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def conversations(page: Page) -> list[dict[str, Any]]:
    """This browser's list, as the page keeps it."""
    found: list[dict[str, Any]] = await page.evaluate(
        "JSON.parse(localStorage.getItem(Object.keys(localStorage)"
        ".find(k => k.endsWith(':conversations'))) || '[]')"
    )
    return found


async def server_title(chat: ChatServer, conversation: dict[str, Any]) -> Any:
    r = await chat.http.get(f"/v1/sessions/{conversation['id']}?token={conversation['token']}")
    return r.json()["title"] if r.status_code == 200 else r.status_code


async def eventually(check: Any, expected: Any) -> None:
    """Until `await check()` gives `expected` (the page writes to the server in the
    background), for up to 5 s."""
    for _ in range(50):
        if (got := await check()) == expected:
            return
        await asyncio.sleep(0.1)
    assert got == expected


async def titles(page: Page) -> list[str]:
    return await page.locator(".conv .t").all_inner_texts()


async def test_the_page_is_there_for_each_agent_and_only_for_them(chat: ChatServer) -> None:
    page = await chat.http.get("/chat/echo")
    assert page.status_code == 200
    assert '<threadline-chat agent="echo"' in page.text and 'position="inline"' in page.text
    assert (await chat.http.get("/chat/nobody")).status_code == 404
    script = await chat.http.get("/chat-page.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


async def test_new_switch_rename_and_delete_conversations(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    await page.goto(f"{chat.url}/chat/echo")
    assert await page.locator(".empty").is_visible()
    await send(page, "Where is my order?")
    await answered(page)
    assert await titles(page) == ["Where is my order?"]  # the first message names it
    first = (await conversations(page))[0]
    await eventually(lambda: server_title(chat, first), "Where is my order?")

    await page.locator(".new-chat").click()
    assert await page.locator(".msg.user").count() == 0
    await send(page, "Second question")
    await answered(page)
    assert await titles(page) == ["Second question", "Where is my order?"]  # newest first
    assert await page.locator(".conv.current .t").inner_text() == "Second question"
    second = next(c for c in await conversations(page) if c["id"] != first["id"])

    await page.locator(".conv", has_text="Where is my order?").locator(".open").click()
    await page.wait_for_function(
        "() => [...window.threadlineWidget.echo.root.querySelectorAll('.msg.user')]"
        ".map(e => e.textContent).join() === 'Where is my order?'"
    )
    assert await page.locator(".conv.current .t").inner_text() == "Where is my order?"
    assert await page.locator(".conv.current .open").get_attribute("aria-current") == "true"
    assert await page.locator(".answer .foot").count() == 1

    await page.locator(".conv.current .rename").click()
    await page.fill(".conv form input", "Order TL-4472")
    await page.press(".conv form input", "Enter")
    assert await page.locator(".conv.current .t").inner_text() == "Order TL-4472"
    await eventually(lambda: server_title(chat, first), "Order TL-4472")

    doomed = page.locator(".conv", has_text="Second question")
    await doomed.locator(".delete").click()
    confirm = page.locator(".conv .confirm")
    assert "Delete “Second question”?" in await confirm.inner_text()
    await confirm.locator(".no").click()  # changed their mind
    assert await titles(page) == ["Second question", "Order TL-4472"]
    assert await server_title(chat, second) == "Second question"
    await doomed.locator(".delete").click()
    await page.locator(".conv .confirm .yes").click()
    await page.wait_for_function("() => document.querySelectorAll('.conv').length === 1")
    assert await titles(page) == ["Order TL-4472"]
    assert await server_title(chat, second) == 404

    await page.reload()  # the list and the conversation on screen stay
    await page.locator(".answer .foot").wait_for()
    assert await titles(page) == ["Order TL-4472"]
    assert await page.locator(".msg.user").all_inner_texts() == ["Where is my order?"]
    assert await page.locator(".conv.current .t").inner_text() == "Order TL-4472"


async def test_deleting_the_open_conversation_starts_a_new_one(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page()
    await page.goto(f"{chat.url}/chat/echo")
    await send(page, "Short-lived")
    await answered(page)
    await page.locator(".conv.current .delete").click()
    await page.locator(".conv .confirm .yes").click()
    await page.locator(".empty").wait_for()
    assert await page.locator(".msg").count() == 0
    assert await page.evaluate("document.querySelector('threadline-chat').sessionId") is None


async def test_on_a_phone_the_conversations_hide_behind_a_button(
    browser: Browser, chat: ChatServer
) -> None:
    page = await browser.new_page(viewport={"width": 375, "height": 812})
    await page.goto(f"{chat.url}/chat/echo")
    await send(page, "Hello from a phone")
    await answered(page)
    sidebar, toggle = page.locator(".sidebar"), page.locator(".toggle")
    assert not await sidebar.is_visible()
    box = await page.locator("threadline-chat").bounding_box()
    assert box is not None and (box["x"], box["width"], box["height"]) == (0, 375, 812)
    send_box = await page.locator("form button.send").bounding_box()
    assert send_box is not None and send_box["x"] + send_box["width"] <= 375
    assert await toggle.get_attribute("aria-expanded") == "false"
    await toggle.click()
    await sidebar.wait_for(state="visible")
    assert await toggle.get_attribute("aria-expanded") == "true"
    await page.wait_for_function(  # slid in
        "() => document.querySelector('.sidebar').getBoundingClientRect().x === 0"
    )
    side = await sidebar.bounding_box()
    assert side is not None and side["width"] <= 320
    await page.locator(".conv .open").click()  # picking one hides the list again
    await sidebar.wait_for(state="hidden")
    await page.locator(".new-chat").evaluate("b => b.click()")
    assert await page.locator(".msg.user").count() == 0


async def test_conversations_whose_tokens_expired_are_renewed_not_lost(
    browser: Browser, chat: ChatServer
) -> None:
    """Back after a weekend: every conversation's token expired; the list renews them (the
    server exchanges a token for a while after it expires) and each still opens."""
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    await page.goto(f"{chat.url}/chat/echo")
    for text in ("First visit", "Second visit"):
        await page.locator(".new-chat").click()
        await send(page, text)
        await answered(page)
    expired = {c["id"]: chat.auth.issue(c["id"], ttl=-3 * 86400) for c in await conversations(page)}
    await page.evaluate(
        """(expired) => {
            const key = Object.keys(localStorage).find(k => k.endsWith(':conversations'));
            const list = JSON.parse(localStorage.getItem(key));
            list.forEach(c => { c.token = expired[c.id]; });
            localStorage.setItem(key, JSON.stringify(list));
            const chat = Object.keys(localStorage).find(k => k.endsWith(':echo'));
            const saved = JSON.parse(localStorage.getItem(chat));
            saved.token = expired[saved.sessionId];
            localStorage.setItem(chat, JSON.stringify(saved));
        }""",
        expired,
    )
    await page.reload()
    await page.locator(".answer .foot").wait_for()
    for _ in range(50):
        renewed = await conversations(page)
        if all(c["token"] != expired[c["id"]] for c in renewed):
            break
        await asyncio.sleep(0.1)
    assert all(c["token"] != expired[c["id"]] for c in renewed)
    assert await page.locator(".conv.expired").count() == 0
    await page.locator(".conv", has_text="First visit").locator(".open").click()
    await page.wait_for_function(
        "() => [...window.threadlineWidget.echo.root.querySelectorAll('.msg.user')]"
        ".map(e => e.textContent).join() === 'First visit'"
    )
