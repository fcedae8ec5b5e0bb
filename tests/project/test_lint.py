"""The code base stays ruff-clean (lint and format), so style problems fail CI like bugs do."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ["inpaint_cli", "tests", "benchmarks"]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("command", [["ruff", "check"], ["ruff", "format", "--check"]])
def test_ruff_is_clean(command: list[str]) -> None:
    targets = [name for name in CHECKED if (ROOT / name).exists()]
    result = subprocess.run([*command, *targets], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
