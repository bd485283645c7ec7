"""The offline demo model (`demo:threadline-demo`): no network, no key, no cost.

It is what threadline uses when no provider key is set, and what tests use to script model
behaviour. Its answers are deterministic (see `demo_replies` for what it says); it streams
them word by word at `tokens_per_second` (0: as fast as possible) and reports usage from
`tokens.estimate_*`. `max_tokens` and `stop` sequences are honoured.

`fail_with` scripts failures: a single `LLMError` fails every call; a sequence gives the
outcome of successive calls (`None` succeeds, an `LLMError` fails before any output, a
`DemoFailure(error, after_words=n)` fails a stream after n words, with `partial_text` set)
and calls after the end of the sequence succeed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from .demo_replies import compose_reply
from .errors import LLMError
from .events import (
    END_TURN,
    MAX_TOKENS,
    STOP_SEQUENCE,
    TOOL_USE,
    Response,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from .messages import Message, ToolCall, ToolDef
from .model import Model
from .options import CallOptions
from .tokens import bytes_to_tokens, estimate_messages, estimate_tokens

__all__ = ["DemoFailure", "DemoModel"]

PROVIDER = "demo"
DEFAULT_NAME = "threadline-demo"
DEFAULT_PACE = 30.0
PACE_ENV = "THREADLINE_DEMO_TOKENS_PER_SECOND"


@dataclass(frozen=True)
class DemoFailure:
    """Fail one call with `error`; a stream fails after `after_words` words."""

    error: LLMError
    after_words: int = 0


@dataclass(frozen=True)
class _Plan:
    words: list[str]
    tool_call: ToolCall | None
    stop_reason: str
    usage: Usage


class DemoModel(Model):
    """A deterministic offline model; see the module docstring."""

    provider = PROVIDER

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        tokens_per_second: float | None = None,
        fail_with: LLMError | Iterable[LLMError | DemoFailure | None] | None = None,
        context_window: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int = 0,
    ) -> None:
        # api_key, base_url, timeout and max_retries are accepted (and ignored) so that any
        # `get_model` options work with the demo model too.
        super().__init__(name, context_window=context_window)
        if tokens_per_second is None:  # the pace of demos and benchmarks, set from outside
            tokens_per_second = float(os.environ.get(PACE_ENV, DEFAULT_PACE))
        if tokens_per_second < 0:
            raise ValueError("tokens_per_second must be >= 0")
        self.tokens_per_second = tokens_per_second
        self._always: LLMError | None = fail_with if isinstance(fail_with, LLMError) else None
        self._script: deque[LLMError | DemoFailure | None] = deque(
            () if fail_with is None or isinstance(fail_with, LLMError) else fail_with
        )
        self.calls = 0

    def _next_failure(self) -> DemoFailure | None:
        self.calls += 1
        outcome = (
            self._always if self._always else (self._script.popleft() if self._script else None)
        )
        if outcome is None:
            return None
        failure = outcome if isinstance(outcome, DemoFailure) else DemoFailure(outcome)
        error = copy.copy(failure.error)
        error.provider = error.provider or PROVIDER
        return DemoFailure(error, failure.after_words)

    def _plan(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDef],
        max_tokens: int,
        stop: Sequence[str] | None,
    ) -> _Plan:
        reply = compose_reply(messages, tools)
        text, stop_reason = reply.text, TOOL_USE if reply.tool_call else END_TURN
        for sequence in stop or ():
            if sequence and sequence in text:
                text, stop_reason = text[: text.index(sequence)], STOP_SEQUENCE
        words = re.findall(r"\S+\s*", text)
        kept: list[str] = []
        size = 0  # UTF-8 bytes kept, to estimate as the answer grows without re-joining it
        for word in words:
            size += len(word.encode("utf-8", errors="surrogatepass"))
            if bytes_to_tokens(size) > max_tokens:
                stop_reason = MAX_TOKENS
                break
            kept.append(word)
        tool_call = reply.tool_call if stop_reason == TOOL_USE else None
        output = estimate_tokens("".join(kept))
        if tool_call is not None:
            output += estimate_tokens(tool_call.name + json.dumps(dict(tool_call.arguments)))
        usage = Usage(input_tokens=estimate_messages(messages, tools), output_tokens=output)
        return _Plan(kept, tool_call, stop_reason, usage)

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        tools, max_tokens, stop = options.tools, options.max_tokens, options.stop
        failure = self._next_failure()
        if failure is not None:
            raise failure.error
        plan = self._plan(messages, tools, max_tokens, stop)
        calls = (plan.tool_call,) if plan.tool_call else ()
        text = "".join(plan.words)
        return Response(text, calls, plan.usage, plan.stop_reason, self.name, PROVIDER)

    async def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[StreamEvent]:
        tools, max_tokens, stop = options.tools, options.max_tokens, options.stop
        failure = self._next_failure()
        if failure is not None and failure.after_words == 0:
            raise failure.error
        plan = self._plan(messages, tools, max_tokens, stop)
        yield UsageEvent(Usage(input_tokens=plan.usage.input_tokens))
        started, wall = time.monotonic(), time.time()
        sent: list[str] = []
        pace = self.tokens_per_second
        for number, word in enumerate(plan.words):
            if failure is not None and number == failure.after_words:
                failure.error.partial_text = "".join(sent)
                raise failure.error
            at = None
            if pace > 0:
                # Pace against the start time, so slow consumers do not slow the pace further;
                # a word is made when it is due, however late this process gets to it.
                delay = started + number / pace - time.monotonic()
                if delay > 0:  # a word already due goes at once, as one waiting in a socket
                    await asyncio.sleep(delay)
                at = wall + number / pace
            sent.append(word)
            yield TextDelta(word, at=at)
        if failure is not None:
            failure.error.partial_text = "".join(sent)
            raise failure.error
        if plan.tool_call is not None:
            arguments = json.dumps(dict(plan.tool_call.arguments))
            yield ToolCallDelta(0, plan.tool_call.id, plan.tool_call.name, arguments)
        yield StreamEnd(plan.stop_reason, plan.usage, self.name)
