"""How the offline demo model reads text: the words that carry meaning (crudely stemmed), the
identifiers (`E7`, `TL-4471`), and the markers of list items."""

from __future__ import annotations

import functools
import re

__all__ = [
    "LIST_MARKER",
    "content_words",
    "identifiers",
    "question_words",
    "quote",
    "stem",
    "word_set",
]

_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'’][A-Za-z0-9]+)*")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-.][A-Za-z0-9]+)*")
LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|Q\d+[:.)])\s+")
_STOPWORD_TEXT = """a about above after again all also am an and any are as at be because been
    before being between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself
    just me more most my no nor not now of off on once only or other our out over own same
    she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom
    why will with would you your yours please tell know want need"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@functools.lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """A crude stemmer, enough to match "parking" with "park" and "shipped" with "ship"."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            return word
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """The stemmed words of a text that carry meaning (no stopwords, no one-letter words)."""
    return [stem(w) for w in _WORD.findall(text) if len(w) > 1 and w.lower() not in _STOPWORDS]


# Everyday words for what documents name otherwise: a question's words also match these.
_RELATED = {
    "heavy": "weight", "weigh": "weight", "big": "size", "large": "size", "dimension": "size",
    "guarantee": "warranty", "tap": "faucet", "hose": "tube", "swap": "replace",
    "change": "replace", "refund": "return", "electricity": "power",
}  # fmt: skip


def question_words(text: str) -> frozenset[str]:
    """A question's content words, with the words documents use for them."""
    words = content_words(text)
    return frozenset(words + [_RELATED[w] for w in words if w in _RELATED])


@functools.lru_cache(maxsize=4096)
def word_set(text: str) -> frozenset[str]:
    """`content_words` as a set, kept: a prompt's reference passages are scored again on
    every turn of every session that uses it."""
    return frozenset(content_words(text))


@functools.lru_cache(maxsize=4096)
def identifiers(text: str) -> frozenset[str]:
    """Words with a letter and a digit (`E7`, `TL-4471`, `v1.2`), upper-cased."""
    return frozenset(
        w.upper()
        for w in _TOKEN.findall(text)
        if any(c.isdigit() for c in w) and any(c.isalpha() for c in w)
    )


def quote(text: str, words: int = 8) -> str:
    """The first `words` words of a text (an ellipsis says there were more)."""
    parts = text.split()
    return " ".join(parts[:words]) + ("…" if len(parts) > words else "")
