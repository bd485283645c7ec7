"""The layer order of DESIGN.md ("Layers"), checked over every module of `threadline/`.

"Data flows one way: `web` → `sessions` → `agents` → (`engine` steps) → `router` → `ledger` /
`rag.cache` → `llm` → provider. Nothing below imports anything above it. `engine` knows nothing
of LLMs; `llm` knows nothing of Postgres."

Every import counts: absolute (`import threadline.x`, `from threadline.x import y`) and
relative (`from ..x import y`, `from . import x`), at module level, inside functions and
under `if TYPE_CHECKING:` alike (the last are tagged in the report, not excused).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import threadline

ROOT = "threadline"

# The order, bottom first: layer -> (rank, the modules it covers). A prefix covers the module
# of that name and everything under it (the longest prefix wins); `threadline` itself covers
# only `threadline/__init__.py`, so a new subpackage must be given a layer here.
# A module may import its own layer and any layer of a strictly lower rank; layers of equal
# rank are independent of each other.
LAYERS: dict[str, tuple[int, tuple[str, ...]]] = {
    # Leaves: nothing of threadline below them.
    "errors": (0, ("threadline.errors",)),
    # `llm` beside `db` and `loop`, so it may import `errors` and nothing else of threadline
    # ("`llm` knows nothing of Postgres"). `loop` (which event loop to run on) imports only the
    # standard library; ledger, rag and web run on it, so it is a leaf utility, not a
    # composition root.
    "db": (1, ("threadline.db",)),
    "llm": (1, ("threadline.llm",)),
    "loop": (1, ("threadline.loop",)),
    # Durable workflows on Postgres; "`engine` knows nothing of LLMs" (see APART).
    "engine": (2, ("threadline.engine",)),
    # "router → ledger / rag.cache → llm". The ledger meters calls as durable steps.
    "ledger": (3, ("threadline.ledger",)),
    # Documents, chunks, embeddings and pgvector retrieval import nothing of threadline but
    # `errors`; the cache stores its passages (`rag.retrieval.Passage`) and uses the embedder
    # and vectors, so they sit beside the ledger, below the cache, independent of the ledger.
    "rag.documents": (
        3,
        (
            "threadline.rag.chunking",
            "threadline.rag.documents",
            "threadline.rag.embedder",
            "threadline.rag.loaders",
            "threadline.rag.retrieval",
            "threadline.rag.vectors",
        ),
    ),
    # The semantic cache is a model in the stack like `Metered` and records its hits and
    # savings in the ledger (`CallRecord`, `Ledger`, `Scope`), so of the pair DESIGN lists
    # side by side ("ledger / rag.cache") it is the upper one: still below the router.
    "rag.cache": (4, ("threadline.rag.cache",)),
    "router": (5, ("threadline.router",)),
    # The rest of rag composes the pieces above: `Knowledge` (documents + cache), the
    # `threadline.rag` package's re-exports and `threadline rag ...` commands. Agents use it;
    # it is independent of the router.
    "rag": (5, ("threadline.rag",)),
    # "Agent definitions: ... tools": tools are what agents call, just below them.
    "tools": (6, ("threadline.tools",)),
    "agents": (7, ("threadline.agents",)),
    "sessions": (8, ("threadline.sessions",)),
    "web": (9, ("threadline.web",)),
    # Composition roots: they may import anything.
    "top": (
        10,
        (
            "threadline",
            "threadline.cli",
            "threadline.demo",
            "threadline.examples",
            "threadline.scaffold",
            "threadline.testing",
        ),
    ),
}

# Pairs of layers that know nothing of each other whatever their ranks.
APART: dict[tuple[str, str], str] = {
    ("engine", "llm"): "engine knows nothing of LLMs",
}


def covers(prefix: str, module: str) -> bool:
    if prefix == ROOT:
        return module == ROOT
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for layer, (_, prefixes) in LAYERS.items():
        for prefix in prefixes:
            if covers(prefix, module) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return best[1] if best else None


def module_name(path: Path, source_root: Path) -> str:
    parts = list(path.relative_to(source_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_under(package_dir: Path) -> dict[str, Path]:
    return {module_name(p, package_dir.parent): p for p in sorted(package_dir.rglob("*.py"))}


@dataclass(frozen=True, order=True)
class Import:
    target: str  # the threadline module imported, resolved to one that exists
    type_checking: bool


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under an `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            for statement in node.body:
                inside.update(id(n) for n in ast.walk(statement))
    return inside


def imports_of(module: str, path: Path, known: set[str]) -> set[Import]:
    """Every import of a threadline module in `path`, wherever it stands in the file."""

    def resolve(name: str) -> str:
        # The longest existing module: `threadline.llm.Message` -> `threadline.llm`.
        parts = name.split(".")
        while len(parts) > 1 and ".".join(parts) not in known:
            parts.pop()
        return ".".join(parts)

    tree = ast.parse(path.read_text(), filename=str(path))
    guarded = type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[Import] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from pkg import name` imports the submodule `pkg.name` where there is one,
            # else `pkg` itself.
            names = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                for alias in node.names
            ]
        for name in names:
            if covers(ROOT, name) or name.startswith(ROOT + "."):
                found.add(Import(resolve(name), id(node) in guarded))
    return found


def layer_violations(package_dir: Path) -> list[str]:
    """One line per import that goes against LAYERS or APART, for the package at
    `package_dir` (its directory name is the package name)."""
    modules = modules_under(package_dir)
    known = set(modules)
    violations: list[str] = []
    for module, path in modules.items():
        source = layer_of(module)
        shown = path.relative_to(package_dir.parent).as_posix()
        if source is None:
            violations.append(f"{shown} is in no layer")
            continue
        rank = LAYERS[source][0]
        for imported in sorted(imports_of(module, path, known)):
            target = layer_of(imported.target)
            if target is None or target == source:
                continue
            target_rank = LAYERS[target][0]
            apart = APART.get((source, target)) or APART.get((target, source))
            if target_rank < rank and not apart:
                continue
            why = f": {apart}" if apart else ""
            tag = " [under TYPE_CHECKING]" if imported.type_checking else ""
            violations.append(
                f"{shown} imports {imported.target} "
                f"(rank {rank} {source} → rank {target_rank} {target}{why}){tag}"
            )
    return violations


def test_every_module_of_threadline_has_a_layer() -> None:
    package_dir = Path(threadline.__file__).parent
    unplaced = [str(p) for m, p in modules_under(package_dir).items() if layer_of(m) is None]
    assert not unplaced, "modules in no layer of LAYERS:\n" + "\n".join(unplaced)


def test_nothing_below_imports_anything_above_it() -> None:
    package_dir = Path(threadline.__file__).parent
    assert len(modules_under(package_dir)) > 50  # the scan found the package
    violations = layer_violations(package_dir)
    assert not violations, f"{len(violations)} imports against the layer order:\n" + "\n".join(
        violations
    )


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    def write(relative: str, source: str = "") -> None:
        path = tmp_path / "threadline" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)

    write("__init__.py", "from .agents import Agent\n")  # composition root: allowed
    write("errors.py")
    write("db/__init__.py", "from ..errors import Error\n")
    write("llm/__init__.py", "from .. import db\n")  # up: db is llm's sibling
    write("llm/model.py", "from . import events\nimport threadline.errors\n")  # allowed
    write("llm/events.py")
    write("engine/__init__.py", "from threadline.db import connect\n")  # allowed
    write(
        "engine/step.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from threadline.llm.model import Model\n"  # apart, only for type checking
        "def run():\n"
        "    import threadline.agents.turn\n",  # up, inside a function
    )
    write("ledger/__init__.py", "from ..engine.step import run\nfrom ..llm import Model\n")
    write("rag/cache/__init__.py", "from ...ledger import Ledger\nfrom .. import knowledge\n")
    write("rag/knowledge.py", "from .cache import SemanticCache\n")  # allowed
    write("agents/__init__.py", "from .turn import Turn\n")
    write("agents/turn.py", "from ..rag.cache import SemanticCache\n")  # allowed
    write("metrics/__init__.py")  # no layer

    assert layer_violations(tmp_path / "threadline") == [
        "threadline/engine/step.py imports threadline.agents.turn (rank 2 engine → rank 7 agents)",
        "threadline/engine/step.py imports threadline.llm.model "
        "(rank 2 engine → rank 1 llm: engine knows nothing of LLMs) [under TYPE_CHECKING]",
        "threadline/llm/__init__.py imports threadline.db (rank 1 llm → rank 1 db)",
        "threadline/metrics/__init__.py is in no layer",
        "threadline/rag/cache/__init__.py imports threadline.rag.knowledge "
        "(rank 4 rag.cache → rank 5 rag)",
    ]
