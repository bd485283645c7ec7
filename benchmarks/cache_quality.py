"""How right the semantic cache is, on question pairs: every `a` is cached (its answer is
"the answer to a"), every `b` is asked, through the real cache on PostgreSQL.

A hit is right when the cached question it served is the asked one or a duplicate of it by
the file's labels, directly or through a chain of them (a~b and b~c: a~c); any other hit — a
labelled non-duplicate, or a cached question the labels say nothing about — counts as a
false hit. `hit_rate` is the share of duplicate pairs whose `b` got a right answer;
`precision` is the share of hits that were right. `precision_direct` counts only direct
labels (no chains); `precision_judged` leaves out the hits the labels say nothing about,
since many are the same question in other words.

    python benchmarks/cache_quality.py --pairs ../shared/data/qqp_pairs_dev.jsonl.gz --json
    python benchmarks/cache_quality.py --pairs FILE --false-hit-rate 0.02 --limit 5000

The pairs file is JSON lines (optionally gzipped) of {"a", "b", "duplicate"}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline import Engine, db  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.rag import CacheScope, HashEmbedder, SemanticCache, default_embedder  # noqa: E402
from threadline.rag.cache import CosineVerifier  # noqa: E402
from threadline.rag.cache.calibration import duplicate_groups  # noqa: E402
from threadline.rag.vectors import normalise_prompt  # noqa: E402

SCOPE = CacheScope(agent="cache-quality", prompt_version="1")


def load_pairs(path: Path, limit: int | None) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    return pairs[:limit] if limit else pairs


def labels(pairs: list[dict[str, Any]]) -> dict[tuple[str, str], bool]:
    """(cached question, asked question) -> duplicate, both normalised; either order."""
    found: dict[tuple[str, str], bool] = {}
    for p in pairs:
        a, b = normalise_prompt(p["a"]), normalise_prompt(p["b"])
        for key in ((a, b), (b, a)):
            found[key] = found.get(key, False) or bool(p["duplicate"])
    return found


async def measure(cache: SemanticCache, pairs: list[dict[str, Any]], quiet: bool) -> dict[str, Any]:
    entries = {normalise_prompt(p["a"]): p["a"] for p in pairs}
    started = time.perf_counter()
    await cache.store_many([(a, a) for a in entries.values()], SCOPE)
    if not quiet:
        print(
            f"cached {len(entries)} questions in {time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )
    known = labels(pairs)
    groups = duplicate_groups(
        (normalise_prompt(p["a"]), normalise_prompt(p["b"]), bool(p["duplicate"])) for p in pairs
    )
    timings, hits, right, right_on_dup, exact, unlabelled, direct = [], 0, 0, 0, 0, 0, 0
    for i, p in enumerate(pairs):
        t0 = time.perf_counter()
        hit = await cache.lookup(p["b"], SCOPE)
        timings.append((time.perf_counter() - t0) * 1000)
        if hit is None:
            continue
        hits += 1
        exact += hit.exact
        key = (normalise_prompt(hit.answer.answer), normalise_prompt(p["b"]))
        ok = key[0] == key[1] or groups.get(key[0], -1) == groups.get(key[1], -2)
        direct += key[0] == key[1] or known.get(key, False)
        unlabelled += key not in known and key[0] != key[1] and not ok
        right += ok
        right_on_dup += ok and bool(p["duplicate"])
        if not quiet and (i + 1) % 1000 == 0:
            print(f"  asked {i + 1}: {hits} hits, {hits - right} false", file=sys.stderr)
    duplicates = sum(bool(p["duplicate"]) for p in pairs)
    quantiles = statistics.quantiles(timings, n=100)
    return {
        "pairs": len(pairs),
        "hit_rate": round(right_on_dup / duplicates, 4) if duplicates else 0.0,
        "precision": round(right / hits, 4) if hits else 1.0,
        "lookup_p50_ms": round(statistics.median(timings), 2),
        "lookup_p99_ms": round(quantiles[98], 2),
        "hits": hits,
        "false_hits": hits - right,
        "false_hits_unlabelled": unlabelled,
        "precision_direct": round(direct / hits, 4) if hits else 1.0,
        # Unlabelled hits served a cached question the labels say nothing about: often the
        # same question in other words (counted wrong above); here left out.
        "precision_judged": round(right / (hits - unlabelled), 4) if hits > unlabelled else 1.0,
        "exact_hits": exact,
        "duplicates": duplicates,
        "false_hit_rate": cache.false_hit_rate,
        "threshold": round(cache.threshold, 4),
        "verifier": cache.verifier.name,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    pairs = load_pairs(args.pairs, args.limit)
    async with Engine(url, worker=False) as engine:
        await engine.pool.execute(
            "DELETE FROM threadline.cache_entries WHERE scope_key = $1", SCOPE.key
        )
        if args.cosine is not None:
            embedder = default_embedder() if args.embedder == "minilm" else HashEmbedder()
            cache = SemanticCache(
                engine.pool, embedder=embedder, verifier=CosineVerifier(args.cosine)
            )
        elif args.embedder == "hash":
            cache = SemanticCache(engine.pool, embedder=HashEmbedder())
        else:
            cache = SemanticCache(engine.pool, false_hit_rate=args.false_hit_rate)
        try:
            return await measure(cache, pairs, args.json)
        finally:
            await engine.pool.execute(
                "DELETE FROM threadline.cache_entries WHERE scope_key = $1", SCOPE.key
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--false-hit-rate", type=float, default=0.05)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N pairs.")
    parser.add_argument(
        "--cosine",
        type=float,
        default=None,
        help="Baseline: a plain cosine threshold instead of the verifier.",
    )
    parser.add_argument("--embedder", choices=["minilm", "hash"], default="minilm")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run_loop(run(args))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>22}  {value}")


if __name__ == "__main__":
    main()
