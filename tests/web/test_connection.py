"""How one WebSocket connection writes an answer's live pieces: taken in the step that made
them, written together once the loop's pass ends, and kept in order behind a write the
socket cannot take yet (the pieces after it wait; so does every other frame)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.websockets import WebSocketDisconnect

from threadline import Engine
from threadline.sessions import Sessions
from threadline.sessions.events import Committed, Live, Piece, frame_text
from threadline.web import Hub
from threadline.web.ws import Connection

from ..chat_server import echo


class Socket:
    """The server's side of a WebSocket, as `Connection` uses it: frames it writes are
    recorded; `hold()` makes writes wait, as a socket whose client stopped reading does."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.incoming: asyncio.Queue[str | None] = asyncio.Queue()
        self.open = asyncio.Event()
        self.open.set()

    def hold(self) -> None:
        self.open.clear()

    async def send_text(self, text: str) -> None:
        await self.open.wait()
        self.sent.append(json.loads(text))

    async def receive_text(self) -> str:
        text = await self.incoming.get()
        if text is None:
            raise WebSocketDisconnect(1000)
        return text


def piece(session_id: str, offset: int, text: str) -> Live:
    data = {"turn_id": "t1", "text": text, "offset": offset}
    frame = json.dumps({"type": "message.delta", **data})
    return Live(session_id, "message.delta", Piece("t1", offset, offset + len(text)), frame)


async def test_live_pieces_go_out_after_the_pass_in_order_behind_a_write_that_waits(
    database_url: str,
) -> None:
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        session = await sessions.create("echo")
        hub = Hub(engine.url)  # not started: pieces are handed to it directly here
        socket = Socket()
        conn = Connection(socket, sessions, hub, session.id)  # type: ignore[arg-type]
        running = asyncio.create_task(conn.run())
        try:
            await socket.incoming.put(json.dumps({"type": "resume", "after_seq": 0}))
            await asyncio.sleep(0.2)  # the forwarder has read the (empty) log and waits
            assert conn.cursor == 0 and not conn.sub.wake.is_set()
            assert [f["type"] for f in socket.sent] == ["session.state"]
            sent = len(socket.sent)

            start = json.dumps({"type": "message.start", "turn_id": "t1", "ts": 1.5})
            hub.deliver_live(Live(session.id, "message.start", Piece("t1", 0, 0, 1.5), start))
            hub.deliver_live(piece(session.id, 0, "Hello"))
            assert len(socket.sent) == sent  # taken, not written within the step
            await asyncio.sleep(0)
            assert [f.get("text") for f in socket.sent[sent:]] == [None, "Hello"]

            # The client stops reading: the next write waits, the pieces after it too, and
            # so does a frame the connection sends on its own.
            socket.hold()
            hub.deliver_live(piece(session.id, 5, ", wor"))
            hub.deliver_live(piece(session.id, 10, "ld"))
            await asyncio.sleep(0)
            hub.deliver_live(piece(session.id, 12, "!"))  # a write is waiting: queued
            hub.deliver_live(piece(session.id, 12, "!"))  # a copy: never twice
            await socket.incoming.put(json.dumps({"type": "ping"}))
            await asyncio.sleep(0.05)
            assert len(socket.sent) == sent + 2
            socket.open.set()
            await asyncio.sleep(0.05)
            frames = socket.sent[sent + 2 :]
            # The two pieces taken in one pass leave in one frame.
            assert [f["type"] for f in frames] == ["message.delta"] * 2 + ["pong"]
            assert [(f["offset"], f["text"]) for f in frames[:2]] == [(5, ", world"), (12, "!")]
            assert "".join(f["text"] for f in socket.sent if "text" in f) == "Hello, world!"

            # Caught up again: the next piece is taken directly once more.
            hub.deliver_live(piece(session.id, 13, " Bye"))
            assert not conn.sub.live
            await asyncio.sleep(0)
            assert socket.sent[-1]["text"] == " Bye"
        finally:
            await socket.incoming.put(None)
            await asyncio.wait_for(running, 5)


async def test_a_client_behind_its_answer_is_brought_up_to_it_by_the_next_live_piece(
    database_url: str,
) -> None:
    """A client that resumed without saying which answer it shows (a reloaded page) gets an
    answer's logged pieces when the next live one comes, not only at the answer's end."""
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        session = await sessions.create("echo")
        hub = Hub(engine.url)
        socket = Socket()
        conn = Connection(socket, sessions, hub, session.id)  # type: ignore[arg-type]
        running = asyncio.create_task(conn.run())
        try:
            await socket.incoming.put(json.dumps({"type": "resume", "after_seq": 0}))
            await asyncio.sleep(0.2)
            sent = len(socket.sent)
            # Logged copies of pieces that went out live before this client resumed: they
            # wake nobody.
            start = {"turn_id": "t1", "ts": 1.5}
            hello = {"turn_id": "t1", "text": "Hello", "offset": 0}
            hub.deliver(
                [
                    Committed(
                        session.id,
                        1,
                        "message.start",
                        frame_text("message.start", 1, json.dumps(start)),
                        Piece("t1", 0, 0, 1.5),
                        live=True,
                    ),
                    Committed(
                        session.id,
                        2,
                        "message.delta",
                        frame_text("message.delta", 2, json.dumps(hello)),
                        Piece("t1", 0, 5),
                        live=True,
                    ),
                ]
            )
            await asyncio.sleep(0.05)
            assert len(socket.sent) == sent
            hub.deliver_live(piece(session.id, 5, ", world"))  # the answer goes on
            await asyncio.sleep(0.05)
            # The logged ones, then the live one, which now continues what the client has.
            assert [(f["type"], f.get("seq")) for f in socket.sent[sent:]] == [
                ("message.start", 1),
                ("message.delta", 2),
                ("message.delta", None),
            ]
            assert "".join(f["text"] for f in socket.sent[sent + 1 :]) == "Hello, world"
        finally:
            await socket.incoming.put(None)
            await asyncio.wait_for(running, 5)
