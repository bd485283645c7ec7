"""How the cache's answers are judged against labelled question pairs, and what a run of
them shows at a threshold: one rule for the verifier's calibration
(`scripts/verifier_calibration.py`) and the quality benchmark (`benchmarks/cache_quality.py`).

Serving a cached question for an asked one is right when it is the same question
(`normalise_prompt`) or a duplicate of it by the labels, directly or through a chain of them
(a~b and b~c: a~c). Any other hit is false: one the labels call a non-duplicate, and one they
say nothing about (`unlabelled`: often the same question in other words, never linked)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..vectors import normalise_prompt
from .calibration import ScoredQuery, duplicate_groups

__all__ = ["Asked", "Judge", "Verdict", "at_threshold", "promised_upper"]


@dataclass(frozen=True)
class Verdict:
    right: bool  # the same question, or a duplicate through chains of labels
    direct: bool  # ... the same question, or a duplicate by a label of its own
    unlabelled: bool  # wrong because the labels say nothing about the two


@dataclass(frozen=True)
class Asked:
    """One asked question of a run: the best cached candidate, its score and the verdict on
    serving it."""

    score: float  # 1.0 for an exact (or near-exact) repeat, 0.0 for no candidate
    exact: bool
    verdict: Verdict
    duplicate: bool  # the pair is labelled duplicate

    def scored(self) -> ScoredQuery:
        return ScoredQuery(self.score, self.verdict.right, self.duplicate)


class Judge:
    """The labels of a pairs file: `verdict(served, asked)` for any two questions."""

    def __init__(self, pairs: Iterable[tuple[str, str, bool]]) -> None:
        normalised = [(normalise_prompt(a), normalise_prompt(b), dup) for a, b, dup in pairs]
        self._labels: dict[tuple[str, str], bool] = {}
        for a, b, duplicate in normalised:
            known = self._labels.get((a, b), False) or duplicate
            self._labels[(a, b)] = self._labels[(b, a)] = known
        self._groups = duplicate_groups(normalised)

    def verdict(self, served: str, asked: str) -> Verdict:
        """Serving the cached question `served` ("" for nothing) for the `asked` one."""
        cached, question = normalise_prompt(served), normalise_prompt(asked)
        if not cached:
            return Verdict(False, False, False)
        same = cached == question
        right = same or self._groups.get(cached, -1) == self._groups.get(question, -2)
        direct = same or self._labels.get((cached, question), False)
        unlabelled = not right and (cached, question) not in self._labels
        return Verdict(right, direct, unlabelled)


def promised_upper(rate: float, hits: int) -> float:
    """The top of the 95 % interval of the share of false hits among `hits` hits, if each
    is false with probability `rate` (normal approximation)."""
    return rate + 1.96 * math.sqrt(rate * (1 - rate) / max(hits, 1))


def at_threshold(run: Sequence[Asked], rate: float, threshold: float) -> dict[str, Any]:
    """What the cache serves at `threshold` (every exact repeat, and each best candidate
    scoring at least it), against the false-hit `rate` it promises there."""
    hits = [q for q in run if q.exact or (q.score > 0 and q.score >= threshold)]
    n = len(hits)
    right = sum(q.verdict.right for q in hits)
    unlabelled = sum(q.verdict.unlabelled for q in hits)
    duplicates = sum(q.duplicate for q in run)
    measured = (n - right) / n if n else 0.0
    return {
        "false_hit_rate": rate,
        "threshold": round(threshold, 4),
        "hits": n,
        "exact_hits": sum(q.exact for q in hits),
        "false_hits": n - right,
        "false_hits_unlabelled": unlabelled,
        "false_hit_rate_measured": round(measured, 4),
        "promised_upper": round(promised_upper(rate, n), 4),
        "within_promise": measured <= promised_upper(rate, n),
        "precision": round(right / n, 4) if n else 1.0,
        "precision_direct": round(sum(q.verdict.direct for q in hits) / n, 4) if n else 1.0,
        "precision_judged": round(right / (n - unlabelled), 4) if n > unlabelled else 1.0,
        "hit_rate": round(sum(q.verdict.right and q.duplicate for q in hits) / duplicates, 4)
        if duplicates
        else 0.0,
    }
