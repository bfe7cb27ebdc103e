"""The import contracts of docs/architecture.md hold, and would catch a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _tree(tmp_path: Path) -> Path:
    for package in ("kedge", "agent", "cloud_api"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([LINT, "--no-cache"], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = _lint(_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("cloud_api/_breach.py", "import agent.daemon", "cloud_api is not allowed to import agent"),
        ("kedge/_breach.py", "import cloud_api.store", "kedge is not allowed to import cloud_api"),
        (
            "kedge/wire/_breach.py",
            "import kedge.host",
            "kedge.wire is not allowed to import kedge.host",
        ),
        (
            "agent/checks/_breach.py",
            "import agent.join",
            "agent.checks is not allowed to import agent.join",
        ),
    ],
)
def test_a_breach_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = _tree(tmp_path)
    (tree / module).write_text(f'"""A deliberate breach."""\n\n{line}\n')
    done = _lint(tree)
    assert done.returncode != 0
    assert contract in done.stdout, done.stdout
