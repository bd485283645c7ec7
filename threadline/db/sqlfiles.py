"""Named statements from a `.sql` file shipped inside a package, as procrastinate keeps its
queries: a package's SQL in one file that reads as SQL, not as Python strings.

Each statement follows a line `-- name: <name>` and runs to the next such line; the lines
before the first one describe the file. Comment lines before and after a statement are
dropped (they describe it, or head the next section); those inside it stay (PostgreSQL skips
them). A file is read once per process.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

__all__ = ["named_statements", "parse_statements"]

_NAME = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@functools.cache
def named_statements(package: str, filename: str) -> Mapping[str, str]:
    """The statements of `filename` in `package` (e.g. "threadline.rag", "queries.sql"), by
    name."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return parse_statements(text, f"{package}/{filename}")


def parse_statements(text: str, where: str = "<sql>") -> Mapping[str, str]:
    """The statements of a file's text, by name; a name given twice or without a statement
    is an error naming `where`."""
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        statement = _trim(body)
        if name in found:
            raise ValueError(f"{where}: two statements are named {name!r}")
        if not statement:
            raise ValueError(f"{where}: the statement {name!r} is empty")
        found[name] = statement
    return MappingProxyType(found)


def _trim(body: str) -> str:
    """The statement without the blank and comment lines around it."""
    lines = body.splitlines()
    while lines and _blank_or_comment(lines[0]):
        lines.pop(0)
    while lines and _blank_or_comment(lines[-1]):
        lines.pop()
    return "\n".join(lines)


def _blank_or_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("--")
