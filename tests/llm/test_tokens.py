"""Token estimates and the upper bound that strict budgets rely on.

No provider tokenizer ships offline, so the bound is checked against the two tokenizer
families the providers use, implemented here in miniature: byte-level BPE (GPT, Claude,
Llama 3) with merges learned from a corpus, and SentencePiece with byte fallback (Gemma,
Gemini) in its worst case, a vocabulary of ASCII letters only plus the start marker.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from threadline.llm import (
    Message,
    ToolCall,
    ToolDef,
    estimate_messages,
    estimate_tokens,
    upper_bound_messages,
    upper_bound_tokens,
)
from threadline.llm.tokens import (
    MESSAGE_OVERHEAD_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    TOOLS_OVERHEAD_TOKENS,
)

TEXTS = [
    "",
    "a",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Größenänderung über Straße, café, naïve, coöperate",
    "日本語のテキストはトークンが多くなります。東京都",
    "Emoji: 🤖🚀👩‍👩‍👧‍👦🇯🇵 and a Zalgo t̷̢̛e̴x̵t̶",
    "Привет, мир! Αυτό είναι ελληνικά. مرحبا بالعالم",
    "\t\n  code:\n    def f(x):\n        return {'a': [1, 2, 3]}\n",
]


def _learn_merges(corpus: list[bytes], count: int) -> list[tuple[bytes, bytes]]:
    words = [[bytes([b]) for b in text] for text in corpus]
    merges: list[tuple[bytes, bytes]] = []
    for _ in range(count):
        pairs = Counter((w[i], w[i + 1]) for w in words for i in range(len(w) - 1))
        if not pairs:
            break
        best = pairs.most_common(1)[0][0]
        merges.append(best)
        words = [_merge(w, best) for w in words]
    return merges


def _merge(tokens: list[bytes], pair: tuple[bytes, bytes]) -> list[bytes]:
    out: list[bytes] = []
    i = 0
    while i < len(tokens):
        if i + 1 < len(tokens) and (tokens[i], tokens[i + 1]) == pair:
            out.append(tokens[i] + tokens[i + 1])
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return out


def byte_bpe_count(text: str, merges: list[tuple[bytes, bytes]]) -> int:
    tokens = [bytes([b]) for b in text.encode("utf-8")]
    for pair in merges:
        tokens = _merge(tokens, pair)
    return len(tokens)


def sentencepiece_worst_count(text: str) -> int:
    """'▁' start marker, spaces as '▁', ASCII letters in the vocabulary, bytes otherwise."""
    normalized = "▁" + text.replace(" ", "▁")
    return sum(1 if ch.isascii() or ch == "▁" else len(ch.encode("utf-8")) for ch in normalized)


@pytest.fixture(scope="module")
def merges() -> list[tuple[bytes, bytes]]:
    return _learn_merges([t.encode("utf-8") for t in TEXTS], 60)


@pytest.mark.parametrize("text", TEXTS)
def test_upper_bound_is_at_least_any_tokenizers_count(
    text: str, merges: list[tuple[bytes, bytes]]
) -> None:
    bound = upper_bound_tokens(text)
    assert bound >= byte_bpe_count(text, [])  # no merges: one token per byte, the worst BPE
    assert bound >= byte_bpe_count(text, merges)
    assert bound >= sentencepiece_worst_count(text)
    assert bound >= estimate_tokens(text)
    assert bound >= len(text)


def test_upper_bound_holds_for_random_unicode() -> None:
    rng = random.Random(7)
    alphabet = [chr(c) for c in (*range(32, 127), *range(0x400, 0x450), *range(0x4E00, 0x4E80))]
    alphabet += ["🤖", "👍🏽", "é", "\u200d"]
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert upper_bound_tokens(text) >= max(len(text.encode()), sentencepiece_worst_count(text))


def test_estimate_is_about_four_bytes_per_token() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("日本") == 2  # six bytes


def test_message_bounds_include_overheads_and_exceed_estimates() -> None:
    messages = [Message.system("Be brief."), Message.user("日本語で答えて")]
    plain = upper_bound_messages(messages)
    assert plain == (
        REQUEST_OVERHEAD_TOKENS
        + sum(MESSAGE_OVERHEAD_TOKENS + upper_bound_tokens(m.content) for m in messages)
    )
    assert plain > estimate_messages(messages)

    tool = ToolDef("lookup_part", "Look up a part.", {"type": "object", "properties": {}})
    with_tools = upper_bound_messages(messages, [tool])
    assert with_tools > plain + TOOLS_OVERHEAD_TOKENS
    assert estimate_messages(messages, [tool]) > estimate_messages(messages)

    call = ToolCall("c1", "lookup_part", {"code": "AB-12"})
    longer = [*messages, Message.assistant("", (call,)), Message.tool_result("c1", "3 left")]
    assert upper_bound_messages(longer) > plain + 2 * MESSAGE_OVERHEAD_TOKENS
