"""How the offline demo model answers from reference passages: the context block of a prompt
split into passages, and the sentences, list items or table rows of one that best answer the
question, cited by its label (see `demo_replies`, rule 4)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .demo_text import LIST_MARKER, identifiers, question_words, word_set

__all__ = ["NOT_FOUND", "Passage", "answer_from", "find_passages", "names_a_context"]

NOT_FOUND = (
    "I couldn't find an answer to that in the documents I have. Would you like me to pass "
    "your question to a colleague?"
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_CONTEXT_HEADER = re.compile(
    r"^\s*(?:#+\s*)?(context|sources?|references?|documents?|knowledge)\s*(?::\s*(.*))?$",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s*#{1,6}\s+(.+?)\s*$")
_LABELLED = re.compile(r"^\s*\[([^\]]{1,80})\]\s*(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}")


@dataclass(frozen=True)
class Passage:
    label: str  # how to cite it: "1", "returns", a heading
    title: str  # the heading or source line of a numbered passage
    units: tuple[str, ...]  # sentences, list items and table rows, in order

    @property
    def numbered(self) -> bool:
        return self.label.isdigit()

    @property
    def text(self) -> str:
        return " ".join((self.title, *self.units))


def _units(lines: list[str]) -> tuple[str, ...]:
    """A passage's lines as the pieces an answer quotes: sentences of its paragraphs, its
    list items, and its table rows (as "first cell: header value, …")."""
    units: list[str] = []
    paragraph: list[str] = []
    header: list[str] = []
    in_item = False  # the last line was (part of) a list item

    def flush() -> None:
        text = " ".join(paragraph).strip()
        paragraph.clear()
        units.extend(s.strip() for s in _SENTENCE_END.split(text) if s.strip())

    for line in lines:
        stripped = line.strip()
        if stripped.startswith("|"):
            flush()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if _TABLE_RULE.match(stripped):
                continue
            if not header:
                header = cells
                continue
            pairs = [f"{h.lower()} {c}" for h, c in zip(header[1:], cells[1:], strict=False)]
            units.append(f"{cells[0]}: {', '.join(pairs)}." if pairs else cells[0])
            continue
        header = []
        if LIST_MARKER.match(line):
            flush()
            units.append(LIST_MARKER.sub("", line).strip())
            in_item = True
        elif not stripped:
            flush()
            in_item = False
        elif in_item and line[:1].isspace():  # a list item's next line
            units[-1] += " " + stripped
        else:
            paragraph.append(stripped)
            in_item = False
    flush()
    return tuple(units)


def _split_passages(block: str) -> tuple[Passage, ...]:
    """Passages: `[n] title` then text (numbered, as retrieval writes them), `[label] text`,
    or markdown sections; text with none of these is one passage."""
    passages: list[Passage] = []
    label, title = "", ""  # of the passage being read
    lines: list[str] = []

    def flush() -> None:
        units = _units(lines) or (_units([title]) if label.isdigit() else ())
        if units:
            passages.append(Passage(label or str(len(passages) + 1), title, units))
        lines.clear()

    for line in block.splitlines():
        if heading := _HEADING.match(line):
            flush()
            label = title = heading.group(1)
        elif labelled := _LABELLED.match(line):
            flush()
            label, rest = labelled.group(1).strip(), labelled.group(2).strip()
            title = rest if label.isdigit() else label  # `[returns] Items can be…`: text
            lines.append("" if label.isdigit() else rest)
        else:
            lines.append(line)
    flush()
    return tuple(passages)


@functools.lru_cache(maxsize=256)
def find_passages(text: str) -> tuple[tuple[Passage, ...], str]:
    """The passages in a text, and the text with the passages taken out (kept: a system
    prompt's passages are the same on every turn)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if match := _CONTEXT_HEADER.match(line):
            block = "\n".join([match.group(2) or "", *lines[index + 1 :]])
            return _split_passages(block), "\n".join(lines[:index])
    if any(_HEADING.match(line) for line in lines):
        return _split_passages(text), ""
    return (), text


def names_a_context(text: str) -> bool:
    """Whether a line of the text heads a context block ("Context:", "Sources:", …), even
    an empty one."""
    return any(_CONTEXT_HEADER.match(line) for line in text.splitlines())


def _score(unit: str, wanted: frozenset[str], ids: frozenset[str]) -> int:
    return len(wanted & word_set(unit)) + 3 * len(ids & identifiers(unit))


def _relevant(passage: Passage, wanted: frozenset[str], ids: frozenset[str]) -> bool:
    return bool(wanted & word_set(passage.text)) or bool(ids & identifiers(passage.text))


def answer_from(passages: tuple[Passage, ...], question: str) -> str:
    """The answer to `question` from the best passage, with its citation; `NOT_FOUND` when
    it is not about the question."""
    wanted, ids = question_words(question), identifiers(question)
    if all(p.numbered for p in passages):
        chosen = passages[0]  # ranked by retrieval: the first is the best it found
    else:
        chosen = max(
            passages, key=lambda p: max((_score(u, wanted, ids) for u in p.units), default=0)
        )
    if not chosen.units or not _relevant(chosen, wanted, ids):
        return NOT_FOUND
    scores = [_score(u, wanted, ids) for u in chosen.units]
    if ids and any(ids & identifiers(u) for u in chosen.units):  # E7 asked: not E1's line
        scores = [
            s if ids & identifiers(u) else 0 for s, u in zip(scores, chosen.units, strict=True)
        ]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    picked = [best]
    if scores[best] == 0:  # the passage is on topic but words differ: its opening says it
        picked = list(range(min(2, len(chosen.units))))
    else:
        covered = word_set(chosen.units[best])
        extra = [
            i
            for i in range(len(scores))
            if i != best and scores[i] and (wanted & word_set(chosen.units[i])) - covered
        ]
        picked += extra[:1]
    text = " ".join(chosen.units[i] for i in sorted(picked)).rstrip(";:,")
    text += "" if text.endswith((".", "!", "?", "…")) else "."
    return f"{text} [{chosen.label}]"
