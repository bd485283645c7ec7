"""`Sessions`: durable conversations on the engine.

A user message is stored (idempotent on its client id) and starts a turn: a durable workflow
on the `threadline.turns` queue with one run at a time per session (queue key = session id),
so later messages wait their turn in order. The turn loads the session, runs the current
state's handler (its LLM calls are journaled steps) and commits the new state together with
the assistant's message. Everything a client sees goes through the session's event log.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ..agents import Agent, Turn
from ..agents.turn import event_key
from ..engine import Engine, Queue, WorkflowContext
from ..engine.dbretry import database_gone, describe
from ..engine.registry import workflow
from ..errors import ConfigurationError, PayloadTooLarge, ThreadlineError
from ..ledger import Scope
from ..llm import LLMError, Message, check_installed, default_model_spec
from ..router import ModelPolicy, Models
from . import access, feedback, store
from .access import Access
from .events import EventLog, SessionEvent, read_events
from .failures import turn_failure
from .store import SessionInfo, StoredMessage
from .text import check_text

TURN_QUEUE = "threadline.turns"
TURN_WORKFLOW = "threadline.turn"
REMINDER_WORKFLOW = "threadline.reminder"
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

        async def turn(ctx: WorkflowContext, session_id: str, seq: int) -> dict[str, Any]:
            return await self._run_turn(ctx, session_id, seq)

        async def reminder(
            ctx: WorkflowContext, session_id: str, seconds: float, seq: int, text: str
        ) -> bool:
            return await self._run_reminder(ctx, session_id, seconds, seq, text)

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
        async with self.engine.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id FROM threadline.runs WHERE queue = $1 AND queue_key = $2 "
                "AND status IN ('pending', 'running', 'waiting')",
                TURN_QUEUE,
                session_id,
            )
        cancelled: list[str] = []
        for row in rows:
            cancelled += await self.engine.cancel(row["id"])
        if cancelled:
            await self.events.append(session_id, "message.cancelled", {"turns": cancelled})
        return cancelled

    async def confirm(self, session_id: str, call_id: str, approve: bool) -> bool:
        """Approve or decline a tool call the turn in progress asked about (its
        `tool.confirm` event is logged); False if it asked about no such call. Only such a
        call reaches the turn's mailbox: a client cannot fill it with ids of its own."""
        async with self.engine.pool.acquire() as conn:
            run_id = await conn.fetchval(_ASKED_RUN, TURN_QUEUE, session_id, call_id)
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

    # -- the turn workflow --------------------------------------------------------------------

    async def _run_turn(self, ctx: WorkflowContext, session_id: str, seq: int) -> dict[str, Any]:
        """The turn, ended by `message.end`, `message.cancelled` or, when it fails,
        `message.error` (see `failures`)."""
        agent: Agent | None = None
        try:
            snap: dict[str, Any] = await ctx.step(
                self._snapshot, session_id, seq, name="load", read_only=True
            )
            agent = self.agent(snap["agent"])
            return await self._answer(ctx, session_id, seq, snap, agent)
        except Exception as exc:
            if ctx.cancelled or database_gone(exc):
                raise  # `message.cancelled` tells it; or the run is handed back and replayed
            failure = turn_failure(exc, agent.budget_message if agent else "")
            log.error(
                "turn %s of session %s failed (%s): %s",
                ctx.run_id,
                session_id,
                failure.code,
                describe(exc),
                exc_info=failure.code in ("internal", "step_failed", "tool_failed"),
            )
            await self.events.append(
                session_id,
                "message.error",
                failure.to_json(ctx.run_id),
                event_key(ctx.run_id, "message.error"),
            )
            raise

    async def _answer(
        self, ctx: WorkflowContext, session_id: str, seq: int, snap: dict[str, Any], agent: Agent
    ) -> dict[str, Any]:
        turn_id = ctx.run_id
        turn = Turn(
            agent=agent,
            session_id=session_id,
            turn_id=turn_id,
            state=snap["state"],
            data=snap["data"],
            text=snap["text"],
            history=[Message.from_json(m) for m in snap["history"]],
            models=self.models,
            emit=functools.partial(self.events.post, session_id),
            scope=Scope(
                tenant=snap["tenant"],
                user=snap["user_id"],
                client=snap.get("client"),  # (journals of older versions have none)
                session=session_id,
                turn=turn_id,
                agent=agent.name,
            ),
            model=agent.model or default_model_spec(),
            budget=agent.budget.bind(whole=f"session:{session_id}", daily_of=f"agent:{agent.name}")
            if agent.budget
            else None,
            cancelled=lambda: ctx.cancelled,
            ctx=ctx,
        )
        status_before = snap.get("status", "active")
        if status_before == "closed":  # its budget ran out: the closing message, no model call
            await turn.say(agent.closing_message)
            next_state, status = turn.state, status_before
        else:
            next_state, status = turn.after(await agent.handler(turn.state)(turn))
        text = "\n\n".join(turn.replies)
        end: dict[str, Any] = {
            "turn_id": turn_id,
            "text": text,
            "state": next_state,
            "model": turn.model_used,
            "usage": turn.usage.to_json(),
            "cost": str(turn.cost) if turn.cost is not None else None,
            "sources": turn.sources,
            "budget": await self._budget_line(
                agent, session_id, exhausted=turn.exhausted is not None or status == "closed"
            ),
        }
        if agent.show_cached:  # else only the ledger and the dashboard say so
            end["cached"] = turn.cached
        # Idempotent: a replay finds the answer by its turn id and saves the same state.
        result: dict[str, Any] = await ctx.step(
            self._commit,
            session_id,
            turn_id,
            seq,
            next_state,
            turn.data,
            text,
            end,
            status,
            name="commit",
            idempotent=True,
        )
        if not result.get("ended"):
            await self.events.append(
                session_id, "message.end", end, event_key(turn_id, "message.end")
            )
        if next_state != turn.state or status != status_before:
            await self.events.append(
                session_id,
                "session.state",
                {"state": next_state, "status": status},
                event_key(turn_id, "session.state"),
            )
        for n, (seconds, reminder_text) in enumerate(turn.reminders):
            await self.engine.start(
                REMINDER_WORKFLOW,
                session_id,
                seconds,
                seq,
                reminder_text,
                run_id=f"remind:{turn_id}:{n}",
            )
        return result

    async def _run_reminder(
        self, ctx: WorkflowContext, session_id: str, seconds: float, seq: int, text: str
    ) -> bool:
        """Sleep durably; then, if no user message came after message `seq` and the session
        is still the agent's (not handed off, not closed), post `text`."""
        await ctx.sleep(seconds)
        return bool(await ctx.step(self._remind_if_silent, session_id, seq, text, ctx.run_id))

    async def _remind_if_silent(self, session_id: str, seq: int, text: str, run_id: str) -> bool:
        async with self.engine.pool.acquire() as conn:
            # Not after the user spoke again, nor once a human has the session or its
            # budget closed it (the agent would only repeat its closing message).
            quiet = await conn.fetchval(
                "SELECT s.status = 'active' AND NOT EXISTS (SELECT 1 FROM "
                "threadline.session_messages m WHERE m.session_id = s.id AND m.seq > $2 "
                "AND m.role = 'user') FROM threadline.sessions s WHERE s.id = $1",
                session_id,
                seq,
            )
            if not quiet:
                return False
            message_seq, created = await store.add_message(
                conn, session_id, "assistant", text, client_id=run_id, meta={"reminder": True}
            )
        if created:
            await self.events.append(
                session_id, "message.reminder", {"text": text, "message_seq": message_seq}
            )
        return True

    async def _budget_line(
        self, agent: Agent, session_id: str, *, exhausted: bool = False
    ) -> dict[str, Any] | None:
        """What the session's budget has left, for the widget's cost line: `left` is limit −
        spent − reserved (never below 0), money as plain decimals ("0.1", "0.0049"), and
        `exhausted` when the budget could not pay for this turn's reply."""
        if agent.budget is None or agent.budget.usd is None:
            return None
        limit, spent, reserved = Decimal(str(agent.budget.usd)), Decimal(0), Decimal(0)
        for state in await self.models.ledger.budgets.get(f"session:{session_id}"):
            if state.bucket == "total" and state.limit_usd is not None:
                limit, spent, reserved = state.limit_usd, state.spent_usd, state.reserved_usd
        left = max(Decimal(0), limit - spent - reserved)
        return {
            "limit": _usd(limit),
            "spent": _usd(spent),
            "reserved": _usd(reserved),
            "left": _usd(left),
            "exhausted": exhausted,
        }

    async def _snapshot(self, session_id: str, seq: int) -> dict[str, Any]:
        async with self.engine.pool.acquire() as conn:
            info, history = await store.session_and_messages(conn, session_id, up_to=seq, limit=60)
        *earlier, current = history
        return {
            "agent": info.agent,
            "tenant": info.tenant,
            "user_id": info.user_id,
            "client": info.client,
            "state": info.state,
            "status": info.status,
            "data": info.data,
            "text": current.content,
            "history": [_as_message(m).to_json() for m in earlier],
        }

    async def _commit(
        self,
        session_id: str,
        turn_id: str,
        reply_to: int,
        state: str,
        data: dict[str, Any],
        text: str,
        end: dict[str, Any],
        status: str | None = None,
    ) -> dict[str, Any]:
        """Store the answer and the new state and status; with them, when the event log lets
        it, the answer's last pieces and `end` as `message.end` (`ended`: the turn logs no
        more)."""
        status = status or ("handoff" if state == "handoff" else "active")
        along = self.events.along(session_id, take_queued=True) if text else None
        answer = None
        with along or contextlib.nullcontext():
            async with self.engine.pool.acquire() as conn:
                if text:
                    answer = await store.add_answer(
                        conn,
                        session_id,
                        text,
                        turn_id=turn_id,
                        reply_to=reply_to,
                        state=state,
                        data=data,
                        status=status,
                        along=along,
                        event=None if along is None else ("message.end", end),
                        key=event_key(turn_id, "message.end"),
                        meta=answer_meta(end),
                    )
                else:
                    await store.save_state(conn, session_id, state, data, status)
        return {"state": state, "message_seq": answer, "ended": along is not None}


def answer_meta(end: dict[str, Any]) -> dict[str, Any]:
    """What an answer's stored message keeps of its `message.end`: a reloaded conversation
    shows the same model, cost, cache mark and sources as the live one did."""
    keep = ("model", "usage", "cost", "cached", "sources")
    return {k: end[k] for k in keep if end.get(k) not in (None, [], False)}


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


def _usd(value: Decimal) -> str:
    """Money as a plain decimal without trailing zeros: "0.1", "0.0049", "0"."""
    return format(value.normalize(), "f") if value else "0"


def _as_message(m: StoredMessage) -> Message:
    if m.role == "user":
        return Message.user(m.content)
    return Message.assistant(m.content)


__all__ = ["MAX_MESSAGE_CHARS", "TURN_QUEUE", "Sessions"]


# The session's turn in progress, if it asked for approval of the call (`event_key`).
_ASKED_RUN = """
SELECT r.id FROM threadline.runs r
 WHERE r.queue = $1 AND r.queue_key = $2 AND r.status IN ('running', 'waiting')
   AND EXISTS (SELECT 1 FROM threadline.session_events e
                WHERE e.session_id = $2 AND e.key = r.id || ':confirm:' || $3)
 ORDER BY r.created_at LIMIT 1
"""
