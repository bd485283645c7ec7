"""Token counts without a tokenizer: a fast estimate and a provable upper bound.

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
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .messages import Message, ToolCall, ToolDef

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "REQUEST_OVERHEAD_TOKENS",
    "TOOLS_OVERHEAD_TOKENS",
    "TOOL_CALL_OVERHEAD_TOKENS",
    "estimate_messages",
    "estimate_tokens",
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


def upper_bound_messages(messages: Sequence[Message], tools: Sequence[ToolDef] = ()) -> int:
    """A provable upper bound on the input tokens of a request (see the module docstring)."""
    total = REQUEST_OVERHEAD_TOKENS
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS + upper_bound_tokens(message.content)
        total += len(message.tool_calls) * TOOL_CALL_OVERHEAD_TOKENS
        total += 2 * _utf8_len(_calls_text(message.tool_calls))
        total += _utf8_len((message.tool_call_id or "") + (message.tool_name or ""))
    if tools:
        total += TOOLS_OVERHEAD_TOKENS + 2 * _utf8_len(_tools_text(tools))
    return total
