"""Test databases: one PostgreSQL server per test session (`DATABASE_URL`'s, else an
embedded one in a temporary directory), a migrated template database, and a fresh clone of
it (`CREATE DATABASE ... TEMPLATE`) for every test: each test starts from an empty, migrated
database in a few milliseconds."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .. import db

__all__ = ["TestDatabases", "run_sync", "with_database"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on an event loop of its own, in a thread of its own: callable
    from sync fixtures whatever loop the test itself runs on."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="threadline-db") as pool:
        return pool.submit(asyncio.run, coro).result()


def with_database(url: str, database: str) -> str:
    """`url` with its database name replaced (TCP and Unix-socket URLs alike)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


class TestDatabases:
    """Clones of a migrated template on one server; see the module docstring."""

    __test__ = False  # not a test class, whatever pytest's naming rules say

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.template = f"threadline_template_{os.getpid()}"
        self._counter = itertools.count()
        self._ready = False

    @classmethod
    def start(cls) -> TestDatabases:
        """`DATABASE_URL`'s server, else an embedded one in a directory removed at exit."""
        url = os.environ.get("DATABASE_URL")
        if not url:
            url = db.start_embedded(db.temporary_data_dir("threadline-test-"), "postgres")
        return cls(url)

    async def _execute(self, *statements: str, database: str | None = None) -> None:
        url = with_database(self.server_url, database) if database else self.server_url
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def prepare(self) -> None:
        """Create and migrate the template (once)."""
        if self._ready:
            return
        await self._execute(
            f'DROP DATABASE IF EXISTS "{self.template}"', f'CREATE DATABASE "{self.template}"'
        )
        conn = await asyncpg.connect(with_database(self.server_url, self.template))
        try:
            await db.upgrade(conn)
        finally:
            await conn.close()
        self._ready = True

    async def create(self) -> str:
        """A fresh migrated database; its URL."""
        await self.prepare()
        name = f"threadline_test_{os.getpid()}_{next(self._counter)}"
        await self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return with_database(self.server_url, name)

    async def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        await self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def close(self) -> None:
        if self._ready:
            await self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            self._ready = False
