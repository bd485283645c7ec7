"""Record and replay: a conversation recorded against a provider (here the local server that
speaks OpenAI's wire protocol, through the official SDK) replays with no provider, no key and
no network, and the ledger gets the same rows: model, tokens and cost."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from threadline.testing import Cassette
from threadline.testing.plugin import cassette_path

from ..llm.servers import openai as openai_api
from ..llm.servers.base import ProviderServer, Script, ScriptedCall, start_server
from .bots import shop

agent = dataclasses.replace(shop, model="openai:gpt-4o-mini")
SAME = [
    "provider",
    "requested_model",
    "model",
    "status",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "cost_usd",
    "priced",
    "estimated",
]


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderServer]:
    """The fake provider, scripted: a tool call, then the answer."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    script = Script()
    server = start_server(openai_api.create_app(script), script)
    call = ScriptedCall("call_1", "order_status", {"order_id": "A-1"})
    script.reply(text="", tool_calls=[call], input_tokens=1210, output_tokens=18)
    script.reply(text="Order A-1 shipped yesterday.", input_tokens=1264, output_tokens=9)
    yield server
    server.stop()


def options(server: ProviderServer) -> dict[str, dict[str, Any]]:
    return {"openai": {"base_url": server.url + "/v1", "api_key": "test-key"}}


def ledger(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(row[k] for k in SAME) for row in rows]


async def test_a_replay_gives_the_recorded_answer_and_ledger(
    threadline_server, openai_server: ProviderServer, tmp_path: Path
) -> None:
    path = tmp_path / "cassette.json"
    async with threadline_server(
        [agent], cassette=Cassette(path, "record"), model_options=options(openai_server)
    ) as server:
        async with server.client("shop") as chat:
            recorded = await chat.send("Where is my order A-1?")
        recorded_rows = await server.ledger_rows(chat.session_id)
    calls = json.loads(path.read_text())["interactions"]
    assert [c["model"] for c in calls] == ["openai:gpt-4o-mini"] * 2
    assert calls[1]["request"]["messages"][-1]["role"] == "tool"
    openai_server.stop()  # nothing to reach, no key: the replay needs neither

    async with threadline_server([agent], cassette=Cassette(path)) as server:
        async with server.client("shop") as chat:
            replayed = await chat.send("Where is my order A-1?")
        replayed_rows = await server.ledger_rows(chat.session_id)
    assert recorded.text == replayed.text == "Order A-1 shipped yesterday."
    assert recorded.cost == replayed.cost and recorded.cost and recorded.cost > 0
    assert [c.result for c in replayed.tool_calls] == [c.result for c in recorded.tool_calls]
    assert ledger(replayed_rows) == ledger(recorded_rows)
    assert [r["input_tokens"] for r in replayed_rows] == [1210, 1264]


async def test_a_call_the_cassette_lacks_is_a_miss(
    threadline_server, openai_server: ProviderServer, tmp_path: Path
) -> None:
    path = tmp_path / "cassette.json"
    cassette = Cassette(path, "record")
    async with (
        threadline_server(
            [agent], cassette=cassette, model_options=options(openai_server)
        ) as server,
        server.client("shop") as chat,
    ):
        await chat.send("Where is my order A-1?")
    replay = Cassette(path)
    async with (
        threadline_server([agent], cassette=replay) as server,
        server.client("shop") as chat,
    ):
        answer = await chat.send("Something else")
    assert answer.error is not None and answer.error["retryable"] is False
    assert "has no (more) calls of openai:gpt-4o-mini" in replay.misses[0]


def test_replaying_without_a_cassette_says_how_to_record(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--threadline-record"):
        Cassette(tmp_path / "none.json")


async def test_the_fixture_replays_the_committed_cassette(
    threadline_server, threadline_cassette: Cassette, request: pytest.FixtureRequest
) -> None:
    """Recorded once with `pytest --threadline-record` (against the local provider); it
    replays from tests/testing/cassettes/ with no provider at all."""
    assert threadline_cassette.path == cassette_path(request.node)
    extra: dict[str, Any] = {}
    if threadline_cassette.recording:
        fake = request.getfixturevalue("openai_server")
        extra = {"model_options": options(fake)}
    async with (
        threadline_server([agent], cassette=threadline_cassette, **extra) as server,
        server.client("shop") as chat,
    ):
        answer = await chat.send("Where is my order A-1?")
    assert answer.text == "Order A-1 shipped yesterday."
    assert [c.name for c in answer.tool_calls] == ["order_status"]
    assert answer.cost is not None and answer.cost > 0
