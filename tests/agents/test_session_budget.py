"""An agent's session budget (`Budget(usd=...)`) is never overrun: every answer is priced
against it, and once it is spent the agent says so."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from threadline.ledger import Ledger

from ..chat_server import ChatServer, frames_until, thrifty


async def test_a_session_budget_is_never_overrun_and_says_so(
    chat: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.json"  # the demo model at $1 per million tokens
    prices.write_text(
        json.dumps({"demo:threadline-demo": {"input_per_mtok": 1, "output_per_mtok": 1}})
    )
    monkeypatch.setenv("THREADLINE_PRICES", str(prices))
    session = await chat.new_session("thrifty")
    sid = session["session_id"]
    ends: list[dict[str, Any]] = []
    exceeded: list[dict[str, Any]] = []
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        for i in range(12):
            await ws.send(
                json.dumps({"type": "message.send", "client_id": f"b{i}", "text": "Tell me more"})
            )
            frames = await frames_until(ws, "message.end")
            ends.append(frames[-1])
            exceeded += [f for f in frames if f["type"] == "budget.exceeded"]
            if exceeded:
                break
    assert exceeded and exceeded[0]["scope"] == f"session:{sid}"
    assert len(ends) >= 2 and ends[0]["cost"] not in (None, "0")  # answered, priced, first
    assert Decimal(ends[0]["budget"]["limit"]) == Decimal("0.002")
    assert Decimal(ends[0]["budget"]["left"]) < Decimal("0.002")
    assert ends[-1]["text"] == thrifty.budget_message
    calls = await Ledger(chat.sessions.engine.pool).calls(session_id=sid)
    spent = sum(c["cost_usd"] for c in calls)
    assert 0 < spent <= Decimal("0.002")
