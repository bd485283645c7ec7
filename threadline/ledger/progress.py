"""What reserved calls have streamed so far, told to the database while they stream.

A process that dies mid-stream leaves its reservations to recovery, which charges each call
what it had streamed when last reported rather than its worst case: a new call is reported at
once (with the others that start meanwhile, one statement), then every `PROGRESS_S` what
changed, so recovery misses at most the tokens of the last `PROGRESS_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg

from ..engine.dbretry import log_loop_error
from .queries import PROGRESS

__all__ = ["PROGRESS_MIN_GAP_S", "PROGRESS_S", "Seen", "StreamProgress"]

# How often what reserved calls have streamed is written (one statement for all of them).
PROGRESS_S = 0.25
PROGRESS_MIN_GAP_S = 0.02  # between two progress statements of a process
Seen = tuple[int, int]  # a call's input and output tokens so far


class StreamProgress:
    """The calls of one process's reservations that are streaming, and their reporter."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._watched: dict[int, Callable[[], Seen]] = {}  # reservation -> tokens seen
        self._told: dict[int, Seen] = {}  # what the database last heard of each
        self._task: asyncio.Task[None] | None = None
        self._fresh = asyncio.Event()  # a call to report at once

    def watch(self, reservation_id: int, seen: Callable[[], Seen]) -> None:
        """Report `seen()` (input tokens, output tokens received) for this reservation until
        `unwatch`."""
        self._watched[reservation_id] = seen
        self._fresh.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._report(), name="threadline-budget-progress"
            )

    def unwatch(self, reservation_id: int) -> None:
        self._watched.pop(reservation_id, None)
        self._told.pop(reservation_id, None)

    async def close(self) -> None:
        """Stop reporting (what was told stays told)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _report(self) -> None:
        while self._watched:
            if not self._fresh.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._fresh.wait(), PROGRESS_S)
            self._fresh.clear()
            await asyncio.sleep(0)  # calls starting together go in one statement
            changed = {}
            for reservation, seen in list(self._watched.items()):
                tokens = seen()
                if tokens != self._told.get(reservation):
                    changed[reservation] = tokens
            if not changed:
                continue
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(
                        PROGRESS,
                        list(changed),
                        [seen[0] for seen in changed.values()],
                        [seen[1] for seen in changed.values()],
                    )
            except Exception as exc:  # the next beat tells it again
                log_loop_error("budget progress", exc)
                continue
            await asyncio.sleep(PROGRESS_MIN_GAP_S)  # calls starting at a high rate: batched
            for reservation, tokens in changed.items():
                if reservation in self._watched:
                    self._told[reservation] = tokens
