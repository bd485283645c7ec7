"""Test databases: one embedded PostgreSQL per test session, a migrated template database,
and a fresh clone of it (`CREATE DATABASE ... TEMPLATE`) for every test; and `chat`, a real
chat server on that database (tests/chat_server.py), for the tests of tests/web, tests/agents,
tests/sessions and tests/tools."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from threadline import db

if TYPE_CHECKING:
    from .chat_server import ChatServer

_counter = itertools.count()
# Agents' knowledge embeds with the fast test embedder; tests of the real model pass it.
os.environ.setdefault("THREADLINE_EMBEDDER", "hash")


SLOW_GROUPS = ("browser", "processes", "model")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of a slow group is `slow` too, so `-m "not slow"` leaves out all of them."""
    for item in items:
        if any(item.get_closest_marker(group) for group in SLOW_GROUPS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def pg_root() -> Iterator[Path]:
    configured = os.environ.get("THREADLINE_TEST_DATA_DIR")
    root = Path(configured) if configured else db.temporary_data_dir("threadline-test-")
    yield root


@pytest.fixture(scope="session")
def server_url(pg_root: Path) -> str:
    return db.start_embedded(pg_root, "postgres")


def url_for(server_url: str, database: str) -> str:
    return re.sub(r"/[^/?]*\?", f"/{database}?", server_url, count=1)


@pytest.fixture(scope="session")
def template_db(server_url: str) -> str:
    async def build() -> None:
        conn = await asyncpg.connect(server_url)
        await conn.execute("DROP DATABASE IF EXISTS tl_template")
        await conn.execute("CREATE DATABASE tl_template")
        await conn.close()
        conn = await asyncpg.connect(url_for(server_url, "tl_template"))
        await db.upgrade(conn)
        await conn.close()

    asyncio.run(build())
    return "tl_template"


@pytest.fixture
async def database_url(server_url: str, template_db: str) -> AsyncIterator[str]:
    name = f"tl_test_{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(server_url)
    await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    await conn.close()
    yield url_for(server_url, name)
    conn = await asyncpg.connect(server_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.close()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to the test's database."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def chat(database_url: str) -> AsyncIterator[ChatServer]:
    # Imported here: every test loads this module, and most need no server.
    from threadline.demo import support

    from .chat_server import chat_server, echo, nudge, thrifty

    async with chat_server(database_url, [echo, support, nudge, thrifty]) as server:
        yield server
