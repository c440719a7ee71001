"""The code base stays clean under the ruff rules of pyproject.toml ([tool.ruff]: pyflakes, pycodestyle, isort,
bugbear, pyupgrade): unused imports, undefined names, loop-variable closures and unsorted imports fail here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO_ROOT)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
