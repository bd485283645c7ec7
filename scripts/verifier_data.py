"""The question pairs the cache verifier is trained and calibrated on, their split, and
each question's MiniLM sentence vector (computed once, kept under `.cache/cache-verifier/`,
git-ignored)."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline.rag.cache.calibration import Groups  # noqa: E402
from threadline.rag.embedder import MiniLMEmbedder  # noqa: E402
from threadline.rag.vectors import normalise_prompt  # noqa: E402

CACHE = ROOT / ".cache" / "cache-verifier"
TRAIN_SHARE = 0.7


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


def unit(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by `text` and `seed`: which side of a split `text` goes to."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "big") / 2**64


def split(pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair]]:
    """Training pairs (70 % of the connected groups of questions) and held-out pairs (the
    rest: no question of theirs is trained on), deterministic."""
    groups = Groups()
    for p in pairs:
        groups.join(normalise_prompt(p.a), normalise_prompt(p.b))
    train: list[Pair] = []
    held_out: list[Pair] = []
    for p in pairs:
        root = groups.find(normalise_prompt(p.a))
        (train if unit(root, seed) < TRAIN_SHARE else held_out).append(p)
    return train, held_out


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

    def vectors(self, texts: list[str]) -> torch.Tensor:
        return self.sent[[self.index[t] for t in texts]]

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
