"""Counts of runs for the operators' views (the metrics): one workflow's runs by status, and
the runs waiting to start on each queue."""

from __future__ import annotations

from dataclasses import dataclass

from ..db.connect import Connection
from . import queries


@dataclass(frozen=True)
class RunCounts:
    by_status: dict[str, int]  # the workflow's runs; a status none has is left out
    pending: dict[str, int]  # runs of any workflow waiting to start, per queue with any


async def run_counts(conn: Connection, workflow: str) -> RunCounts:
    counts = RunCounts({}, {})
    for row in await conn.fetch(queries.RUN_COUNTS, workflow):
        (counts.by_status if row["kind"] == "status" else counts.pending)[row["key"]] = row["n"]
    return counts
