"""Each layer's SQL in one place: a package's statements are in its queries module (or
`.sql` file), and no other module of it holds one (DESIGN.md: "each layer owns its tables and
SQL"). What another layer needs of a table it reaches through the owner's functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import threadline

ROOT = Path(threadline.__file__).parent
SQL_WORDS = ("SELECT ", "INSERT INTO", "UPDATE threadline", "DELETE FROM", "pg_notify", "CREATE ")

# package -> the modules its statements live in. The router's only SQL is its cooldowns'
# table, in the module that owns it; rag keeps its statements in `queries.sql`.
PLACES: dict[str, set[str]] = {
    "db": {"queries.py"},
    "engine": {"queries.py"},
    "ledger": {"queries.py"},
    "sessions": {"queries.py"},
    "web": {"queries.py"},
    "router": {"cooldowns.py"},
    "rag": set(),
    "agents": set(),
    "llm": set(),
    "tools": set(),
}


def statements(path: Path) -> list[str]:
    """The string constants of a module that read as SQL (docstrings left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and any(word in node.value for word in SQL_WORDS)
    ]


@pytest.mark.parametrize("package", sorted(PLACES))
def test_a_packages_statements_are_in_its_queries_module(package: str) -> None:
    misplaced = {
        str(path.relative_to(ROOT)): found[0][:60]
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name not in PLACES[package] or path.parent != ROOT / package
        if (found := statements(path))
    }
    assert misplaced == {}


def test_the_check_finds_a_statement(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""SELECT in a docstring is fine."""\nQ = "SELECT 1 FROM x"\n')
    assert statements(module) == ["SELECT 1 FROM x"]
