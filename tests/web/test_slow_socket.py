"""A client whose socket falls behind gets the answer's pieces that waited for it joined, in
fewer frames, and still every piece once, in order, with gapless numbers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from threadline.web.ws.forward import Forwarder

from ..chat_server import ChatServer, Screen, frames_until


def server_protocol(chat: ChatServer, session_id: str) -> Any:
    """The server's WebSocket protocol of the session's one connection."""
    (sub,) = chat.hub._waiters[session_id]
    assert sub.direct is not None
    forwarder = sub.direct.__self__
    assert isinstance(forwarder, Forwarder)
    assert forwarder.writer._now is not None, "served with the protocol that writes at once"
    return forwarder.writer._now.__self__  # type: ignore[attr-defined]


async def test_pieces_that_wait_for_a_slow_socket_leave_joined(chat: ChatServer) -> None:
    session = await chat.new_session()
    sid = session["session_id"]
    text = "Tell me everything about the water purifier, at length. " * 4
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": text}))
        frames = await frames_until(ws, "message.delta")
        protocol = server_protocol(chat, sid)
        protocol.pause_writing()  # the socket's buffer is full: writes wait
        await asyncio.sleep(0.5)  # about 50 pieces at the test model's 100 a second
        protocol.resume_writing()
        frames += await frames_until(ws, "message.end")
    screen = Screen()
    for frame in frames:  # every piece once, in order; every number once
        screen.show(frame)
    logged = await chat.sessions.read(sid, 0)
    pieces = [e for e in logged if e.type == "message.delta"]
    (turn,) = {e.data["turn_id"] for e in pieces}
    assert screen.answers[turn] == "".join(e.data["text"] for e in pieces)
    assert screen.last_seq == logged[-1].seq
    live = [f for f in frames if f["type"] == "message.delta" and "seq" not in f]
    # The test model's pieces are a word and a space each: a live frame with several words
    # is pieces joined at the socket.
    assert max(f["text"].count(" ") for f in live) >= 5, live


async def test_pieces_a_model_gives_in_one_pass_leave_in_one_frame(threadline_server) -> None:
    from threadline.testing import ScriptedModel

    from ..testing.bots import AGENTS

    words = "one two three four five six seven eight nine ten"
    model = ScriptedModel([words])  # no pace: every word is made in the same pass
    async with threadline_server(AGENTS, model=model) as server, server.client("shop") as chat:
        answer = await chat.send("Count")
    assert answer.text == words
    live = [f for f in answer.frames("message.delta") if "seq" not in f]
    assert len(live) == 1 and live[0]["text"] == words and live[0]["offset"] == 0, live
