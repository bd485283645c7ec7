"""Runs and steps as `runs list`, `runs show` and the engine's inspection methods read them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..db.connect import Connection
from ..errors import UnknownRun
from . import queries
from .runs import TERMINAL, Outcome


@dataclass(frozen=True)
class RunInfo:
    """A run as `runs list` and `runs show` present it."""

    id: str
    workflow: str
    status: str
    app_version: str
    queue: str
    queue_key: str | None
    parent_id: str | None
    owner: int | None
    recoveries: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    wake_at: datetime | None
    waiting_topic: str | None
    input: Any
    output: Any
    error: Any


@dataclass(frozen=True)
class StepInfo:
    step_no: int
    name: str
    output: Any
    error: Any
    created_at: datetime


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _run_info(row: asyncpg.Record) -> RunInfo:
    values = dict(row)
    for key in ("input", "output", "error"):
        values[key] = _json(values[key])
    return RunInfo(**values)


async def list_runs(
    conn: Connection,
    *,
    status: str | None = None,
    workflow: str | None = None,
    limit: int = 50,
) -> list[RunInfo]:
    rows = await conn.fetch(queries.LIST_RUNS, status, workflow, limit)
    return [_run_info(r) for r in rows]


async def unfinished_runs(
    conn: Connection, queue: str, key: str, statuses: tuple[str, ...]
) -> list[str]:
    rows = await conn.fetch(queries.UNFINISHED_RUNS, queue, key, list(statuses))
    return [r["id"] for r in rows]


async def get_run(conn: Connection, run_id: str) -> RunInfo:
    row = await conn.fetchrow(queries.GET_RUN, run_id)
    if row is None:
        raise UnknownRun(f"no run with id {run_id!r}")
    return _run_info(row)


async def get_steps(conn: Connection, run_id: str) -> list[StepInfo]:
    rows = await conn.fetch(queries.GET_STEPS, run_id)
    return [
        StepInfo(r["step_no"], r["name"], _json(r["output"]), _json(r["error"]), r["created_at"])
        for r in rows
    ]


async def outcome(conn: Connection, run_id: str) -> Outcome | None:
    """How the run ended, or None while it has not."""
    row = await conn.fetchrow(queries.RUN_STATUS, run_id)
    if row is None:
        raise UnknownRun(f"no run with id {run_id!r}")
    if row["status"] not in TERMINAL:
        return None
    return row["status"], row["output"], row["error"]


async def read_events(
    conn: Connection, run_id: str, after: int, limit: int = 500
) -> tuple[list[asyncpg.Record], str | None]:
    """The run's next events after sequence number `after`, or (none yet) its status."""
    rows = await conn.fetch(queries.READ_EVENTS, run_id, after, limit)
    if rows:
        return rows, None
    return rows, await conn.fetchval(queries.STATUS_OF, run_id)


async def exists(conn: Connection, run_id: str) -> bool:
    return await conn.fetchval(queries.STATUS_OF, run_id) is not None
