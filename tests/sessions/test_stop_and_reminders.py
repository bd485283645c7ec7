"""Stopping an answer, handing a session to a human operator, exporting a session."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from threadline.ledger import Ledger

from ..chat_server import ChatServer, frames_until, thrifty

ADMIN = {"authorization": "Bearer admin-key"}


async def test_stop_ends_the_answer_and_the_session_goes_on(chat: ChatServer) -> None:
    session = await chat.new_session()
    sid = session["session_id"]
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Go"}))
        deltas = 0
        while deltas < 2:
            frame = json.loads(await ws.recv())
            deltas += frame["type"] == "message.delta"
        await ws.send(json.dumps({"type": "cancel"}))
        frames = await frames_until(ws, "message.cancelled")
        assert not any(f["type"] == "message.end" for f in frames)
        await ws.send(json.dumps({"type": "message.send", "client_id": "m2", "text": "Again"}))
        frames = await frames_until(ws, "message.end")
    assert frames[-1]["text"].startswith("[demo model]")
    ledger = Ledger(chat.sessions.engine.pool)
    statuses = []
    for _ in range(50):  # the stopped call's row is written as its step ends
        statuses = [r["status"] for r in await ledger.calls(session_id=sid)]
        if len(statuses) == 2:
            break
        await asyncio.sleep(0.1)
    assert sorted(statuses) == ["cancelled", "ok"]


async def test_an_operator_answers_during_a_handoff(chat: ChatServer) -> None:
    session = await chat.new_session()
    sid = session["session_id"]
    r = await chat.http.post(f"/v1/sessions/{sid}/operator", json={"state": "handoff"})
    assert r.status_code == 401  # the admin key is required
    r = await chat.http.post(
        f"/v1/sessions/{sid}/operator", json={"state": "nowhere"}, headers=ADMIN
    )
    assert r.status_code == 422 and "nowhere" in r.json()["detail"]
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        r = await chat.http.post(
            f"/v1/sessions/{sid}/operator",
            json={"text": "Hi, this is Ana from support.", "operator": "ana"},
            headers=ADMIN,
        )
        assert r.status_code == 200
        frame = (await frames_until(ws, "operator.message"))[-1]
    assert (frame["text"], frame["operator"]) == ("Hi, this is Ana from support.", "ana")
    exported = (await chat.http.get(f"/v1/sessions/{sid}/export", headers=ADMIN)).json()
    assert [(m["role"], m["content"]) for m in exported["messages"]] == [
        ("operator", "Hi, this is Ana from support.")
    ]
    md = await chat.http.get(f"/v1/sessions/{sid}/export?format=md&token={session['token']}")
    assert md.headers["content-type"].startswith("text/markdown")
    assert "**operator**" in md.text and "Ana from support" in md.text
    listed = (await chat.http.get("/v1/sessions", headers=ADMIN)).json()
    assert sid in [s["session_id"] for s in listed]


async def test_a_reminder_comes_after_silence_and_only_then(chat: ChatServer) -> None:
    session = await chat.new_session("nudge")
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        for i in range(2):  # the second message comes before the first reminder is due
            await ws.send(json.dumps({"type": "message.send", "client_id": f"m{i}", "text": "Hi"}))
            await frames_until(ws, "message.end")
        frames = await frames_until(ws, "message.reminder", timeout=10)
        assert frames[-1]["text"] == "Still there?"
        await asyncio.sleep(1.5)  # the first turn's reminder found the user had spoken
    history = (
        await chat.http.get(f"/v1/sessions/{session['session_id']}/export", headers=ADMIN)
    ).json()["messages"]
    assert [m["content"] for m in history if m["meta"].get("reminder")] == ["Still there?"]


async def test_no_reminder_once_a_human_has_the_session(chat: ChatServer) -> None:
    session = await chat.new_session("nudge")
    sid = session["session_id"]
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        await frames_until(ws, "message.end")
    r = await chat.http.post(
        f"/v1/sessions/{sid}/operator", json={"state": "handoff"}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    await asyncio.sleep(1.8)  # the reminder was due after 1 s
    history = (await chat.http.get(f"/v1/sessions/{sid}/export", headers=ADMIN)).json()
    assert not [m for m in history["messages"] if m["meta"].get("reminder")]
    runs = await chat.sessions.engine.list_runs(workflow="threadline.reminder")
    assert [r.status for r in runs] == ["succeeded"]  # it ran, and found it had nothing to say


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
