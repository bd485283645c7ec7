"""The trained hit verifier: `PairModel` over MiniLM's token vectors, with the calibration
that maps an accepted false-hit rate to its threshold. Trained and measured by
`scripts/train_cache_verifier.py`; the weights (under 1 MiB) ship in `verifier/`."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ...errors import ConfigurationError
from ..embedder import Embedder, Encoded, MiniLMEmbedder
from .calibration import Calibration
from .verifier import Candidate, HitVerifier

__all__ = ["ARTIFACT_DIR", "LearnedVerifier", "save_artifact"]

T = TypeVar("T")

ARTIFACT_DIR = Path(__file__).resolve().parent / "verifier"


class LearnedVerifier(HitVerifier):
    name = "learned-pair-model"
    wants_tokens = True

    def __init__(self, folder: Path = ARTIFACT_DIR) -> None:
        meta_path = folder / "verifier.json"
        if not meta_path.exists():
            raise ConfigurationError(
                f"no trained verifier in {folder}: run scripts/train_cache_verifier.py"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.calibration = Calibration.from_json(self.meta["calibration"])
        self.min_cosine = float(self.meta["min_cosine"])
        self.neighbours = int(self.meta["neighbours"])
        self._folder = folder
        self._model: Any = None
        self._lock = threading.Lock()

    _bundled: LearnedVerifier | None = None

    @classmethod
    def bundled(cls) -> LearnedVerifier:
        """The verifier shipped with threadline (one per process; weights load lazily)."""
        if cls._bundled is None:
            cls._bundled = cls()
        return cls._bundled

    def threshold(self, false_hit_rate: float) -> float:
        return self.calibration.threshold(false_hit_rate)

    def _network(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch

                from .pair_model import PairModel

                model = PairModel(**self.meta["config"])
                weights = np.load(self._folder / "verifier.npz")
                state = {k: torch.from_numpy(weights[k].astype(np.float32)) for k in weights}
                model.load_state_dict(state)
                model.eval()
                self._model = model
        return self._model

    def scores(
        self, embedder: Embedder, query: Encoded, candidates: Sequence[Candidate]
    ) -> list[float]:
        if not isinstance(embedder, MiniLMEmbedder):
            raise ConfigurationError("the learned verifier needs the MiniLM embedder")
        if not candidates:
            return []
        import torch

        found = embedder.encode_sync([c.prompt for c in candidates])
        asked = [query] * len(found)
        static = _static_table(embedder)
        with torch.inference_mode():
            logits = self._network()(_side(asked, static), _side(found, static))
            return [float(x) for x in torch.sigmoid(logits)]


def _side(encoded: Sequence[Encoded], static: Any) -> dict[str, Any]:
    import torch

    from .pair_model import pad_side

    return pad_side(
        [torch.from_numpy(_required(e.tokens)) for e in encoded],
        [torch.from_numpy(_required(e.token_ids).astype(np.int64)) for e in encoded],
        torch.from_numpy(np.stack([e.vector for e in encoded])),
        static,
    )


def _required(value: T | None) -> T:
    if value is None:
        raise ConfigurationError("the learned verifier needs token vectors from the embedder")
    return value


def _static_table(embedder: MiniLMEmbedder) -> Any:
    """The encoder's own wordpiece embedding table (static token vectors)."""
    transformer: Any = embedder.model()[0]
    return transformer.auto_model.embeddings.word_embeddings.weight.detach()


def save_artifact(
    folder: Path, model: Any, calibration: Calibration, *, neighbours: int, min_cosine: float
) -> None:
    """Weights as float16 .npz (no pickle) and a JSON of config and calibration."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    np.savez_compressed(folder / "verifier.npz", **state)
    meta = {
        "config": model.config(),
        "neighbours": neighbours,
        "min_cosine": min_cosine,
        "calibration": calibration.to_json(),
    }
    (folder / "verifier.json").write_text(json.dumps(meta, indent=1) + "\n")
