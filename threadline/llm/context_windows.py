"""How many input tokens a model accepts.

genai-prices' model data comes first (it lists context windows for most hosted models).
When it has none, a small table of model families answers, longest prefix first, and
`DEFAULT_CONTEXT_WINDOW` after that. Ollama is different: it runs every model with its own
`num_ctx` (4096 tokens by default) and silently truncates longer prompts, so an Ollama model's
window is 4096 unless the adapter is given `context_window=`, which it then also sends as
`num_ctx`.
"""

from __future__ import annotations

from .events import Usage
from .pricing import genai_calculation

__all__ = ["DEFAULT_CONTEXT_WINDOW", "OLLAMA_DEFAULT_NUM_CTX", "context_window"]

DEFAULT_CONTEXT_WINDOW = 8_192
OLLAMA_DEFAULT_NUM_CTX = 4_096
DEMO_CONTEXT_WINDOW = 128_000

# Prefix of the model name -> tokens; checked longest prefix first.
_FAMILIES: dict[str, int] = {
    "claude": 200_000,
    "gpt-3.5": 16_385,
    "gpt-4": 8_192,
    "gpt-4-turbo": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4": 200_000,
    "gemini-1.5": 1_048_576,
    "gemini-2": 1_048_576,
    "gemini-3": 1_048_576,
    "gemma": 128_000,
    "llama3.1": 131_072,
    "llama3.2": 131_072,
    "llama3.3": 131_072,
    "mistral": 32_768,
    "qwen": 32_768,
}


def _family_window(model: str) -> int:
    name = model.lower().rsplit("/", 1)[-1]
    for prefix in sorted(_FAMILIES, key=len, reverse=True):
        if name.startswith(prefix):
            return _FAMILIES[prefix]
    return DEFAULT_CONTEXT_WINDOW


def context_window(provider: str, model: str) -> int:
    """The model's context window in tokens (see the module docstring for the sources)."""
    if provider == "ollama":
        return OLLAMA_DEFAULT_NUM_CTX
    if provider == "demo":
        return DEMO_CONTEXT_WINDOW
    calc = genai_calculation(provider, model, Usage())
    if calc is not None and calc.model.context_window:
        return int(calc.model.context_window)
    return _family_window(model)
