"""The database layer: embedded server, connection errors, migrations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from threadline import DatabaseUnavailable, Engine, SchemaError, db
from threadline.db.migrations import load_migrations

from ..conftest import url_for


async def test_upgrade_is_idempotent_and_status_lists_everything(
    server_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(server_url)
    await conn.execute("DROP DATABASE IF EXISTS tl_fresh")
    await conn.execute("CREATE DATABASE tl_fresh")
    await conn.close()
    conn = await asyncpg.connect(url_for(server_url, "tl_fresh"))
    try:
        assert [s.applied_at for s in await db.status(conn)] == [None] * len(load_migrations())
        first = await db.upgrade(conn)
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        assert await db.upgrade(conn) == []
        assert await db.pending(conn) == []
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 1
        )
    finally:
        await conn.close()


async def test_concurrent_upgrades_apply_each_migration_once(server_url: str) -> None:
    import asyncio

    conn = await asyncpg.connect(server_url)
    await conn.execute("DROP DATABASE IF EXISTS tl_race")
    await conn.execute("CREATE DATABASE tl_race")
    await conn.close()
    conns = [await asyncpg.connect(url_for(server_url, "tl_race")) for _ in range(4)]
    try:
        results = await asyncio.gather(*(db.upgrade(c) for c in conns))
        assert sum(len(r) for r in results) == len(load_migrations())
    finally:
        for c in conns:
            await c.close()


async def test_a_database_newer_than_the_code_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.execute(
        "INSERT INTO threadline.schema_migrations (version, name, checksum) "
        "VALUES (9999, 'from_the_future', 'x')"
    )
    before = await conn.fetchval("SELECT count(*) FROM threadline.schema_migrations")
    with pytest.raises(SchemaError, match="newer than this threadline"):
        await db.upgrade(conn)
    assert await conn.fetchval("SELECT count(*) FROM threadline.schema_migrations") == before
    await conn.close()
    with pytest.raises(SchemaError):
        async with Engine(database_url):
            pass


async def test_a_database_url_that_does_not_answer(tmp_path: Path) -> None:
    url = f"postgresql://someone:secret@/nowhere?host={tmp_path}&port=1"
    with pytest.raises(DatabaseUnavailable) as failure:
        async with Engine(url):
            pass
    assert "secret" not in str(failure.value)
    assert "cannot connect" in str(failure.value)


@pytest.mark.processes
def test_two_processes_on_one_data_dir_share_one_server(tmp_path: Path) -> None:
    script = (
        "import sys, pathlib, asyncio, asyncpg; from threadline import db;"
        "url = db.start_embedded(pathlib.Path(sys.argv[1]));"
        "print(asyncio.run(asyncpg.connect(url)).get_server_pid() and url)"
    )
    # The first process holds the server open while the second starts.
    holder = subprocess.Popen(
        [sys.executable, "-c", script.replace("print(", "input(print(") + ")", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    first_url = holder.stdout.readline().strip()
    second = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    pid_file = tmp_path / "pg" / "postmaster.pid"
    pid_while_shared = pid_file.read_text().split()[0]
    holder.communicate("\n", timeout=60)
    assert second.stdout.strip() == first_url
    assert pid_while_shared.isdigit()
    assert not pid_file.exists()  # the last process out stopped the server


@pytest.mark.processes
def test_a_temporary_data_dir_goes_with_the_process_that_made_it(tmp_path: Path) -> None:
    script = (
        "import asyncio, asyncpg; from threadline import db;"
        "root = db.temporary_data_dir('tl-temp-test-'); url = db.start_embedded(root);"
        "asyncio.run(asyncpg.connect(url)); print(root)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    root = Path(done.stdout.strip())
    assert root.name.startswith("tl-temp-test-")
    assert not root.exists()  # the server stopped first, then its directory went
