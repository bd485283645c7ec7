"""`threadline_page`: the widget on a host page of another origin, in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from threadline.llm import RateLimited
from threadline.testing import Fail, Reply, ScriptedModel, ToolUse

from .bots import AGENTS

pytestmark = pytest.mark.browser


async def test_an_answer_on_a_page_of_another_origin(threadline_server, threadline_page) -> None:
    model = ScriptedModel(
        [Reply("Hello from **the bot**.", input_tokens=1000, output_tokens=100)], price=(3, 15)
    )
    async with (
        threadline_server(AGENTS, model=model) as server,
        threadline_page(server, "shop", title="Orders") as widget,
    ):
        assert not widget.page.url.startswith(server.url)  # a page of another origin
        await widget.send("Hi")
        await widget.wait_for_answer()
        assert await widget.answer_text() == "Hello from the bot."
        assert await widget.model() == "scripted:scripted"
        assert await widget.cost() == "$0.0045"
        assert widget.console == []


async def test_approve_and_decline_a_tool_call(threadline_server, threadline_page) -> None:
    model = ScriptedModel(
        [ToolUse("refund", {"order_id": "A-2"}), "Refunded.", ToolUse("refund"), "Kept it."]
    )
    async with (
        threadline_server(AGENTS, model=model) as server,
        threadline_page(server, "shop") as widget,
    ):
        await widget.send("Refund A-2")
        await widget.wait_for_answer()
        await widget.approve()
        await widget.wait_for_answer()
        assert await widget.answer_text() == "Refunded."
        await widget.send("Refund it again")
        await widget.wait_for_answer()
        await widget.decline()
        await widget.wait_for_answer()
        assert await widget.answer_text() == "Kept it."


async def test_a_failed_turn_and_try_again(threadline_server, threadline_page) -> None:
    model = ScriptedModel([Fail(RateLimited("busy", retry_after=0)), "Back again."])
    async with (
        threadline_server(AGENTS, model=model) as server,
        threadline_page(server, "shop") as widget,
    ):
        await widget.send("Hi")
        await widget.wait_for_answer()
        assert "try again" in (await widget.error_text() or "").lower()
        await widget.try_again()
        await widget.wait_for_answer()
        assert await widget.answer_text() == "Back again."


async def test_a_sites_own_page_with_its_files(
    threadline_server, threadline_page, tmp_path: Path
) -> None:
    (tmp_path / "style.css").write_text("h1 { color: rgb(1, 2, 3); }")
    (tmp_path / "index.html").write_text(
        '<!doctype html><html><head><link rel="stylesheet" href="style.css"></head><body>'
        "<h1>Shop</h1>"
        '<script src="https://bots.example.com/widget.js" data-agent="shop"></script>'
        "</body></html>"
    )
    async with (
        threadline_server(AGENTS, model=ScriptedModel(["Hi there."])) as server,
        threadline_page(server, page=tmp_path / "index.html") as widget,
    ):
        color = await widget.page.eval_on_selector("h1", "h => getComputedStyle(h).color")
        assert color == "rgb(1, 2, 3)"
        await widget.send("Hello")
        await widget.wait_for_answer()
        assert await widget.answer_text() == "Hi there."
