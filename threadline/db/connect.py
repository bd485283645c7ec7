"""Where the database is and how to open connections to it."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from ..errors import DatabaseUnavailable
from .embedded import start_embedded

Pool = asyncpg.Pool
Connection = asyncpg.Connection


def resolve_database_url(database_url: str | None = None, data_dir: Path | None = None) -> str:
    """The explicit URL, else `DATABASE_URL`, else the embedded server's."""
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(data_dir)


def redact(url: str) -> str:
    """The URL with any password removed, safe for logs and error messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


async def _init_connection(conn: Connection) -> None:
    # Plain text for json/jsonb: threadline serialises itself, so values pass through untouched.
    await conn.execute("SET application_name = 'threadline'")


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    setup: Callable[[Connection], Awaitable[None]] | None = None,
) -> Pool:
    """An asyncpg pool, or `DatabaseUnavailable` naming the (redacted) server that did not answer."""
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            init=setup or _init_connection,
            statement_cache_size=256,
        )
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {exc or type(exc).__name__}"
        ) from exc
    if pool is None:  # pragma: no cover - asyncpg returns a pool or raises
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {redact(url)}")
    return pool


async def connect(url: str, *, timeout: float = 10.0, **kwargs: Any) -> Connection:
    """One connection (listeners, locks), with the same error translation as the pool."""
    try:
        return await asyncpg.connect(url, timeout=timeout, **kwargs)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {exc or type(exc).__name__}"
        ) from exc
