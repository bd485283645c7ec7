"""`Sessions`: durable conversations on the engine.

A user message is stored (idempotent on its client id) and starts a turn: a durable workflow
on the `threadline.turns` queue with one run at a time per session (queue key = session id),
so later messages wait their turn in order. The turn loads the session, runs the current
state's handler (its LLM calls are journaled steps) and commits the new state together with
the assistant's message. Everything a client sees goes through the session's event log.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from typing import Any

from ..agents import Agent
from ..agents.screen import event_key
from ..engine import Engine, Queue, WorkflowContext
from ..engine.registry import workflow
from ..errors import ConfigurationError, PayloadTooLarge, ThreadlineError
from ..llm import LLMError, check_installed, default_model_spec
from ..router import ModelPolicy, Models
from . import access, feedback, store
from .access import Access
from .events import EventLog, SessionEvent, read_events
from .store import SessionInfo, StoredMessage
from .text import check_text
from .turns import REMINDER_WORKFLOW, TURN_QUEUE, TURN_WORKFLOW, TurnRunner

MAX_MESSAGE_CHARS = 8000

log = logging.getLogger(__name__)


class Sessions:
    def __init__(
        self,
        engine: Engine,
        agents: Iterable[Agent],
        *,
        models: Models | None = None,
        max_message_chars: int = MAX_MESSAGE_CHARS,
    ) -> None:
        self.engine = engine
        self.agents = {a.name: a for a in agents}
        check_models(self.agents.values())
        self.models = models or Models()
        self.max_message_chars = max_message_chars
        self._events: EventLog | None = None
        engine.queues.setdefault(TURN_QUEUE, Queue(TURN_QUEUE, per_key=1))

        runner = TurnRunner(self)

        async def turn(ctx: WorkflowContext, session_id: str, seq: int) -> dict[str, Any]:
            return await runner.run_turn(ctx, session_id, seq)

        async def reminder(
            ctx: WorkflowContext, session_id: str, seconds: float, seq: int, text: str
        ) -> bool:
            return await runner.run_reminder(ctx, session_id, seconds, seq, text)

        # One Sessions per engine runs turns; a newer one (tests, a reload) takes over.
        for name, fn in ((TURN_WORKFLOW, turn), (REMINDER_WORKFLOW, reminder)):
            engine.registry.workflows.pop(name, None)
            queue = TURN_QUEUE if name == TURN_WORKFLOW else "default"
            workflow(registry=engine.registry, name=name, queue=queue)(fn)

    @property
    def events(self) -> EventLog:
        if self._events is None:
            self._events = EventLog(self.engine.pool)
        return self._events

    def agent(self, name: str) -> Agent:
        found = self.agents.get(name)
        if found is None:
            raise ConfigurationError(f"no agent named {name!r} (known: {', '.join(self.agents)})")
        return found

    # -- API ----------------------------------------------------------------------------------

    async def create(
        self,
        agent: str,
        *,
        tenant: str | None = None,
        user: str | None = None,
        client: str | None = None,
    ) -> SessionInfo:
        """A new session of `agent`: for a tenant's `user`, or anonymous, from `client` (an
        opaque key of where it came from, for `Budget(per_client_daily=...)`)."""
        spec = self.agent(agent)
        session_id = "s_" + os.urandom(12).hex()
        async with self.engine.pool.acquire() as conn:
            info = await store.create_session(
                conn, session_id, agent, spec.initial_state, tenant, user, client
            )
        if spec.greeting:
            async with self.engine.pool.acquire() as conn:
                await store.add_message(conn, session_id, "assistant", spec.greeting)
            await self.events.append(
                session_id, "message.greeting", {"text": spec.greeting, "agent": agent}
            )
        return info

    async def get(self, session_id: str) -> SessionInfo:
        async with self.engine.pool.acquire() as conn:
            return await store.get_session(conn, session_id)

    async def list_sessions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[SessionInfo]:
        async with self.engine.pool.acquire() as conn:
            return await store.list_sessions(conn, status=status, limit=limit)

    async def history(self, session_id: str) -> list[StoredMessage]:
        async with self.engine.pool.acquire() as conn:
            await store.get_session(conn, session_id)
            return await store.messages(conn, session_id)

    async def read(self, session_id: str, after_seq: int, limit: int = 500) -> list[SessionEvent]:
        async with self.engine.pool.acquire() as conn:
            return await read_events(conn, session_id, after_seq, limit)

    async def send(self, session_id: str, text: str, client_id: str) -> tuple[int, bool]:
        """Store a user message and start its turn; a resend with the same `client_id`
        changes nothing. Returns (message seq, created)."""
        if not text.strip():
            raise ConfigurationError("the message is empty")
        check_text(text)
        check_text(client_id, "client_id")
        if len(text) > self.max_message_chars:
            raise PayloadTooLarge(
                f"the message has {len(text)} characters; the limit is {self.max_message_chars}"
            )
        if not client_id or len(client_id) > 100:
            raise ConfigurationError("client_id must be 1 to 100 characters")
        along = self.events.along(session_id)
        if along is not None:  # the message, its event and its turn's start in one commit
            with along, contextlib.ExitStack() as stack:
                local = self.engine.local_start(TURN_WORKFLOW, queue=TURN_QUEUE)
                if local is not None:
                    stack.enter_context(local)
                start = None if local is None else (f"turn:{session_id}:", *local.params())
                async with self.engine.pool.acquire() as conn:
                    seq, created, status = await store.add_user_message(
                        conn, along, text, client_id, start
                    )
                if local is not None and status is not None:
                    local.launched(f"turn:{session_id}:{seq}", [session_id, seq], status)
                    return seq, created
        else:  # the session's earlier events are still on their way: this one follows them
            async with self.engine.pool.acquire() as conn:
                seq, created = await store.add_message(
                    conn, session_id, "user", text, client_id=client_id
                )
            if created:
                await self.events.append(
                    session_id,
                    "message.user",
                    {"text": text, "client_id": client_id, "message_seq": seq},
                )
        await self.engine.start(
            TURN_WORKFLOW,
            session_id,
            seq,
            run_id=f"turn:{session_id}:{seq}",
            queue=TURN_QUEUE,
            queue_key=session_id,
        )
        return seq, created

    async def cancel(self, session_id: str) -> list[str]:
        """Stop the session's running and queued turns (at their next step)."""
        cancelled: list[str] = []
        for run_id in await self.engine.unfinished_runs(TURN_QUEUE, session_id):
            cancelled += await self.engine.cancel(run_id)
        if cancelled:
            await self.events.append(session_id, "message.cancelled", {"turns": cancelled})
        return cancelled

    async def confirm(self, session_id: str, call_id: str, approve: bool) -> bool:
        """Approve or decline a tool call the turn in progress asked about (its
        `tool.confirm` event is logged); False if it asked about no such call. Only such a
        call reaches the turn's mailbox: a client cannot fill it with ids of its own."""
        running = await self.engine.unfinished_runs(TURN_QUEUE, session_id, started=True)
        keys = [event_key(run_id, f"confirm:{call_id}") for run_id in running]
        async with self.engine.pool.acquire() as conn:
            asked = await store.logged_keys(conn, session_id, keys)
        run_id = next((r for r, k in zip(running, keys, strict=True) if k in asked), None)
        if run_id is None:
            return False
        try:
            await self.engine.send(run_id, f"confirm:{call_id}", approve, idempotency_key=call_id)
        except ThreadlineError:  # the turn ended since: it waits for nothing any more
            return False
        return True

    async def operator_reply(self, session_id: str, text: str, operator: str = "operator") -> int:
        """A human operator answers in the session (during a handoff, or any time)."""
        if not text.strip():
            raise ConfigurationError("the reply is empty")
        check_text(text, "the reply")
        check_text(operator, "the operator's name")
        async with self.engine.pool.acquire() as conn:
            seq, _ = await store.add_message(
                conn, session_id, "operator", text, meta={"operator": operator}
            )
        await self.events.append(
            session_id, "operator.message", {"text": text, "operator": operator, "message_seq": seq}
        )
        return seq

    async def set_state(self, session_id: str, state: str) -> None:
        """Move the session to `state` (an operator ending a handoff, say)."""
        info = await self.get(session_id)
        self.agent(info.agent).handler(state)  # an unknown state is refused here
        status = "handoff" if state == "handoff" else "active"
        async with self.engine.pool.acquire() as conn:
            await store.save_state(conn, session_id, state, info.data, status)
        await self.events.append(session_id, "session.state", {"state": state, "status": status})

    async def rate(
        self, session_id: str, turn_id: str, rating: str | None, comment: str | None = None
    ) -> None:
        """The user's thumbs up or down (`rating` "up"/"down", None takes it back) on one
        of the session's answers."""
        async with self.engine.pool.acquire() as conn:
            await feedback.rate(conn, session_id, turn_id, rating, comment)

    async def ratings(self, session_id: str) -> dict[str, str]:
        """turn id → "up"/"down" for the session's rated answers."""
        async with self.engine.pool.acquire() as conn:
            return await feedback.ratings(conn, session_id)

    async def access(self, session_id: str) -> Access:
        """The session's tenant and the generation its tokens must carry."""
        async with self.engine.pool.acquire() as conn:
            return await access.access(conn, session_id)

    async def revoke_tokens(self, session_id: str) -> int:
        """Refuse every token issued for the session so far (a new one can be issued)."""
        async with self.engine.pool.acquire() as conn:
            return await access.revoke_tokens(conn, session_id)

    async def rename(self, session_id: str, title: str) -> None:
        async with self.engine.pool.acquire() as conn:
            await feedback.rename(conn, session_id, title)

    async def delete(self, session_id: str) -> None:
        """Stop the session's turns, then delete it (see `feedback.delete`)."""
        await self.cancel(session_id)
        async with self.engine.pool.acquire() as conn:
            await feedback.delete(conn, session_id)

    async def export(self, session_id: str) -> dict[str, Any]:
        """The whole session as JSON: its settings, state and every message."""
        info = await self.get(session_id)
        return {
            "session_id": info.id,
            "agent": info.agent,
            "tenant": info.tenant,
            "user": info.user_id,
            "state": info.state,
            "status": info.status,
            "data": info.data,
            "created_at": info.created_at.isoformat(),
            "messages": [m.to_json() for m in await self.history(session_id)],
        }

    async def export_markdown(self, session_id: str) -> str:
        exported = await self.export(session_id)
        lines = [f"# Session {exported['session_id']} ({exported['agent']})", ""]
        for m in exported["messages"]:
            lines += [f"**{m['role']}** · {m['at'][:16].replace('T', ' ')}", "", m["content"], ""]
        return "\n".join(lines)


def check_models(agents: Iterable[Agent]) -> None:
    """Refuse agents whose models cannot be called here (a provider's SDK not installed, an
    unknown provider): at start, naming the fix, rather than as every turn's failure."""
    problems = []
    for agent in agents:
        cheaper = agent.exhausted.specs()  # the models its budget may fall back to
        for spec in (*ModelPolicy.of(agent.model or default_model_spec()).specs, *cheaper):
            try:
                check_installed(spec)
            except LLMError as exc:
                problems.append(f"agent {agent.name!r} uses {spec!r}: {exc}")
    if problems:
        raise ConfigurationError("; ".join(problems))


__all__ = ["MAX_MESSAGE_CHARS", "TURN_QUEUE", "TURN_WORKFLOW", "Sessions"]
