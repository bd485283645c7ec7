"""From an accepted false-hit rate to a score threshold, with an error bound.

Calibration replays held-out questions through the cache (every question asked, its best
candidate scored) and records, for each candidate threshold, how many hits there were and
how many served a wrong answer. A threshold is allowed for a false-hit rate r when the
95 % upper confidence bound (Wilson) on its false-hit share is at most r, at it and at
every higher threshold with enough hits to judge; the lowest allowed threshold is used.

Whether a hit was right is read off labelled question pairs: serving a cached question is
right when the labels make it a duplicate of the asked one, directly or through a chain of
them (`duplicate_groups`: a~b and b~c give a~c)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Calibration", "Calibrations", "Groups", "ScoredQuery", "duplicate_groups"]

_Z = 1.645  # one-sided 95 %
NEVER = 1.01  # a threshold no score reaches
MIN_HITS = 100


@dataclass(frozen=True)
class ScoredQuery:
    score: float  # the best candidate's score (0: no candidate)
    right: bool  # serving that candidate would have been right
    duplicate: bool  # the question has a duplicate in the cache


@dataclass(frozen=True)
class Point:
    threshold: float
    hits: int
    false_hits: int

    @property
    def upper_bound(self) -> float:
        return wilson_upper(self.false_hits, self.hits)


def wilson_upper(failures: int, trials: int, z: float = _Z) -> float:
    if trials == 0:
        return 1.0
    p = failures / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return min(1.0, (centre + spread) / (1 + z * z / trials))


class Calibration:
    def __init__(self, points: Sequence[Point]) -> None:
        self.points = sorted(points, key=lambda p: p.threshold)

    @classmethod
    def fit(cls, run: Sequence[ScoredQuery], steps: int = 400) -> Calibration:
        scored = sorted((q for q in run if q.score > 0), key=lambda q: -q.score)
        points, false_hits = [], 0
        every = max(1, len(scored) // steps)
        for hits, q in enumerate(scored, 1):
            false_hits += not q.right
            last = hits == len(scored) or scored[hits].score < q.score
            if last and (hits % every == 0 or hits == len(scored)):
                points.append(Point(q.score, hits, false_hits))
        return cls(points)

    def threshold(self, false_hit_rate: float) -> float:
        """The lowest threshold whose hits, and those of every higher one, are wrong at
        most `false_hit_rate` of the time (upper bound); `NEVER` if none is. The highest
        thresholds, with fewer than `MIN_HITS` hits, are too few to judge and are skipped."""
        allowed = NEVER
        for point in reversed(self.points):  # highest threshold first
            if point.upper_bound <= false_hit_rate:
                allowed = point.threshold
            elif point.hits >= MIN_HITS:
                break
        return allowed

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"threshold": p.threshold, "hits": p.hits, "false_hits": p.false_hits}
            for p in self.points
        ]

    @classmethod
    def from_json(cls, data: Sequence[dict[str, Any]]) -> Calibration:
        return cls(
            [Point(float(d["threshold"]), int(d["hits"]), int(d["false_hits"])) for d in data]
        )


class Calibrations:
    """Several calibrations of one verifier, each on its own held-out questions (split by
    question group, split by pair); a rate's threshold is the strictest of theirs, so the
    promise holds on the worse of them."""

    def __init__(self, tables: dict[str, Calibration]) -> None:
        if not tables:
            raise ValueError("no calibration")
        self.tables = tables

    def threshold(self, false_hit_rate: float) -> float:
        return max(table.threshold(false_hit_rate) for table in self.tables.values())

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {name: table.to_json() for name, table in self.tables.items()}

    @classmethod
    def from_json(cls, data: Any) -> Calibrations:
        """From `to_json`'s form, or one table (a list: what older artifacts hold)."""
        if isinstance(data, list):
            return cls({"calibration": Calibration.from_json(data)})
        return cls({name: Calibration.from_json(table) for name, table in data.items()})


class Groups:
    """Union-find over questions: `join` two, `find` a group's representative."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def duplicate_groups(pairs: Iterable[tuple[str, str, bool]]) -> dict[str, int]:
    """Questions joined by duplicate labels, directly or through chains: (a, b, duplicate)
    triples -> question -> group number. Every question of the pairs has one."""
    groups = Groups()
    for a, b, duplicate in pairs:
        groups.find(a), groups.find(b)
        if duplicate:
            groups.join(a, b)
    roots: dict[str, int] = {}
    return {q: roots.setdefault(groups.find(q), len(roots)) for q in list(groups.parent)}
