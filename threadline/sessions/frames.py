"""What the session event log hands its readers: events and frames, an answer's pieces
placed in their answer, and the JSON text of a frame made once per event."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

__all__ = [
    "ANSWER_TYPES",
    "CommitListener",
    "Committed",
    "Live",
    "LiveListener",
    "Piece",
    "SessionEvent",
    "encode",
    "frame_text",
    "live_text",
    "own_fields",
    "piece_of",
]


@dataclass(frozen=True)
class SessionEvent:
    seq: int
    type: str
    data: dict[str, Any]
    at: datetime

    def frame(self) -> dict[str, Any]:
        """The frame a client receives: the event's fields plus `type` and `seq`."""
        return {**self.data, "type": self.type, "seq": self.seq}


class Committed(NamedTuple):
    """A committed event as a reader forwards it: `text` is its frame as JSON (what
    `SessionEvent.frame` gives), or None when it was too large to ride on a notification
    and must be read from the log. `piece` places an answer's start or piece when the
    writer knows it (events this process wrote): see `Piece`."""

    session_id: str
    seq: int
    type: str
    text: str | None
    piece: Piece | None = None
    live: bool = False  # it went out live before (see `EventLog.watch_live`)


class Piece(NamedTuple):  # a tuple: one is made per streamed token
    """Where an answer's event sits in the answer: a `message.delta` covers code points
    [offset, end) of its turn's text since the answer (re)started; a `message.start` or
    `message.restart` begins it (offset = end = the code points it keeps, its `keep`),
    `started` (its `ts`) telling one beginning from another."""

    turn_id: str
    offset: int
    end: int
    started: float | None = None


class Live(NamedTuple):
    """An answer's event (`message.start`, `.restart`, `.delta`) handed to readers in this
    process before it is logged: `text` is its frame as JSON, without a `seq` (it has none
    yet); its `Committed` copy follows with the same `Piece`."""

    session_id: str
    type: str
    piece: Piece
    text: str


CommitListener = Callable[[list[Committed]], None]
LiveListener = Callable[[Live], bool | None]  # True: some reader took it
ANSWER_TYPES = frozenset({"message.start", "message.restart", "message.delta"})


def piece_of(type: str, data: dict[str, Any]) -> Piece | None:
    """The place of an answer's event in its answer, when its data tells it."""
    if type not in ANSWER_TYPES:
        return None
    turn_id = data.get("turn_id")
    if not isinstance(turn_id, str):
        return None
    if type != "message.delta":
        started, keep = data.get("ts"), data.get("keep", 0)
        keep = keep if isinstance(keep, int) and not isinstance(keep, bool) and keep > 0 else 0
        return Piece(turn_id, keep, keep, started if isinstance(started, float) else None)
    offset, text = data.get("offset"), data.get("text")
    if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(text, str):
        return None
    return Piece(turn_id, offset, offset + len(text))


def own_fields(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data without `type` and `seq`: the frame's own fields win, as in frame()."""
    if "type" in data or "seq" in data:
        return {k: v for k, v in data.items() if k not in ("type", "seq")}
    return data


def encode(data: dict[str, Any]) -> str:
    """An event's data as JSON text (orjson: the log encodes every streamed token)."""
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()


def live_text(type: str, data_json: str) -> str:
    """A frame's JSON text before the event has a number (see `Live`)."""
    head = f'{{"type":{_type_json(type)}'
    return head + "}" if data_json == "{}" else head + "," + data_json[1:]


def frame_text(type: str, seq: int, data_json: str) -> str:
    """`SessionEvent.frame()` as JSON text, from the event's data already encoded (an
    object without `type` or `seq` keys): no second encoding per frame."""
    head = f'{{"type":{_type_json(type)},"seq":{seq}'
    return head + "}" if data_json == "{}" else head + "," + data_json[1:]


@functools.lru_cache(maxsize=256)
def _type_json(type: str) -> str:
    return json.dumps(type)
