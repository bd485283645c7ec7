"""The engine's prebuilt flush statements are valid SQL (where every package's statements
live: tests/test_sql_places.py)."""

from __future__ import annotations

from threadline import Engine
from threadline.engine import queries


async def test_every_flush_statement_is_valid(database_url: str) -> None:
    async with Engine(database_url, worker=False) as engine, engine.pool.acquire() as conn:
        for sql in queries.FLUSH.values():
            await conn.prepare(sql)
    assert len(queries.FLUSH) == 15
