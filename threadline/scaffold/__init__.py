"""`threadline new NAME`: a bot project to start from, that passes its own tests.

The templates are `project/**/*.tmpl` (package data); `{{name}}`, `{{title}}` and `{{slug}}`
in them become the project's name, its title and its package-safe slug, and a leading
`dot-` in a file name becomes a `.`.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["TEMPLATES", "create_project"]

TEMPLATES = Path(__file__).resolve().parent / "project"
SUFFIX = ".tmpl"


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]


def create_project(directory: Path) -> list[Path]:
    """Write a new project into `directory` (which must not exist, or be empty), named after
    it; the files written."""
    directory = directory.expanduser().resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigurationError(f"{directory} already exists and is not empty")
    words = _words(directory.name)
    if not words:
        raise ConfigurationError(f"{directory.name!r} has no letters or digits to name a project")
    values = {
        "name": directory.name,
        "title": " ".join(w[:1].upper() + w[1:] for w in words),
        "slug": "-".join(w.lower() for w in words),
    }
    written = []
    for template in sorted(TEMPLATES.rglob("*" + SUFFIX)):
        relative = template.relative_to(TEMPLATES)
        name = relative.name.removesuffix(SUFFIX)
        if name.startswith("dot-"):
            name = "." + name.removeprefix("dot-")
        target = directory / relative.parent / name
        text = template.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
