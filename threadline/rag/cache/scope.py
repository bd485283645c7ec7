"""What a cached answer is valid for: its scope. Two questions share an answer only if
their scopes are equal: same agent, prompt and tool versions, model policy, and tenant
(unless the agent declares its answers shared by all tenants)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CacheScope"]


@dataclass(frozen=True)
class CacheScope:
    agent: str
    prompt_version: str = ""
    tool_version: str = ""
    model_policy: str = ""
    tenant: str | None = None
    shared: bool = False  # True: every tenant gets the same answers (public FAQ)
    user: str | None = None  # set: only this user's questions share answers
    extra: str = ""  # anything else the answer depends on (locale, state name)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.shared:
            data["tenant"] = None
        return data

    @property
    def key(self) -> str:
        """A stable hash of every field that separates answers."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheScope:
        return cls(**data)
