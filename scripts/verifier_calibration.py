#!/usr/bin/env python
"""Calibrate the semantic cache's verifier on the questions it will meet, and check the
promise out of sample.

    python scripts/verifier_calibration.py --pairs ../shared/data/qqp_pairs_dev.jsonl.gz

The pairs the verifier never trained on (the 30 % of question groups that
`train_cache_verifier.py` holds out) are split two ways: **by question group** (no question
on both sides) and **by pair** (a group's pairs scattered, as a sample of real traffic
scatters them: a cached question's duplicates are then often cached without the labels that
link them). Each way gives calibration sets and report sets. A set is run as the cache runs:
its `a` are cached *together with other questions* (questions of the training groups, up to
`--cache-size` entries, which the labels say nothing about: a hit on one counts as wrong),
each `b` is asked, the nearest `--neighbours` entries are scored, the best is served.

A false-hit rate's threshold is the lowest score at which the 95 % upper bound of wrong hits
is within the rate on each way's calibration sets; the stricter of the two ships
(`Calibrations`). The report sets then say whether the promise held where nothing was tuned;
the first report set of each way is written to `.cache/cache-verifier/report_by_*.jsonl.gz`
for `benchmarks/cache_quality.py` (which caches only the file's own `a`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verifier_data import CACHE, Features, Pair, load_pairs, split, unit, write_pairs  # noqa: E402

from threadline.rag.cache.calibration import Calibration, Calibrations, Groups  # noqa: E402
from threadline.rag.cache.cross_model import CrossModel  # noqa: E402
from threadline.rag.cache.judging import Asked, Judge, at_threshold  # noqa: E402
from threadline.rag.cache.learned import ARTIFACT_DIR, LearnedVerifier  # noqa: E402
from threadline.rag.vectors import normalise_prompt  # noqa: E402

RATES = (0.01, 0.02, 0.05, 0.10)
Scorer = Callable[[list[str], list[str]], list[float]]


def by_group(pairs: list[Pair], parts: int, seed: int) -> list[list[Pair]]:
    """`parts` sets of whole question groups (connected by any pair, labelled either way)."""
    groups = Groups()
    for p in pairs:
        groups.join(normalise_prompt(p.a), normalise_prompt(p.b))
    out: list[list[Pair]] = [[] for _ in range(parts)]
    for p in pairs:
        out[int(unit(groups.find(normalise_prompt(p.a)), seed) * parts)].append(p)
    return out


def by_pair(pairs: list[Pair], parts: int, seed: int) -> list[list[Pair]]:
    """`parts` sets of pairs drawn at random: a group's pairs land in different sets."""
    out: list[list[Pair]] = [[] for _ in range(parts)]
    for p in pairs:
        out[int(unit(f"{p.a}\x1f{p.b}", seed) * parts)].append(p)
    return out


class MemoScorer:
    """The verifier's score of (asked, cached) pairs, each computed once."""

    def __init__(self, model: CrossModel) -> None:
        self.model = model
        self.memo: dict[tuple[str, str], float] = {}

    def __call__(self, asked: list[str], cached: list[str]) -> list[float]:
        todo = sorted({(a, c) for a, c in zip(asked, cached, strict=True)} - self.memo.keys())
        if todo:
            found = score_pairs(self.model, [a for a, _ in todo], [c for _, c in todo])
            self.memo.update(zip(todo, found, strict=True))
        return [self.memo[(a, c)] for a, c in zip(asked, cached, strict=True)]


def score_pairs(model: CrossModel, asked: list[str], cached: list[str]) -> list[float]:
    """The verifier's score of each (asked, cached) pair, as at run time."""
    model.eval()
    order = sorted(range(len(asked)), key=lambda i: len(asked[i]) + len(cached[i]))
    scores = [0.0] * len(asked)
    size = 64 if model.device.type == "cpu" else 512
    for i in range(0, len(order), size):
        rows = order[i : i + size]
        with model.autocast():
            found = model.probabilities([asked[r] for r in rows], [cached[r] for r in rows])
        for r, score in zip(rows, found, strict=True):
            scores[r] = score
    return scores


def cache_run(
    pairs: list[Pair],
    others: Sequence[str],
    feats: Features,
    scorer: Scorer,
    k: int,
    min_cosine: float,
) -> list[Asked]:
    """Every `a` cached with `others`, every `b` asked: what the cache serves, judged."""
    judge = Judge((p.a, p.b, p.duplicate) for p in pairs)
    entries: dict[str, str] = {}
    for question in [p.a for p in pairs] + list(others):
        entries.setdefault(normalise_prompt(question), question)
    keys = list(entries)
    matrix = feats.vectors([entries[key] for key in keys])
    asks, found, where = [], [], []
    for i in range(0, len(pairs), 1024):
        chunk = pairs[i : i + 1024]
        top = (feats.vectors([p.b for p in chunk]) @ matrix.T).topk(min(k, len(keys)), dim=1)
        for row, p in enumerate(chunk):
            if normalise_prompt(p.b) in entries:
                continue  # an exact hit: no verifier
            for cos, col in zip(top.values[row].tolist(), top.indices[row].tolist(), strict=True):
                if cos >= min_cosine:
                    asks.append(p.b)
                    found.append(entries[keys[col]])
                    where.append((i + row, keys[col]))
    best: dict[int, tuple[float, str]] = {}
    for (row, key), score in zip(where, scorer(asks, found), strict=True):
        if row not in best or score > best[row][0]:
            best[row] = (score, key)
    out = []
    for row, p in enumerate(pairs):
        exact = normalise_prompt(p.b) in entries
        score, key = (1.0, p.b) if exact else best.get(row, (0.0, ""))
        out.append(Asked(score, exact, judge.verdict(key, p.b), p.duplicate))
    return out


def calibrate(
    held_out: list[Pair],
    others: list[str],
    feats: Features,
    scorer: Scorer,
    *,
    seed: int,
    neighbours: int,
    min_cosine: float,
    cache_size: int,
) -> tuple[Calibrations, dict[str, list[Asked]]]:
    """Calibration by group and by pair; the report runs of each, for `at_threshold`."""
    # By group: half the groups calibrate, half report. By pair: five sets of a fifth of the
    # pairs each (a fifth: a group's pairs are mostly elsewhere), two calibrate, three report.
    ways = {
        "by_group": (by_group(held_out, 2, seed), 1),
        "by_pair": (by_pair(held_out, 5, seed), 2),
    }
    tables, reports = {}, {}
    for name, (sets, fitting) in ways.items():
        runs = []
        for part in sets:
            distractors = others[: max(0, cache_size - len({p.a for p in part}))]
            runs.append(cache_run(part, distractors, feats, scorer, neighbours, min_cosine))
        fit = [q.scored() for run in runs[:fitting] for q in run]
        tables[name] = Calibration.fit(fit)
        reports[name] = [q for run in runs[fitting:] for q in run]
        write_pairs(CACHE / f"report_{name}.jsonl.gz", sets[fitting])  # one, for the benchmark
    return Calibrations(tables), reports


def show(calibrations: Calibrations, reports: dict[str, list[Asked]]) -> list[dict[str, Any]]:
    rows = []
    for rate in RATES:
        each = {name: table.threshold(rate) for name, table in calibrations.tables.items()}
        threshold = calibrations.threshold(rate)
        print(f"false-hit rate {rate:.2f}: thresholds {each} -> {threshold:.4f}")
        for name, run in reports.items():
            row = {"set": f"report {name}"} | at_threshold(run, rate, threshold)
            rows.append(row)
            print("   ", json.dumps(row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=13, help="the training split's seed")
    parser.add_argument("--split-seed", type=int, default=7, help="the held-out sets' seed")
    parser.add_argument("--cache-size", type=int, default=16000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=ARTIFACT_DIR, help="the verifier")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    pairs = load_pairs(args.pairs)
    train_set, held_out = split(pairs, args.seed)
    verifier = LearnedVerifier(args.folder)
    feats = Features([t for p in pairs for t in (p.a, p.b)])
    others = sorted({p.a for p in train_set})
    random.Random(args.split_seed).shuffle(others)
    calibrations, reports = calibrate(
        held_out,
        others,
        feats,
        MemoScorer(verifier.network()),
        seed=args.split_seed,
        neighbours=verifier.neighbours,
        min_cosine=verifier.min_cosine,
        cache_size=args.cache_size,
    )
    rows = show(calibrations, reports)
    meta = json.loads((args.folder / "verifier.json").read_text())
    meta["calibrated_on"] = calibrated_on(args, len(held_out), rows)
    meta["calibration"] = calibrations.to_json()
    (args.folder / "verifier.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"done in {time.time() - started:.0f}s; calibration written to {args.folder}")


def calibrated_on(
    args: argparse.Namespace, held_out: int, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the artifact's calibration was made from, and what its report sets measured."""
    return {
        "pairs": args.pairs.name,
        "held_out_pairs": held_out,
        "split_seed": args.split_seed,
        "cache_size": args.cache_size,
        "report": rows,
    }


if __name__ == "__main__":
    main()
