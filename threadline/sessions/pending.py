"""An event waiting in the log's queue, and how a streamed piece joins the one before it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .frames import Piece

__all__ = ["JOIN_AFTER_S", "Pending", "Queued", "join"]

# A delta joins the session's queued one when it was made this long after it: the log has
# fallen behind the model (at 20 tokens/s a session's deltas are 50 ms apart, a commit ~1 ms).
JOIN_AFTER_S = 0.02

# session, type, data as JSON, key, who waits for the number
Queued = tuple[str, str, str, "str | None", "asyncio.Future[int] | None"]


@dataclass(slots=True)
class Pending:
    """A queued event. `live`: where it sits in its answer if it went out live (if not,
    until it is committed its session's later events cannot go out live: frames stay in
    order); `encoded`: its data as JSON, kept from going live, until a later piece joins it."""

    session_id: str
    type: str
    data: dict[str, Any]
    fut: asyncio.Future[int] | None
    live: Piece | None = None
    encoded: str | None = None
    held: bool = False  # a reader here took it live: its write may wait (LIVE_LOG_HOLD_S)
    queued_at: float = 0.0  # loop time
    key: str | None = None  # logged once per session under this key (see `append`)


def join(entry: Pending, data: dict[str, Any], live: tuple[Piece, str, bool] | None) -> bool:
    """Append a delta to the session's queued `entry` if they make one piece."""
    queued = entry.data
    if not (
        entry.type == "message.delta"
        and entry.fut is None
        and (entry.live is None) is (live is None)
        and queued.keys() == data.keys()
        and queued.get("turn_id") == data.get("turn_id")
        and isinstance(queued.get("text"), str)
        and isinstance(data.get("text"), str)
    ):
        return False
    if live is not None and entry.live is not None and entry.held and live[2]:
        if entry.live.end != live[0].offset:
            return False
    elif entry.held or not (
        isinstance(queued.get("ts"), float)
        and isinstance(data.get("ts"), float)
        and data["ts"] - queued["ts"] >= JOIN_AFTER_S
    ):
        return False
    queued["text"] += data["text"]
    entry.encoded = None
    if entry.live is not None and live is not None:
        entry.live = Piece(entry.live.turn_id, entry.live.offset, live[0].end)
    return True
