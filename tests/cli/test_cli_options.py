"""The `run` command's options: each reaches the library with its value, is validated before anything
runs, and is documented; the package's imports go one way; `--help` stays instant."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from inpaint_cli.batch import pipeline
from inpaint_cli.batch.run_options import RunOptions, run_settings
from inpaint_cli.cli.app import app
from inpaint_cli.options import DetectorName, OutputFormat, Precision, StrategyName, TensorFormat

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "inpaint_cli"


# --- imports go one way ---------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere: at module level, inside functions, under
    TYPE_CHECKING. `from pkg import name` counts as importing `pkg.name` when that is a module."""
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != this}


def import_graph(root: Path = ROOT, package: str = "inpaint_cli") -> dict[str, set[str]]:
    paths = sorted((root / package).rglob("*.py"))
    known = {module_name(path, root) for path in paths}
    return {module_name(path, root): imported_modules(path, root, known) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first = last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def late():\n    from .sub import c\n")
    (package / "sub" / "c.py").write_text("import os\n\ndef later():\n    from ..a import name\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    (package / "sub" / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def test_no_import_cycles_between_the_package_modules() -> None:
    graph = import_graph()
    assert "inpaint_cli.cli.run" in graph["inpaint_cli.cli.app"]  # the walk sees real edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_library_modules_never_import_the_command_line() -> None:
    graph = import_graph()
    command_line = {name for name in graph if name.startswith("inpaint_cli.cli")}
    for name, targets in graph.items():
        if name not in command_line and name != "inpaint_cli.__main__":
            assert not targets & command_line, f"{name} imports {targets & command_line}"


# --- every option reaches the library ----------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image, mask = tmp_path / "photo.png", tmp_path / "photo_mask.png"
    Image.new("RGB", (32, 24), "grey").save(image)
    Image.new("L", (32, 24), 255).save(mask)
    checkpoint = tmp_path / "weights.safetensors"
    checkpoint.write_bytes(b"not read: the library is replaced")
    return {"image": image, "mask": mask, "checkpoint": checkpoint, "dir": tmp_path}


def given(files: dict[str, Path]) -> dict[str, tuple[list[str], object]]:
    """For every option of `run`: what to type, and the value the options object must then hold."""
    out = files["dir"]
    return {
        "model": (["--model", "pconv"], "pconv"),
        "checkpoint": (["--checkpoint", str(files["checkpoint"])], files["checkpoint"]),
        "output": (["--output", str(out / "o.png")], str(out / "o.png")),  # as typed: a trailing / counts
        "output_format": (["--format", "webp"], OutputFormat.WEBP),
        "quality": (["--quality", "80"], 80),
        "device": (["--device", "cuda:1"], "cuda:1"),
        "threads": (["--threads", "3"], 3),
        "precision": (["--precision", "bf16"], Precision.BF16),
        "strategy": (["--strategy", "tile"], StrategyName.TILE),
        "max_side": (["--max-side", "1024"], 1024),
        "tile_size": (["--tile-size", "384"], 384),
        "tile_overlap": (["--tile-overlap", "32"], 32),
        "crop_margin": (["--crop-margin", "40"], 40),
        "memory_budget": (["--memory-budget", "2GiB"], 2 * 2**30),
        "refine": (["--refine"], True),
        "refine_iters": (["--refine-iters", "4"], 4),
        "refine_lr": (["--refine-lr", "0.01"], 0.01),
        "refine_min_side": (["--refine-min-side", "256"], 256),
        "refine_max_scales": (["--refine-max-scales", "2"], 2),
        "refine_px_budget": (["--refine-px-budget", "1000000"], 1_000_000),
        "mask_threshold": (["--mask-threshold", "10"], 10),
        "invert_mask": (["--invert-mask"], True),
        "dilate": (["--dilate", "3"], 3),
        "detector": (["--detector", "classical"], DetectorName.CLASSICAL),
        "save_mask": (["--save-mask"], True),
        "intermediates_dir": (["--save-intermediates", str(out / "inter")], out / "inter"),
        "intermediate_tensors": (["--save-tensors", "fp16"], TensorFormat.FP16),
        "panel": (["--panel"], True),
        "overwrite": (["--skip-existing"], False),
        "report": (["--report", str(out / "r.json")], out / "r.json"),
        "html": (["--html", str(out / "page.html")], out / "page.html"),
        "fail_fast": (["--fail-fast"], True),
        "ray": (["--ray", "127.0.0.1:6379"], "127.0.0.1:6379"),
        "workers": (["--workers", "4"], 4),
        "cpus_per_worker": (["--cpus-per-worker", "2"], 2.0),
        "gpus_per_worker": (["--gpus-per-worker", "0.5"], 0.5),
        "recursive": (["-r"], True),
        "jobs": (["-j", "5"], 5),
        "dry_run": (["--dry-run"], True),
        "max_pixels": (["--max-pixels", "1000"], 1000),
        "quiet": (["-q"], True),
        "verbose": (["-v"], True),
    }


NEEDS = {name: ["--ray", "auto"] for name in ("workers", "cpus_per_worker", "gpus_per_worker")} | {
    name: ["--refine"]
    for name in ("refine_iters", "refine_lr", "refine_min_side", "refine_max_scales", "refine_px_budget")
}
"""Options that are refused without another one, and that one."""


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[RunOptions]:
    """The options objects the single library entry point was called with (it does nothing)."""
    calls: list[RunOptions] = []

    def fake_run(options: RunOptions, events: object = None) -> pipeline.RunResult:
        calls.append(options)
        return pipeline.RunResult(plan=None, dry_run=[])  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "run", fake_run)
    return calls


def test_the_table_below_covers_every_field_of_the_options(files: dict[str, Path]) -> None:
    missing = {spec.name for spec in dataclasses.fields(RunOptions)} - set(given(files)) - {"input", "mask"}
    assert not missing, f"a new option? add {sorted(missing)} to `given` with a value that is not its default"
    assert set(given(files)) <= {spec.name for spec in dataclasses.fields(RunOptions)}


def test_every_option_reaches_the_library_with_its_value_and_nothing_else_changes(
    files: dict[str, Path], received: list[RunOptions]
) -> None:
    defaults = RunOptions(input=files["image"], mask=files["mask"])
    for name, (typed, expected) in given(files).items():
        needed = NEEDS.get(name, [])
        command = ["run", str(files["image"]), "--mask", str(files["mask"]), *needed, *typed]
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (name, result.output)
        options = received.pop()
        assert getattr(options, name) == expected, name
        assert getattr(defaults, name) != expected, f"{name}: the test value is the default"
        changed = {
            spec.name
            for spec in dataclasses.fields(RunOptions)
            if getattr(options, spec.name) != getattr(defaults, spec.name)
        }
        assert changed == {name} | {flag.removeprefix("--") for flag in needed[:1]}, name
    assert received == []


def test_all_options_at_once_and_the_short_flags(files: dict[str, Path], received: list[RunOptions]) -> None:
    table = given(files)
    del table["quiet"]  # contradicts --verbose
    typed = [word for words, _ in table.values() for word in words]
    result = runner.invoke(app, ["run", str(files["image"]), "-m", str(files["mask"]), *typed, "-o", "x.png"])
    assert result.exit_code == 0, result.output
    (options,) = received
    assert {name: getattr(options, name) for name in table} == {
        **{name: value for name, (_, value) in table.items()},
        "output": "x.png",  # the last of -o / --output wins
    }
    assert (options.input, options.mask) == (files["image"], files["mask"])


def test_the_options_object_is_projected_onto_the_engine_and_the_jobs(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the entry point: the engine's planning options and the per-input settings get the values."""
    from inpaint_cli.engine import inpainter as engine
    from inpaint_cli.engine.strategies import InpaintOptions

    typed = given(files)
    options = RunOptions(
        input=files["image"],
        mask=files["mask"],
        **{name: value for name, (_, value) in typed.items() if name not in ("quiet", "checkpoint")},
    )
    settings = run_settings(options)
    for name in (
        "mask_threshold",
        "invert_mask",
        "dilate",
        "quality",
        "panel",
        "intermediates_dir",
        "max_pixels",
    ):
        assert getattr(settings, name) == getattr(options, name), name
    assert settings.output_format == "webp"
    seen: dict[str, object] = {}

    def fake_from_name(name: str, **kwargs: object) -> None:
        seen.update(kwargs, name=name)
        raise SystemExit  # stop before a model is built

    monkeypatch.setattr(engine.Inpainter, "from_name", fake_from_name)
    monkeypatch.setattr("torch.set_num_threads", lambda threads: seen.update(threads=threads))
    with pytest.raises(SystemExit):
        pipeline.load_inpainter(options)
    assert seen["name"] == "pconv" and seen["device"] == "cuda:1" and seen["precision"] == "bf16"
    assert seen["threads"] == 3
    assert seen["options"] == InpaintOptions(
        strategy=StrategyName.TILE,
        max_side=1024,
        tile_size=384,
        tile_overlap=32,
        crop_margin=40,
        memory_budget=2 * 2**30,
        refine=True,
        refine_iters=4,
        refine_lr=0.01,
        refine_min_side=256,
        refine_max_scales=2,
        refine_px_budget=1_000_000,
    )


# --- feedback while it works (issue 15 item 7) -------------------------------------------------------


class Recording(pipeline.RunEvents):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def job_planned(self, job, description, seconds):
        self.events.append(("planned", job.image.name, description, seconds))

    def job_progress(self, job, done, total):
        self.events.append(("progress", done, total))

    def job_finished(self, outcome):
        self.events.append(("finished", outcome.status.value))


def test_a_single_image_reports_its_plan_then_every_network_pass(files: dict[str, Path]) -> None:
    big = files["dir"] / "big.png"
    Image.effect_noise((300, 200), 40).convert("RGB").save(big)
    mask = files["dir"] / "big_mask.png"
    Image.new("L", (300, 200), 255).save(mask)
    options = RunOptions(
        input=big, mask=mask, model="telea", strategy=StrategyName.TILE, tile_size=128, tile_overlap=16
    )
    events = Recording()
    result = pipeline.run(options, events)
    assert not result.failed
    planned, *progress, finished = events.events
    assert planned[:2] == ("planned", "big.png") and planned[2].startswith("tile: ")
    total = progress[-1][2]
    assert total > 1 and f"{total} passes" in planned[2]
    assert progress == [("progress", done, total) for done in range(1, total + 1)]
    assert finished == ("finished", "done")


def test_the_terminal_display_shows_passes_and_estimates_a_long_plan(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    from inpaint_cli.batch.jobs import Job
    from inpaint_cli.cli import run as cli_run

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=200, highlight=False)
    monkeypatch.setattr(cli_run, "console", terminal)
    display = cli_run.Display(RunOptions(input=files["image"], mask=files["mask"]))
    job = Job(files["image"], (files["mask"],), files["dir"] / "out.png")
    model = pipeline.ModelInfo("telea", "classical", "cpu", "fp32", 2, 0.01)
    with display:
        display.jobs_planned([job])
        display.model_loaded(model)
        display.job_started(job)
        display.job_planned(job, "auto: whole image in 512 px tiles; 48 passes", 600.0)
        display.job_planned(job, "auto: whole image; 1 pass", 2.0)  # quick plans are not announced
        display.job_progress(job, 3, 48)
        (task,) = display.progress.tasks
        assert (task.completed, task.total) == (3, 48)
        display.job_planned(job, "auto: whole image in 1024 px tiles; 12 passes", None)  # not known yet
        display.job_estimated(job, 180.0)  # its first pass told the speed
        display.job_estimated(job, 20.0)  # quick: not said
    said = [line for line in screen.getvalue().splitlines() if "estimate" in line]
    assert len(said) == 2 and "warning" not in screen.getvalue()  # issue 30: an estimate, not a warning
    assert all(line.count("estimate:") == 1 for line in said)
    assert "photo.png: auto: whole image in 512 px tiles; 48 passes will take about 10 min" in said[0]
    assert (
        "photo.png: auto: whole image in 1024 px tiles; 12 passes will take about 3 min more, at the "
        in said[1]
    )


# --- documentation ---------------------------------------------------------------------------------


def command_line_flags() -> set[str]:
    """Every flag `run` accepts, as the options object declares them."""
    flags = set()
    for spec in dataclasses.fields(RunOptions):
        spelling = spec.metadata["cli"]
        if spelling.argument:
            continue
        for flag in spelling.flags or ("--" + spec.name.replace("_", "-"),):
            flags.update(flag.split("/"))
    return flags


def test_the_documented_options_table_lists_exactly_the_options_of_run() -> None:
    page = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    section = page.split("## `inpaint run INPUT --mask MASK [options]`", 1)[1].split("\n## ", 1)[0]
    rows = [re.split(r"(?<!\\)\|", line) for line in section.splitlines() if line.startswith("| `")]
    first_cells = [row[1] for row in rows]  # split on the table's pipes, not on escaped ones
    documented = {flag for cell in first_cells for flag in re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", cell)}
    undocumented, gone = command_line_flags() - documented, documented - command_line_flags()
    assert not undocumented, f"add {sorted(undocumented)} to the `inpaint run` table of docs/running.md"
    assert not gone, f"docs/running.md's `inpaint run` table names options that do not exist: {sorted(gone)}"


def test_help_of_every_command_imports_no_heavy_library() -> None:
    """`inpaint --help` and `inpaint run --help` stay instant: no torch, OpenCV or numpy behind them."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from inpaint_cli.cli.app import app\n"
        "for args in (['--help'], ['run', '--help'], ['weights', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print(sorted(name for name in ('torch', 'cv2', 'numpy', 'safetensors') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- the run's result survives Ctrl-C ----------------------------------------------------------------


def test_ctrl_c_ends_the_run_with_a_result_that_knows_what_never_ran(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(5):
        Image.effect_noise((40, 32), 30).convert("RGB").save(folder / f"{index}.png")
    mask = tmp_path / "defect.png"
    Image.new("L", (40, 32), 255).save(mask)

    class CtrlCOnTheThird(pipeline.RunEvents):
        def __init__(self) -> None:
            self.started: list[str] = []

        def job_started(self, job):
            self.started.append(job.image.name)
            if len(self.started) == 3:
                raise KeyboardInterrupt

    report = tmp_path / "report.json"
    options = RunOptions(input=folder, mask=mask, model="telea", report=report, jobs=1)
    result = pipeline.run(options, CtrlCOnTheThird())

    assert result.interrupted
    done = [outcome.job.image.name for outcome in result.outcomes]
    assert done == ["0.png", "1.png"]
    assert [job.image.name for job in result.not_run] == ["2.png", "3.png", "4.png"]
    summary = json.loads(report.read_text())["summary"]
    assert (summary["done"], summary["not_run"]) == (2, 3)


def command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of the application, as the words that reach it."""
    found = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_paths(sub, (*prefix, name))
    return found


def test_the_help_of_every_command_has_no_bool_metavars_nor_braces() -> None:
    import typer

    paths = command_paths(typer.main.get_command(app))
    assert ("run",) in paths and ("weights", "pull") in paths and len(paths) >= 8
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, path
        assert "<bool>" not in result.output, path
        usage = next(line for line in result.output.splitlines() if "Usage:" in line)
        assert "{" not in usage, (path, usage)


def test_usage_errors_of_any_command_are_one_line() -> None:
    result = runner.invoke(app, ["weights", "pull"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: Missing argument 'name' (see inpaint weights pull --help)"
    ]
