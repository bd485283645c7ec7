"""Reading each file type, heading-aware chunking, and ingesting files into a collection."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from threadline.rag import DocumentStore, HashEmbedder, Retriever, chunk_sections, load_path
from threadline.rag.loaders import Section, html_to_markdown

from .pdf import make_pdf

MARKDOWN = """# Guide

Intro paragraph.

## Install

Run the installer.

```
# not a heading inside a fence
```

### Linux

Use the package TL-7001.

## Use

Press start.
"""

HTML = """<html><head><title>Parts page</title><style>p {color: red}</style>
<script>var secret = "never indexed";</script></head>
<body><nav>Home | Shop</nav><h1>Parts</h1><p>The valve is part <b>TL-2290</b>.</p>
<h2>Filters</h2><ul><li>Pre-filter TL-4471</li><li>Carbon TL-4472</li></ul>
<footer>© Tidewater</footer></body></html>"""


def test_markdown_sections_follow_the_heading_tree(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN)
    doc = load_path(path)
    assert doc.kind == "markdown" and doc.title == "Guide"
    assert [s.headings for s in doc.sections] == [
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "Linux"),
        ("Guide", "Use"),
    ]
    assert "# not a heading inside a fence" in doc.sections[1].text


def test_html_keeps_headings_and_drops_scripts_styles_and_chrome(tmp_path: Path) -> None:
    path = tmp_path / "parts.html"
    path.write_text(HTML)
    doc = load_path(path)
    assert doc.kind == "html" and doc.title == "Parts page"
    assert [s.headings for s in doc.sections] == [("Parts",), ("Parts", "Filters")]
    assert doc.sections[0].text == "The valve is part TL-2290."
    assert "- Pre-filter TL-4471" in doc.sections[1].text
    for hidden in ("secret", "color", "Home", "Tidewater"):
        assert hidden not in doc.text
    assert html_to_markdown("<p>a &amp; b</p>")[1] == "a & b"


def test_pdf_pages_become_sections_with_page_numbers(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(
        make_pdf(
            [["Page one text.", "Error E2 means low pressure."], ["Second page: TL-3305."]],
            title="TL-500 manual",
        )
    )
    doc = load_path(path)
    assert doc.kind == "pdf" and doc.title == "TL-500 manual"
    assert [s.page for s in doc.sections] == [1, 2]
    assert "Error E2 means low pressure." in doc.sections[0].text
    assert "TL-3305" in doc.sections[1].text


def test_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph.\n\nSecond paragraph.\n")
    doc = load_path(path)
    assert doc.kind == "text" and doc.title == "notes"
    assert doc.sections == [Section((), "First paragraph.\n\nSecond paragraph.")]


def test_chunks_stay_under_one_heading_and_under_the_size_limit() -> None:
    long = " ".join(f"Sentence number {i} says something." for i in range(200))
    sections = [Section(("A",), "short one\n\nshort two"), Section(("A", "B"), long)]
    chunks = chunk_sections(sections, max_chars=300, overlap_chars=60)
    assert chunks[0].heading == "A" and chunks[0].content == "short one\n\nshort two"
    rest = chunks[1:]
    assert len(rest) > 10 and all(c.heading == "A > B" for c in rest)
    assert all(len(c.content) <= 300 for c in chunks)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # consecutive pieces of one long paragraph overlap
    assert rest[1].content.split(". ")[0] in rest[0].content
    assert chunks[1].embedding_text.startswith("A > B\n")


async def test_ingest_every_file_type_into_one_collection(
    pool: asyncpg.Pool, embedder: HashEmbedder, tmp_path: Path
) -> None:
    (tmp_path / "guide.md").write_text(MARKDOWN)
    (tmp_path / "parts.html").write_text(HTML)
    (tmp_path / "notes.txt").write_text("The warranty lasts 3 years, code W-3.")
    (tmp_path / "manual.pdf").write_bytes(make_pdf([["Intro."], ["Leak sensor TL-3305."]]))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")  # unsupported: skipped
    store = DocumentStore(pool, embedder)
    kb = await store.collection("kb")
    results = await store.ingest_path(kb, tmp_path)
    assert sorted(r.source for r in results) == [
        "guide.md",
        "manual.pdf",
        "notes.txt",
        "parts.html",
    ]
    docs = {d.source: d for d in await store.documents(kb)}
    assert {d.kind for d in docs.values()} == {"markdown", "html", "text", "pdf"}
    assert docs["guide.md"].chunks == 4
    retriever = Retriever(pool, embedder)
    (hit,) = await retriever.search("TL-3305", kb, k=1)
    assert hit.citation.source == "manual.pdf" and hit.citation.page == 2
    assert hit.citation.label == "manual (p. 2)"
    (hit,) = await retriever.search("TL-7001", kb, k=1)
    assert hit.citation.heading == "Guide > Install > Linux"
