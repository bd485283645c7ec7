"""`threadline new`: a bot project to start from."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from ..errors import ThreadlineError
from .common import console, err_console

__all__ = ["new"]


@click.command()
@click.argument("name", type=click.Path(path_type=Path))
def new(name: Path) -> None:
    """Start a bot project in NAME: agents, knowledge, a host page and tests that pass."""
    from ..scaffold import create_project

    try:
        written = create_project(name)
    except ThreadlineError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    root = name.expanduser().resolve()
    for path in written:
        console.print(f"  created {escape(str(name / path.relative_to(root)))}")
    console.print(
        f"\nNext: cd {name} && pip install -e '.[test]' && python -m pytest\n"
        "then: threadline serve --agents agents:AGENTS",
        markup=False,
    )
