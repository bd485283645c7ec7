"""Chunking that respects headings: a chunk never spans two sections, carries the heading
path above it, and breaks at paragraph, then sentence, then word boundaries."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .loaders import Section

__all__ = ["Chunk", "chunk_sections", "pieces"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    heading: str  # "Install > Linux"
    content: str
    page: int | None = None

    @property
    def embedding_text(self) -> str:
        """What gets embedded: the heading path gives a short passage its subject."""
        return f"{self.heading}\n{self.content}" if self.heading else self.content

    @property
    def pieces(self) -> list[str]:
        """What gets embedded besides: see `pieces`; at least the whole content."""
        return pieces(self.heading, self.content) or [self.content]


def chunk_sections(
    sections: Iterable[Section], *, max_chars: int = 1200, overlap_chars: int = 150
) -> list[Chunk]:
    """Pack each section's paragraphs into chunks of at most `max_chars`; a paragraph that
    is longer is split at sentences (then words), and consecutive pieces of one long
    paragraph overlap by about `overlap_chars`."""
    chunks: list[Chunk] = []
    for section in sections:
        heading = " > ".join(section.headings)
        for content in _pack(_pieces(section.text, max_chars, overlap_chars), max_chars):
            chunks.append(Chunk(len(chunks), heading, content, section.page))
    return chunks


def _pieces(text: str, max_chars: int, overlap: int) -> Iterator[str]:
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            yield paragraph
        else:
            yield from _split_long(paragraph, max_chars, overlap)


def _split_long(paragraph: str, max_chars: int, overlap: int) -> Iterator[str]:
    units = _SENTENCE.split(paragraph)
    if any(len(u) > max_chars for u in units):
        units = [w for u in units for w in _words(u, max_chars)]
    current: list[str] = []
    for unit in units:
        if current and len(" ".join([*current, unit])) > max_chars:
            yield " ".join(current)
            current = _tail(current, overlap)
            if len(" ".join([*current, unit])) > max_chars:
                current = []
        current.append(unit)
    if current:
        yield " ".join(current)


def _tail(units: list[str], overlap: int) -> list[str]:
    """The last units of a piece, up to `overlap` characters, to start the next one with."""
    kept: list[str] = []
    for unit in reversed(units):
        if sum(len(u) + 1 for u in kept) + len(unit) > overlap:
            break
        kept.insert(0, unit)
    return kept


def _words(text: str, max_chars: int) -> Iterator[str]:
    line: list[str] = []
    for word in text.split():
        if line and len(" ".join([*line, word])) > max_chars:
            yield " ".join(line)
            line = []
        line.append(word[:max_chars])
    if line:
        yield " ".join(line)


def _pack(pieces: Iterable[str], max_chars: int) -> Iterator[str]:
    """Join consecutive short pieces (paragraphs) while they fit in one chunk."""
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > max_chars:
            yield current
            current = ""
        current = f"{current}\n\n{piece}" if current else piece
    if current:
        yield current


def pieces(heading: str, content: str) -> list[str]:
    """A chunk's sentences, list items and table rows, each with the last heading above it
    ("Specifications: Size, 38 x 16 x 42 cm"): the pieces a short question is about, and
    that a short answer quotes."""
    heading = heading.split(" > ")[-1]
    found: list[str] = []
    for block in re.split(r"\n\s*\n", content):
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
