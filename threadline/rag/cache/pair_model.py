"""The learned verifier's network: a small cross-attention model over the frozen token
vectors of all-MiniLM-L6-v2 (the ones the embedder computes anyway).

Sentence vectors blur the one word that makes two questions different ("learn Python" /
"learn Java"). This head aligns the two questions word by word (ESIM-style soft alignment,
helped by an exact-wordpiece match bias), compares each word with what it aligned to, and
pools; with the sentence vectors' product and difference it predicts "same question". It
is symmetric in its two inputs and has about 0.4 M parameters (the encoder stays frozen and
is not part of it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["PairBatch", "PairModel"]

WIDTH = 384


class PairBatch:
    """Padded token vectors (contextual and static), ids, masks and sentence vectors of two
    sides of a batch of question pairs."""

    def __init__(self, sides: tuple[dict[str, Tensor], dict[str, Tensor]]) -> None:
        self.a, self.b = sides


class PairModel(nn.Module):
    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = hidden
        self.project = nn.Sequential(nn.Linear(2 * WIDTH, hidden), nn.LayerNorm(hidden))
        self.same_token = nn.Parameter(torch.tensor(1.0))
        self.compare = nn.Sequential(nn.Linear(4 * hidden, hidden), nn.GELU())
        self.sentence = nn.Sequential(nn.Linear(2 * WIDTH, hidden), nn.GELU())
        self.head = nn.Sequential(
            nn.Linear(5 * hidden + 1, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, 1)
        )

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden}

    def forward(self, a: dict[str, Tensor], b: dict[str, Tensor]) -> Tensor:
        """Logits of "a and b ask the same thing", shape (batch,)."""
        ta = self.project(torch.cat([a["tokens"], a["static"]], -1))
        tb = self.project(torch.cat([b["tokens"], b["static"]], -1))
        scores = ta @ tb.transpose(1, 2) / self.hidden**0.5
        same = (a["ids"].unsqueeze(2) == b["ids"].unsqueeze(1)).float()
        scores = scores + self.same_token * same
        pair_mask = a["mask"].unsqueeze(2) & b["mask"].unsqueeze(1)
        scores = scores.masked_fill(~pair_mask, -1e4)
        a_aligned = torch.softmax(scores, dim=2) @ tb
        b_aligned = torch.softmax(scores, dim=1).transpose(1, 2) @ ta
        va = self._pool(self._compare(ta, a_aligned), a["mask"])
        vb = self._pool(self._compare(tb, b_aligned), b["mask"])
        ea, eb = a["sentence"], b["sentence"]
        whole = self.sentence(torch.cat([ea * eb, (ea - eb).abs()], -1))
        cosine = (ea * eb).sum(-1, keepdim=True)
        features = torch.cat([va + vb, (va - vb).abs(), whole, cosine], -1)
        logits: Tensor = self.head(features).squeeze(-1)
        return logits

    def _compare(self, own: Tensor, aligned: Tensor) -> Tensor:
        out: Tensor = self.compare(torch.cat([own, aligned, own - aligned, own * aligned], -1))
        return out

    @staticmethod
    def _pool(values: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(-1).float()
        mean = (values * m).sum(1) / m.sum(1).clamp(min=1.0)
        top = values.masked_fill(~mask.unsqueeze(-1), -1e4).max(1).values
        return torch.cat([mean, top], -1)


def pad_side(
    tokens: list[Tensor], ids: list[Tensor], sentence: Tensor, static_table: Tensor
) -> dict[str, Tensor]:
    """One side of a batch: token vectors padded to the longest, with their mask."""
    length = max(len(t) for t in tokens)
    size = len(tokens)
    padded = torch.zeros(size, length, WIDTH)
    padded_ids = torch.full((size, length), -1, dtype=torch.long)
    mask = torch.zeros(size, length, dtype=torch.bool)
    for i, (t, n) in enumerate(zip(tokens, ids, strict=True)):
        padded[i, : len(t)] = t
        padded_ids[i, : len(n)] = n
        mask[i, : len(t)] = True
    static = static_table[padded_ids.clamp(min=0)]
    return {
        "tokens": padded,
        "static": static,
        "ids": padded_ids,
        "mask": mask,
        "sentence": sentence,
    }
