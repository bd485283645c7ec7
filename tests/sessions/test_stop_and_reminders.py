"""Stopping an answer (the session goes on), and reminders: one after silence, and only then;
none once a human operator has the session."""

from __future__ import annotations

import asyncio
import json

from threadline.ledger import Ledger

from ..chat_server import ADMIN, ChatServer, frames_until


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
