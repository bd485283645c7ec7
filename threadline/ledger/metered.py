"""`MeteredModel`: a model whose calls are admitted under their budgets, priced and written to
the ledger, whatever their outcome.

Every call — plain or streamed, answered, failed or cancelled — becomes one ledger row the
moment it ends. A stream cut before the provider reported its usage is charged from an
estimate (input from the prompt, output from the text received) and marked `estimated`.

Before the call its worst case is reserved against each limit of its scopes (see
`budgets.py`), lowering `max_tokens` to what the tightest affords (never below the fewest
output tokens worth a call; a `Capped` notice says so) or refusing it (`BudgetExceeded`);
its ledger row settles the reservation, and the budget notices the settlement causes come
in the stream (`Notice`) once the row is committed.

What the ledger needs of a call comes in its options' `Metering` entry: its scope, a budget
for it, and — inside a workflow step (see `threadline.router.durable`) — the ledger, the
limits fixed before the step, and the rows held to commit with the step's record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..engine.context import current_context
from ..errors import ConfigurationError
from ..llm import (
    CallEvent,
    CallOptions,
    LLMError,
    Message,
    Model,
    Notice,
    StreamEnd,
    WrapperModel,
)
from ..llm.model import closing
from .admission import CallBudget, Receipt, admit, refused
from .carrier import HeldRows
from .ledger import Ledger
from .limits import BoundBudget, Budget, Mode
from .meter import CallNote, Meter
from .outcomes import Capped, Grant, Refusal
from .record import CallRecord, CallStatus
from .scope import Scope
from .source import LedgerSource

if TYPE_CHECKING:
    from ..engine.context import WorkflowContext

__all__ = ["CallNote", "MeteredModel", "Metering", "refusal_of"]


@dataclass(frozen=True)
class Metering:
    """The ledger's entry in a call's `CallOptions.context`.

    `scope` is who the call is billed to; `budget` adds limits for it (`usd`: the call
    itself; `per_*`: its scopes); `mode` how its input is bounded ("strict" / "estimate"; the
    model's by default); `min_tokens` the fewest output tokens worth calling it with (the
    model's by default); `note` what a fallback chain adds to its row. Set by the layer that
    runs the call durably: `ledger` (the model's own if it has one wins), `workflow` (the
    context of the workflow the step belongs to, whose declared budget applies; inside the
    step's body there is no current context; a call in a step returns once its row is
    committed) and `hold` (rows committed with the step's record)."""

    scope: Scope = field(default_factory=Scope)
    budget: Budget | BoundBudget | None = None
    mode: Mode | None = None
    min_tokens: int | None = None
    note: CallNote = field(default_factory=CallNote)
    ledger: Ledger | None = None
    workflow: WorkflowContext | None = None
    hold: HeldRows | None = None


def refusal_of(exc: BaseException) -> Refusal | None:
    """The budgets' refusal behind an error a `MeteredModel` raised before calling its model
    (`BudgetExceeded`, or a configuration error for a model with no price under a limit)."""
    found = getattr(exc, "refusal", None)
    return found if isinstance(found, Refusal) else None


class MeteredModel(WrapperModel):
    """`model`, metered: see the module docstring.

    `ledger`: where rows go (else the `Metering` entry's, else, inside a workflow, a ledger
    on its engine's database). `mode`, `min_output_tokens`: defaults for calls whose
    `Metering` does not say; `budget_wait`: how long a call waits for money held by calls in
    flight before it is refused.
    """

    def __init__(
        self,
        model: Model,
        ledger: Ledger | None = None,
        *,
        mode: Mode = "strict",
        min_output_tokens: int = 256,
        budget_wait: float = 0.0,
    ) -> None:
        super().__init__(model)
        self._ledgers = LedgerSource(ledger)
        self.mode: Mode = mode
        self.min_output_tokens = min_output_tokens
        self.budget_wait = budget_wait

    def ledger_for(self, metering: Metering | None = None) -> Ledger:
        """The ledger a call's row goes to (see the class docstring)."""
        if self._ledgers.given is None and metering is not None and metering.ledger is not None:
            return metering.ledger
        found = self._ledgers.find()
        if found is None:
            raise ConfigurationError(
                "this model has no ledger: pass MeteredModel(model, Ledger(pool)), "
                "or call it in a workflow"
            )
        return found

    def plan(self, metering: Metering) -> CallBudget:
        """The limits a call is under: its scopes', its budget's and its workflow's."""
        return CallBudget.of(
            metering.scope,
            metering.budget,
            ctx=metering.workflow or current_context(),
            mode=metering.mode or self.mode,
            wait=self.budget_wait,
        )

    async def aclose(self) -> None:
        """Write pending ledger rows, then close the model's HTTP client."""
        await self._ledgers.aclose()
        await super().aclose()

    # -- calls --------------------------------------------------------------------------------

    async def admit(
        self, messages: Sequence[Message], options: CallOptions, *, streams: bool = False
    ) -> Grant | Refusal:
        """Reserve a call's worst case under its limits (see `admission.admit`). `streams`:
        the call streams and reports its progress (see `Budgets.watch`) from the start."""
        metering = options.get(Metering) or Metering()
        ledger = self.ledger_for(metering)
        return await admit(
            ledger.budgets,
            self.plan(metering),
            self.wrapped,
            messages,
            options.tools,
            max_tokens=options.max_tokens,
            min_tokens=metering.min_tokens or self.min_output_tokens,
            scope=metering.scope,
            requested_model=metering.note.requested_model or self.spec,
            attempt=metering.note.attempt,
            fallback_reason=metering.note.fallback_reason,
            overrides=ledger.overrides,
            streams=streams,
        )

    async def _events(
        self, messages: Sequence[Message], options: CallOptions, *, streams: bool
    ) -> AsyncIterator[CallEvent]:
        """Admit, call, meter, write the row; then the settlement's notices and the end."""
        metering = options.get(Metering) or Metering()
        ledger = self.ledger_for(metering)
        grant = await self.admit(messages, options, streams=streams)
        if isinstance(grant, Refusal):
            error = refused(grant, self.spec)
            error.refusal = grant  # type: ignore[attr-defined]  # for a fallback chain
            raise error
        call_options = replace(options, max_tokens=grant.max_tokens)
        meter = Meter(self.wrapped, messages, call_options, times_first_token=streams)
        call = _Call(self, ledger, metering, meter, grant)
        watched = grant.reservation_id if streams else None
        if watched is not None:  # a crash mid-stream is then charged what it streamed
            ledger.budgets.watch(watched, meter.seen)
        try:
            if grant.max_tokens < options.max_tokens:  # the budget affords this model less
                yield Notice(Capped(self.spec, grant.max_tokens, options.max_tokens))
            inner = self.wrapped._events(messages, call_options, streams=streams)
            async with closing(inner) as events:
                async for event in events:
                    meter.see(event)
                    if not isinstance(event, StreamEnd):
                        yield event
        except LLMError as exc:
            for notice in await call.end("error", exc, watched):
                yield notice
            raise
        except BaseException:
            call.end_now("cancelled", None, watched)
            raise
        notices = await call.end("ok", None, watched)
        for notice in notices:
            yield notice
        end = meter.builder.end
        assert end is not None  # a stream without one raised StreamInterrupted above
        cost = call.row.cost_usd if call.row is not None else None
        yield replace(end, cost_usd=cost, provider=self.provider)


@dataclass
class _Call:
    """The end of one metered call: its row, written or held, and its notices."""

    model: MeteredModel
    ledger: Ledger
    metering: Metering
    meter: Meter
    grant: Grant
    row: CallRecord | None = None
    _receipt: Receipt = field(default_factory=Receipt)

    def end_now(
        self, status: CallStatus, error: LLMError | None, watched: int | None
    ) -> asyncio.Future[None] | None:
        """Write the row (or hand it to the step's hold); the write, if it was submitted."""
        if watched is not None:
            self.ledger.budgets.unwatch(watched)
        m = self.metering
        row = self.meter.row(m.scope, m.note, status, error, self.grant, self.ledger.overrides)
        self.row = row
        if m.hold is not None and m.hold.takes(row):
            m.hold.hold(row)
            return None
        written = self.ledger.submit(row, self._receipt.take)
        self._receipt.written = written
        return written

    async def end(
        self, status: CallStatus, error: LLMError | None, watched: int | None
    ) -> list[Notice]:
        """Write the row; when the call is in a step or settles a reservation, wait for the
        commit and return the budget notices it caused."""
        written = self.end_now(status, error, watched)
        if written is None:
            return []
        in_step = self.metering.workflow is not None
        if not (in_step or self.grant.reservation_id is not None):
            return []
        await asyncio.shield(written)
        return [Notice(found) for found in await self._receipt.notices()]
