"""Run pytest in a subprocess, with the threadline plugin and this checkout's threadline:
for tests of what the plugin does to a whole test run, and of generated projects."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import threadline

ROOT = Path(threadline.__file__).resolve().parent.parent


def plugin_args() -> list[str]:
    """`-p threadline.testing.plugin`, unless the installed entry point loads it already."""
    installed = any(ep.name == "threadline" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "threadline.testing.plugin"]


def run_pytest(
    directory: Path, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugin_args(), *args]
    return subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=timeout
    )
