"""`Screen`: a turn's answer as clients see it, as events of the session's log: it begins
(`message.start`, again after a crash keeping what clients have), grows by pieces placed by
their offset (`message.delta`), and cites its sources (`message.sources`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Emit", "Screen", "event_key"]


class Emit(Protocol):
    """Queues an event for the session's log (it returns at once; the log commits in the
    background). With a `key`, the log keeps it once per session (see `EventLog.append`)."""

    def __call__(self, type: str, data: dict[str, Any], key: str | None = None) -> None: ...


def event_key(turn_id: str, what: str) -> str:
    """The log key of a turn's event `what`: a replay of the turn (after a crash) logs its
    tool calls, their results and its end again, and the log keeps each once."""
    return f"{turn_id}:{what}"


@dataclass
class Screen:
    """What clients have of one turn's answer. `shown`: it has begun (one `message.start`);
    `length`: its length so far in code points, what the next piece's offset is."""

    turn_id: str
    emit: Emit
    show_cached: bool = False  # clients are told that an answer came from the cache
    shown: bool = False
    length: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)  # what `[n]` cites

    def start(self, *, cached: bool = False) -> None:
        """The answer begins on screen (again, after a crash or a wait for an approval: to
        clients, a restart that keeps the answer's first `keep` code points: the rounds an
        earlier run of the turn streamed and its journal replayed)."""
        start: dict[str, Any] = {"turn_id": self.turn_id, "ts": time.time()}
        if cached and self.show_cached:
            start["cached"] = True
        if self.length:
            start["keep"] = self.length
        self.emit("message.start", start)
        self.shown = True

    def piece(self, text: str, *, ts: float | None = None) -> None:
        """The answer's next piece; `offset` (its length so far, in code points) lets a
        reader join pieces that reach it live and from the log without a gap or overlap."""
        data: dict[str, Any] = {"turn_id": self.turn_id, "text": text, "offset": self.length}
        if ts is not None:
            data["ts"] = ts
        self.length += len(text)
        self.emit("message.delta", data)

    def show(self, text: str) -> None:
        """Fixed text, as a paragraph of the answer (started if it was not)."""
        if not self.shown:
            self.start()
        self.piece("\n\n" + text if self.length else text)

    def replayed(self, text: str) -> None:
        """A round's text that an earlier run of this turn streamed (its call replayed from
        the journal). Before this run's `message.start`, clients have it: it is kept (see
        `start`); after, it goes out again as a piece."""
        if self.shown:
            self.piece(("\n\n" if self.length else "") + text)
        else:
            self.length += (2 if self.length else 0) + len(text)

    def cite(self, sources: list[dict[str, Any]]) -> None:
        """Tell clients what the answer's `[n]` markers point at (`message.sources`), before
        its text: the prompt numbers the passages the same way (`format_context`); a cache
        hit cites what the answer it repeats cited."""
        if sources:
            self.sources = sources
            self.emit(
                "message.sources",
                {"turn_id": self.turn_id, "sources": sources},
                event_key(self.turn_id, "sources"),
            )
