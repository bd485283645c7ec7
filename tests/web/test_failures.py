"""What the person chatting sees of a failed turn (tests/sessions/test_failures.py): the
widget's words and its "Try again", a stopped answer, a budget used up, and the AI SDK
stream's error chunk."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from threadline.ledger import Ledger
from threadline.testing.browser import CHROMIUM_ARGS

from ..chat_server import ChatServer
from ..sessions.test_failures import failing_chat, failures_left

__all__ = ["failing_chat"]


@pytest.mark.browser
async def test_the_widget_shows_the_error_and_its_retry_answers(failing_chat: ChatServer) -> None:
    failures_left["lookup"] = 1
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{failing_chat.url}/?agent=flaky_tool")
        await page.click(".bubble")
        await page.fill("textarea", "Can you look up part TL-4471?")
        await page.press("textarea", "Enter")
        error = page.locator(".msg.error[role=alert]")
        await error.wait_for(timeout=10_000)
        assert "tool the assistant used failed" in await error.inner_text()
        await page.wait_for_selector("form button.send")  # not left on "Stop"
        await error.locator("button", has_text="Try again").click()
        answer = page.locator(".msg.assistant", has_text="Sediment pre-filter")
        await answer.wait_for(timeout=10_000)
        await page.wait_for_selector("form button.send")
        assert await error.locator("button").count() == 0  # one retry per failure
        users = await page.eval_on_selector_all(".msg.user", "els => els.map(e => e.textContent)")
        assert users == ["Can you look up part TL-4471?"] * 2
        await browser.close()


async def test_the_ai_sdk_stream_ends_a_failed_turn_with_an_error_chunk(
    failing_chat: ChatServer,
) -> None:
    session = await failing_chat.new_session("locked_out")
    url = f"/v1/sessions/{session['session_id']}/ai-sdk?token={session['token']}"
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}
    chunks: list[Any] = []
    async with (
        asyncio.timeout(20),
        failing_chat.http.stream("POST", url, json={"messages": [message]}) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["type"] == "error" and "not set up correctly" in chunks[-2]["errorText"]


# What the person chatting sees, in Chromium, for each kind of failure: words (not the
# error's internals) soon after it happens, the Send button back, and "Try again" only where a
# retry can help.
WIDGET_CASES = [  # one server: "overloaded" last, as its failure cools the demo model down
    ("locked_out", "Hello?", "not set up correctly", False),
    ("buggy", "Hello?", "Something went wrong", False),
    ("broken_tool", "Can you look up part TL-4471?", "tool the assistant used failed", True),
    ("slow_tool", "Can you look up part TL-4471?", "took too long", True),
    ("stubborn_tool", "Can you look up part TL-4471?", "tool the assistant used failed", True),
    ("failing_step", "Where is my order?", "Something went wrong while answering", True),
    ("overloaded", "Hello?", "not answering right now", True),
]


@pytest.mark.browser
async def test_the_widget_tells_each_failure_and_offers_a_retry_where_it_helps(
    failing_chat: ChatServer,
) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for agent, text, words, retryable in WIDGET_CASES:
            page = await browser.new_page()
            await page.goto(f"{failing_chat.url}/?agent={agent}")
            await page.click(".bubble")
            await page.fill("textarea", text)
            await page.press("textarea", "Enter")
            error = page.locator(".msg.error[role=alert]")
            # The failures here happen at once (a tool's 0.3 s timeout aside), so the words
            # must be on screen within 2 s of the message going out.
            await error.wait_for(timeout=2_500)
            assert words in await error.inner_text(), agent
            await page.wait_for_selector("form button.send", timeout=2_000)
            assert await error.locator("button", has_text="Try again").count() == int(retryable)
            await page.close()
        await browser.close()


@pytest.mark.browser
async def test_the_widget_shows_a_stopped_answer_as_stopped(chat: ChatServer) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{chat.url}/?agent=echo")
        await page.click(".bubble")
        await page.fill("textarea", "Tell me a long story " * 20)
        await page.press("textarea", "Enter")
        await page.click("form button.stop")
        await page.wait_for_selector("form button.send", timeout=2_000)
        status = page.locator(".status", has_text="Stopped")
        await status.wait_for(timeout=2_000)
        session_id = await page.evaluate(
            "() => JSON.parse(Object.entries(localStorage).find(([k]) => "
            "k.startsWith('threadline:'))[1]).sessionId"
        )
        events = await chat.sessions.read(session_id, 0)
        assert "message.cancelled" in [e.type for e in events]
        await browser.close()


@pytest.mark.browser
async def test_the_widget_says_when_the_budget_is_used_up(
    chat: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused budget is no failure: the agent's closing message is the answer, the status
    line says why, and the Send button comes back (the session is closed: the next message
    gets the same words, with no model call)."""
    prices = tmp_path / "prices.json"  # so dear that not even the first call fits $0.002
    prices.write_text(
        json.dumps({"demo:threadline-demo": {"input_per_mtok": 900, "output_per_mtok": 900}})
    )
    monkeypatch.setenv("THREADLINE_PRICES", str(prices))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{chat.url}/?agent=thrifty")
        await page.click(".bubble")
        for n in (1, 2):
            await page.fill("textarea", "Tell me more")
            await page.press("textarea", "Enter")
            answer = page.locator(".msg.assistant").nth(n - 1)
            await answer.wait_for(timeout=5_000)
            await page.wait_for_selector("form button.send", timeout=5_000)
            assert "used up its budget" in await answer.inner_text()
        status = page.locator(".status", has_text="reached its budget")
        await status.wait_for(timeout=2_000)
        await browser.close()
    rows = await Ledger(chat.sessions.engine.pool).calls(agent="thrifty")
    assert rows == []  # nothing was bought
