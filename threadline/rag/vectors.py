"""Vectors and hashes as the database sees them."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
import numpy.typing as npt

__all__ = ["content_hash", "normalise_prompt", "to_pgvector"]


def to_pgvector(vector: npt.NDArray[np.float32]) -> str:
    """pgvector's text form, `[0.1,0.2,...]`, for a `$n::vector` parameter (no codec to
    register on pooled connections)."""
    return "[" + ",".join(f"{x:.6g}" for x in vector.tolist()) + "]"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_prompt(text: str) -> str:
    """What the exact-match path compares: NFKC, case-folded, whitespace collapsed and
    trailing punctuation dropped ("How do I reset it?" == "how do i reset it")."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip("?!. ")
