"""When the support bot answers, and when it hands the question to a colleague.

Retrieval always returns passages, the best it has, even for "Can I pay with PayPal?". The
bot answers only when the passage ranked first is about the question:

    relevance = the cosine of the question and the passage's closest piece (a sentence, list
                item or table row, with its heading), with the knowledge's own embedder
              + weight × the share of the question's words that the knowledge base uses at all

A question naming an identifier (`E7`) that the passage holds is about it, unless the
identifier is in a document's title (the product's name, `TL-500`); one naming a part
code the documents know (`TL-4471`) is answered too: the tools look parts up and order them.
The weight and threshold are calibrated per embedder by `benchmarks/retrieval.py` on one half
of `support_questions.jsonl`, on the passages retrieval finds with its own fitted text weight
(the rule that hands off 90 % of its out-of-scope questions and answers the most in-scope
ones from the right passage), and reported on the other half (benchmarks/README.md,
"Retrieval").
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..llm.demo_arguments import find_codes
from ..llm.demo_replies import content_words, identifiers
from ..rag.embedder import Embedder
from ..rag.knowledge import BoundKnowledge
from ..rag.retrieval import Passage

__all__ = ["RULES", "Judge", "Rule", "judge_of", "pieces", "vocabulary"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


@dataclass(frozen=True)
class Rule:
    weight: float  # of the share of the question's words the knowledge base knows
    threshold: float  # relevance below it: hand off


# Fitted by `python benchmarks/retrieval.py` (it says whether these are still what it fits).
RULES = {
    "all-MiniLM-L6-v2": Rule(weight=0.1, threshold=0.455),
    "hash-bow-384": Rule(weight=0.3, threshold=0.341),
}
DEFAULT_RULE = RULES["all-MiniLM-L6-v2"]  # another embedder: recalibrate for it


def pieces(passage: Passage) -> list[str]:
    """The passage's sentences, list items and table rows, each with the passage's heading
    (the pieces a short answer quotes)."""
    heading = passage.citation.heading.split(" > ")[-1]
    found: list[str] = []
    for block in re.split(r"\n\s*\n", passage.content):
        lines: list[str] = []
        for line in block.splitlines():
            if line[:1].isspace() and lines and _MARKER.match(lines[-1]):  # an item goes on
                lines[-1] += " " + line.strip()
            elif line.strip():
                lines.append(line.strip())
        if all(line.startswith("|") or _MARKER.match(line) for line in lines):
            rows = (_MARKER.sub("", line).strip("| ").replace(" | ", ", ") for line in lines)
            found += [row for row in rows if row and not set(row) <= set("-:, ")]
        else:
            found += _SENTENCE.split(" ".join(lines))
    return [f"{heading}: {piece}" if heading else piece for piece in found if piece.strip()]


@dataclass(frozen=True)
class Vocabulary:
    words: frozenset[str]  # every word the documents use (as `content_words` stems them)
    names: frozenset[str]  # identifiers in the documents' titles: the product's name
    codes: frozenset[str]  # the other identifiers: part codes, error codes


_TITLE = re.compile(r"^\s*#\s+(.+)$|<title>(.*?)</title>", re.MULTILINE | re.IGNORECASE)


@functools.lru_cache(maxsize=16)
def vocabulary(folder: Path) -> Vocabulary:
    """The words and identifiers of a knowledge base's documents."""
    words: set[str] = set()
    names: set[str] = set()
    seen: set[str] = set()
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in (".md", ".txt", ".html", ".htm"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        words.update(content_words(text))
        seen.update(identifiers(text))
        if title := _TITLE.search(text):
            names.update(identifiers(title.group(1) or title.group(2) or ""))
    return Vocabulary(frozenset(words), frozenset(names), frozenset(seen - names))


class Judge:
    """Scores passages for a knowledge base (piece vectors are kept: the documents change
    rarely, the questions always)."""

    def __init__(
        self, embedder: Embedder, folder: Path | None = None, rule: Rule | None = None
    ) -> None:
        self.embedder = embedder
        self.rule = rule or RULES.get(embedder.name, DEFAULT_RULE)
        self.known = (
            vocabulary(folder)
            if folder is not None
            else Vocabulary(frozenset(), frozenset(), frozenset())
        )
        self._vectors: dict[tuple[int, str], np.ndarray] = {}

    async def features(self, question: str, passages: Sequence[Passage]) -> tuple[float, float]:
        """(cosine of the question and the first passage's closest piece, share of the
        question's words the knowledge base knows); an identifier of the question that the
        passage holds counts as a perfect match."""
        if not passages:
            return float("-inf"), 0.0
        first = passages[0]
        words = set(content_words(question))
        share = len(words & self.known.words) / len(words) if words else 0.0
        named = identifiers(question) - self.known.names  # "E7" counts, "TL-500" does not
        if named & identifiers(first.citation.heading + " " + first.content):
            return float("inf"), share
        asked = await self.embedder.embed_one(question)
        return float(np.max(await self._pieces(first) @ asked)), share

    async def relevance(self, question: str, passages: Sequence[Passage]) -> float:
        """How well the first passage answers the question (see the module docstring)."""
        closest, share = await self.features(question, passages)
        return closest + self.rule.weight * share

    async def answers(self, question: str, passages: Sequence[Passage]) -> bool:
        """Answer (rather than hand off): the first passage is relevant enough, or the
        question names a part code (the tools look it up or order it)."""
        if self.names_a_part(question):
            return True
        return await self.relevance(question, passages) >= self.rule.threshold

    def names_a_part(self, question: str) -> bool:
        """The question names a part code the documents know (`TL-4471`, not `TL-500`)."""
        return bool({code.upper() for code in find_codes(question)} & self.known.codes)

    async def _pieces(self, passage: Passage) -> np.ndarray:
        key = (passage.chunk_id, passage.content_hash)
        if key not in self._vectors:
            self._vectors[key] = await self.embedder.embed(pieces(passage) or [passage.content])
        return self._vectors[key]


_judges: weakref.WeakKeyDictionary[BoundKnowledge, Judge] = weakref.WeakKeyDictionary()


def judge_of(knowledge: BoundKnowledge) -> Judge:
    """The judge of a bound knowledge base (one per process and database)."""
    judge = _judges.get(knowledge)
    if judge is None:
        judge = _judges[knowledge] = Judge(knowledge.retriever.embedder, knowledge.knowledge.path)
    return judge
