"""Retrieval for the support bot, on its labelled questions (`support_questions.jsonl` in
threadline/demo/): recall@1 and @3 of the passage that answers each in-scope question, and how
often the bot hands an out-of-scope question to a colleague (`threadline.demo.relevance`).

    python benchmarks/retrieval.py                      # both embedders, a table
    python benchmarks/retrieval.py --embedder hash --json
    python benchmarks/retrieval.py --write              # also results/retrieval.json

For each embedder — `hash` (what `pip install -e .` gets) and `minilm` (the `rag` extra) — the
knowledge base is ingested into a fresh collection and every question goes through the same
hybrid retrieval the bot uses (`Knowledge(k=4)`). The questions are split in two halves
(in-scope and out-of-scope questions alternate: even positions calibrate, odd ones report).
The handoff rule (weight and threshold, `relevance.Rule`) is fitted on the calibration half
only: of the rules that hand off at least `--target` (0.9) of its out-of-scope questions,
the one that answers the most in-scope questions whose first passage is the right one (of
thresholds that do as well, the middle one; then more handed off, then the smaller weight;
thresholds lie halfway between observed scores). Both halves
are reported with the fitted rule; `shipped` says whether `relevance.RULES` holds it. The
`vector` and `text` rows rank with one retrieval list alone (diagnostics, all questions).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline import Engine, db  # noqa: E402
from threadline.demo import support  # noqa: E402
from threadline.demo.relevance import RULES, Judge, Rule  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.rag import Embedder, HashEmbedder, Knowledge, default_embedder  # noqa: E402
from threadline.rag.retrieval import Passage  # noqa: E402

QUESTIONS = ROOT / "threadline" / "demo" / "support_questions.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "retrieval.json"
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)


def load(path: Path) -> list[dict[str, Any]]:
    """The questions, each with its half: in-scope and out-of-scope ones alternate."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    seen = {True: 0, False: 0}
    for row in rows:
        out = bool(row.get("out_of_scope"))
        row["half"] = "calibration" if seen[out] % 2 == 0 else "report"
        seen[out] += 1
    return rows


def rank_of(row: dict[str, Any], passages: list[Passage]) -> int | None:
    for number, p in enumerate(passages, 1):
        if (
            p.citation.source == row["document"]
            and p.citation.heading.split(" > ")[-1] == (row["heading"])
        ):
            return number
    return None


def handed_off(row: dict[str, Any], rule: Rule) -> bool:
    if row["names_a_part"]:
        return False
    closest, share = row["features"]
    return bool(closest + rule.weight * share < rule.threshold)


def fit(rows: list[dict[str, Any]], target: float) -> Rule:
    """Of the rules that hand off at least `target` of the out-of-scope questions of `rows`,
    the one that answers the most in-scope ones whose first passage is the right one; of
    thresholds that do as well, the middle one (then: more handed off, the smaller weight)."""
    outside = [r for r in rows if r.get("out_of_scope")]
    right = [r for r in rows if not r.get("out_of_scope") and r["rank"] == 1]
    best: tuple[tuple[int, int, float], Rule] | None = None
    for weight in WEIGHTS:
        scores = sorted(
            {r["features"][0] + weight * r["features"][1] for r in rows}
            - {float("inf"), float("-inf")}
        )
        valid: list[tuple[int, float]] = []  # (answered, threshold)
        for low, high in itertools.pairwise(scores):
            rule = Rule(weight, round((low + high) / 2, 3))
            if sum(handed_off(r, rule) for r in outside) >= target * len(outside):
                valid.append((sum(not handed_off(r, rule) for r in right), rule.threshold))
        if not valid:
            continue
        most = max(answered for answered, _ in valid)
        rule = Rule(weight, statistics.median_low([c for a, c in valid if a == most]))
        mark = (most, sum(handed_off(r, rule) for r in outside), -weight)
        if best is None or mark > best[0]:
            best = (mark, rule)
    if best is None:
        raise SystemExit(f"no rule hands off {target:.0%} of the out-of-scope questions")
    return best[1]


def figures(rows: list[dict[str, Any]], rule: Rule) -> dict[str, Any]:
    inside = [r for r in rows if not r.get("out_of_scope")]
    outside = [r for r in rows if r.get("out_of_scope")]
    answered = [r for r in inside if r["rank"] == 1 and not handed_off(r, rule)]
    return {
        "in_scope": len(inside),
        "out_of_scope": len(outside),
        "recall@1": round(sum(r["rank"] == 1 for r in inside) / len(inside), 3),
        "recall@3": round(sum((r["rank"] or 99) <= 3 for r in inside) / len(inside), 3),
        "out_of_scope_handed_off": round(
            sum(handed_off(r, rule) for r in outside) / len(outside), 3
        ),
        "in_scope_handed_off": round(sum(handed_off(r, rule) for r in inside) / len(inside), 3),
        "answered_from_the_right_passage": round(len(answered) / len(inside), 3),
    }


async def measure(
    url: str, embedder: Embedder, rows: list[dict[str, Any]], target: float
) -> dict[str, Any]:
    assert support.knowledge is not None
    knowledge = Knowledge(
        support.knowledge.path,
        collection="bench-retrieval",
        k=support.knowledge.k,
        embedder=embedder,
    )
    started = time.perf_counter()
    async with Engine(url, worker=False) as engine:
        bound = knowledge.on(engine.pool)
        collection = await bound.collection()
        judge = Judge(embedder, knowledge.path)
        modes: dict[str, list[int | None]] = {"vector": [], "text": []}
        for row in rows:
            passages = await bound.search(row["question"])
            row["features"] = await judge.features(row["question"], passages)
            row["names_a_part"] = judge.names_a_part(row["question"])  # the tools answer it
            row["rank"] = rank_of(row, passages) if not row.get("out_of_scope") else None
            row["first"] = passages[0].citation.heading if passages else None
            if not row.get("out_of_scope"):
                for mode, ranks in modes.items():
                    found = await bound.retriever.search(
                        row["question"],
                        collection,
                        k=knowledge.k,
                        mode=mode,  # type: ignore[arg-type]
                    )
                    ranks.append(rank_of(row, found))
    calibration = [r for r in rows if r["half"] == "calibration"]
    report = [r for r in rows if r["half"] == "report"]
    rule = fit(calibration, target)
    result: dict[str, Any] = {
        "embedder": embedder.name,
        "rule": {"weight": rule.weight, "threshold": rule.threshold},
        "shipped": RULES.get(embedder.name) == rule,
        "calibration": figures(calibration, rule),
        "report": figures(report, rule),
        "all": figures(rows, rule),
        "seconds": round(time.perf_counter() - started, 1),
    }
    for mode, ranks in modes.items():
        result[f"{mode}_only"] = {
            "recall@1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
            "recall@3": round(sum((r or 99) <= 3 for r in ranks) / len(ranks), 3),
        }
    result["misses"] = [
        {"question": r["question"], "rank": r["rank"], "first": r["first"], "half": r["half"]}
        for r in rows
        if not r.get("out_of_scope") and r["rank"] != 1
    ]
    result["out_of_scope_answered"] = [
        r["question"] for r in rows if r.get("out_of_scope") and not handed_off(r, rule)
    ]
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    results = {"questions": str(QUESTIONS.relative_to(ROOT)), "embedders": []}
    for name in args.embedder:
        embedder = HashEmbedder() if name == "hash" else default_embedder()
        results["embedders"].append(await measure(url, embedder, load(QUESTIONS), args.target))
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| embedder | half | questions (in / out) | recall@1 | recall@3 | out-of-scope handed off "
        "| in-scope handed off | answered from the right passage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in results["embedders"]:
        for half in ("calibration", "report"):
            f = e[half]
            lines.append(
                f"| {e['embedder']} | {half} | {f['in_scope']} / {f['out_of_scope']} "
                f"| {f['recall@1']:.2f} | {f['recall@3']:.2f} | {f['out_of_scope_handed_off']:.2f} "
                f"| {f['in_scope_handed_off']:.2f} | {f['answered_from_the_right_passage']:.2f} |"
            )
    for e in results["embedders"]:
        rule = e["rule"]
        lines.append(
            f"\n{e['embedder']}: rule weight {rule['weight']}, threshold {rule['threshold']} "
            f"({'as shipped' if e['shipped'] else 'NOT what relevance.RULES ships'}); "
            f"vector only {e['vector_only']['recall@1']:.2f} / {e['vector_only']['recall@3']:.2f}, "
            f"text only {e['text_only']['recall@1']:.2f} / {e['text_only']['recall@3']:.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--embedder", nargs="+", choices=["hash", "minilm"], default=["hash", "minilm"]
    )
    parser.add_argument(
        "--target",
        type=float,
        default=0.9,
        help="Share of out-of-scope calibration questions the fitted rule must hand off.",
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"Write {RESULTS.relative_to(ROOT)}.")
    args = parser.parse_args()
    results = run_loop(run(args))
    if args.write:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results) if args.json else table(results))


if __name__ == "__main__":
    main()
