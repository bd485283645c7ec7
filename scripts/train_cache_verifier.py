#!/usr/bin/env python
"""Train the semantic cache's hit verifier on question pairs, calibrate its threshold, and
measure it on pairs it never saw.

    python scripts/train_cache_verifier.py --pairs ../shared/data/qqp_pairs_dev.jsonl.gz

The verifier is all-MiniLM-L6-v2 run as a cross-encoder over the pair, with LoRA adapters
(see threadline/rag/cache/cross_model.py). Pairs are split by connected groups of questions
(no question is on two sides of the split), with a fixed seed: train 70 %, calibration 10 %,
test 20 %. Each question's MiniLM sentence vector is computed once and kept under
`.cache/cache-verifier/` (git-ignored): it finds the candidates, as the cache's index does.
Training adds the negatives the cache will really meet (the nearest cached questions of
other pairs) and duplicates implied by transitivity. The adapters and the calibration table
go to `threadline/rag/cache/verifier/`; then the test split is run as the cache runs (every
`a` cached, every `b` asked) and held-out precision and hit rate are printed.

On a GPU (`--device cuda`, the default where torch sees one) training runs in bfloat16 and
an epoch takes about a minute; calibrate what ships on the CPU in float32 afterwards:

    python scripts/train_cache_verifier.py --pairs FILE --epochs 0 --init DIR --device cpu
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress, TextColumn, track

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline.rag.cache.calibration import (  # noqa: E402
    Calibration,
    Groups,
    ScoredQuery,
    duplicate_groups,
)
from threadline.rag.cache.cross_model import CrossModel  # noqa: E402
from threadline.rag.cache.learned import ARTIFACT_DIR, save_artifact  # noqa: E402
from threadline.rag.embedder import MiniLMEmbedder, model_dir  # noqa: E402
from threadline.rag.vectors import normalise_prompt  # noqa: E402

CACHE = ROOT / ".cache" / "cache-verifier"


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    duplicate: bool


def load_pairs(path: Path) -> list[Pair]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [Pair(r["a"], r["b"], bool(r["duplicate"])) for r in map(json.loads, f)]


def write_pairs(path: Path, pairs: list[Pair]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps({"a": p.a, "b": p.b, "duplicate": p.duplicate}) + "\n")


def split(pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Train / calibration / test by connected group of questions, deterministic."""
    groups = Groups()
    for p in pairs:
        groups.join(normalise_prompt(p.a), normalise_prompt(p.b))
    parts: tuple[list[Pair], list[Pair], list[Pair]] = ([], [], [])
    for p in pairs:
        root = groups.find(normalise_prompt(p.a))
        digest = hashlib.sha256(f"{seed}:{root}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        parts[0 if u < 0.7 else 1 if u < 0.8 else 2].append(p)
    return parts


class Features:
    """The MiniLM sentence vector of every distinct question, computed once and cached."""

    def __init__(self, texts: list[str], cache: Path = CACHE, device: str = "cpu") -> None:
        self.device = device
        cache.mkdir(parents=True, exist_ok=True)
        wanted = set(texts)
        if not (cache / "texts.json").exists() or not wanted <= set(
            json.loads((cache / "texts.json").read_text())
        ):
            self._compute(sorted(wanted), cache)
        known = json.loads((cache / "texts.json").read_text())
        self.index = {t: i for i, t in enumerate(known)}
        self.sent = torch.from_numpy(np.load(cache / "sent.npy"))

    def _compute(self, texts: list[str], cache: Path) -> None:
        print(f"embedding {len(texts)} questions (once; kept in {cache})", flush=True)
        embedder = MiniLMEmbedder(
            batch_size=128 if self.device == "cpu" else 1024, device=self.device
        )
        parts = []
        for i in track(range(0, len(texts), 2048), description="embedding"):
            parts.append(embedder.embed_sync(texts[i : i + 2048]))
        np.save(cache / "sent.npy", np.concatenate(parts))
        (cache / "texts.json").write_text(json.dumps(texts))


def closure_positives(pairs: list[Pair], per_group: int = 6) -> list[Pair]:
    """Duplicates implied by transitivity (a~b, b~c: a~c) that no pair states."""
    groups: dict[int, list[str]] = defaultdict(list)
    for question, group in duplicate_groups((p.a, p.b, p.duplicate) for p in pairs).items():
        groups[group].append(question)
    stated = {frozenset((p.a, p.b)) for p in pairs}
    extra = []
    for members in groups.values():
        implied = [
            Pair(a, b, True)
            for i, a in enumerate(members)
            for b in members[i + 1 :]
            if frozenset((a, b)) not in stated
        ]
        extra += implied[:per_group]
    return extra


@torch.no_grad()
def mined_negatives(pairs: list[Pair], feats: Features, per_question: int = 1) -> list[Pair]:
    """What the cache will ask the verifier about: for each asked question, the nearest
    cached questions of *other* pairs that no label calls its duplicates."""
    group = duplicate_groups((p.a, p.b, p.duplicate) for p in pairs)
    cached = sorted({p.a for p in pairs})
    matrix = feats.sent[[feats.index[q] for q in cached]]
    asked = sorted({p.b for p in pairs})
    out = []
    for i in range(0, len(asked), 1024):
        part = asked[i : i + 1024]
        top = (feats.sent[[feats.index[q] for q in part]] @ matrix.T).topk(per_question + 3)
        for q, columns in zip(part, top.indices.tolist(), strict=True):
            found = [cached[c] for c in columns if group[cached[c]] != group[q] and cached[c] != q]
            out += [Pair(q, c, False) for c in found[:per_question]]
    return out


def train(
    model: CrossModel, pairs: list[Pair], epochs: int, seed: int, lr: float, batch_size: int
) -> None:
    rng = random.Random(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(pairs) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, lr, total_steps=steps, pct_start=0.06, anneal_strategy="linear"
    )
    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        started = time.time()
        with Progress(*Progress.get_default_columns(), TextColumn("{task.fields[loss]}")) as bar:
            task = bar.add_task(f"epoch {epoch + 1}", total=len(pairs), loss="")
            for batch in _batches(pairs, rng, batch_size):
                swap = [rng.random() < 0.5 for _ in batch]
                first = [p.b if s else p.a for p, s in zip(batch, swap, strict=True)]
                second = [p.a if s else p.b for p, s in zip(batch, swap, strict=True)]
                target = torch.tensor([float(p.duplicate) for p in batch], device=model.device)
                with model.autocast():
                    logits = model(model.tokenize(first, second))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += float(loss.detach()) * len(batch)
                seen += len(batch)
                bar.update(task, advance=len(batch), loss=f"loss {total / seen:.4f}")
        print(
            f"  epoch {epoch + 1}: loss {total / len(pairs):.4f} ({time.time() - started:.0f}s)",
            flush=True,
        )


def _batches(pairs: list[Pair], rng: random.Random, size: int) -> list[list[Pair]]:
    """Shuffled batches of pairs of similar length (little padding)."""
    order = pairs[:]
    rng.shuffle(order)
    batches = []
    for i in range(0, len(order), size * 32):
        chunk = sorted(order[i : i + size * 32], key=lambda p: len(p.a) + len(p.b))
        batches += [chunk[j : j + size] for j in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def score_pairs(model: CrossModel, asked: list[str], cached: list[str]) -> list[float]:
    """The verifier's score of each (asked, cached) pair, as at run time."""
    model.eval()
    order = sorted(range(len(asked)), key=lambda i: len(asked[i]) + len(cached[i]))
    scores = [0.0] * len(asked)
    size = 64 if model.device.type == "cpu" else 512
    for i in track(range(0, len(order), size), description="scoring"):
        rows = order[i : i + size]
        with model.autocast():
            found = model.probabilities([asked[r] for r in rows], [cached[r] for r in rows])
        for r, score in zip(rows, found, strict=True):
            scores[r] = score
    return scores


def cache_run(
    model: CrossModel, pairs: list[Pair], feats: Features, k: int, min_cosine: float
) -> tuple[list[ScoredQuery], list[str]]:
    """Every `a` cached, every `b` asked: the best candidate's score per question, whether
    serving it would be right (the question itself or a duplicate of it by the labels,
    directly or through a chain of them), and which it was."""
    same = duplicate_groups(
        (normalise_prompt(p.a), normalise_prompt(p.b), p.duplicate) for p in pairs
    )
    entries: dict[str, str] = {}
    for p in pairs:
        entries.setdefault(normalise_prompt(p.a), p.a)
    keys = list(entries)
    matrix = feats.sent[[feats.index[entries[k_]] for k_ in keys]]
    asks, found, where = [], [], []
    for i in range(0, len(pairs), 1024):
        chunk = pairs[i : i + 1024]
        top = (feats.sent[[feats.index[p.b] for p in chunk]] @ matrix.T).topk(k, dim=1)
        for row, p in enumerate(chunk):
            if normalise_prompt(p.b) in entries:
                continue  # an exact hit: no verifier
            for cos, col in zip(top.values[row].tolist(), top.indices[row].tolist(), strict=True):
                if cos >= min_cosine:
                    asks.append(p.b)
                    found.append(entries[keys[col]])
                    where.append((i + row, keys[col]))
    scores = score_pairs(model, asks, found)
    best: dict[int, tuple[float, str]] = {}
    for (row, key), s in zip(where, scores, strict=True):
        if row not in best or s > best[row][0]:
            best[row] = (s, key)
    out, served = [], []
    for row, p in enumerate(pairs):
        b = normalise_prompt(p.b)
        score, key = (1.0, b) if b in entries else best.get(row, (0.0, ""))
        right = key == b or (key != "" and same[key] == same[b])
        out.append(ScoredQuery(score, right, p.duplicate))
        served.append(key)
    return out, served


def record(path: Path, run: list[ScoredQuery], served: list[str]) -> None:
    """One row per asked question, in the split's order: score, right, duplicate, served."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [[q.score, q.right, q.duplicate, key] for q, key in zip(run, served, strict=True)]
    path.write_text(json.dumps(rows))


def report(name: str, run: list[ScoredQuery], calibration: Calibration) -> None:
    for rate in (0.02, 0.03, 0.05, 0.10):
        t = calibration.threshold(rate)
        hits = [q for q in run if q.score >= t]
        right = sum(q.right for q in hits)
        dup_hits = sum(q.right and q.duplicate for q in hits)
        dups = sum(q.duplicate for q in run)
        precision = right / len(hits) if hits else 1.0
        print(
            f"  {name} false-hit rate {rate:.2f}: threshold {t:.3f}  precision {precision:.3f}"
            f"  hit rate on duplicates {dup_hits / dups:.3f}  ({len(hits)} hits)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--neighbours", type=int, default=4)
    parser.add_argument("--min-cosine", type=float, default=0.5)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--negatives", type=int, default=1, help="mined negatives per asked question"
    )
    parser.add_argument(
        "--implied", type=int, default=6, help="implied duplicates per duplicate group"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--record",
        type=Path,
        default=CACHE,
        help="where the calibration and test runs go (score, judged right, served question)",
    )
    parser.add_argument(
        "--max-pairs",
        type=int,
        default=None,
        help="train on every labelled pair and, with mined negatives and implied duplicates, "
        "at most this many in all",
    )
    parser.add_argument(
        "--init", type=Path, default=None, help="start from the adapters in this folder"
    )
    parser.add_argument("--out", type=Path, default=ARTIFACT_DIR)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.time()
    pairs = load_pairs(args.pairs)
    train_set, calib_set, test_set = split(pairs, args.seed)
    print(
        f"{len(pairs)} pairs: train {len(train_set)}, calibrate {len(calib_set)}, "
        f"test {len(test_set)}",
        flush=True,
    )
    write_pairs(CACHE / "test_pairs.jsonl.gz", test_set)  # for benchmarks/cache_quality.py
    feats = Features([t for p in pairs for t in (p.a, p.b)], device=args.device)
    extra = mined_negatives(train_set, feats, args.negatives) + closure_positives(
        train_set, args.implied
    )
    random.Random(args.seed).shuffle(extra)
    if args.max_pairs is not None:
        extra = extra[: max(0, args.max_pairs - len(train_set))]
    print(f"training on {len(train_set)} pairs + {len(extra)} mined/implied", flush=True)
    model = CrossModel(model_dir(), rank=args.rank)
    model.add_adapters()
    model.to(args.device)
    if args.init is not None:  # go on training a shipped verifier
        trained = np.load(args.init / "verifier.npz")
        model.load_state_dict(
            {k: torch.from_numpy(trained[k].astype(np.float32)) for k in trained}, strict=False
        )
    order_seed = args.seed + (1 if args.init is not None else 0)  # another order than before
    if args.epochs > 0:  # with 0, only calibrate and measure the --init verifier
        train(model, train_set + extra, args.epochs, order_seed, args.lr, args.batch)
    with torch.no_grad():  # calibrate what ships: float16 weights
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(parameter.half().float())
    calib_run, calib_served = cache_run(model, calib_set, feats, args.neighbours, args.min_cosine)
    calibration = Calibration.fit(calib_run)
    record(args.record / "calibration_run.json", calib_run, calib_served)
    save_artifact(
        args.out, model, calibration, neighbours=args.neighbours, min_cosine=args.min_cosine
    )
    report("calibration", calib_run, calibration)
    print(f"held-out test, {len(test_set)} pairs, every a cached and every b asked:")
    test_run, test_served = cache_run(model, test_set, feats, args.neighbours, args.min_cosine)
    report("test", test_run, calibration)
    record(args.record / "test_run.json", test_run, test_served)
    print(f"done in {time.time() - started:.0f}s; artifact in {args.out}")


if __name__ == "__main__":
    main()
