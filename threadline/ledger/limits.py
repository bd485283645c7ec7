"""Budgets declared in code, and the budget counters a call is counted under.

A call falls under one counter per scope it belongs to (its tenant, user, session, turn,
workflow run, step, agent and workflow, and the global scope), each once for all time
(`total`) and once for its UTC day (`daily`). Only counters with a limit matter: a limit set at
run time (`Budgets.set`, the CLI) or one declared in code with `Budget`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

from ..errors import ConfigurationError, ThreadlineError
from .scope import Scope

__all__ = [
    "PERIODS",
    "SCOPE_KINDS",
    "BoundBudget",
    "Budget",
    "BudgetExceeded",
    "Counter",
    "Mode",
    "Period",
    "ScopeRef",
    "counters_for",
    "declared_budget",
    "money",
    "today",
]

SCOPE_KINDS = (
    "global",
    "tenant",
    "user",
    "session",
    "turn",
    "run",
    "step",
    "agent",
    "workflow",
    "client",
)
PERIODS = ("total", "daily")
Period = Literal["total", "daily"]
Mode = Literal["strict", "estimate"]
F = TypeVar("F", bound=Callable[..., Any])


def money(value: float | int | str | Decimal, what: str = "a budget") -> Decimal:
    """USD as a Decimal; floats go through their shortest text (0.1 stays 0.1)."""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ConfigurationError(f"{what} must be a number of USD, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigurationError(f"{what} must be a finite amount >= 0, got {value!r}")
    return amount


def today() -> str:
    """The bucket of daily limits now: the UTC date."""
    return datetime.now(UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class ScopeRef:
    """One scope: its kind and key ("" for the global scope)."""

    kind: str
    key: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCOPE_KINDS:
            raise ConfigurationError(
                f"unknown budget scope {self.kind!r}; known: {', '.join(SCOPE_KINDS)}"
            )
        if self.kind == "global" and self.key:
            raise ConfigurationError("the global scope has no key")

    @classmethod
    def parse(cls, text: str) -> ScopeRef:
        """`global`, `tenant:acme`, `user:*` (every user)."""
        kind, _, key = text.partition(":")
        if kind != "global" and not key:
            raise ConfigurationError(f"write a scope as kind:key (e.g. tenant:acme), got {text!r}")
        return cls(kind, key)

    def __str__(self) -> str:
        return self.kind if self.kind == "global" else f"{self.kind}:{self.key}"


@dataclass(frozen=True)
class Counter:
    """A counter a call is counted under, with the limit declared for it in code, if any."""

    kind: str
    key: str
    period: Period
    bucket: str  # "total", or the UTC day of a daily limit
    declared_usd: Decimal | None = None


def scope_refs(scope: Scope, workflow: str | None = None) -> list[ScopeRef]:
    """Every scope a call with this `Scope` (in this workflow) belongs to."""
    refs = [ScopeRef("global")]
    for kind, value in (
        ("tenant", scope.tenant),
        ("user", scope.user),
        ("session", scope.session),
        ("turn", scope.turn),
        ("agent", scope.agent),
        ("run", scope.run_id),
        ("workflow", workflow),
        ("client", scope.client),
    ):
        if value:
            refs.append(ScopeRef(kind, value))
    if scope.run_id and scope.step_no is not None:
        refs.append(ScopeRef("step", f"{scope.run_id}:{scope.step_no}"))
    return refs


_PER_SCOPE = {
    "per_tenant": "tenant",
    "per_user": "user",
    "per_session": "session",
    "per_turn": "turn",
    "per_run": "run",
    "per_step": "step",
}


@dataclass(frozen=True)
class Budget:
    """Limits in USD, declared in code.

    `usd` caps the whole of what the budget is declared on: a workflow run (on a workflow),
    one call (passed to a call), a session (on an agent). `daily` caps that per UTC day across
    all of them (all runs of a workflow, all sessions of an agent). `per_tenant` ... `per_step`
    cap each tenant, user, session, turn, run or step the calls belong to. `per_client_daily`
    caps, per UTC day, what the sessions started from one client address spend (an anonymous
    visitor's share of an agent's `daily`: one client cannot spend everyone's). A limit set
    at run time for a particular scope (`Budgets.set`, `threadline budgets set`) replaces
    the one declared here.

    On a workflow, use it as a decorator (either side of `@workflow`):

        @workflow
        @Budget(usd=2.00, per_step=0.10, daily=50)
        async def summarise(ctx, paper): ...
    """

    usd: Decimal | float | None = None
    daily: Decimal | float | None = None
    per_tenant: Decimal | float | None = None
    per_user: Decimal | float | None = None
    per_session: Decimal | float | None = None
    per_turn: Decimal | float | None = None
    per_run: Decimal | float | None = None
    per_step: Decimal | float | None = None
    per_client_daily: Decimal | float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                object.__setattr__(self, f.name, money(value, f"Budget({f.name}=...)"))

    def limit(self, name: str) -> Decimal | None:
        value = getattr(self, name)
        return value if isinstance(value, Decimal) else None

    def __call__(self, fn: F) -> F:
        fn.__threadline_budget__ = self  # type: ignore[attr-defined]
        return fn

    def bind(
        self, *, whole: ScopeRef | str | None = None, daily_of: ScopeRef | str | None = None
    ) -> BoundBudget:
        """This budget with `usd` counted on `whole` and `daily` on `daily_of`, e.g. an
        agent's: `budget.bind(whole="session:s1", daily_of="agent:support")`."""
        return BoundBudget(self, _ref(whole), _ref(daily_of))

    def counters(
        self,
        scope: Scope,
        *,
        whole: ScopeRef | None,
        daily_of: ScopeRef | None,
        day: str,
    ) -> list[Counter]:
        """The declared limits as counters: `usd` on `whole`, `daily` on `daily_of`."""
        found: list[Counter] = []
        usd, daily = self.limit("usd"), self.limit("daily")
        if usd is not None and whole is not None:
            found.append(Counter(whole.kind, whole.key, "total", "total", usd))
        if daily is not None:
            if daily_of is None:
                raise ConfigurationError(
                    "Budget(daily=...) needs something to count days for: declare it on a "
                    "workflow, or set a daily budget with Budgets.set(..., period='daily')"
                )
            found.append(Counter(daily_of.kind, daily_of.key, "daily", day, daily))
        refs = {ref.kind: ref for ref in scope_refs(scope)}
        per_client = self.limit("per_client_daily")
        if per_client is not None and "client" in refs:
            found.append(Counter("client", refs["client"].key, "daily", day, per_client))
        for name, kind in _PER_SCOPE.items():
            limit = self.limit(name)
            if limit is not None and kind in refs:  # a call outside any turn has no turn limit
                found.append(Counter(kind, refs[kind].key, "total", "total", limit))
        return found


def _ref(ref: ScopeRef | str | None) -> ScopeRef | None:
    return ScopeRef.parse(ref) if isinstance(ref, str) else ref


@dataclass(frozen=True)
class BoundBudget:
    """A `Budget` and what its `usd` and `daily` limits count (see `Budget.bind`)."""

    budget: Budget
    whole: ScopeRef | None = None
    daily_of: ScopeRef | None = None

    def counters(self, scope: Scope, *, day: str) -> list[Counter]:
        return self.budget.counters(scope, whole=self.whole, daily_of=self.daily_of, day=day)


def declared_budget(fn: Any) -> Budget | None:
    """The `Budget` a function was decorated with, if any."""
    found = getattr(fn, "__threadline_budget__", None)
    return found if isinstance(found, Budget) else None


def counters_for(
    scope: Scope,
    *,
    workflow: str | None = None,
    declared: Sequence[Counter] = (),
    day: str | None = None,
) -> list[Counter]:
    """Every counter a call may be limited by: each scope's total and today's bucket (limited
    only if a limit is set at run time), merged with the declared ones (the lowest wins)."""
    day = day or today()
    merged: dict[tuple[str, str, str], Counter] = {}
    for ref in scope_refs(scope, workflow):
        for period, bucket in (("total", "total"), ("daily", day)):
            merged[(ref.kind, ref.key, bucket)] = Counter(ref.kind, ref.key, period, bucket)  # type: ignore[arg-type]
    for counter in declared:
        key = (counter.kind, counter.key, counter.bucket)
        known = merged.get(key)
        if (
            known is not None
            and known.declared_usd is not None
            and counter.declared_usd is not None
        ):
            counter = replace(counter, declared_usd=min(known.declared_usd, counter.declared_usd))
        merged[key] = counter
    return sorted(merged.values(), key=lambda c: (c.kind, c.key, c.bucket))


def _usd(value: Decimal) -> str:
    return format(value.quantize(Decimal("1e-10")).normalize(), "f")


_EXCEEDED = re.compile(
    r"^budget exceeded: (?P<scope>[a-z]+(?::\".*\")?) \((?P<bucket>[^)]*)\): "
    r"limit \$(?P<limit>[0-9.]+), spent \$(?P<spent>[0-9.]+), reserved \$(?P<reserved>[0-9.]+), "
    r"needs \$(?P<needed>[0-9.]+)(?: for (?P<model>\S+))?$",
    re.DOTALL,
)


class BudgetExceeded(ThreadlineError):
    """No model the call may use fits the money left in one of its budgets.

    `scope` names the budget (`tenant:acme`, `global`, `call` for a per-call limit), `bucket`
    its period (`total` or the UTC day), and `needed_usd` the least the call would reserve.
    """

    def __init__(
        self,
        scope: str,
        limit_usd: Decimal,
        spent_usd: Decimal,
        needed_usd: Decimal,
        *,
        reserved_usd: Decimal = Decimal(0),
        bucket: str = "total",
        model: str | None = None,
    ) -> None:
        kind, _, key = scope.partition(":")
        shown = f"{kind}:{json.dumps(key)}" if key else kind
        message = (
            f"budget exceeded: {shown} ({bucket}): limit ${_usd(limit_usd)}, "
            f"spent ${_usd(spent_usd)}, reserved ${_usd(reserved_usd)}, "
            f"needs ${_usd(needed_usd)}" + (f" for {model}" if model else "")
        )
        super().__init__(message)
        self.scope = scope
        self.bucket = bucket
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.needed_usd = needed_usd
        self.model = model

    @classmethod
    def from_message(cls, message: str) -> BudgetExceeded | None:
        """Rebuild the error from its message (a workflow's journal keeps only that)."""
        found = _EXCEEDED.match(message)
        if found is None:
            return None
        kind, _, key = found["scope"].partition(":")
        return cls(
            f"{kind}:{json.loads(key)}" if key else kind,
            Decimal(found["limit"]),
            Decimal(found["spent"]),
            Decimal(found["needed"]),
            reserved_usd=Decimal(found["reserved"]),
            bucket=found["bucket"],
            model=found["model"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "bucket": self.bucket,
            "limit_usd": str(self.limit_usd),
            "spent_usd": str(self.spent_usd),
            "reserved_usd": str(self.reserved_usd),
            "needed_usd": str(self.needed_usd),
            "model": self.model,
        }
