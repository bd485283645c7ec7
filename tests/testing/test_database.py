"""`threadline_database_url`: a fresh migrated database per test."""

from __future__ import annotations

import asyncpg
import pytest

from threadline.testing.database import with_database


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_gets_a_fresh_migrated_database(
    threadline_database_url: str, run: int
) -> None:
    conn = await asyncpg.connect(threadline_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM threadline.sessions") == 0
        await conn.execute(
            "INSERT INTO threadline.sessions (id, agent, state) VALUES ($1, 'a', 'start')",
            f"s_{run}",
        )
        name = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    assert name.startswith("threadline_test_")


def test_a_database_name_goes_into_any_url() -> None:
    tcp = "postgresql://u:p@db.internal:5432/app?sslmode=require"
    assert with_database(tcp, "t1") == "postgresql://u:p@db.internal:5432/t1?sslmode=require"
    socket = "postgresql://postgres:@/postgres?host=/tmp/x/pg"
    assert with_database(socket, "t1") == "postgresql://postgres:@/t1?host=/tmp/x/pg"
