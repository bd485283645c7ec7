"""Documents and hybrid retrieval on the real PostgreSQL, with the test embedder."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from threadline.rag import DocumentStore, HashEmbedder, Retriever, load_bytes
from threadline.rag.knowledge import KB_DIR

PARTS = b"""# Spare parts

## Gaskets

The gasket kit seals the filter housing. Order it as TL-9031.

## Filters

How to replace the filter cartridge: turn the filter cartridge left and pull it down.
Replace the filter cartridge every six months to keep the filter cartridge clean.
"""

DISTRACTORS = [
    b"# Cartridges\n\nHow do I replace the filter cartridge? Replace the filter cartridge "
    b"when the light turns red; the filter cartridge is under the sink.",
    b"# Filter care\n\nTo replace the filter cartridge safely, close the valve, replace the "
    b"filter cartridge and flush the new filter cartridge.",
    b"# Filter FAQ\n\nCan I replace the filter cartridge myself? Yes, replacing the filter "
    b"cartridge takes a minute.",
]


async def test_hybrid_finds_an_exact_product_code_that_vectors_miss(
    pool: asyncpg.Pool, embedder: HashEmbedder
) -> None:
    store = DocumentStore(pool, embedder)
    kb = await store.collection("kb")
    await store.ingest(kb, load_bytes(PARTS, "markdown", source="parts.md"))
    for i, text in enumerate(DISTRACTORS):
        await store.ingest(kb, load_bytes(text, "markdown", source=f"faq{i}.md"))
    question = "How do I replace the filter cartridge with the TL-9031?"
    retriever = Retriever(pool, embedder)

    vector_only = await retriever.search(question, kb, k=3, mode="vector")
    hybrid = await retriever.search(question, kb, k=3)

    assert all("TL-9031" not in p.content for p in vector_only)
    top = hybrid[0]
    assert "TL-9031" in top.content
    assert top.text_rank == 1
    assert top.citation.source == "parts.md"
    assert top.citation.heading == "Spare parts > Gaskets"
    assert top.citation.label == "Spare parts > Gaskets"


async def test_collections_are_per_tenant(pool: asyncpg.Pool, embedder: HashEmbedder) -> None:
    store = DocumentStore(pool, embedder)
    acme = await store.collection("kb", tenant="acme")
    globex = await store.collection("kb", tenant="globex")
    assert acme.id != globex.id
    await store.ingest(acme, load_bytes(b"Acme secret: code AC-1234.", "text", source="a.txt"))
    retriever = Retriever(pool, embedder)
    assert await retriever.search("AC-1234", globex) == []
    found = await retriever.search("AC-1234", acme)
    assert [p.citation.source for p in found] == ["a.txt"]


async def test_upsert_by_content_hash_and_delete(
    pool: asyncpg.Pool, embedder: HashEmbedder, tmp_path: Path
) -> None:
    store = DocumentStore(pool, embedder)
    kb = await store.collection("kb")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\nFirst version mentions TL-1.")
    first = await store.ingest(kb, page)
    again = await store.ingest(kb, page)
    page.write_text("# Page\n\nSecond version mentions TL-2.")
    changed = await store.ingest(kb, page)

    assert (first.status, again.status, changed.status) == ("added", "unchanged", "updated")
    assert first.document_id == again.document_id == changed.document_id
    (info,) = await store.documents(kb)
    assert info.version == 2
    retriever = Retriever(pool, embedder)
    assert [p.content for p in await retriever.search("TL-2", kb, mode="text")] == [
        "Second version mentions TL-2."
    ]
    assert await store.delete(kb, str(page))
    assert await store.documents(kb) == []
    assert await retriever.search("TL-2 second version", kb) == []


async def test_ingest_a_folder_reports_progress(pool: asyncpg.Pool, embedder: HashEmbedder) -> None:
    store = DocumentStore(pool, embedder)
    kb = await store.collection("support")
    seen: list[str] = []
    results = await store.ingest_path(kb, KB_DIR, on_progress=lambda r: seen.append(r.source))
    assert sorted(seen) == sorted(p.name for p in KB_DIR.glob("*.md"))
    assert all(r.status == "added" and r.chunks > 0 for r in results)
    passages = await Retriever(pool, embedder).search("error E7", kb, k=2)
    assert passages[0].citation.source == "troubleshooting.md"
    assert "TL-4480" in passages[0].content
