"""The semantic cache: exact, then verified nearest-neighbour hits inside a scope."""

from .calibration import Calibration
from .entries import CachedAnswer, DocumentVersion, EntryInfo
from .scope import CacheScope
from .semantic import CacheDecision, CacheHit, SemanticCache
from .serve import CachedModel, CacheKey, lookup, replay_stream
from .verifier import Candidate, CosineVerifier, HitVerifier

__all__ = [
    "CacheDecision",
    "CacheHit",
    "CacheKey",
    "CacheScope",
    "CachedAnswer",
    "CachedModel",
    "Calibration",
    "Candidate",
    "CosineVerifier",
    "DocumentVersion",
    "EntryInfo",
    "HitVerifier",
    "SemanticCache",
    "lookup",
    "replay_stream",
]
