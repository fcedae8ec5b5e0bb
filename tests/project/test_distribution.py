"""The distribution: a name of its own used in every hint, and a version written once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import inpaint_cli
from inpaint_cli.batch.provenance import tool_version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
INSTALL_WITH_EXTRA = re.compile(r"""pip install ["']?([\w.-]+)\\*\[""")
"""`pip install "<name>[extra]"` as hints and pages write it (Rich help text escapes the bracket)."""


def sources() -> list[Path]:
    """Every file a user reads a hint or an instruction from."""
    return [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "inpaint_cli").rglob("*.py"),
        *(ROOT / "tests").rglob("*.py"),
    ]


def setting(name: str) -> str:
    """A `name = value` line of pyproject.toml (tomllib is not in Python 3.10)."""
    return re.search(rf"^{re.escape(name)} = (.+)$", PYPROJECT, re.MULTILINE).group(1)


def test_the_distribution_is_not_the_other_projects_inpaint() -> None:
    assert setting("name") == '"inpaint-cli"'  # `inpaint` on PyPI is another project
    assert setting("inpaint") == '"inpaint_cli.cli.app:main"'  # the command keeps its name


def test_every_install_hint_names_this_distribution() -> None:
    hints = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources()
        for name in INSTALL_WITH_EXTRA.findall(path.read_text(encoding="utf-8"))
        if f'"{name}"' != setting("name") and name not in {".", "-e"}
    }
    assert hints == set()


def test_the_ray_hint_installs_this_distribution() -> None:
    from inpaint_cli.batch.distributed import INSTALL_HINT

    assert INSTALL_HINT == 'pip install "inpaint-cli[ray]"'


def test_the_version_is_written_once_and_read_everywhere() -> None:
    assert not re.search(r'^version = "', PYPROJECT, re.MULTILINE) and setting("dynamic") == '["version"]'
    assert 'version = { attr = "inpaint_cli.__version__" }' in PYPROJECT
    assert re.fullmatch(r"\d+\.\d+\.\d+", inpaint_cli.__version__)
    shown = subprocess.run(
        [sys.executable, "-m", "inpaint_cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert shown.stdout == f"inpaint {inpaint_cli.__version__}\n"
    assert tool_version() == inpaint_cli.__version__  # what provenance records say made an output


def test_the_changelog_has_the_current_version() -> None:
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert headings[0] == inpaint_cli.__version__
