"""Hit decisions: is a cached question close enough to the asked one to serve its answer?

A verifier scores (asked question, cached question) candidates in [0, 1] and turns the
false-hit rate a user accepts into a score threshold. `CosineVerifier` is the plain
threshold most semantic caches use (kept as a baseline and for the test embedder);
`learned.LearnedVerifier` is the trained one threadline uses by default with MiniLM."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Candidate", "CosineVerifier", "HitVerifier"]


@dataclass(frozen=True)
class Candidate:
    """A cached question found near the asked one."""

    entry_id: int
    prompt: str
    cosine: float


class HitVerifier(ABC):
    name: str = ""
    min_cosine: float = 0.0  # nearer neighbours only are scored at all

    @abstractmethod
    def threshold(self, false_hit_rate: float) -> float:
        """The lowest score at which hits are wrong at most `false_hit_rate` of the time."""

    @abstractmethod
    def scores(self, prompt: str, candidates: Sequence[Candidate]) -> list[float]:
        """A score in [0, 1] per candidate of the asked `prompt`;
        blocking (it may run a model)."""


class CosineVerifier(HitVerifier):
    """Cosine similarity against one fixed threshold, whatever false-hit rate is asked
    (a fixed threshold has no error bound: see docs/rag.md for what it costs)."""

    name = "cosine"

    def __init__(self, threshold: float = 0.9) -> None:
        self._threshold = threshold
        self.min_cosine = threshold

    def threshold(self, false_hit_rate: float) -> float:
        return self._threshold

    def scores(self, prompt: str, candidates: Sequence[Candidate]) -> list[float]:
        return [c.cosine for c in candidates]
