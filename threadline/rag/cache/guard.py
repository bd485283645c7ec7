"""Which answers are worth caching: one that says nothing (it found nothing, refuses, offers a
human, reports an error or an exhausted budget) would be served again for days to everyone
who asks the same, long after the reason has gone."""

from __future__ import annotations

import re

__all__ = ["cites", "is_non_answer"]

_NON_ANSWER = re.compile(
    r"""
      \b(?:I|we)(?:\s+(?:am|are|was|were)|[’']m|[’']re)?\s+
        (?:could\s*n[o’']t|can\s*n?[o’']?t|cannot|unable\s+to|did\s*n[o’']t|not\s+able\s+to)
        \s+(?:find|locate|answer|help|see|tell)\b
    | \bI\s+(?:do\s+not|don[’']t)\s+(?:know|have\s+(?:any\s+)?information)\b
    | \bno\s+(?:information|mention|answer|details?)\s+(?:about|on|of|for|in)\b
    | \bnot\s+(?:in|covered\s+(?:by|in))\s+(?:the\s+)?(?:provided\s+)?
        (?:context|documents?|documentation|sources?|knowledge\s+base|passages?)\b
    | \b(?:hand|pass|transfer|forward)\w*\s+(?:\w+\s+){0,4}(?:to|over\s+to)\s+(?:a\s+|an\s+|our\s+)?
        (?:colleague|human|person|agent|operator|team)\b
    | \b(?:would\s+you\s+like|shall\s+I|do\s+you\s+want)\b[^.?!]{0,60}\b
        (?:colleague|human|person|agent|operator)\b
    | \b(?:an\s+error\s+occurred|something\s+went\s+wrong|try\s+again\s+later)\b
    | \bused\s+up\s+its\s+budget\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
_CITATION = re.compile(r"\[(\d{1,3})\]")


def is_non_answer(text: str) -> bool:
    """The text says it has no answer: nothing found, a refusal, an offer to hand over to a
    human, an error or budget message, or nothing at all."""
    return not text.strip() or _NON_ANSWER.search(text) is not None


def cites(text: str, passages: int) -> bool:
    """The text cites one of the `passages` it was given (`[1]` … `[passages]`)."""
    return any(1 <= int(n) <= passages for n in _CITATION.findall(text))
