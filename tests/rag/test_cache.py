"""The semantic cache on the real PostgreSQL (test embedder: exact and near-verbatim hits)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest

from threadline import Engine
from threadline.ledger import Ledger, MeteredModel, Metering, Scope
from threadline.llm import CallOptions, DemoModel, Message, StreamEnd, StreamEvent, TextDelta
from threadline.llm.pricing import PriceOverrides
from threadline.rag import (
    CachedModel,
    CacheKey,
    CacheScope,
    DocumentStore,
    HashEmbedder,
    Retriever,
    SemanticCache,
    load_bytes,
)
from threadline.router import call_model

FAQ = CacheScope(agent="support", prompt_version="3", model_policy="demo", tenant="acme")
QUESTION = "How do I reset the water filter counter?"


class ExactFirstEmbedder(HashEmbedder):
    """The test embedder as the cache treats a model: the exact match asked on its own
    first, the neighbours only when it misses (not both in one round trip)."""

    instant = False


@pytest.fixture(params=["one round trip", "exact first"])
def cache(
    request: pytest.FixtureRequest, pool: asyncpg.Pool, embedder: HashEmbedder
) -> SemanticCache:
    if request.param == "exact first":
        embedder = ExactFirstEmbedder(embedder.dimensions)
    return SemanticCache(pool, embedder=embedder)


async def test_exact_repeat_hits_after_normalisation(cache: SemanticCache) -> None:
    assert await cache.lookup(QUESTION, FAQ) is None
    await cache.store(QUESTION, "Hold the button for 3 seconds.", FAQ, cost_usd=Decimal("0.01"))
    hit = await cache.lookup("  how do I RESET the water filter counter ", FAQ)
    assert hit is not None and hit.exact and hit.answer.answer == "Hold the button for 3 seconds."
    (entry,) = await cache.entries(FAQ)
    assert entry.hits == 1 and entry.saved_usd == Decimal("0.01")


@pytest.mark.parametrize(
    ("asked", "hits"),
    [
        ("Hi, how do I reset the water filter counter?!", False),  # a word more: not a repeat
        ("How do I reset the water-filter counter?", False),  # inside a word: kept
        ("how do i reset... the water filter counter", True),
        ("“How do I reset the water filter counter”", True),
        ("How, do I reset the water filter counter", True),
    ],
)
async def test_near_exact_repeats_hit_without_the_verifier(
    pool: asyncpg.Pool, embedder: HashEmbedder, asked: str, hits: bool
) -> None:
    """Punctuation at the edges of words is not part of the question: such a repeat is an
    exact hit (no embedding, no verifier); punctuation inside a word is kept."""
    cache = SemanticCache(pool, embedder=ExactFirstEmbedder(embedder.dimensions))
    await cache.store(QUESTION, "Hold the button for 3 seconds.", FAQ)
    decision = await cache.decide(asked, FAQ)
    exact = decision.hit is not None and decision.hit.exact
    assert exact is hits
    if exact:
        assert decision.verify_ms == 0.0 and decision.latency_ms > 0.0


async def test_a_lookup_reports_the_verifiers_time_apart(
    cache: SemanticCache,
) -> None:
    await cache.store(QUESTION, "Hold the button for 3 seconds.", FAQ)
    decision = await cache.decide("how do I reset the water filter counter please", FAQ)
    assert decision.hit is not None and not decision.hit.exact
    assert 0.0 < decision.verify_ms <= decision.latency_ms
    assert decision.hit.verify_ms == decision.verify_ms


async def test_counting_hits_leaves_the_entry_and_its_vector_in_place(
    cache: SemanticCache, pool: asyncpg.Pool
) -> None:
    """A hit is counted beside the entry: its row (and so its HNSW entry) is not rewritten,
    and hits on an entry purged before they are written are dropped, not the others'."""
    await cache.store(QUESTION, "Hold the button for 3 seconds.", FAQ, cost_usd=Decimal("0.02"))
    await cache.store("Where is the drain tube?", "Behind the panel.", FAQ)
    where = "SELECT ctid::text FROM threadline.cache_entries WHERE prompt = $1"
    before = await pool.fetchval(where, QUESTION)
    for _ in range(3):
        assert await cache.lookup(QUESTION, FAQ) is not None
    await cache.flush()
    assert await pool.fetchval(where, QUESTION) == before
    entry = next(e for e in await cache.entries(FAQ) if e.prompt == QUESTION)
    assert entry.hits == 3 and entry.saved_usd == Decimal("0.06")

    assert await cache.lookup("Where is the drain tube?", FAQ) is not None
    assert await cache.lookup(QUESTION, FAQ) is not None
    await pool.execute(
        "DELETE FROM threadline.cache_entries WHERE prompt = $1", "Where is the drain tube?"
    )
    await cache.flush()
    (entry,) = await cache.entries(FAQ)
    assert entry.prompt == QUESTION and entry.hits == 4


async def test_near_verbatim_rewording_hits_and_other_questions_miss(
    cache: SemanticCache,
) -> None:
    await cache.store(QUESTION, "Hold the button for 3 seconds.", FAQ)
    hit = await cache.lookup("how do I reset the water filter counter please", FAQ)
    assert hit is not None and not hit.exact and 0.9 <= hit.score < 1.0
    assert await cache.lookup("How do I order a new water filter?", FAQ) is None


async def test_tenants_never_share_entries_unless_declared_shared(cache: SemanticCache) -> None:
    other_tenant = CacheScope(
        agent="support", prompt_version="3", model_policy="demo", tenant="globex"
    )
    await cache.store(QUESTION, "acme's answer", FAQ)
    assert await cache.lookup(QUESTION, other_tenant) is None
    await cache.store(QUESTION, "globex's answer", other_tenant)
    acme_hit, globex_hit = (
        await cache.lookup(QUESTION, FAQ),
        await cache.lookup(QUESTION, other_tenant),
    )
    assert acme_hit is not None and acme_hit.answer.answer == "acme's answer"
    assert globex_hit is not None and globex_hit.answer.answer == "globex's answer"

    shared_a = CacheScope(agent="faq", tenant="acme", shared=True)
    shared_b = CacheScope(agent="faq", tenant="globex", shared=True)
    await cache.store("What are your opening hours?", "8:00 to 20:00", shared_a)
    hit = await cache.lookup("What are your opening hours?", shared_b)
    assert hit is not None and hit.answer.answer == "8:00 to 20:00"


@pytest.mark.parametrize(
    "changed",
    [
        {"prompt_version": "4"},
        {"tool_version": "2"},
        {"model_policy": "anthropic:claude-haiku"},
        {"agent": "sales"},
        {"extra": "locale=de"},
    ],
)
async def test_any_scope_change_misses(cache: SemanticCache, changed: dict[str, str]) -> None:
    await cache.store(QUESTION, "v3 answer", FAQ)
    other = CacheScope(**{**FAQ.__dict__, **changed})
    assert await cache.lookup(QUESTION, other) is None
    assert (await cache.lookup(QUESTION, FAQ)) is not None


async def test_ttl_expires_entries(cache: SemanticCache) -> None:
    await cache.store(QUESTION, "short-lived", FAQ, ttl=timedelta(milliseconds=300))
    await cache.store("Where is the drain tube?", "long-lived", FAQ)
    assert await cache.lookup(QUESTION, FAQ) is not None
    await asyncio.sleep(0.4)
    assert await cache.lookup(QUESTION, FAQ) is None
    assert await cache.purge(expired_only=True) == 1
    assert [e.answer for e in await cache.entries()] == ["long-lived"]


async def test_changing_or_deleting_a_document_drops_answers_built_from_it(
    pool: asyncpg.Pool, cache: SemanticCache, embedder: HashEmbedder
) -> None:
    store = DocumentStore(pool, embedder)
    kb = await store.collection("kb", tenant="acme")
    manual = load_bytes(b"# Reset\n\nHold the button for 3 seconds.", "markdown", source="m.md")
    other = load_bytes(b"# Drain\n\nThe drain tube is red.", "markdown", source="d.md")
    await store.ingest(kb, manual)
    await store.ingest(kb, other)
    retriever = Retriever(pool, embedder)
    used = await retriever.search("reset button", kb, k=1)
    assert used[0].citation.source == "m.md"
    await cache.store(QUESTION, "Hold it 3 s.", FAQ, documents=used)
    drain_used = await retriever.search("drain tube", kb, k=1)
    await cache.store("Which tube is the drain?", "The red one.", FAQ, documents=drain_used)

    await store.ingest(kb, manual)  # unchanged: the answer stays
    assert await cache.lookup(QUESTION, FAQ) is not None
    changed = load_bytes(b"# Reset\n\nHold the button for 5 s.", "markdown", source="m.md")
    await store.ingest(kb, changed)
    assert await cache.lookup(QUESTION, FAQ) is None
    assert await cache.lookup("Which tube is the drain?", FAQ) is not None
    assert await store.delete(kb, "d.md")
    assert await cache.lookup("Which tube is the drain?", FAQ) is None

    # An answer built from a document version that changed meanwhile is not stored.
    assert await cache.store(QUESTION, "stale", FAQ, documents=used) is None
    assert await cache.lookup(QUESTION, FAQ) is None


async def test_a_hit_streams_like_a_live_answer_and_is_in_the_ledger_with_its_saving(
    pool: asyncpg.Pool, embedder: HashEmbedder
) -> None:
    prices = PriceOverrides({"demo:*": {"input_per_mtok": 3, "output_per_mtok": 15}})
    ledger = Ledger(pool, overrides=prices)
    cache = SemanticCache(pool, embedder=embedder, ledger=ledger)
    model = DemoModel(tokens_per_second=0)
    cached = CachedModel(MeteredModel(model), cache)
    messages = [
        Message.system("Context:\n[1] Reset\nHold the button for 3 seconds."),
        Message.user(QUESTION),
    ]
    scope = Scope(tenant="acme", session="s1")
    options = CallOptions(context=(Metering(scope=scope), CacheKey(QUESTION, FAQ)))

    live: list[StreamEvent] = []
    first = await call_model(cached, messages, options, ledger=ledger, on_delta=live.append)
    replayed: list[StreamEvent] = []
    second = await call_model(cached, messages, options, ledger=ledger, on_delta=replayed.append)

    assert not first.cached and second.cached and model.calls == 1
    assert second.text == first.text and second.cost_usd == 0 and first.cost_usd
    assert "".join(e.text for e in replayed if isinstance(e, TextDelta)) == first.text
    assert len([e for e in replayed if isinstance(e, TextDelta)]) > 1
    assert isinstance(replayed[-1], StreamEnd) and isinstance(live[-1], StreamEnd)
    assert replayed[-1].usage == first.usage
    ok, cached = await ledger.calls(session_id="s1")
    assert (ok["status"], cached["status"]) == ("ok", "cached")
    assert ok["cost_usd"] > 0
    assert cached["cost_usd"] == 0 and cached["saved_usd"] == ok["cost_usd"]
    assert cached["tenant"] == "acme" and cached["model"] == ok["model"]
    report = await ledger.report("tenant")
    assert report[0].cached == 1 and report[0].saved_usd == ok["cost_usd"]


async def test_turns_not_marked_cacheable_neither_read_nor_write(
    pool: asyncpg.Pool, cache: SemanticCache
) -> None:
    model = DemoModel(tokens_per_second=0)
    cached = CachedModel(MeteredModel(model, Ledger(pool)), cache)
    options = CallOptions(context=(CacheKey(QUESTION, FAQ, cacheable=False),))
    for _ in range(2):
        result = await cached.request([Message.user(QUESTION)], options)
        assert not result.cached
    assert model.calls == 2 and await cache.entries() == []


async def test_admin_inspect_hit_test_and_purge(cache: SemanticCache) -> None:
    globex = CacheScope(agent="support", tenant="globex")
    await cache.store(QUESTION, "a", FAQ)
    await cache.store("Where is the drain tube?", "b", FAQ)
    await cache.store(QUESTION, "c", globex)

    decision = await cache.decide("how do I reset the water filter counter now", FAQ)
    assert decision.hit is not None and decision.threshold == 0.9
    assert decision.candidates[0][0].prompt == QUESTION
    assert [e.answer for e in await cache.entries(tenant="acme")] == ["b", "a"]
    assert (await cache.entries(FAQ))[0].hits == 0  # a hit-test does not count as a hit

    assert await cache.purge(tenant="acme") == 2
    assert [e.answer for e in await cache.entries()] == ["c"]
    assert await cache.purge() == 1


async def test_hits_counted_as_the_engine_closes_are_written(database_url: str) -> None:
    """Hit counters are written behind (batched); closing the engine writes the last ones."""
    async with Engine(database_url, worker=False) as engine:
        cache = SemanticCache(engine.pool, embedder=HashEmbedder())
        await cache.store(QUESTION, "Hold the button for 3 seconds.", FAQ)
        assert await cache.lookup(QUESTION, FAQ) is not None
    async with Engine(database_url, worker=False) as engine:
        (entry,) = await SemanticCache(engine.pool, embedder=HashEmbedder()).entries(FAQ)
    assert entry.hits == 1
