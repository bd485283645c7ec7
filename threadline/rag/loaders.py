"""Reading documents: Markdown, plain text, HTML and PDF become titled sections of text.

Every loader yields `Section`s (the headings above a piece of text, the text, and for PDFs
the page) so that chunking can keep each chunk under one heading."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["KINDS", "LoadedDocument", "Section", "kind_of", "load_bytes", "load_path"]

KINDS: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}


@dataclass(frozen=True)
class Section:
    headings: tuple[str, ...]
    text: str
    page: int | None = None


@dataclass(frozen=True)
class LoadedDocument:
    source: str
    kind: str
    title: str
    sections: list[Section] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The whole extracted text (what the content hash is taken of)."""
        return "\n\n".join(
            " > ".join(s.headings) + "\n" + s.text if s.headings else s.text for s in self.sections
        )


def kind_of(path: str | Path) -> str | None:
    return KINDS.get(Path(path).suffix.lower())


def load_path(path: str | Path, *, source: str | None = None) -> LoadedDocument:
    path = Path(path)
    kind = kind_of(path)
    if kind is None:
        raise ConfigurationError(
            f"cannot ingest {path.name}: supported types are {', '.join(sorted(KINDS))}"
        )
    return load_bytes(path.read_bytes(), kind, source=source or str(path), name=path.stem)


def load_bytes(data: bytes, kind: str, *, source: str, name: str = "") -> LoadedDocument:
    """A document of `kind` (markdown, text, html or pdf) from its bytes."""
    if kind == "pdf":
        return _pdf(data, source, name)
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    page_title = ""
    if kind == "markdown":
        sections = list(markdown_sections(text))
    elif kind == "html":
        page_title, markdown = html_to_markdown(text)
        sections = list(markdown_sections(markdown))
    elif kind == "text":
        sections = [Section((), text.strip())] if text.strip() else []
    else:
        raise ConfigurationError(f"unknown document kind {kind!r}")
    heading = next((s.headings[0] for s in sections if s.headings), "")
    title = page_title or heading or name
    return LoadedDocument(source, kind, title, sections)


# -- Markdown ---------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_sections(text: str) -> Iterator[Section]:
    """Split Markdown at ATX headings (not inside code fences), keeping the heading path."""
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> Section | None:
        body = "\n".join(lines).strip()
        lines.clear()
        return Section(tuple(h for _, h in path), body) if body else None

    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        if (section := flush()) is not None:
            yield section
        level = len(match.group(1))
        path = [(lv, h) for lv, h in path if lv < level] + [(level, match.group(2).strip())]
    if (section := flush()) is not None:
        yield section


# -- HTML -------------------------------------------------------------------------------------

_SKIP = {"script", "style", "noscript", "template", "svg", "nav", "footer", "head"}
_BLOCK = {"p", "div", "section", "article", "main", "ul", "ol", "table", "tr", "br", "pre"}
_BLOCK |= {"blockquote", "dl", "dt", "dd", "header", "aside", "figure", "hr"}


class _HTMLText(HTMLParser):
    """HTML to Markdown-like text: headings become `#` lines, blocks become paragraphs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in {"td", "th"}:
            self.out.append(" | ")
        elif tag in _BLOCK:
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag) or tag in _BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()
        elif not self._skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_markdown(html: str) -> tuple[str, str]:
    """(the page title, its visible text as Markdown-like paragraphs under `#` headings)."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    paragraphs = [re.sub(r"[ \t]+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    lines = [re.sub(r"\n[ \t]*", "\n", p) for p in paragraphs if p]
    return parser.title, "\n\n".join(lines)


# -- PDF --------------------------------------------------------------------------------------


def _pdf(data: bytes, source: str, name: str) -> LoadedDocument:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise ConfigurationError("reading PDF needs pypdf: pip install 'threadline[rag]'") from exc
    reader = PdfReader(io.BytesIO(data))
    title = ""
    if reader.metadata is not None and reader.metadata.title:
        title = str(reader.metadata.title)
    sections = []
    for number, page in enumerate(reader.pages, 1):
        text = re.sub(r"[ \t]+\n", "\n", page.extract_text() or "").strip()
        if text:
            sections.append(Section((), text, page=number))
    return LoadedDocument(source, "pdf", title or name, sections)
