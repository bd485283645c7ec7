"""When the support bot answers, and when it hands the question to a colleague.

Retrieval always returns passages, the best it has, even for "Can I pay with PayPal?". The
bot answers only when the passage ranked first is about the question:

    relevance = the cosine of the question and the passage's closest piece (a sentence, list
                item or table row, with its heading), with the knowledge's own embedder
              + weight × the share of the question's words that the knowledge base uses at all

A question naming an identifier (`E7`) that the passage holds is about it, unless the
identifier is in a document's title (the product's name, `TL-500`); one naming a part
code the documents know (`TL-4471`) is answered too: the tools look parts up and order them.
One naming a code the documents never mention, of a family they use (`TL-700`, `E9`), is
handed off: whatever passage comes first is about something else.
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
from ..rag.chunking import pieces
from ..rag.embedder import Embedder
from ..rag.knowledge import BoundKnowledge
from ..rag.retrieval import Passage

__all__ = ["RULES", "Judge", "Rule", "judge_of", "vocabulary"]


@dataclass(frozen=True)
class Rule:
    weight: float  # of the share of the question's words the knowledge base knows
    threshold: float  # relevance below it: hand off


# Fitted by `python benchmarks/retrieval.py` (it says whether these are still what it fits).
RULES = {
    "all-MiniLM-L6-v2": Rule(weight=0.1, threshold=0.456),
    "hash-bow-384": Rule(weight=0.3, threshold=0.341),
}
DEFAULT_RULE = RULES["all-MiniLM-L6-v2"]  # another embedder: recalibrate for it


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
    """Scores passages for a knowledge base. Retrieval measures the closest piece; passages
    found otherwise have their pieces embedded here, once (the documents change rarely)."""

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
        if self.names_an_unknown_code(question):
            return float("-inf"), share
        named = identifiers(question) - self.known.names  # "E7" counts, "TL-500" does not
        if named & identifiers(first.citation.heading + " " + first.content):
            return float("inf"), share
        if first.closest_piece is not None:  # retrieval measured it
            return first.closest_piece, share
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

    def names_an_unknown_code(self, question: str) -> bool:
        """The question names a code of a family the documents use but a member they never
        mention (`TL-700` beside `TL-500`, error `E9` beside `E1`…`E7`): they cannot answer it."""
        known = self.known.names | self.known.codes
        families = {_family(code) for code in known} - {""}
        return any(
            code not in known and _family(code) in families for code in identifiers(question)
        )

    def names_a_part(self, question: str) -> bool:
        """The question names a part code the documents know (`TL-4471`, not `TL-500`)."""
        return bool({code.upper() for code in find_codes(question)} & self.known.codes)

    async def _pieces(self, passage: Passage) -> np.ndarray:
        key = (passage.chunk_id, passage.content_hash)
        if key not in self._vectors:
            found = pieces(passage.citation.heading, passage.content) or [passage.content]
            self._vectors[key] = await self.embedder.embed(found)
        return self._vectors[key]


def _family(code: str) -> str:
    """The letters a code starts with: `TL` of `TL-4471`, `E` of `E7`, none of `24V`."""
    return re.match(r"[A-Z]*", code).group()  # type: ignore[union-attr]


_judges: weakref.WeakKeyDictionary[BoundKnowledge, Judge] = weakref.WeakKeyDictionary()


def judge_of(knowledge: BoundKnowledge) -> Judge:
    """The judge of a bound knowledge base (one per process and database)."""
    judge = _judges.get(knowledge)
    if judge is None:
        judge = _judges[knowledge] = Judge(knowledge.retriever.embedder, knowledge.knowledge.path)
    return judge
