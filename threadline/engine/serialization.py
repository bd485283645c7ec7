"""JSON in and out of the journal, with a size limit and errors that name what failed."""

from __future__ import annotations

import json
from typing import Any

from ..errors import NotSerializable, PayloadTooLarge

DEFAULT_MAX_PAYLOAD = 1 << 20  # 1 MiB per input, step result, message or event

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def dumps(value: Any, what: str, limit: int = DEFAULT_MAX_PAYLOAD) -> str:
    """Serialise `value`; `what` names it in errors ("result of step 'fetch'")."""
    try:
        text = _encode(value)
    except (TypeError, ValueError) as exc:
        raise NotSerializable(
            f"{what} cannot be stored as JSON ({exc}); return plain data "
            "(dict, list, str, int, float, bool, None)"
        ) from exc
    if len(text) > limit and len(text.encode()) > limit:
        raise PayloadTooLarge(f"{what} is {len(text.encode()):,} bytes, over the {limit:,} limit")
    return text


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
