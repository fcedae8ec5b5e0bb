"""The README and the documentation site: short README, working links, and runnable examples that run.

A fenced block opened with ```bash runnable (or ```python runnable) is an example a reader can type as
it is: the blocks of one page run in order, in one fresh folder holding a copy of `examples/`, offline,
with the `inpaint` of this tree. `.ci/run` also builds the site with `mkdocs build --strict`.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"^```(bash|python) runnable\n(.*?)^```$", re.MULTILINE | re.DOTALL)
README_LIMIT = 300
WRITTEN_BY = ("-o", "--output", "--html", "--report", "--save-intermediates")
"""Options whose value a command writes: after a page's examples ran, each must exist."""


def runnable_blocks(page: Path) -> list[tuple[str, str]]:
    return RUNNABLE.findall(page.read_text(encoding="utf-8"))


def written_paths(code: str) -> list[str]:
    """The files and folders the `inpaint` commands of a shell block name as their outputs."""
    paths = []
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["inpaint"]:
            paths += [value for flag, value in itertools.pairwise(words) if flag in WRITTEN_BY]
    return paths


def run_examples(page: Path, folder: Path) -> None:
    """Run a page's runnable blocks in order in `folder`, as a reader would, and check what they name."""
    shutil.copytree(ROOT / "examples", folder / "examples")
    tools = folder / ".bin"
    tools.mkdir()
    shim = tools / "inpaint"  # the command of this tree and interpreter, installed or not
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m inpaint_cli "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "INPAINT_HOME": str(folder / ".cache"),
        "INPAINT_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    for language, code in runnable_blocks(page):
        shell = language == "bash"
        command = ["bash", "-euo", "pipefail", "-c", code] if shell else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{page.name}: {code}\n{done.stderr[-3000:]}"
        missing = [path for path in written_paths(code) if shell and not (folder / path).exists()]
        assert not missing, f"{page.name}: {code} did not write {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("page", [page for page in PAGES[1:] if runnable_blocks(page)], ids=lambda p: p.name)
def test_the_runnable_examples_of_each_page_run_as_written(page: Path, tmp_path: Path) -> None:
    run_examples(page, tmp_path)


@pytest.mark.slow
def test_the_readme_examples_run_and_restore_the_example(tmp_path: Path) -> None:
    """The set-up command fills the example's hole and leaves every other pixel as it was."""
    run_examples(README, tmp_path)
    damaged = np.asarray(Image.open(ROOT / "examples/portrait_damaged.png").convert("RGB"))
    hole = np.asarray(Image.open(ROOT / "examples/portrait_mask.png").convert("L")) > 127
    restored = np.asarray(Image.open(tmp_path / "restored.png").convert("RGB"))
    np.testing.assert_array_equal(restored[~hole], damaged[~hole])
    original = np.asarray(Image.open(ROOT / "examples/portrait_original.png").convert("RGB")).astype(int)
    assert np.abs(restored[hole] - original[hole]).mean() < np.abs(damaged[hole] - original[hole]).mean() / 3
    panel = Image.open(tmp_path / "restored_panel.png")
    assert panel.width >= 3 * damaged.shape[1]  # input | mask | result
    # the folder job: one mask found, one photo restored, the review page beside it
    written = [path.name for path in (tmp_path / "restored").iterdir() if not path.name.startswith(".")]
    assert written == ["portrait_damaged.png"]
    assert (tmp_path / "masks" / "portrait_damaged_mask.png").is_file()
    assert "portrait_damaged" in (tmp_path / "review.html").read_text(encoding="utf-8")
    assert (tmp_path / "mask-updates" / "portrait_damaged" / "mask_updates.png").is_file()
    assert any(path.name.startswith("gates_") for path in (tmp_path / "gates" / "portrait_damaged").iterdir())


def test_the_readme_fits_on_a_few_screens() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_LIMIT, f"README.md: {lines} lines, over {README_LIMIT}: move the detail into docs/"


def test_the_readme_set_up_installs_the_ci_pytorch_first_then_the_tool() -> None:
    section = README.read_text(encoding="utf-8").split("## Set-up in two commands", 1)[1].split("\n## ", 1)[0]
    install, example, tests = re.findall(r"```bash(?: runnable)?\n(.*?)\n```", section, flags=re.S)[:3]
    steps = [step.strip() for step in install.split("&&")]
    pinned = re.search(r'pip install --quiet "(torch==[\d.]+)"', (ROOT / ".ci" / "run").read_text()).group(1)
    assert steps[0].startswith(f"pip install {pinned} ")  # the CPU build of the version CI pins, first
    assert steps[1:] == ["pip install ."]
    assert example.startswith("inpaint run examples/") and "\n" not in example
    assert tests == 'pip install -e ".[test]" && python -m pytest -q'


def test_the_links_of_the_readme_and_the_pages_lead_to_files_that_exist() -> None:
    """MkDocs checks the pages' links when the site is built; this checks the README's too, without it."""
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if path and "://" not in path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


def test_blocks_inside_lists_are_indented_as_mkdocs_reads_them() -> None:
    """Python-Markdown nests a list, a paragraph or a table in a list item only at 4 spaces (GitHub at 2-3):
    at fewer, a page renders its sub-list as the next items of the outer list."""
    misread = []
    for page in PAGES[1:]:
        lines, fenced = page.read_text(encoding="utf-8").splitlines(), False
        for number, line in enumerate(lines, 1):
            fenced ^= line.startswith("```")
            after_blank = number > 1 and not lines[number - 2].strip()
            starts_block = re.match(r" {1,3}([-*] |\||\d+\. )", line) or after_blank
            if not fenced and re.match(r" {1,3}\S", line) and starts_block:
                misread.append(f"{page.name}:{number}: {line.strip()[:40]}")
    assert misread == []


def test_every_page_is_in_the_sites_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert [page.name for page in PAGES[1:] if f": {page.name}" not in nav] == []
