"""Token counts: a fast estimate, a provable upper bound, and each model's strict bound.

`estimate_tokens` is about one token per 4 bytes of UTF-8, the usual average for English
with today's BPE tokenizers; it is for display and for the demo model's usage.

`upper_bound_tokens` is what budget reservations rely on in strict mode. Every tokenizer the
providers use (byte-level BPE, or SentencePiece with byte fallback) produces tokens that each
cover at least one byte of the text, except SentencePiece's start marker, so a text never has
more tokens than its UTF-8 bytes plus one. What the text alone does not show (role markers,
message separators, the hidden tool-use instructions providers add when tools are given) is
covered by fixed, generous overheads per message, per request, per tool call and for tools. Tool
definitions and tool calls are rendered by each provider in its own format (XML-like tags,
TypeScript-like signatures), which we bound by twice their JSON size.

`input_bound` is the strict bound for one model: where threadline can count with the model's
own tokenizer it counts text in that tokenizer's tokens instead of bytes (the demo model's
count is `estimate_messages` itself; OpenAI models through `tiktoken`, when it is installed
with its encodings); else `upper_bound_messages`. A byte is the only bound that holds for every
text: a ratio measured on past prompts (about 4 bytes per token for English) is an average,
which code, other scripts or adversarial text can beat, so it is what estimate mode uses, not
strict mode.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Sequence

from .messages import Message, ToolCall, ToolDef

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "REQUEST_OVERHEAD_TOKENS",
    "TOOLS_OVERHEAD_TOKENS",
    "TOOL_CALL_OVERHEAD_TOKENS",
    "estimate_messages",
    "estimate_tokens",
    "input_bound",
    "upper_bound_messages",
    "upper_bound_tokens",
]

# Chat templates spend a few tokens per message on role markers (OpenAI documents 3-4);
# 16 leaves room for every provider we know of.
MESSAGE_OVERHEAD_TOKENS = 16
# The reply primer and request framing.
REQUEST_OVERHEAD_TOKENS = 16
# Anthropic documents 264-346 hidden system-prompt tokens when tools are given; others are
# smaller. Doubled and rounded up for safety.
TOOLS_OVERHEAD_TOKENS = 1024

# Per tool call (an id, a name and the framing of its arguments).
TOOL_CALL_OVERHEAD_TOKENS = 64

# The averages `estimate_messages` uses (OpenAI's published rule of thumb).
_ESTIMATE_PER_MESSAGE = 4
_ESTIMATE_PER_REQUEST = 3


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def estimate_tokens(text: str) -> int:
    """About UTF-8 bytes / 4, rounded up: an average, not a bound."""
    return bytes_to_tokens(_utf8_len(text))


def bytes_to_tokens(utf8_bytes: int) -> int:
    """`estimate_tokens` of a text of this many UTF-8 bytes (for counting as text grows)."""
    return (utf8_bytes + 3) // 4


def upper_bound_tokens(text: str) -> int:
    """A count no tokenizer exceeds for this text alone: its UTF-8 byte count, plus one for
    the start marker SentencePiece puts before a text."""
    return _utf8_len(text) + 1


def _calls_text(calls: Sequence[ToolCall]) -> str:
    return "".join(c.id + c.name + json.dumps(dict(c.arguments)) for c in calls)


def _tools_text(tools: Sequence[ToolDef]) -> str:
    return "".join(json.dumps(t.to_json(), ensure_ascii=False) for t in tools)


def estimate_messages(messages: Sequence[Message], tools: Sequence[ToolDef] = ()) -> int:
    """An estimate of the input tokens a request with these messages and tools costs."""
    total = _ESTIMATE_PER_REQUEST
    for message in messages:
        total += _ESTIMATE_PER_MESSAGE + estimate_tokens(message.content)
        total += estimate_tokens(_calls_text(message.tool_calls))
    if tools:
        total += estimate_tokens(_tools_text(tools))
    return total


TextCount = Callable[[str], int]


def upper_bound_messages(
    messages: Sequence[Message], tools: Sequence[ToolDef] = (), *, count: TextCount | None = None
) -> int:
    """A provable upper bound on the input tokens of a request (see the module docstring).
    `count` measures text in the model's own tokens; by default in UTF-8 bytes, which no
    tokenizer exceeds."""
    measure = count or _utf8_len
    total = REQUEST_OVERHEAD_TOKENS
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS + measure(message.content) + 1  # + a start marker
        total += len(message.tool_calls) * TOOL_CALL_OVERHEAD_TOKENS
        total += 2 * measure(_calls_text(message.tool_calls))
        total += measure((message.tool_call_id or "") + (message.tool_name or ""))
    if tools:
        total += TOOLS_OVERHEAD_TOKENS + 2 * measure(_tools_text(tools))
    return total


def input_bound(
    provider: str, model: str, messages: Sequence[Message], tools: Sequence[ToolDef] = ()
) -> int:
    """The most input tokens `provider:model` can count for this request: counted with its
    own tokenizer where threadline has it, else `upper_bound_messages` (module docstring)."""
    if provider == "demo":  # the demo model reports exactly this as its input
        return estimate_messages(messages, tools)
    count = _tokenizer(provider, model)
    return upper_bound_messages(messages, tools, count=count)


@functools.cache
def _tokenizer(provider: str, model: str) -> TextCount | None:
    """A text's tokens in the model's tokenizer, where one is available offline."""
    if provider != "openai":
        return None
    try:
        encoding = importlib.import_module("tiktoken").encoding_for_model(model)
    except Exception:  # not installed, an unknown model, or its encoding not at hand offline
        return None

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count
