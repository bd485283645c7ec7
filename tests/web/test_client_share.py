"""An agent's per-client share of its daily budget (`Budget(per_client_daily=...)`): what
the anonymous sessions started from one address spend is counted together, per UTC day,
and capped; sessions a backend created for its users (with an API key) are not counted
there. The address is kept as a keyed hash, never as such."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from threadline.agents import Agent
from threadline.agents.agent import BUDGET_MESSAGE
from threadline.ledger import Budget, Ledger
from threadline.web.keys import ApiKeys

from ..agents.test_budget_exhaustion import DEMO, _replying, priced_server
from ..chat_server import ChatServer, frames_until

shared = _replying(Agent(name="shared", model=DEMO, budget=Budget(daily=5, per_client_daily=1)))
stingy = _replying(Agent(name="stingy", model=DEMO, budget=Budget(daily=5, per_client_daily=0.006)))


@pytest.fixture
async def chat(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ChatServer]:
    async with priced_server(database_url, tmp_path, monkeypatch, [shared, stingy]) as server:
        yield server


async def _ask(chat: ChatServer, session: dict[str, Any]) -> list[dict[str, Any]]:
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        return await frames_until(ws, "message.end")


async def _backend_session(chat: ChatServer, agent: str) -> dict[str, Any]:
    _, key = await ApiKeys(chat.sessions.engine.pool).create("acme")
    r = await chat.http.post(
        "/v1/sessions",
        json={"agent": agent, "user": "u-1"},
        headers={"authorization": f"Bearer {key}"},
    )
    body: dict[str, Any] = r.json()
    return body


async def test_one_clients_sessions_spend_one_share(chat: ChatServer) -> None:
    first, second = await chat.new_session("shared"), await chat.new_session("shared")
    client = (await chat.sessions.get(first["session_id"])).client
    assert client and client == (await chat.sessions.get(second["session_id"])).client
    assert "127.0.0.1" not in client  # a keyed hash of the address
    for session in (first, second, await _backend_session(chat, "shared")):
        assert (await _ask(chat, session))[-1]["text"] != BUDGET_MESSAGE

    ledger = Ledger(chat.sessions.engine.pool)
    anonymous = [c for s in (first, second) for c in await ledger.calls(session_id=s["session_id"])]
    (share,) = [s for s in await ledger.budgets.get(f"client:{client}") if s.period == "daily"]
    assert share.limit_usd == 1 and share.calls == 2  # the backend's session is not in it
    assert share.spent_usd == sum(c["cost_usd"] for c in anonymous) > 0


async def test_a_spent_share_refuses_that_client_not_the_agent(chat: ChatServer) -> None:
    frames = await _ask(chat, await chat.new_session("stingy"))
    (exceeded,) = [f for f in frames if f["type"] == "budget.exceeded"]
    assert exceeded["scope"].startswith("client:") and exceeded["bucket"] != "total"
    assert frames[-1]["text"] == BUDGET_MESSAGE
    answered = await _ask(chat, await _backend_session(chat, "stingy"))
    assert answered[-1]["text"] != BUDGET_MESSAGE  # a signed-in user is not that client
