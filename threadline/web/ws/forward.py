"""The session's events to one WebSocket client: after the point it resumed from, in order,
each once. Live pieces (made in this process, not yet logged) go out as they are made while
nothing is ahead of them; the logged copy of what went out live is skipped, and the client
is told its seqs (`logged {first, seq}`), so the seqs it sees have no gaps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ...sessions import Sessions
from ...sessions.events import ANSWER_TYPES, Committed, Live, piece_of
from ..handshake import REVOKED
from ..hub import Subscription
from .answer import WHOLE, ShownAnswer
from .writer import SocketWriter, follows, joined


class Forwarder:
    def __init__(
        self,
        sessions: Sessions,
        session_id: str,
        sub: Subscription,
        writer: SocketWriter,
        answer: ShownAnswer,
        generation: int,
    ) -> None:
        self.sessions = sessions
        self.session_id = session_id
        self.sub = sub
        self.writer = writer
        self.answer = answer
        self.generation = generation  # of the token the connection was opened with
        self.cursor: int | None = None  # the last seq sent; None until the stream starts
        self.behind = False  # the log may hold events not yet sent
        # Logged events the client already has (sent live) and has not been told the seqs
        # of: (first, last). A `logged` frame tells it before the next logged frame goes
        # out (one frame per answer, not per piece).
        self._had: tuple[int, int] | None = None
        # The forwarder has taken frames it has not all sent: a live piece waits for them.
        self._busy = False
        sub.direct = self.live_now

    def start_at(self, after_seq: int) -> None:
        if self.cursor is None or after_seq < self.cursor:
            self.cursor = after_seq
            self.behind = True
            self._had = None  # read again from the log
        self.sub.wake.set()

    def live_now(self, live: Live) -> bool:
        """Take a live piece for this pass's burst if nothing is on its way to the client
        before it; False leaves it to the forwarder (which keeps the order)."""
        sub = self.sub
        if self._busy or sub.wake.is_set() or sub.live or self.writer.writing:
            return False
        if self.cursor is None or self.writer.broken:
            return True  # nothing goes out before the client says from where
        if not self.answer.continues(live):
            # The log brings it, and what comes before it, which the forwarder is woken to
            # send (a logged copy of a live piece wakes nobody).
            return False
        if self.answer.fit(live.type, live.piece, dict) is WHOLE:
            self.writer.queue(live)
        return True

    async def run(self) -> None:
        """Send logged events after the cursor, in order, each once; sleep until woken."""
        sub = self.sub
        while True:
            self._busy = False
            await sub.wake.wait()
            self._busy = True
            sub.wake.clear()
            if sub.stale:  # quiet for seconds: a lost notification costs that, never an event
                sub.stale = False
                self.behind = True
            if self.cursor is None:
                if sub.live:
                    sub.live.clear()  # nothing goes out before the client says from where
                continue
            frames, gap = sub.take(self.cursor)
            for frame in frames:
                await self._send_logged(frame)
                self.cursor = frame.seq
            if gap or self.behind:
                self.behind = False
                await self._catch_up()
            if sub.live:
                await self._send_live()

    async def _send_live(self) -> None:
        """Send the live events that continue what the client has; the others come from
        the log (a piece after one still on its way there). Pieces that queued here while
        the socket was behind leave joined: one frame for each run of them (`joined`)."""
        events, self.sub.live = self.sub.live or [], []
        run: list[Live] = []
        for live in events:
            if (
                self.answer.continues(live)
                and self.answer.fit(live.type, live.piece, dict) is WHOLE
            ):
                if run and not follows(run[-1], live):
                    await self.writer.send_text(joined(run))
                    run = []
                run.append(live)
        if run:
            await self.writer.send_text(joined(run))

    async def _send_logged(self, event: Committed) -> None:
        text = event.text
        assert text is not None  # take() gives whole frames only
        piece = event.piece
        if piece is None and event.type in ANSWER_TYPES and self.answer.turn_id is not None:
            piece = piece_of(event.type, json.loads(text))  # another process wrote it
        frame = self.answer.fit(event.type, piece, lambda: json.loads(text))
        if frame is None:
            self._had_it(event.seq)
            return
        await self._tell_had()
        if frame is WHOLE:
            await self.writer.send_text(text)
        else:
            await self.writer.send(frame)
        if event.type == REVOKED:
            await self._close_if_revoked(json.loads(text))

    async def _catch_up(self) -> None:
        """Read the log after the cursor until it has nothing newer."""
        while self.cursor is not None:
            events = await self.sessions.read(self.session_id, self.cursor)
            if not events:
                return
            for event in events:
                piece = piece_of(event.type, event.data)
                frame = self.answer.fit(event.type, piece, event.frame)
                if frame is None:
                    self._had_it(event.seq)
                else:
                    await self._tell_had()
                    await self.writer.send(event.frame() if frame is WHOLE else frame)
                self.cursor = event.seq
                if event.type == REVOKED:
                    await self._close_if_revoked(event.data)

    def _had_it(self, seq: int) -> None:
        self._had = (seq, seq) if self._had is None else (self._had[0], seq)

    async def _tell_had(self) -> None:
        if self._had is not None:
            first, last = self._had
            self._had = None
            await self.writer.send({"type": "logged", "first": first, "seq": last})

    async def _close_if_revoked(self, data: dict[str, Any]) -> None:
        """The session's tokens were revoked after this connection's was issued: it ends
        (4401, as a refused token; the client's token no longer opens the session)."""
        if isinstance(data.get("generation"), int) and data["generation"] > self.generation:
            await self.writer.close(4401, "the session's tokens were revoked")
            raise asyncio.CancelledError  # the forwarder stops; the receive loop sees the close
