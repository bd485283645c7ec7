"""`threadline new`: the project it writes passes its own tests, right away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from threadline.errors import ConfigurationError
from threadline.scaffold import create_project

from .testing.inner import ROOT, run_pytest

pytestmark = pytest.mark.processes


def test_a_new_project_passes_its_own_tests(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "threadline.cli", "new", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    project = tmp_path / "demo"
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "agents.py",
        "knowledge/returns.md",
        "knowledge/shipping.md",
        "pyproject.toml",
        "site/index.html",
        "tests/test_bot.py",
    ]
    readme = (project / "README.md").read_text()
    assert "threadline serve --agents agents:AGENTS" in readme and "python -m pytest" in readme
    run = run_pytest(project, "-q")
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout + run.stderr


def test_it_will_not_write_into_a_folder_in_use(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="already exists and is not empty"):
        create_project(tmp_path / "taken")
    written = create_project(tmp_path / "My Shop")
    agents = next(p for p in written if p.name == "agents.py").read_text()
    assert 'collection="my-shop-kb"' in agents
    assert "You are the support assistant of My Shop." in agents
