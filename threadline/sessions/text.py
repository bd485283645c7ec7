"""Text from users and operators, checked at the edge: PostgreSQL cannot store NUL in text and
a lone surrogate cannot be encoded, so either would fail deep inside a commit (a 500, a reset
connection) instead of being refused with a reason."""

from __future__ import annotations

import re

from ..errors import ConfigurationError

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_text(text: str, what: str = "the message") -> str:
    """`text` if it can be stored, else a ConfigurationError naming the problem."""
    found = _UNSTORABLE.search(text)
    if found is not None:
        kind = "a NUL character" if found.group() == "\x00" else "an unpaired surrogate"
        raise ConfigurationError(f"{what} contains {kind} (at {found.start()}), which is not text")
    return text


def storable(text: str) -> bool:
    """Whether PostgreSQL can store (and compare) `text`."""
    return _UNSTORABLE.search(text) is None
