"""The audit log: who did what to which session, key or budget, when and from where.

The admin's, operators' and tenants' backends' actions are recorded (keys made and revoked,
sessions' tokens issued and revoked, transcripts read, sessions deleted, operator replies and
states, budgets set and removed, dashboard logins and failed ones); an end user's own
actions on their own session are not. The table is append-only (an update is refused by a
trigger). Nothing secret is written: keys by their prefix, never whole."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from . import queries


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str  # "admin", "dashboard", "key:tlk_Ab3dE9xY", "cli:alice"
    action: str  # "key.created", "session.read", ...
    target: str  # "session:…", "key:…", "budget:tenant:acme", "" for a login
    detail: dict[str, Any]
    address: str | None  # the client's address, for requests

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "address": self.address,
        }


async def record(
    db: asyncpg.Pool | asyncpg.Connection,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    address: str | None = None,
) -> None:
    await db.execute(queries.RECORD_AUDIT, actor, action, target, json.dumps(detail or {}), address)


async def recent(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    limit: int = 100,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
) -> list[Entry]:
    """The latest entries first, those of `action`, `target` and `actor` when given."""
    rows = await db.fetch(queries.RECENT_AUDIT, limit, action, target, actor)
    return [
        Entry(
            r["id"],
            r["at"],
            r["actor"],
            r["action"],
            r["target"],
            json.loads(r["detail"]),
            r["address"],
        )
        for r in rows
    ]


def cli_actor() -> str:
    """The actor a command line records: the operating-system user who ran it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for the uid (a container)
        return "cli"
