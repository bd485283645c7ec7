"""Retrying database work through a server restart or a dropped connection."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from ..errors import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors after which the same statement can simply be sent again.
_TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "57P01",  # admin_shutdown (server restarting)
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (server starting)
    "08000",
    "08003",
    "08006",
    "08001",
    "08004",  # connection exceptions
}


def is_transient(exc: BaseException) -> bool:
    """Whether the same work may succeed on another try, on a fresh connection.

    asyncpg's `InternalClientError` ("cannot switch to state 12; another operation (2) is in
    progress") counts: it is what a pooled connection whose server process died (a restart,
    `pg_terminate_backend`) raises on its next use, before asyncpg has seen the socket close
    and the pool has replaced it."""
    if isinstance(exc, asyncpg.PostgresError):
        return getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return isinstance(
        exc,
        (
            OSError,
            ConnectionError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.InternalClientError,
        ),
    ) and not isinstance(exc, asyncpg.exceptions.InterfaceWarning)


# What a database call can raise when the server or the connection goes away (for code that
# gives up quietly, e.g. at close; loops use `log_loop_error`).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def log_loop_error(loop: str, exc: Exception) -> None:
    """For a background loop that must outlive any error: a database that went away is a
    warning (the loop tries again); anything else is a bug worth a traceback, and the loop goes
    on all the same. (A loop that caught only some database errors died of the others.)"""
    if is_transient(exc):
        log.warning("%s: %s", loop, describe(exc))
    else:
        log.exception("%s failed; going on", loop)


def database_gone(exc: BaseException) -> bool:
    """The database failed a run's own bookkeeping (not an error of the workflow's code): the
    journal's `DatabaseUnavailable`, or a transient asyncpg error from a wait's write. The run
    is handed back and replayed, not failed."""
    return isinstance(exc, DatabaseUnavailable) or (
        isinstance(exc, DATABASE_ERRORS) and not isinstance(exc, OSError) and is_transient(exc)
    )


def describe(exc: BaseException) -> str:
    """An error in words that are never empty (`TimeoutError()` has no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def with_db_retry(fn: Callable[[], Awaitable[T]], *, what: str, deadline: float = 60.0) -> T:
    """Run `fn`, retrying transient database errors with backoff for up to `deadline` s."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    delay = 0.05
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not is_transient(exc) or loop.time() + delay > give_up:
                raise
            log.warning("%s: %s; retrying in %.2fs", what, describe(exc), delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
