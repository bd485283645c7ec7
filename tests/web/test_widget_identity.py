"""The widget and identity, in Chromium: a session the site's backend created for its
signed-in user (`session` and `token` attributes), and a conversation whose token expired
while the page was away, renewed rather than dropped."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import Browser

from threadline.web.keys import ApiKeys

from ..chat_server import ChatServer, frames_until
from .test_widget import send
from .test_widget_element import answered, browser, host_page  # noqa: F401 - a fixture

pytestmark = pytest.mark.browser


async def _chatted(chat: ChatServer, session: dict[str, str], text: str) -> str:
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "message.send", "client_id": "c1", "text": text}))
        return str((await frames_until(ws, "message.end"))[-1]["text"])


async def test_a_session_the_backend_created_for_its_user(
    browser: Browser,  # noqa: F811
    chat: ChatServer,
) -> None:
    _, key = await ApiKeys(chat.sessions.engine.pool).create("acme")
    r = await chat.http.post(
        "/v1/sessions",
        json={"agent": "echo", "user": "u-7"},
        headers={"authorization": f"Bearer {key}"},
    )
    session = r.json()
    earlier = await _chatted(chat, session, "from another device")
    page = await browser.new_page()
    await host_page(
        page,
        chat,
        f'<script src="{chat.url}/widget.js"></script><threadline-chat agent="echo" '
        f'position="inline" session="{session["session_id"]}" token="{session["token"]}">'
        "</threadline-chat>",
    )
    await page.locator(".msg.assistant", has_text=earlier).wait_for(timeout=10_000)
    assert not await page.locator("header .new").is_visible()  # the backend's is the one
    await send(page, "and from this one")
    await answered(page, 2)
    info = await chat.sessions.get(session["session_id"])
    assert (info.tenant, info.user_id) == ("acme", "u-7")
    stored = await page.evaluate("Object.keys(localStorage)")
    assert [k for k in stored if k.endswith(":echo:" + session["session_id"])]


async def test_a_conversation_whose_token_expired_is_kept(
    browser: Browser,  # noqa: F811
    chat: ChatServer,
) -> None:
    session = await chat.new_session()
    earlier = await _chatted(chat, session, "before the weekend")
    expired = chat.auth.issue(session["session_id"], ttl=-3 * 86400)
    page = await browser.new_page()
    await page.goto(f"{chat.url}/dashboard/login")  # the server's origin, for its storage
    saved = {"sessionId": session["session_id"], "token": expired, "lastSeq": 0, "open": True}
    await page.evaluate(
        "([k, v]) => localStorage.setItem(k, v)",
        [f"threadline:{chat.url}:echo", json.dumps(saved)],
    )
    await host_page(
        page,
        chat,
        f'<script src="{chat.url}/widget.js"></script>'
        '<threadline-chat agent="echo" position="inline"></threadline-chat>',
    )
    await page.locator(".msg.assistant", has_text=earlier).wait_for(timeout=10_000)
    await send(page, "after it")
    await answered(page, 2)
    renewed = json.loads(
        await page.evaluate("(k) => localStorage.getItem(k)", f"threadline:{chat.url}:echo")
    )
    assert renewed["sessionId"] == session["session_id"] and renewed["token"] != expired
