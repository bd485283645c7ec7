#!/usr/bin/env python
"""Train the semantic cache's hit verifier on question pairs, calibrate its threshold, and
measure it on pairs it never saw.

    python scripts/train_cache_verifier.py --pairs ../shared/data/qqp_pairs_dev.jsonl.gz

The verifier is all-MiniLM-L6-v2 run as a cross-encoder over the pair, with LoRA adapters
(see threadline/rag/cache/cross_model.py). Pairs are split by connected groups of questions
(no question is on two sides of the split), with a fixed seed: 70 % train, 30 % held out.
Each question's MiniLM sentence vector is computed once and kept under
`.cache/cache-verifier/` (git-ignored): it finds the candidates, as the cache's index does.
Training adds the negatives the cache will really meet (the nearest cached questions of
other pairs) and duplicates implied by transitivity. The held-out pairs then calibrate the
thresholds and check them out of sample, split by group and by pair
(`verifier_calibration.py`); the adapters and the calibrations go to
`threadline/rag/cache/verifier/`.

On a GPU (`--device cuda`, the default where torch sees one) training runs in bfloat16 and
an epoch takes about a minute; calibrate what ships on the CPU in float32 afterwards:

    python scripts/verifier_calibration.py --pairs FILE
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress, TextColumn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verifier_calibration import MemoScorer, calibrate, calibrated_on, show  # noqa: E402
from verifier_data import Features, Pair, load_pairs, split  # noqa: E402

from threadline.rag.cache.calibration import duplicate_groups  # noqa: E402
from threadline.rag.cache.cross_model import CrossModel  # noqa: E402
from threadline.rag.cache.learned import ARTIFACT_DIR, save_artifact  # noqa: E402
from threadline.rag.embedder import model_dir  # noqa: E402


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
    parser.add_argument("--split-seed", type=int, default=7, help="the held-out sets' seed")
    parser.add_argument("--cache-size", type=int, default=16000, help="entries at calibration")
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
    train_set, held_out = split(pairs, args.seed)
    print(f"{len(pairs)} pairs: train {len(train_set)}, held out {len(held_out)}", flush=True)
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
    others = sorted({p.a for p in train_set})  # the cache's other entries at calibration
    random.Random(args.split_seed).shuffle(others)
    calibrations, reports = calibrate(
        held_out,
        others,
        feats,
        MemoScorer(model),
        seed=args.split_seed,
        neighbours=args.neighbours,
        min_cosine=args.min_cosine,
        cache_size=args.cache_size,
    )
    rows = show(calibrations, reports)
    save_artifact(
        args.out,
        model,
        calibrations,
        neighbours=args.neighbours,
        min_cosine=args.min_cosine,
        calibrated_on=calibrated_on(args, len(held_out), rows),
    )
    print(f"done in {time.time() - started:.0f}s; artifact in {args.out}")


if __name__ == "__main__":
    main()
