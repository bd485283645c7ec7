"""`Turn`: what a state handler works with during one user message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..engine import WorkflowContext
from ..ledger import BoundBudget, BudgetExceeded, BudgetNotice, Capped, Scope
from ..llm import Message, Response, StreamEvent, TextDelta, ToolCall, ToolDef, Usage
from ..rag.cache import CacheHit, CacheScope, lookup
from ..rag.cache.guard import cites
from ..rag.cache.serve import replay_stream
from ..rag.knowledge import BoundKnowledge
from ..rag.retrieval import Passage, format_context
from ..router import Fallback, ModelPolicy, Models, Restart
from ..router.events import RouterEvent
from ..tools import Tool, ToolError
from .agent import Agent, Exhausted
from .screen import Emit, Screen, event_key


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """Money as strings: event data is JSON."""
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in data.items()}


def source_of(number: int, passage: Passage) -> dict[str, Any]:
    """A passage as a cited source: its number in the prompt, a label, and a link when the
    document came from the web."""
    citation = passage.citation
    url = citation.source if citation.source.startswith(("https://", "http://")) else None
    return {
        "n": number,
        "title": citation.label,
        "source": citation.source,
        "url": url,
        "document_id": citation.document_id,
        "page": citation.page,
    }


class TurnCancelled(Exception):
    """The turn was cancelled while its answer streamed."""


@dataclass
class Turn:
    """One turn of a session. Handlers read `text`, `history`, `state` and `data` (a dict
    saved with the session), and answer with `reply` (an LLM call, streamed) or `say`."""

    agent: Agent
    session_id: str
    turn_id: str
    state: str
    data: dict[str, Any]
    text: str
    history: list[Message]
    models: Models
    emit: Emit
    scope: Scope
    model: str | ModelPolicy
    budget: BoundBudget | None = None
    cancelled: Callable[[], bool] = lambda: False
    ctx: WorkflowContext | None = None  # the turn's workflow: tool steps, approvals
    confirm_timeout: float = 24 * 3600
    replies: list[str] = field(default_factory=list)
    handoff_reason: str | None = None
    reminders: list[tuple[float, str]] = field(default_factory=list)
    _refusals: int = 0  # budget refusals so far: each one's event has its own key
    exhausted: BudgetExceeded | None = None  # the budget could not pay for a reply
    closing: bool = False  # ... and the session closes: its own total budget ran out
    usage: Usage = field(default_factory=Usage)
    cost: Decimal | None = Decimal(0)  # None once a call's price is unknown
    model_used: str | None = None
    cached: bool = False  # the answer came from the semantic cache
    screen: Screen = field(init=False)  # the answer as clients see it

    def __post_init__(self) -> None:
        self.screen = Screen(self.turn_id, self.emit, self.agent.show_cached)

    @property
    def sources(self) -> list[dict[str, Any]]:
        """What the answer's `[n]` markers cite."""
        return self.screen.sources

    @property
    def first_question(self) -> bool:
        """No earlier user message in the session: the question stands on its own (what
        `reply(cacheable=...)` usually wants: a follow-up's answer depends on the talk)."""
        return not any(m.role == "user" for m in self.history)

    async def reply(
        self,
        *,
        instructions: str | None = None,
        max_tokens: int | None = None,
        cacheable: bool = False,
        **variables: Any,
    ) -> str:
        """Ask the agent's model, with its rendered prompt and the history; the answer
        streams to the session as it is generated. Tool calls the model makes run as durable
        steps (after approval, for tools that need it) and their results go back to it.

        With the agent's `knowledge`, the passages retrieved for the question are added to
        the prompt; with `cacheable`, an earlier answer to the same question (in the same or
        other words, same agent, prompt, tools, model policy and tenant) is served from the
        semantic cache instead, and a new plain answer is cached.

        When the budget cannot pay for the model, the agent's `on_budget_exhausted` says what
        happens (`Exhausted`); after that the turn's later replies say nothing more."""
        if self.exhausted is not None:
            return ""
        asked = self.model
        system = self.agent.render(state=self.state, data=self.data, **variables)
        if instructions:
            system += "\n\n" + instructions
        tools = [t.definition for t in self.agent.tools]
        knowledge, passages, cache_scope = self._knowledge(), [], None
        if knowledge is not None:
            if cacheable and knowledge.cacheable(self.text):
                user = self.scope.user or f"session:{self.scope.session}"  # anonymous: its own
                cache_scope = knowledge.cache_scope(
                    self.agent.name, system, tools, str(self.model), self.scope.tenant, user
                )
                hit = await lookup(knowledge.cache, self.text, cache_scope, self.scope)
                if hit is not None:
                    return await self._serve(hit, knowledge)
            passages = await knowledge.search(self.text)
            system += "\n\n" + format_context(passages)
            self.screen.cite([source_of(n, p) for n, p in enumerate(passages, 1)])
        messages = [Message.system(system), *self.history, Message.user(self.text)]
        texts: list[str] = []
        plain: Response | None = None  # the answer, when it came in one round with no tools
        for round_no in range(self.agent.max_tool_rounds + 1):
            try:
                response = await self._ask(messages, tools, max_tokens)
            except BudgetExceeded as exc:
                outcome = await self._over_budget(exc, messages, tools, max_tokens)
                if isinstance(outcome, str):
                    texts.append(outcome)
                    break
                response = outcome
            if response.text:
                texts.append(response.text)
            if not response.tool_calls:
                plain = response if round_no == 0 else None
                break
            messages.append(response.message)
            for call in response.tool_calls:
                messages.append(await self._call_tool(call))
        text = "\n\n".join(texts)
        self.replies.append(text)
        # A cheaper model's answer is not cached under the scope of the model asked for.
        fresh = plain is not None and self.model == asked
        if knowledge is not None and cache_scope is not None and plain is not None and fresh:
            await self._cache(knowledge, cache_scope, plain, passages)
        return text

    async def _over_budget(
        self,
        exc: BudgetExceeded,
        messages: list[Message],
        tools: list[ToolDef],
        max_tokens: int | None,
    ) -> Response | str:
        """No model of the agent's fits the budget: do what `on_budget_exhausted` says. The
        answer of a cheaper model, or the text said instead."""
        action = self.agent.exhausted
        while True:
            self._refused(exc, action)
            if action.action != "cheaper" or action.model is None:
                break
            source = exc.model or ModelPolicy.of(self.model).primary
            fallback = Fallback(source, ModelPolicy.of(action.model).primary, "budget")
            self.emit(
                "model.fallback",
                {"turn_id": self.turn_id, **fallback.to_json()},
                self._key(f"budget.fallback:{self._refusals}"),
            )
            self.model = action.model  # for the rest of the turn (its tool rounds)
            try:
                return await self._ask(messages, tools, max_tokens)
            except BudgetExceeded as again:
                exc, action = again, action.then or Exhausted.close()
        self.exhausted = exc
        if action.action == "handoff":
            self.handoff_reason = "budget exhausted"
        else:  # money that comes back (a new day, a new turn, a raised limit) keeps it open
            self.closing = exc.scope == f"session:{self.session_id}" and exc.bucket == "total"
        text = action.text(self.agent)
        self.screen.show(text)
        return text

    def _refused(self, exc: BudgetExceeded, action: Exhausted) -> None:
        self._refusals += 1
        self.emit(
            "budget.exceeded",
            {"turn_id": self.turn_id, **_plain(exc.to_json()), "action": action.action},
            self._key(f"budget.exceeded:{self._refusals}"),
        )

    def after(self, next_state: str | None) -> tuple[str, str]:
        """The session's state and status after this turn: the state the handler returned
        (None: stay), unless the budget ran out and the agent hands off or closes."""
        state = next_state or self.state
        if self.exhausted is not None and self.handoff_reason is not None:
            state = "handoff"
        if state == "handoff":
            return state, "handoff"
        return state, "closed" if self.closing else "active"

    def _knowledge(self) -> BoundKnowledge | None:
        if self.agent.knowledge is None:
            return None
        return self.agent.knowledge.on(self.models.ledger.pool)

    async def _serve(self, hit: CacheHit, knowledge: BoundKnowledge) -> str:
        """Stream a cached answer as a live one arrives (its ledger row is written), with
        the sources it cites."""
        entry = hit.answer.entry_id
        if self.ctx is None:
            sources = await knowledge.cache.sources(entry)
        else:  # the replay of a crashed turn cites what its first run did
            sources = await self.ctx.step(
                knowledge.cache.sources, entry, name="cache:sources", read_only=True
            )
        self.screen.cite(sources)
        self.screen.start(cached=True)
        self.cached = True
        async for event in replay_stream(hit):
            if self.cancelled():
                raise TurnCancelled(self.turn_id)
            if isinstance(event, TextDelta):
                self.screen.piece(event.text, ts=time.time())
        answer = hit.answer
        self.usage = self.usage + Usage(answer.input_tokens, answer.output_tokens)
        self.model_used = f"{answer.provider}:{answer.model}" if answer.model else "cache"
        self.replies.append(answer.answer)
        return answer.answer

    async def _cache(
        self,
        knowledge: BoundKnowledge,
        scope: CacheScope,
        response: Response,
        passages: list[Passage],
    ) -> bool:
        """Cache a complete plain answer, with the documents it was built from (once: a
        journaled step in a workflow). Whether it was cached. Only an answer built from the
        passages is: one that cites none of them (nothing was retrieved, or the model found
        nothing in them, refused, or offered a human) would be served again to everyone who
        asks, long after the documents gained the answer; the cache also refuses text that
        says it has no answer (`is_non_answer`); the knowledge refuses an answer its
        `personal` rule finds personal data in, or its `keep_answer` rule turns down."""
        if not passages or not cites(response.text, len(passages)):
            return False
        if not knowledge.may_keep(self.text, response.text):
            return False

        async def store() -> bool:
            entry = await knowledge.cache.store_response(
                self.text,
                response,
                scope,
                documents=passages,
                ttl=knowledge.knowledge.ttl,
                sources=self.screen.sources,
            )
            return entry is not None

        if self.ctx is None:
            return await store()
        cached: bool = await self.ctx.step(store, name="cache:store")
        return cached

    async def _ask(
        self, messages: list[Message], tools: list[ToolDef], max_tokens: int | None
    ) -> Response:
        first = True  # this call's first text: after an earlier round's, a paragraph break
        base = self.screen.length  # the answer's earlier rounds: a restart keeps them

        def forward(event: StreamEvent | Restart) -> None:
            nonlocal first
            if self.cancelled():  # the user pressed stop: end the call, it is billed so far
                raise TurnCancelled(self.turn_id)
            if isinstance(event, Restart):  # the model failed mid-answer: it starts again
                restart = {"turn_id": self.turn_id, "ts": time.time(), **event.to_json()}
                if base:
                    restart["keep"] = base
                self.emit("message.restart", restart)
                self.screen.shown, self.screen.length, first = True, base, True
            elif isinstance(event, TextDelta) and event.text:
                text = event.text
                if first:
                    first = False
                    if not self.screen.shown:
                        self.screen.start()
                    if self.screen.length:
                        text = "\n\n" + text
                self.screen.piece(text, ts=time.time() if event.at is None else event.at)

        def tell(event: RouterEvent) -> None:
            if isinstance(event, (Fallback, Capped, BudgetNotice)):
                self.emit(event.kind, {"turn_id": self.turn_id, **_plain(event.to_json())})

        response = await self.models.request(
            ModelPolicy.of(self.model),
            messages,
            scope=self.scope,
            tools=tools,
            max_tokens=max_tokens or self.agent.max_tokens,
            budget=self.budget,
            on_delta=forward,
            on_event=tell,
        )
        if first and response.text:  # none of it streamed: the journal had it (a replay)
            self.screen.replayed(response.text)
        self.usage = self.usage + response.usage
        self.model_used = f"{response.provider}:{response.model}"
        cost = response.cost_usd  # as its metering priced it: one price per call
        self.cost = None if self.cost is None or cost is None else self.cost + cost
        return response

    async def _call_tool(self, call: ToolCall) -> Message:
        """Run one tool call (a durable step) and return the tool-result message."""
        info = {"turn_id": self.turn_id, "call_id": call.id, "name": call.name}
        self.emit("tool.call", {**info, "arguments": call.arguments}, self._key(f"call:{call.id}"))
        found = self.agent.tool(call.name)
        result: Any
        if found is None:
            result = {"error": f"there is no tool named {call.name!r}"}
        elif found.confirm and not await self._approved(call, info):
            result = {"error": "the call was not approved"}
        else:
            result = await self._run_tool(found, call)
        self.emit("tool.result", {**info, "result": result}, self._key(f"result:{call.id}"))
        return Message.tool_result(call.id, result, name=call.name)

    async def _approved(self, call: ToolCall, info: dict[str, Any]) -> bool:
        if self.ctx is None:
            return False
        self.emit(
            "tool.confirm", {**info, "arguments": call.arguments}, self._key(f"confirm:{call.id}")
        )
        answer = await self.ctx.receive(f"confirm:{call.id}", timeout=self.confirm_timeout)
        return bool(answer)

    async def _run_tool(self, found: Tool, call: ToolCall) -> Any:
        async def run() -> Any:
            try:
                return {"result": await found.run(call.arguments)}
            except ToolError as exc:
                return {"error": str(exc)}

        if self.ctx is None:
            async with asyncio.timeout(found.timeout):
                return await run()
        return await self.ctx.step(
            run, name=f"tool:{found.name}", retries=found.retries, timeout=found.timeout
        )

    def _key(self, what: str) -> str:
        return event_key(self.turn_id, what)

    async def say(self, text: str) -> None:
        """Answer with fixed text (no model call)."""
        self.screen.show(text)
        self.replies.append(text)

    def remind_after(self, seconds: float, text: str) -> None:
        """If the user says nothing for `seconds`, post `text` to the session (a durable
        timer: it survives restarts and costs nothing while it waits)."""
        self.reminders.append((seconds, text))

    def handoff(self, reason: str) -> str:
        """Hand the session to a human operator; returns the state to go to."""
        self.handoff_reason = reason
        return "handoff"
