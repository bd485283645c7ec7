"""Where the database is and how to open connections to it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import asyncpg

from ..errors import DatabaseUnavailable
from .embedded import start_embedded

Pool = asyncpg.Pool
# What statements run on: a plain connection, or one lent by a pool.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def resolve_database_url(database_url: str | None = None, data_dir: Path | None = None) -> str:
    """The explicit URL, else `DATABASE_URL`, else the embedded server's."""
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(data_dir)


def redact(url: str) -> str:
    """The URL with any password removed, safe for logs and error messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def _why(exc: BaseException) -> str:
    """Why a connection failed, never empty: a connect timeout raises `TimeoutError()`."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer within the connect timeout"
    return str(exc) or type(exc).__name__


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is. asyncpg's default reset (UNLISTEN, RESET ALL,
    unlock advisory locks) is one more round trip per use; threadline keeps no session state
    on pooled connections (its LISTENs and session locks live on their own connections)."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def direct_database_url() -> str | None:
    """`THREADLINE_DIRECT_DATABASE_URL`: PostgreSQL itself, when `DATABASE_URL` is a pooler in
    transaction mode (PgBouncer). What needs a session of its own — LISTEN, the workers'
    session advisory locks, migrations under their lock — connects there; queries go
    through the pooler, without prepared statements kept by name (a pooler in transaction
    mode hands each transaction another server connection)."""
    return os.environ.get("THREADLINE_DIRECT_DATABASE_URL") or None


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    pooler: bool = False,
) -> Pool:
    """An asyncpg pool, or `DatabaseUnavailable` naming the (redacted) server that did not
    answer. json/jsonb travel as text: threadline serialises values itself. `pooler`: the
    URL is a pooler in transaction mode (no statement cache: only unnamed statements)."""
    try:
        pool: Pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            statement_cache_size=0 if pooler else 256,
            server_settings={"application_name": "threadline"},
            reset=_keep_session,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {_why(exc)}"
        ) from exc
    if pool is None:  # pragma: no cover - asyncpg returns a pool or raises
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {redact(url)}")
    return pool


async def connect(url: str, *, timeout: float = 10.0) -> asyncpg.Connection:
    """One connection (listeners, locks), with the same error translation as the pool."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            url, timeout=timeout, server_settings={"application_name": "threadline"}
        )
        return conn
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {_why(exc)}"
        ) from exc
