"""`threadline ingest` and `threadline cache ...` against a fresh database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from threadline import Engine
from threadline.cli import main
from threadline.rag import CacheScope, HashEmbedder, SemanticCache
from threadline.rag.knowledge import KB_DIR


def _seed(url: str) -> None:
    async def go() -> None:
        async with Engine(url, worker=False) as engine:
            cache = SemanticCache(engine.pool, embedder=HashEmbedder())
            await cache.store(
                "How do I reset the counter?", "Hold 3 s.", CacheScope("support", tenant="acme")
            )
            await cache.store("Opening hours?", "8 to 20.", CacheScope("support", tenant="b"))

    asyncio.run(go())


def test_ingest_a_folder_with_a_progress_bar(database_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    args = [
        "ingest",
        str(KB_DIR),
        "--collection",
        "kb",
        "--database-url",
        database_url,
        "--embedder",
        "hash",
        "--tenant",
        "acme",
    ]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "5 added, 0 updated, 0 unchanged" in first.output
    again = runner.invoke(main, args)
    assert "0 added, 0 updated, 5 unchanged; 0 chunks written" in again.output


def test_cache_inspect_test_and_purge(database_url: str) -> None:
    _seed(database_url)
    runner = CliRunner()
    db = ["--database-url", database_url]
    listed = runner.invoke(main, ["cache", "inspect", "--json", *db])
    assert listed.exit_code == 0, listed.output
    assert {e["scope"]["tenant"] for e in json.loads(listed.output)} == {"acme", "b"}

    tested = runner.invoke(
        main,
        [
            "cache",
            "test",
            "how do i reset the counter",
            "--agent",
            "support",
            "--tenant",
            "acme",
            "--embedder",
            "hash",
            *db,
        ],
    )
    assert tested.exit_code == 0, tested.output
    assert "hit" in tested.output and "Hold 3 s." in tested.output
    missed = runner.invoke(
        main,
        [
            "cache",
            "test",
            "how do i reset the counter",
            "--agent",
            "support",
            "--tenant",
            "b",
            "--embedder",
            "hash",
            *db,
        ],
    )
    assert "miss" in missed.output

    refused = runner.invoke(main, ["cache", "purge", *db])
    assert refused.exit_code != 0 and "--all" in refused.output
    purged = runner.invoke(main, ["cache", "purge", "--tenant", "acme", *db])
    assert "purged 1 entries" in purged.output
    left = json.loads(runner.invoke(main, ["cache", "inspect", "--json", *db]).output)
    assert [e["prompt"] for e in left] == ["Opening hours?"]
