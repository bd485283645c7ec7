"""docs/tutorial.md quotes what `threadline new` writes: each of its Python and HTML blocks
(but those with a `...` placeholder: changes the reader makes) stands, word for word, in the
project it generates. The generated project's own tests run in tests/test_scaffold.py."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from threadline.scaffold import create_project

from .helpers import ROOT

TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(python|html)\n(.*?)^```", re.S | re.M)


def _lines(text: str) -> str:
    """The text's lines without their indentation (a quote may sit at another depth)."""
    return "\n".join(line.strip() for line in textwrap.dedent(text).strip().splitlines())


def test_the_tutorial_quotes_the_generated_project(tmp_path: Path) -> None:
    written = create_project(tmp_path / "acme")
    project = _lines("\n".join(p.read_text(encoding="utf-8") for p in written if p.is_file()))
    quoted = [
        _lines(code)
        for _, code in BLOCK.findall(TUTORIAL.read_text(encoding="utf-8"))
        if "..." not in code
    ]
    assert len(quoted) >= 4  # the tool, the agent, its state, the page, the test
    drifted = [code.splitlines()[0] for code in quoted if code not in project]
    assert not drifted, f"docs/tutorial.md quotes what `threadline new` no longer writes: {drifted}"
