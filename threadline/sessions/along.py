"""`Along`: events of a session written by their caller's own statement, in order with the
log's (see `EventLog.along`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .frames import ANSWER_TYPES, encode

if TYPE_CHECKING:
    from .events import EventLog
    from .pending import Pending

__all__ = ["Along"]


class Along:
    """Events written by their caller's own statement (see `EventLog.along`): the
    session's events taken from the log's queue (`queued`), then the caller's own event.
    `written` hands them to the log's readers once committed; closing the handle without
    `written` (the statement failed) puts the taken events back in the log's queue."""

    def __init__(self, events: EventLog, session_id: str, taken: list[Pending]) -> None:
        self.events = events
        self.session_id = session_id
        self._taken = taken
        self._open = True

    @property
    def origin(self) -> str:
        """What the statement's NOTIFY starts with (`logged_events`), so that readers this
        log hands the events to do not take them again from the database."""
        return self.events.origin

    def queued(self) -> tuple[list[str], list[str], list[str | None]]:
        """The types, data (JSON text) and keys of the taken events, to log before the
        caller's."""
        for entry in self._taken:
            if entry.encoded is None:
                entry.encoded = encode(entry.data)  # the text `written` hands the readers
        taken = self._taken
        return [e.type for e in taken], [e.encoded or "" for e in taken], [e.key for e in taken]

    def written(self, seqs: list[int], type: str, data_json: str, key: str | None = None) -> None:
        """The statement committed the taken events, then the caller's `type` event (its
        data encoded as `data_json`, the text it stored, under `key`), numbered `seqs` in
        that order (0: one logged before under its key)."""
        if type in ANSWER_TYPES:
            raise ValueError("an answer's pieces go through the log, in order")
        own = self.events.pending(self.session_id, type, data_json, key)
        taken, self._taken = self._taken, []
        self._open = False  # the count `along` took for it goes with its own event's
        self.events._along_written([*taken, own], seqs)

    def close(self) -> None:
        """Done, written or not: the session's pieces may go out live again."""
        if self._open:
            self._open = False
            if self._taken:
                taken, self._taken = self._taken, []
                self.events._put_back(taken)
            self.events._closed(self.session_id)

    def __enter__(self) -> Along:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
