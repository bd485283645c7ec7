"""How hybrid retrieval ranks: BM25 over the chunks' words (rarity counted in the collections
searched, the heading above the body) fused with cosine similarity by score, on the real
PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import numpy as np

from threadline.rag import DocumentStore, Embedder, HashEmbedder, Retriever, load_bytes
from threadline.rag.documents import Collection
from threadline.rag.embedder import Vectors
from threadline.rag.retrieval import DEFAULT_TEXT_WEIGHT, TEXT_WEIGHTS


async def _collection(
    store: DocumentStore, name: str, documents: dict[str, str], *, tenant: str | None = None
) -> Collection:
    kb = await store.collection(name, tenant=tenant)
    for source, text in documents.items():
        await store.ingest(kb, load_bytes(text.encode(), "markdown", source=source))
    return kb


FILTERS = {
    "care.md": "# Care\n\nRinse the filter. A clean filter keeps the filter housing and the "
    "filter itself fresh.",
    "lights.md": "# Lights\n\nA filter lasts six months; change the filter when its light is red.",
    "spares.md": "# Spares\n\nKeep a spare filter at hand.",
    "seals.md": "# Seals\n\nThe housing gasket is sold separately, in the seal kit.",
}


async def test_a_rare_word_outranks_a_common_one_repeated(
    pool: asyncpg.Pool, embedder: HashEmbedder
) -> None:
    """'filter' is in three chunks of four, 'gasket' in one: the chunk with the gasket answers,
    not the one that says 'filter' four times."""
    kb = await _collection(DocumentStore(pool, embedder), "kb", FILTERS)
    retriever = Retriever(pool, embedder)
    question = "Where do I get a filter gasket?"

    text = await retriever.search(question, kb, k=4, mode="text")
    hybrid = await retriever.search(question, kb, k=4)

    assert text[0].citation.source == "seals.md"
    assert hybrid[0].citation.source == "seals.md"
    assert hybrid[0].text_rank == 1


async def test_rarity_is_counted_in_the_collections_searched(
    pool: asyncpg.Pool, embedder: HashEmbedder
) -> None:
    """Another tenant's documents, full of gaskets, do not make 'gasket' common here."""
    store = DocumentStore(pool, embedder)
    kb = await _collection(store, "kb", FILTERS, tenant="acme")
    gaskets = {f"g{i}.md": f"# Gasket {i}\n\nA gasket, gasket number {i}." for i in range(8)}
    await _collection(store, "kb", gaskets, tenant="globex")

    found = await Retriever(pool, embedder).search("filter gasket", kb, k=1, mode="text")

    assert [p.citation.source for p in found] == ["seals.md"]


async def test_a_word_in_the_heading_outranks_it_thrice_in_a_body(
    pool: asyncpg.Pool, embedder: HashEmbedder
) -> None:
    kb = await _collection(
        DocumentStore(pool, embedder),
        "kb",
        {
            "noise.md": "# Noise\n\nA humming sound while the tank fills is normal.",
            "pump.md": "# Pump\n\nThe pump hums; noise from the pump is noise from the motor, "
            "noise that stops.",
            "other.md": "# Other\n\nNothing to see here, nothing at all.",
        },
    )
    found = await Retriever(pool, embedder).search("What is that noise?", kb, k=2, mode="text")
    assert [p.citation.source for p in found] == ["noise.md", "pump.md"]


class Directions(Embedder):
    """A test embedder that gives each text the vector of the first key it contains."""

    name = "directions-test"
    instant = True

    def __init__(self, table: dict[str, Vectors]) -> None:
        self.table = table

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        return np.stack([next(v for k, v in self.table.items() if k in t) for t in texts])


def _unit(*weights: float) -> Vectors:
    vector = np.zeros(384, np.float32)
    vector[: len(weights)] = weights
    return vector / np.linalg.norm(vector)


async def test_storage_order_does_not_decide_between_crossed_ranks(pool: asyncpg.Pool) -> None:
    """One chunk is nearer by vector, the other holds the rarer words: each is first in one
    list and second in the other. Reciprocal-rank fusion scored them the same and the chunk
    stored first won; scores decide now, whatever the order of ingestion."""
    embedder = Directions(
        {
            "Schedule": _unit(0.92, 0.39),  # cosine 0.92 with the question
            "Taste": _unit(0.80, 0.0, 0.60),  # cosine 0.80
            "How often": _unit(1.0),
        }
    )
    schedule = "# Schedule\n\nChange the carbon filter every 12 months."
    taste = "# Taste\n\nAn odd taste: the carbon block is spent. Change the carbon block."
    question = "How often do I change the carbon block?"
    store = DocumentStore(pool, embedder)
    retriever = Retriever(pool, embedder)
    first: list[str] = []
    for name, documents in (
        ("schedule-first", {"schedule.md": schedule, "taste.md": taste}),
        ("taste-first", {"taste.md": taste, "schedule.md": schedule}),
    ):
        kb = await _collection(store, name, documents)
        found = await retriever.search(question, kb, k=2)
        assert {(p.citation.source, p.vector_rank, p.text_rank) for p in found} == {
            ("schedule.md", 1, 2),
            ("taste.md", 2, 1),
        }
        assert found[0].score > found[1].score
        first.append(found[0].citation.source)
    assert first[0] == first[1]


async def test_the_text_weight_is_the_embedders(pool: asyncpg.Pool, embedder: HashEmbedder) -> None:
    assert Retriever(pool, embedder).text_weight == TEXT_WEIGHTS[embedder.name]
    unknown = Directions({"": _unit(1.0)})
    assert Retriever(pool, unknown).text_weight == DEFAULT_TEXT_WEIGHT
    assert Retriever(pool, embedder, text_weight=0.0).text_weight == 0.0


async def test_text_weight_zero_ranks_by_vector_alone(
    pool: asyncpg.Pool, embedder: HashEmbedder
) -> None:
    kb = await _collection(DocumentStore(pool, embedder), "kb", FILTERS)
    question = "Where do I get a filter gasket?"
    unweighted = Retriever(pool, embedder, text_weight=0.0)
    hybrid = await unweighted.search(question, kb, k=4)
    vector = await unweighted.search(question, kb, k=4, mode="vector")
    assert [p.chunk_id for p in hybrid] == [p.chunk_id for p in vector]
    assert [p.score for p in hybrid] == [p.score for p in vector]


async def test_a_short_question_finds_its_list_item_through_the_items_vector(
    pool: asyncpg.Pool,
) -> None:
    """ "How big is it?" is near one line of a list of specifications, not the list as a
    whole: a chunk's similarity is the mean of its own cosine and its closest piece's. With
    no pieces (a collection ingested before them) the chunk's cosine alone counts."""
    embedder = Directions(
        {
            "How big": _unit(1.0),
            "\n- ": _unit(0.7, 0.714),  # the whole list: cosine 0.70 with the question
            "Size": _unit(0.98, 0.199),  # its size line: 0.98
            "Weight": _unit(0.0, 1.0),  # its weight line: 0.0
            "Mounting": _unit(0.8, 0.6),  # another section, chunk and sentence: 0.80
        }
    )
    kb = await _collection(
        DocumentStore(pool, embedder),
        "kb",
        {
            "specs.md": "# Specifications\n\n- Size: 38 x 16 x 42 cm\n- Weight: 9.5 kg",
            "mounting.md": "# Mounting\n\nFix the bracket to the cabinet wall.",
        },
    )
    retriever = Retriever(pool, embedder)

    found = await retriever.search("How big is it?", kb, k=2, mode="vector")
    assert [p.citation.source for p in found] == ["specs.md", "mounting.md"]
    assert found[0].closest_piece is not None and abs(found[0].closest_piece - 0.98) < 0.01
    assert abs(found[0].score - (0.7 + 0.98) / 2) < 0.01

    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM threadline.rag_pieces WHERE collection_id = $1", kb.id)
    found = await retriever.search("How big is it?", kb, k=2, mode="vector")
    assert [p.citation.source for p in found] == ["mounting.md", "specs.md"]
    assert found[1].closest_piece is None


async def test_a_document_ingested_without_pieces_is_embedded_again_once(
    pool: asyncpg.Pool, embedder: HashEmbedder
) -> None:
    store = DocumentStore(pool, embedder)
    kb = await _collection(store, "kb", FILTERS)
    async with pool.acquire() as conn:
        pieces = await conn.fetchval(
            "SELECT count(*) FROM threadline.rag_pieces WHERE collection_id = $1", kb.id
        )
        assert pieces >= len(FILTERS)
        await conn.execute("DELETE FROM threadline.rag_pieces WHERE collection_id = $1", kb.id)
    document = load_bytes(FILTERS["care.md"].encode(), "markdown", source="care.md")

    assert (await store.ingest(kb, document)).status == "updated"
    assert (await store.ingest(kb, document)).status == "unchanged"
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM threadline.rag_pieces p JOIN threadline.rag_chunks c "
                "ON c.id = p.chunk_id JOIN threadline.rag_documents d ON d.id = c.document_id "
                "WHERE d.source = 'care.md' AND d.collection_id = $1",
                kb.id,
            )
            == 2
        )  # "Rinse the filter." and the sentence after it
