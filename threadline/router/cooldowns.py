"""Per-model cooldowns: a circuit breaker shared by every process on one database.

A model that fails with an error worth retrying elsewhere (rate limit, overload, 5xx,
timeout, connection, broken stream) is *open* — skipped by every router — until its cooldown
ends: the provider's `retry-after` for a rate limit, otherwise `base_s`, doubling with each
consecutive opening up to `max_s`. Then it is *half-open*: one caller at a time (across all
processes) may probe it, for at most `probe_timeout_s`; a success closes it (the row is
deleted), a failure opens it again, for longer. Failures while it is already open (calls that
were in flight) do not lengthen it.

Each routed call asks which of its models have a cooldown. Nearly always none has, so a
process mirrors the set of models with a row (`threadline.engine.mirror`, the table's trigger
notifies `threadline_cooldowns`, migration 0010; the mirror registers that channel with the
engine's listener) and asks the database only when one of the call's models is in it, or when
the set is not known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ..engine.mirror import Mirror, mirror_for
from ..llm import LLMError, RateLimited

__all__ = ["CooldownPolicy", "Cooldowns", "ModelHealth"]

_COLUMNS = "model, failures, reason, until, probe_until, until > now() AS cooling"

CHANNEL = "threadline_cooldowns"
MODELS = "SELECT model FROM threadline.model_cooldowns"
HEALTH = f"SELECT {_COLUMNS} FROM threadline.model_cooldowns WHERE model = ANY($1::text[])"
ALL = f"SELECT {_COLUMNS} FROM threadline.model_cooldowns ORDER BY model"

# $1 model, $2 reason, $3 the provider's retry-after (NULL: none), $4 base, $5 max seconds.
FAILED = f"""
INSERT INTO threadline.model_cooldowns AS c (model, failures, reason, until)
VALUES ($1, 1, $2, now() + make_interval(secs => coalesce($3::float8, $4::float8)))
ON CONFLICT (model) DO UPDATE SET
    failures = CASE WHEN c.until > now() THEN c.failures ELSE c.failures + 1 END,
    reason = $2,
    until = greatest(c.until, now() + make_interval(secs => coalesce($3::float8, least(
        $5::float8, $4::float8 * power(2, CASE WHEN c.until > now() THEN c.failures - 1
                                              ELSE c.failures END))))),
    probe_until = NULL,
    updated_at = now()
RETURNING {_COLUMNS}
"""
CLAIM_PROBE = """
UPDATE threadline.model_cooldowns SET probe_until = now() + make_interval(secs => $2)
WHERE model = $1 AND until <= now() AND (probe_until IS NULL OR probe_until <= now())
RETURNING model
"""
RELEASE_PROBE = "UPDATE threadline.model_cooldowns SET probe_until = NULL WHERE model = $1"
CLOSE = "DELETE FROM threadline.model_cooldowns WHERE model = $1"
CLEAR_ALL = "DELETE FROM threadline.model_cooldowns"


@dataclass(frozen=True)
class CooldownPolicy:
    """How long a failing model is left alone (seconds)."""

    base_s: float = 5.0
    max_s: float = 300.0
    probe_timeout_s: float = 60.0


@dataclass(frozen=True)
class ModelHealth:
    """A model with a cooldown row: `cooling` until `until` (open), then half-open."""

    model: str
    failures: int
    reason: str
    until: datetime
    probe_until: datetime | None
    cooling: bool

    @property
    def state(self) -> str:
        return "open" if self.cooling else "half_open"


def _model(row: asyncpg.Record) -> str:
    return str(row[0])


def _health(row: asyncpg.Record) -> ModelHealth:
    return ModelHealth(
        row["model"],
        row["failures"],
        row["reason"],
        row["until"],
        row["probe_until"],
        row["cooling"],
    )


class Cooldowns:
    """The shared circuit breakers on one database."""

    def __init__(self, pool: asyncpg.Pool, policy: CooldownPolicy | None = None) -> None:
        self.pool = pool
        self.policy = policy or CooldownPolicy()

    def _mirror(self) -> Mirror[str] | None:
        """Which models have a row, kept in this process (None: no engine on the pool)."""
        return mirror_for(self.pool, CHANNEL, MODELS, _model)

    async def health(self, models: Sequence[str]) -> dict[str, ModelHealth]:
        """The models of this list that are open or half-open (closed ones are absent)."""
        mirror = self._mirror()
        cooling = None if mirror is None else mirror.keys()
        if cooling is not None and cooling.isdisjoint(models):
            return {}
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(HEALTH, list(models))
        return {row["model"]: _health(row) for row in rows}

    async def list(self) -> list[ModelHealth]:
        async with self.pool.acquire() as conn:
            return [_health(row) for row in await conn.fetch(ALL)]

    async def failed(self, model: str, error: LLMError) -> ModelHealth:
        """Open the model's circuit after `error` (see the module docstring)."""
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                FAILED, model, error.code, retry_after, self.policy.base_s, self.policy.max_s
            )
        assert row is not None  # an upsert returns its row
        mirror = self._mirror()
        if mirror is not None:
            mirror.add(model)
        return _health(row)

    async def try_probe(self, model: str) -> bool:
        """Claim the half-open model's single probe; False if it is taken or still open."""
        async with self.pool.acquire() as conn:
            claimed = await conn.fetchval(CLAIM_PROBE, model, self.policy.probe_timeout_s)
        return claimed is not None

    async def release_probe(self, model: str) -> None:
        """Give up a claimed probe without trying the model."""
        async with self.pool.acquire() as conn:
            await conn.execute(RELEASE_PROBE, model)

    async def recovered(self, model: str) -> None:
        """Close the model's circuit: it answered."""
        async with self.pool.acquire() as conn:
            await conn.execute(CLOSE, model)

    async def clear(self, model: str | None = None) -> None:
        """Forget the cooldown of one model, or of every model."""
        async with self.pool.acquire() as conn:
            if model is None:
                await conn.execute(CLEAR_ALL)
            else:
                await conn.execute(CLOSE, model)
