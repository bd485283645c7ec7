"""Semantic cache lookup latency with many entries (default 100,000) on PostgreSQL.

Entries are synthetic support questions spread over `--scopes` scopes (tenants), embedded
with the model-free test embedder so that loading 100k entries takes a minute, not an hour.
What is timed is `SemanticCache.lookup` as an application calls it: embedding the question,
then one round trip for the exact match and, failing it, the scope-filtered HNSW search with
the candidates' answers (with an embedder that costs milliseconds the exact match goes first,
on its own, and the search only when it misses). Half the questions
asked are reworded repeats (hits), half are new (misses). With `--embedder minilm` a second
run adds what the real model costs per lookup (embedding the question, and the learned
verifier on the candidates), which does not depend on the number of entries.

    python benchmarks/cache_latency.py --json   # {"entries": 100000, "p50_ms": .., "p99_ms": ..}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline import Engine, db  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.loop import settle_heap  # noqa: E402
from threadline.rag import (  # noqa: E402
    CacheScope,
    HashEmbedder,
    SemanticCache,
    default_embedder,
)

VERBS = [
    "reset",
    "replace",
    "install",
    "order",
    "return",
    "clean",
    "descale",
    "register",
    "pair",
    "update",
    "mount",
]
THINGS = (
    "filter",
    "membrane",
    "faucet",
    "leak sensor",
    "adapter",
    "cartridge",
    "valve",
    "pump",
    "tank",
    "display",
    "app",
    "warranty",
    "subscription",
    "drain tube",
    "bracket",
)
ASKS = (
    "How do I {v} the {t}",
    "Can I {v} my {t} myself",
    "What does it cost to {v} the {t}",
    "Why can't I {v} the {t}",
    "When should I {v} the {t}",
    "Where do I {v} a {t}",
)


def question(rng: random.Random, n: int) -> str:
    template = rng.choice(ASKS)
    text = template.format(v=rng.choice(VERBS), t=rng.choice(THINGS))
    return f"{text} of model TL-{n:06d} in room {rng.randrange(1000)}?"


async def load(cache: SemanticCache, entries: int, scopes: list[CacheScope]) -> list[str]:
    rng = random.Random(7)
    asked = []
    per_scope = entries // len(scopes)
    for s, scope in enumerate(scopes):
        texts = [question(rng, s * per_scope + i) for i in range(per_scope)]
        await cache.store_many([(t, "answer: " + t) for t in texts], scope, batch=2000)
        asked += texts
    return asked


async def time_lookups(
    cache: SemanticCache, scopes: list[CacheScope], stored: list[str], count: int
) -> list[float]:
    rng = random.Random(11)
    per_scope = len(stored) // len(scopes)
    timings = []
    for i in range(count):
        s = rng.randrange(len(scopes))
        if i % 2 == 0:
            text = stored[s * per_scope + rng.randrange(per_scope)].replace("?", " please?")
        else:
            text = question(rng, 10_000_000 + i)
        t0 = time.perf_counter()
        await cache.lookup(text, scopes[s])
        timings.append((time.perf_counter() - t0) * 1000)
    return timings


def summary(timings: list[float]) -> dict[str, float]:
    q = statistics.quantiles(timings, n=100)
    return {"p50_ms": round(statistics.median(timings), 3), "p99_ms": round(q[98], 3)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    scopes = [CacheScope("latency-bench", "1", tenant=f"tenant-{i}") for i in range(args.scopes)]
    async with Engine(url, worker=False, pool_size=4) as engine:
        pool = engine.pool
        cache = SemanticCache(pool, embedder=HashEmbedder())
        await cache.purge(agent="latency-bench")
        started = time.perf_counter()
        # Bulk load: build the HNSW index once at the end, as for any bulk load.
        await pool.execute("DROP INDEX IF EXISTS threadline.cache_entries_embedding")
        stored = await load(cache, args.entries, scopes)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            await conn.execute(
                "CREATE INDEX cache_entries_embedding ON threadline.cache_entries "
                "USING hnsw (embedding halfvec_cosine_ops)"
            )
        await pool.execute("VACUUM ANALYZE threadline.cache_entries")
        loaded_s = time.perf_counter() - started
        # Timed at steady state: the bulk load's dirty pages written out first (a checkpoint
        # in the middle of the timed lookups would measure the load, not the lookups).
        with contextlib.suppress(asyncpg.PostgresError):  # needs superuser or pg_checkpoint
            await pool.execute("CHECKPOINT")
        settle_heap()  # what a server does once started: the 100k questions held here
        await time_lookups(cache, scopes, stored, 1000)  # warm the caches
        timings = await time_lookups(cache, scopes, stored, args.lookups)
        result: dict[str, Any] = {"entries": len(stored), **summary(timings)}
        result.update(scopes=args.scopes, lookups=args.lookups, load_s=round(loaded_s, 1))
        if args.embedder == "minilm":
            model_cache = SemanticCache(pool, embedder=default_embedder())
            await time_lookups(model_cache, scopes, stored, 20)
            with_model = await time_lookups(model_cache, scopes, stored, min(args.lookups, 500))
            result["with_model"] = summary(with_model)
        await cache.flush()  # the hit counters, written behind, before the pool closes
        if args.embedder == "minilm":
            await model_cache.flush()
        if not args.keep:
            await cache.purge(agent="latency-bench")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--scopes", type=int, default=4)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--embedder", choices=["hash", "minilm"], default="hash")
    parser.add_argument("--keep", action="store_true", help="Leave the entries in place.")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run_loop(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>10}  {value}")


if __name__ == "__main__":
    main()
