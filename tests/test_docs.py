"""The docs stay true to the code: every Python block parses and names what exists (imports,
classes, their methods and keyword arguments), every `threadline` command line in a shell
block names real commands and options, and every HTTP route the docs name is served."""

from __future__ import annotations

import ast
import inspect
import re
import shlex
import textwrap
from collections.abc import Iterator
from typing import Any, ClassVar

import click
import pytest

import threadline
from threadline.cli import main as cli

from .helpers import ROOT, endpoints

DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
# Where the docs' names come from: what `threadline` exports, and its packages' exports.
PACKAGES = [
    "threadline",
    "threadline.agents",
    "threadline.engine",
    "threadline.ledger",
    "threadline.llm",
    "threadline.rag",
    "threadline.rag.cache",
    "threadline.router",
    "threadline.sessions",
    "threadline.tools",
]


def blocks(language: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        for match in BLOCK.finditer(doc.read_text(encoding="utf-8")):
            if match.group(1) in language:
                line = doc.read_text(encoding="utf-8")[: match.start()].count("\n") + 1
                yield f"{doc.relative_to(ROOT)}:{line}", textwrap.dedent(match.group(2))


def exported() -> dict[str, Any]:
    import importlib

    names: dict[str, Any] = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", dir(module)):
            names.setdefault(name, getattr(module, name, None))
    return names


PYTHON = list(blocks(("python",)))


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[w for w, _ in PYTHON])
def test_python_blocks_name_what_exists(where: str, code: str) -> None:
    # Blocks are fragments: top-level `await` and `...` are fine, so parse them as a body.
    tree = ast.parse("async def _block():\n" + textwrap.indent(code, "    "))
    known = exported()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("threadline"):
            import importlib

            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
        if isinstance(node, ast.Call):
            _check_call(where, node, known)


def _check_call(where: str, call: ast.Call, known: dict[str, Any]) -> None:
    """`Class(...)`, `Class.method(...)`: the class is threadline's (when the name is one
    of its exports), the method exists, and every keyword is a parameter."""
    target: Any = None
    name = ""
    if isinstance(call.func, ast.Name) and call.func.id in known:
        name, target = call.func.id, known[call.func.id]
    elif (
        isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id in known
        and inspect.isclass(known[call.func.value.id])
    ):
        owner = known[call.func.value.id]
        name = f"{call.func.value.id}.{call.func.attr}"
        assert hasattr(owner, call.func.attr), f"{where}: {name} does not exist"
        target = getattr(owner, call.func.attr)
    if target is None or not callable(target):
        return
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    for keyword in call.keywords:
        if keyword.arg is not None:
            assert keyword.arg in parameters, f"{where}: {name}() takes no {keyword.arg}="


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {prefix: group}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(_commands(command, (*prefix, name)))
        else:
            found[(*prefix, name)] = command
    return found


SHELL = [
    (where, line.split("#")[0].strip())
    for where, code in blocks(("bash", "sh", "console"))
    for line in code.splitlines()
    if "threadline " in line.split("#")[0] or line.strip().startswith("bash scripts/")
]


@pytest.mark.parametrize(("where", "line"), SHELL, ids=[f"{w} {c}" for w, c in SHELL])
def test_command_lines_name_real_commands_and_options(where: str, line: str) -> None:
    for part in re.split(r"&&|\|\||;", line):
        words = shlex.split(part)
        if words[:1] == ["bash"] and len(words) > 1:
            assert (ROOT / words[1]).exists(), f"{where}: no {words[1]}"
            continue
        if "threadline" not in words:
            continue
        words = words[words.index("threadline") + 1 :]
        commands = _commands(cli)
        path: tuple[str, ...] = ()
        while words and (*path, words[0]) in commands:
            path, words = (*path, words[0]), words[1:]
        command = commands[path]
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for word in words:
            if word.startswith("--"):
                option = word.split("=")[0]
                assert option in options, f"{where}: `threadline {' '.join(path)}` has no {option}"


TOP = "threadline|tests|benchmarks|scripts|docs|migrations"
ROUTE = re.compile(r"\b(GET|POST|PATCH|DELETE|PUT) (/[\w/{}.\-]*)")


def test_the_routes_the_docs_name_are_served() -> None:
    served = {(m, _shape(p)) for m, p in _routes()}
    missing = []
    for doc in DOCS:
        for method, path in ROUTE.findall(doc.read_text(encoding="utf-8")):
            path = path.split("?")[0].rstrip(".")
            if (method, _shape(path)) not in served:
                missing.append(f"{doc.relative_to(ROOT)}: {method} {path}")
    assert not missing, "routes named in the docs that the app does not serve: " + ", ".join(
        missing
    )


def _shape(path: str) -> str:
    """A route's path with its parameters unnamed: /v1/sessions/{}/ws."""
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/")


def _routes() -> set[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves, built on a throwaway app."""
    from threadline.web.app import create_app
    from threadline.web.auth import Auth
    from threadline.web.hub import Hub

    class _Sessions:  # create_app only reads these while it builds routes
        agents: ClassVar[dict[str, Any]] = {}
        events = None

    class _Hub(Hub):
        def __init__(self) -> None:
            pass

        def attach(self, events: Any) -> None:
            pass

    app = create_app(_Sessions(), _Hub(), Auth(secret="x" * 32))  # type: ignore[arg-type]
    # A WebSocket's handshake is a GET.
    return {("GET" if m == "WS" else m, path) for m, path in endpoints(app.routes)}


def test_exports_are_importable() -> None:
    assert all(getattr(threadline, name, None) is not None for name in threadline.__all__)


def test_the_docs_folder_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    unlinked = [d.name for d in DOCS if d.parent.name == "docs" and f"docs/{d.name}" not in readme]
    assert not unlinked, f"README.md links no {unlinked}"


def test_paths_the_docs_name_exist() -> None:
    missing = []
    for doc in DOCS:
        if doc.name == "tutorial.md":  # its paths are the generated project's
            continue
        text = doc.read_text(encoding="utf-8")
        for path in re.findall(
            r"`((?:threadline|tests|benchmarks|scripts|docs|migrations)/[\w./-]+)`", text
        ):
            if "*" in path or "{" in path:
                continue
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, ", ".join(missing)
