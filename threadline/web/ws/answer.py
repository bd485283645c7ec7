"""How much of an answer a WebSocket's client has, so that what it has is never sent twice:
an answer's beginning and pieces go out live, before they are logged, and again from the
log (to this connection or, after a reconnect, to the next one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...sessions.events import ANSWER_TYPES, Live, Piece

WHOLE: dict[str, Any] = {}  # `ShownAnswer.fit`: send the event as it is


class ShownAnswer:
    """The answer the client has: `turn_id`'s, begun at `started` (its start's `ts`), up to
    `shown` code points (turn_id None: unknown, nothing goes out live until the next answer
    starts)."""

    def __init__(self) -> None:
        self.turn_id: str | None = None
        self.started: float | None = None
        self.shown = 0

    def resume(self, turn_id: str | None, started: float | None, shown: int) -> None:
        """What a resuming client says it shows: it is not sent again."""
        self.turn_id = turn_id
        self.started = float(started) if turn_id is not None and started is not None else None
        self.shown = shown if turn_id is not None else 0

    def continues(self, live: Live) -> bool:
        """Whether a live event continues the answer the client has (a beginning always
        may: it starts the answer over)."""
        piece = live.piece
        return live.type != "message.delta" or (
            piece.turn_id == self.turn_id and piece.offset == self.shown
        )

    def fit(
        self, type: str, piece: Piece | None, frame: Callable[[], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """What of an event to send, given the answer the client has: `WHOLE`, a trimmed
        frame (the part of a piece the client lacks), or None (it has all of it)."""
        if type not in ANSWER_TYPES:
            return WHOLE
        if piece is None:  # not placed: send it, and lose track of the client's answer
            self.turn_id = None
            return WHOLE
        if type != "message.delta":
            return self._begin(piece)
        if piece.turn_id != self.turn_id or piece.offset >= self.shown:
            if piece.turn_id != self.turn_id:
                self.turn_id, self.started = piece.turn_id, None
            self.shown = piece.end
            return WHOLE
        if piece.end <= self.shown:
            return None  # sent live, or shown before a reconnect
        trimmed = frame()
        trimmed["text"] = trimmed["text"][self.shown - piece.offset :]
        trimmed["offset"] = self.shown
        self.shown = piece.end
        return trimmed

    def _begin(self, piece: Piece) -> dict[str, Any] | None:
        """An answer's beginning (its start, or a restart)."""
        if (
            piece.turn_id == self.turn_id
            and piece.started is not None
            and piece.started == self.started
        ):
            return None  # the beginning the client has (it went out live)
        # The answer (re)starts: the client keeps its first `keep` code points (the rounds
        # before; a client that reads the log got them).
        same = piece.turn_id == self.turn_id
        self.shown = min(self.shown, piece.offset) if same else piece.offset
        self.turn_id, self.started = piece.turn_id, piece.started
        return WHOLE
