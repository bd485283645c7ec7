"""The scripts in scripts/ and benchmarks/ still import: nothing else runs them in CI, and a
rename in the package (say `ledger.LLM` to `MeteredModel`) would otherwise break them
silently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("benchmarks/*.py")])

# Loads each file as a module of its own name (its `main` is not run: the files guard it).
IMPORT_ALL = """
import importlib.util, sys, traceback
failed = []
for path in sys.argv[1:]:
    name = "script_" + path.rsplit("/", 1)[-1].removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        failed.append(path + "\\n" + traceback.format_exc(limit=-2))
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_script_and_benchmark_imports() -> None:
    assert len(SCRIPTS) > 10
    paths = [str(p) for p in SCRIPTS]
    # scripts/ first on the path: their helpers (verifier_data) import as the scripts do.
    env_path = f"{ROOT / 'scripts'}:{ROOT / 'benchmarks'}:{ROOT}"
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *paths],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
