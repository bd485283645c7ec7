"""What the commands of `threadline ...` share: the consoles, the --app option, running a
coroutine to its end, and loading the user's objects."""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from ..engine import Engine, Registry
from ..errors import ThreadlineError
from ..loop import run as run_loop

__all__ = [
    "app_option",
    "console",
    "err_console",
    "exit_on_sigterm",
    "load_app",
    "load_object",
    "run_coroutine",
    "with_engine",
]

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)

app_option = click.option(
    "--app",
    "app_path",
    envvar="THREADLINE_APP",
    default=None,
    metavar="MODULE:OBJECT",
    help="Where your workflows live: an Engine or a Registry object. Default: $THREADLINE_APP.",
)


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on threadline's event loop; a threadline error is printed, and exits 1."""
    try:
        return run_loop(coro)
    except ThreadlineError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)


def exit_on_sigterm() -> None:
    """Until the event loop takes SIGTERM over, SIGTERM exits through SystemExit: its default
    action would skip the exit handlers, and with them the stop of the embedded database that
    this process may be the last user of."""

    def exit_(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, exit_)


def load_app(path: str | None, database_url: str | None, **options: Any) -> Engine:
    """Import MODULE:OBJECT and make an Engine of it (a Registry gets a new Engine)."""
    if not path:
        return Engine(database_url, **options)
    module_name, _, attr = path.partition(":")
    if not attr:
        raise click.BadParameter(
            "expected MODULE:OBJECT, e.g. myapp.workflows:engine", param_hint="--app"
        )
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--app"
        ) from exc
    obj = getattr(module, attr, None)
    if isinstance(obj, Engine):
        if database_url:
            obj._database_url = database_url
        for key, value in options.items():
            if key == "worker":
                obj._want_worker = value
            elif key == "concurrency":
                obj._worker_options["concurrency"] = value
        return obj
    if isinstance(obj, Registry):
        return Engine(database_url, registry=obj, **options)
    raise click.BadParameter(f"{path} is not an Engine or a Registry", param_hint="--app")


async def with_engine(engine: Engine, fn: Callable[[Engine], Awaitable[T]]) -> T:
    """`fn(engine)` while the engine is open."""
    async with engine:
        return await fn(engine)


def load_object(path: str, hint: str) -> Any:
    """Import MODULE:OBJECT, given to the option `hint`."""
    module_name, _, attr = path.partition(":")
    if not attr:
        raise click.BadParameter("expected MODULE:OBJECT", param_hint=hint)
    sys.path.insert(0, ".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {path!r}: {exc}", param_hint=hint) from exc
