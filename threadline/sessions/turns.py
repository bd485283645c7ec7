"""A session's turn, as the engine runs it: load the session, run the state's handler,
commit the answer with the new state; and the reminders a turn leaves behind."""

from __future__ import annotations

import contextlib
import functools
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..agents import Agent, Turn
from ..agents.screen import event_key
from ..engine import WorkflowContext
from ..engine.dbretry import database_gone, describe
from ..ledger import Scope
from ..llm import Message, default_model_spec
from . import store
from .failures import turn_failure
from .store import StoredMessage

if TYPE_CHECKING:
    from .runtime import Sessions

__all__ = ["REMINDER_WORKFLOW", "TURN_QUEUE", "TURN_WORKFLOW", "TurnRunner", "answer_meta"]

TURN_QUEUE = "threadline.turns"
TURN_WORKFLOW = "threadline.turn"
REMINDER_WORKFLOW = "threadline.reminder"

log = logging.getLogger(__name__)


class TurnRunner:
    """Runs the turn and reminder workflows of `sessions`."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def run_turn(self, ctx: WorkflowContext, session_id: str, seq: int) -> dict[str, Any]:
        """The turn, ended by `message.end`, `message.cancelled` or, when it fails,
        `message.error` (see `failures`)."""
        agent: Agent | None = None
        try:
            snap: dict[str, Any] = await ctx.step(
                self._snapshot, session_id, seq, name="load", read_only=True
            )
            agent = self.sessions.agent(snap["agent"])
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
            await self.sessions.events.append(
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
            models=self.sessions.models,
            emit=functools.partial(self.sessions.events.post, session_id),
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
            await self.sessions.events.append(
                session_id, "message.end", end, event_key(turn_id, "message.end")
            )
        if next_state != turn.state or status != status_before:
            await self.sessions.events.append(
                session_id,
                "session.state",
                {"state": next_state, "status": status},
                event_key(turn_id, "session.state"),
            )
        for n, (seconds, reminder_text) in enumerate(turn.reminders):
            await self.sessions.engine.start(
                REMINDER_WORKFLOW,
                session_id,
                seconds,
                seq,
                reminder_text,
                run_id=f"remind:{turn_id}:{n}",
            )
        return result

    async def run_reminder(
        self, ctx: WorkflowContext, session_id: str, seconds: float, seq: int, text: str
    ) -> bool:
        """Sleep durably; then, if no user message came after message `seq` and the session
        is still the agent's (not handed off, not closed), post `text`."""
        await ctx.sleep(seconds)
        return bool(await ctx.step(self._remind_if_silent, session_id, seq, text, ctx.run_id))

    async def _remind_if_silent(self, session_id: str, seq: int, text: str, run_id: str) -> bool:
        async with self.sessions.engine.pool.acquire() as conn:
            # Not after the user spoke again, nor once a human has the session or its
            # budget closed it (the agent would only repeat its closing message).
            quiet = await store.silent_since(conn, session_id, seq)
            if not quiet:
                return False
            message_seq, created = await store.add_message(
                conn, session_id, "assistant", text, client_id=run_id, meta={"reminder": True}
            )
        if created:
            await self.sessions.events.append(
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
        for state in await self.sessions.models.ledger.budgets.get(f"session:{session_id}"):
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
        async with self.sessions.engine.pool.acquire() as conn:
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
        along = self.sessions.events.along(session_id, take_queued=True) if text else None
        answer = None
        with along or contextlib.nullcontext():
            async with self.sessions.engine.pool.acquire() as conn:
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


def _usd(value: Decimal) -> str:
    """Money as a plain decimal without trailing zeros: "0.1", "0.0049", "0"."""
    return format(value.normalize(), "f") if value else "0"


def _as_message(m: StoredMessage) -> Message:
    if m.role == "user":
        return Message.user(m.content)
    return Message.assistant(m.content)
