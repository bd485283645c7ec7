"""Counts of runs for the operators' views (the metrics): one workflow's runs by status, and
the runs waiting to start on each queue."""

from __future__ import annotations

from dataclasses import dataclass

from ..db.connect import Connection


@dataclass(frozen=True)
class RunCounts:
    by_status: dict[str, int]  # the workflow's runs; a status none has is left out
    pending: dict[str, int]  # runs of any workflow waiting to start, per queue with any


# The first part counts every run of the workflow (the table has no index on `workflow`): a
# scan that grows with the runs kept.
_RUN_COUNTS = """
SELECT 'status' AS kind, status AS key, count(*) AS n
FROM threadline.runs WHERE workflow = $1 GROUP BY status
UNION ALL
SELECT 'pending', queue, count(*) FROM threadline.runs WHERE status = 'pending' GROUP BY queue
"""


async def run_counts(conn: Connection, workflow: str) -> RunCounts:
    counts = RunCounts({}, {})
    for row in await conn.fetch(_RUN_COUNTS, workflow):
        (counts.by_status if row["kind"] == "status" else counts.pending)[row["key"]] = row["n"]
    return counts
