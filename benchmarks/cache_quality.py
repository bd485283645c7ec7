"""How right the semantic cache is, on question pairs: every `a` is cached (its answer is
"the answer to a"), every `b` is asked, through the real cache on PostgreSQL.

A hit is right when the cached question it served is the asked one or a duplicate of it by
the file's labels, directly or through a chain of them (a~b and b~c: a~c); any other hit — a
labelled non-duplicate, or a cached question the labels say nothing about — counts as a
false hit. `hit_rate` is the share of duplicate pairs whose `b` got a right answer;
`precision` is the share of hits that were right. `precision_direct` counts only direct
labels (no chains); `precision_judged` leaves out the hits the labels say nothing about,
since many are the same question in other words.

Each question is looked up once (`SemanticCache.decide`: the best candidate and its score);
what the cache would serve at each false-hit rate it offers follows from that rate's
threshold, so one run reports them all. At each, `false_hit_rate_measured` is checked
against the promised rate's 95 % interval for that many hits (`within_promise`).

    python benchmarks/cache_quality.py --pairs ../shared/data/qqp_pairs_dev.jsonl.gz --json
    python benchmarks/cache_quality.py --pairs benchmarks/data/support_paraphrases.jsonl \\
        --pairs FILE2 --rates 0.01,0.02,0.05 --limit 5000

A pairs file is JSON lines (optionally gzipped) of {"a", "b", "duplicate"}.
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
from threadline.rag.cache.judging import Asked, Judge, at_threshold  # noqa: E402
from threadline.rag.vectors import normalise_prompt  # noqa: E402

SCOPE = CacheScope(agent="cache-quality", prompt_version="1")
RATES = (0.01, 0.02, 0.05)


def load_pairs(path: Path, limit: int | None) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    return pairs[:limit] if limit else pairs


async def ask_all(
    cache: SemanticCache, pairs: list[dict[str, Any]], quiet: bool
) -> tuple[list[Asked], list[tuple[float, float]]]:
    """Every `a` cached, every `b` asked: what the cache found for each, judged, and each
    lookup's time and its verifier's (ms)."""
    entries = {normalise_prompt(p["a"]): p["a"] for p in pairs}
    started = time.perf_counter()
    await cache.store_many([(a, a) for a in entries.values()], SCOPE)
    if not quiet:
        print(f"cached {len(entries)} questions in {time.perf_counter() - started:.0f}s")
    judge = Judge((p["a"], p["b"], bool(p["duplicate"])) for p in pairs)
    asked, timings = [], []
    for i, p in enumerate(pairs):
        decision = await cache.decide(p["b"], SCOPE)
        exact = bool(decision.hit and decision.hit.exact)
        # The cached question served, or the best candidate judged as if served (it would be
        # at a lower threshold).
        if exact and decision.hit is not None:
            served, score = decision.hit.answer.prompt, 1.0
        elif decision.candidates:
            best, score = decision.candidates[0]
            served = best.prompt
        else:
            served, score = "", 0.0
        verdict = judge.verdict(served, p["b"])
        asked.append(Asked(score, exact, verdict, bool(p["duplicate"])))
        timings.append((decision.latency_ms, decision.verify_ms))
        if not quiet and (i + 1) % 1000 == 0:
            print(f"  asked {i + 1}")
    return asked, timings


def _quantiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"n": len(values), "p50": round(values[0], 2) if values else 0.0, "p99": 0.0}
    cuts = statistics.quantiles(values, n=100)
    return {"n": len(values), "p50": round(statistics.median(values), 2), "p99": round(cuts[98], 2)}


def summary(
    cache: SemanticCache,
    asked: list[Asked],
    timings: list[tuple[float, float]],
    rates: list[float],
) -> dict[str, Any]:
    exact = [total for q, (total, _) in zip(asked, timings, strict=True) if q.exact]
    verified = [t for q, t in zip(asked, timings, strict=True) if not q.exact and q.score > 0]
    return {
        "pairs": len(asked),
        "duplicates": sum(q.duplicate for q in asked),
        "verifier": cache.verifier.name,
        "rates": [at_threshold(asked, r, cache.verifier.threshold(r)) for r in rates],
        "lookup_ms": _quantiles([total for total, _ in timings]),
        "lookup_exact_ms": _quantiles(exact),
        "lookup_verified_ms": _quantiles([total for total, _ in verified]),
        "verifier_ms": _quantiles([verify for _, verify in verified]),
    }


def make_cache(engine: Engine, args: argparse.Namespace) -> SemanticCache:
    if args.cosine is not None:
        embedder = default_embedder() if args.embedder == "minilm" else HashEmbedder()
        verifier = CosineVerifier(args.cosine)
        return SemanticCache(engine.pool, embedder=embedder, verifier=verifier)
    if args.embedder == "hash":
        return SemanticCache(engine.pool, embedder=HashEmbedder())
    return SemanticCache(engine.pool)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    clear = "DELETE FROM threadline.cache_entries WHERE scope_key = $1"
    results = {}
    async with Engine(url, worker=False) as engine:
        cache = make_cache(engine, args)
        for path in args.pairs:
            await engine.pool.execute(clear, SCOPE.key)
            try:
                asked, timings = await ask_all(cache, load_pairs(path, args.limit), args.json)
            finally:
                await engine.pool.execute(clear, SCOPE.key)
            results[path.name] = summary(cache, asked, timings, args.rates)
    return results


def show(name: str, result: dict[str, Any]) -> None:
    print(f"\n{name}: {result['pairs']} pairs, {result['duplicates']} duplicates")
    print(
        "  rate  threshold  hits (exact)  false (unlabelled)  measured  promised≤  "
        "precision  judged  hit rate"
    )
    for r in result["rates"]:
        mark = "" if r["within_promise"] else "  OVER"
        cells = [
            f"{r['false_hit_rate']:.2f}",
            f"{r['threshold']:9.4f}",
            f"{r['hits']:5d} ({r['exact_hits']:5d})",
            f"{r['false_hits']:5d} ({r['false_hits_unlabelled']:5d})",
            f"{r['false_hit_rate_measured']:.4f}",
            f"{r['promised_upper']:.4f}",
            f"{r['precision']:.4f}",
            f"{r['precision_judged']:.4f}",
            f"{r['hit_rate']:.4f}{mark}",
        ]
        print("  " + "  ".join(cells))
    for key in ("lookup_ms", "lookup_exact_ms", "lookup_verified_ms", "verifier_ms"):
        q = result[key]
        print(f"  {key:>18}: p50 {q['p50']} ms, p99 {q['p99']} ms ({q['n']} lookups)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=Path, action="append", required=True)
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=list(RATES),
        help="false-hit rates to report, comma-separated",
    )
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
    results = run_loop(run(args))
    if args.json:
        print(json.dumps(results))
        return
    for name, result in results.items():
        show(name, result)


if __name__ == "__main__":
    main()
