"""The numbers a client sees are gapless: every logged event reaches it once, either as its
frame or, when it went out live before it was logged, inside a `logged {first, seq}` frame —
on one connection, and across a reconnect in the middle of an answer."""

from __future__ import annotations

import json
from typing import Any

from ..chat_server import ChatServer, frames_until


def numbers(frames: list[dict[str, Any]]) -> list[int]:
    """The seqs the frames account for, in the order they came."""
    seen: list[int] = []
    for f in frames:
        if f["type"] == "logged":
            assert f["first"] <= f["seq"]
            seen += range(f["first"], f["seq"] + 1)
        elif "seq" in f:
            seen.append(f["seq"])
    return seen


async def test_a_live_answer_leaves_no_gap_in_the_numbers(chat: ChatServer) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        frames = await frames_until(ws, "message.end")
        await ws.send(json.dumps({"type": "message.send", "client_id": "m2", "text": "More"}))
        frames += await frames_until(ws, "message.end")
    live = [f for f in frames if f["type"] == "message.delta" and "seq" not in f]
    assert live, "the answer streamed live"
    assert any(f["type"] == "logged" for f in frames)
    seen = numbers(frames)
    assert seen == list(range(1, len(seen) + 1)), seen
    last = await chat.http.get(f"/v1/sessions/{session['session_id']}?token={session['token']}")
    assert seen[-1] == last.json()["last_seq"]


async def test_a_reconnect_mid_answer_resumes_without_a_gap(chat: ChatServer) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        first = await frames_until(ws, "message.delta")
        while sum(f["type"] == "message.delta" for f in first) < 3:
            first += await frames_until(ws, "message.delta")
    before = numbers(first)
    shown = sum(len(f["text"]) for f in first if f["type"] == "message.delta")
    start = next(f for f in first if f["type"] == "message.start")
    async with chat.connect(session) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "resume",
                    "after_seq": before[-1] if before else 0,
                    "turn_id": start["turn_id"],
                    "started": start["ts"],
                    "shown": shown,
                }
            )
        )
        rest = await frames_until(ws, "message.end")
    after = numbers(rest)
    seen = before + after
    assert seen == list(range(1, len(seen) + 1)), (before, after)
    text = "".join(f["text"] for f in first + rest if f["type"] == "message.delta")
    assert text == rest[-1]["text"]  # nothing missed, nothing twice
