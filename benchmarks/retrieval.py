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
Two things are fitted on the calibration half only, in this order:

1. the retriever's text weight (`retrieval.TEXT_WEIGHTS`): of `TEXT_WEIGHTS_TRIED`, the one
   with the best recall@1, then recall@3, on the calibration half's in-scope questions (of
   weights that do as well, the middle one);
2. the handoff rule (weight and threshold, `relevance.Rule`) on the passages that weight
   finds: of the rules that hand off at least `--target` (0.9) of its out-of-scope
   questions, the one that answers the most in-scope questions whose first passage is the
   right one (of thresholds that do as well, the middle one; then more handed off, then the
   smaller weight; thresholds lie halfway between observed scores).

Both halves are reported with what was fitted; `shipped` says whether `TEXT_WEIGHTS` and
`relevance.RULES` hold it. The same is done on other splits (`--splits`: `swapped` fits on
the report half and reports on the calibration half; `seed-N` shuffles each kind of question
with that seed before alternating), so a figure is not one split's luck. The `vector` and
`text` rows rank with one retrieval list alone (diagnostics, all questions); `latency_ms` is
the p50 of a search with the question's vector already known (the database's part) and of
embedding a question.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline import Engine, db  # noqa: E402
from threadline.demo import support  # noqa: E402
from threadline.demo.relevance import RULES, Judge, Rule  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.rag import Embedder, HashEmbedder, Knowledge, default_embedder  # noqa: E402
from threadline.rag.documents import Collection  # noqa: E402
from threadline.rag.embedder import Vectors  # noqa: E402
from threadline.rag.retrieval import TEXT_WEIGHTS, Passage, Retriever, SearchMode  # noqa: E402

QUESTIONS = ROOT / "threadline" / "demo" / "support_questions.jsonl"
HELD_OUT = ROOT / "threadline" / "demo" / "support_questions_heldout.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "retrieval.json"
RULE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
TEXT_WEIGHTS_TRIED = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
SPLITS = ("alternate", "swapped", "seed-1")


class Remembered(Embedder):
    """An embedder that embeds each text once (the benchmark asks the same questions for
    every text weight tried); its name is the embedder's, so the collection is the same."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.instant = True
        self._seen: dict[str, np.ndarray] = {}

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in dict.fromkeys(texts) if t not in self._seen]
        if missing:
            self._seen.update(zip(missing, self.inner.embed_sync(missing), strict=True))
        return np.stack([self._seen[t] for t in texts]) if texts else self.inner.embed_sync([])

    async def embed(self, texts: Sequence[str]) -> Vectors:
        return self.embed_sync(texts)


def load(path: Path) -> list[dict[str, Any]]:
    """The questions, each with its half in every split (`row["halves"]`); `row["half"]` is
    the first split's."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row["halves"] = {}
    for split in SPLITS:
        for out in (False, True):
            kind = [r for r in rows if bool(r.get("out_of_scope")) == out]
            if split.startswith("seed-"):
                random.Random(int(split.removeprefix("seed-"))).shuffle(kind)
            for position, row in enumerate(kind):
                first = position % 2 == 0 if split != "swapped" else position % 2 == 1
                row["halves"][split] = "calibration" if first else "report"
    for row in rows:
        row["half"] = row["halves"][SPLITS[0]]
    return rows


def rank_of(row: dict[str, Any], passages: list[Passage]) -> int | None:
    for number, p in enumerate(passages, 1):
        if (
            p.citation.source == row["document"]
            and p.citation.heading.split(" > ")[-1] == (row["heading"])
        ):
            return number
    return None


def recall(ranks: Sequence[int | None]) -> tuple[float, float]:
    return (
        round(sum(r == 1 for r in ranks) / len(ranks), 4),
        round(sum((r or 99) <= 3 for r in ranks) / len(ranks), 4),
    )


def fit_text_weight(ranks: dict[float, list[int | None]], inside: list[bool]) -> float:
    """The text weight with the best (recall@1, recall@3) on the questions `inside` selects;
    of weights that do as well, the middle one."""
    scored = {
        w: recall([r for r, i in zip(rs, inside, strict=True) if i]) for w, rs in ranks.items()
    }
    best = max(scored.values())
    return statistics.median_low([w for w, s in scored.items() if s == best])


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
    for weight in RULE_WEIGHTS:
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
    at1, at3 = recall([r["rank"] for r in inside])
    return {
        "in_scope": len(inside),
        "out_of_scope": len(outside),
        "recall@1": at1,
        "recall@3": at3,
        "out_of_scope_handed_off": round(
            sum(handed_off(r, rule) for r in outside) / len(outside), 4
        ),
        "in_scope_handed_off": round(sum(handed_off(r, rule) for r in inside) / len(inside), 4),
        "answered_from_the_right_passage": round(len(answered) / len(inside), 4),
    }


class Bench:
    """One embedder's collection of the bundled knowledge base, searched at any text weight."""

    def __init__(
        self, knowledge: Knowledge, embedder: Remembered, pool: Any, collection: Collection
    ) -> None:
        self.knowledge = knowledge
        self.embedder = embedder
        self.pool = pool
        self.collection = collection
        self.judge = Judge(embedder, knowledge.path)

    async def search(
        self, question: str, text_weight: float, mode: SearchMode = "hybrid"
    ) -> list[Passage]:
        retriever = Retriever(self.pool, self.embedder, text_weight=text_weight)
        return await retriever.search(question, self.collection, k=self.knowledge.k, mode=mode)

    async def answer(self, rows: list[dict[str, Any]], text_weight: float) -> None:
        """What the bot does with each question at this text weight: its passages' rank and
        the handoff rule's features."""
        for row in rows:
            passages = await self.search(row["question"], text_weight)
            row["features"] = await self.judge.features(row["question"], passages)
            row["names_a_part"] = self.judge.names_a_part(row["question"])  # the tools answer
            row["rank"] = rank_of(row, passages) if not row.get("out_of_scope") else None
            row["first"] = passages[0].citation.heading if passages else None

    async def latency(self, rows: list[dict[str, Any]], text_weight: float) -> dict[str, float]:
        """p50 of a search with the question's vector known, and of embedding a question."""
        searches, embeddings = [], []
        for row in rows:
            started = time.perf_counter()
            await self.search(row["question"], text_weight)
            searches.append(time.perf_counter() - started)
            started = time.perf_counter()
            await self.embedder.inner.embed_one(row["question"])
            embeddings.append(time.perf_counter() - started)
        return {
            "search_p50": round(statistics.median(searches) * 1000, 2),
            "embed_p50": round(statistics.median(embeddings) * 1000, 2),
        }


async def measure(
    url: str,
    embedder: Embedder,
    rows: list[dict[str, Any]],
    target: float,
    held_out: list[dict[str, Any]],
) -> dict[str, Any]:
    assert support.knowledge is not None
    remembered = Remembered(embedder)
    knowledge = Knowledge(
        support.knowledge.path,
        collection="bench-retrieval",
        k=support.knowledge.k,
        embedder=remembered,
    )
    inside = [r for r in rows if not r.get("out_of_scope")]
    started = time.perf_counter()
    async with Engine(url, worker=False) as engine:
        bound = knowledge.on(engine.pool)
        bench = Bench(knowledge, remembered, engine.pool, await bound.collection())
        ranks = {
            weight: [rank_of(r, await bench.search(r["question"], weight)) for r in inside]
            for weight in TEXT_WEIGHTS_TRIED
        }
        modes = {
            mode: [rank_of(r, await bench.search(r["question"], 0.0, mode)) for r in inside]
            for mode in ("vector", "text")
        }
        splits = []
        for split in SPLITS:
            calibrating = [r["halves"][split] == "calibration" for r in inside]
            weight = fit_text_weight(ranks, calibrating)
            await bench.answer(rows, weight)
            splits.append(split_figures(rows, split, weight, target))
        first = {"embedder": embedder.name, **splits[0]}
        first["shipped"] = {
            "text_weight": TEXT_WEIGHTS.get(embedder.name) == first["text_weight"],
            "rule": RULES.get(embedder.name) == Rule(**first["rule"]),
        }
        shipped_weight = TEXT_WEIGHTS.get(embedder.name, first["text_weight"])
        await bench.answer(held_out, shipped_weight)
        first["held_out"] = {
            "text_weight": shipped_weight,
            **figures(held_out, RULES.get(embedder.name, Rule(**first["rule"]))),
            "misses": [
                {"question": r["question"], "rank": r["rank"], "first": r["first"]}
                for r in held_out
                if not r.get("out_of_scope") and r["rank"] != 1
            ],
            "out_of_scope_answered": [
                r["question"]
                for r in held_out
                if r.get("out_of_scope")
                and not handed_off(r, RULES.get(embedder.name, Rule(**first["rule"])))
            ],
        }
        await bench.answer(rows, first["text_weight"])  # misses and latency: the first split's
        first["latency_ms"] = await bench.latency(rows, first["text_weight"])
    first["seconds"] = round(time.perf_counter() - started, 1)
    first["text_weights_tried"] = {
        str(w): dict(zip(("recall@1", "recall@3"), recall(rs), strict=True))
        for w, rs in ranks.items()
    }
    for mode, found in modes.items():
        first[f"{mode}_only"] = dict(zip(("recall@1", "recall@3"), recall(found), strict=True))
    first["misses"] = [
        {"question": r["question"], "rank": r["rank"], "first": r["first"], "half": r["half"]}
        for r in inside
        if r["rank"] != 1
    ]
    first["other_splits"] = splits[1:]
    return first


def split_figures(
    rows: list[dict[str, Any]], split: str, text_weight: float, target: float
) -> dict[str, Any]:
    calibration = [r for r in rows if r["halves"][split] == "calibration"]
    report = [r for r in rows if r["halves"][split] == "report"]
    rule = fit(calibration, target)
    return {
        "split": split,
        "text_weight": text_weight,
        "rule": {"weight": rule.weight, "threshold": rule.threshold},
        "calibration": figures(calibration, rule),
        "report": figures(report, rule),
        "all": figures(rows, rule),
        "out_of_scope_answered": [
            r["question"] for r in rows if r.get("out_of_scope") and not handed_off(r, rule)
        ],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    measured = []
    for name in args.embedder:
        embedder = HashEmbedder() if name == "hash" else default_embedder()
        rows, held_out = load(QUESTIONS), load(HELD_OUT)
        measured.append(await measure(url, embedder, rows, args.target, held_out))
    return {
        "questions": str(QUESTIONS.relative_to(ROOT)),
        "held_out": str(HELD_OUT.relative_to(ROOT)),
        "embedders": measured,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| embedder | split | half | questions (in / out) | text weight | recall@1 | recall@3 "
        "| out-of-scope handed off | in-scope handed off | answered from the right passage |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in results["embedders"]:
        for s in [e, *e["other_splits"]]:
            for half in ("calibration", "report"):
                f = s[half]
                lines.append(
                    f"| {e['embedder']} | {s['split']} | {half} "
                    f"| {f['in_scope']} / {f['out_of_scope']} | {s['text_weight']} "
                    f"| {f['recall@1']:.2f} | {f['recall@3']:.2f} "
                    f"| {f['out_of_scope_handed_off']:.2f} | {f['in_scope_handed_off']:.2f} "
                    f"| {f['answered_from_the_right_passage']:.2f} |"
                )
    for e in results["embedders"]:
        f = e["held_out"]
        lines.append(
            f"| {e['embedder']} | held out (shipped weight and rule) | all "
            f"| {f['in_scope']} / {f['out_of_scope']} | {f['text_weight']} "
            f"| {f['recall@1']:.2f} | {f['recall@3']:.2f} "
            f"| {f['out_of_scope_handed_off']:.2f} | {f['in_scope_handed_off']:.2f} "
            f"| {f['answered_from_the_right_passage']:.2f} |"
        )
    for e in results["embedders"]:
        rule, shipped, latency = e["rule"], e["shipped"], e["latency_ms"]
        tried = ", ".join(
            f"{w}: {f['recall@1']:.2f}/{f['recall@3']:.2f}"
            for w, f in e["text_weights_tried"].items()
        )
        lines.append(
            f"\n{e['embedder']}: text weight {e['text_weight']} "
            f"({'as shipped' if shipped['text_weight'] else 'NOT what TEXT_WEIGHTS ships'}), "
            f"rule weight {rule['weight']}, threshold {rule['threshold']} "
            f"({'as shipped' if shipped['rule'] else 'NOT what relevance.RULES ships'}); "
            f"vector only {e['vector_only']['recall@1']:.2f} / {e['vector_only']['recall@3']:.2f}, "
            f"text only {e['text_only']['recall@1']:.2f} / {e['text_only']['recall@3']:.2f}; "
            f"search p50 {latency['search_p50']} ms + embedding {latency['embed_p50']} ms\n"
            f"  all questions by text weight (recall@1/@3): {tried}"
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
