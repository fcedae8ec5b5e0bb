"""Commands generated from options dataclasses: `detect`, `compare` and `report` reach the library with
each value, typed choices are checked, `--ray`'s optional value follows the address grammar, and the
generator keeps no state between commands."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from inpaint_cli.batch import pipeline
from inpaint_cli.batch.run_options import RunOptions
from inpaint_cli.cli import command
from inpaint_cli.cli.app import app
from inpaint_cli.cli.compare import CompareOptions
from inpaint_cli.cli.detect import DetectOptions, detect_request
from inpaint_cli.cli.review import ReportOptions
from inpaint_cli.errors import UsageError
from inpaint_cli.options import (
    DEFAULT_COMPARE_MODELS,
    DetectorName,
    Panel,
    Precision,
    StrategyName,
    check_bounds,
    cli,
    ray_address,
)

runner = CliRunner()


@pytest.fixture
def photo(tmp_path: Path) -> dict[str, Path]:
    image, mask = tmp_path / "photo.png", tmp_path / "photo_mask.png"
    Image.new("RGB", (32, 24), "grey").save(image)
    Image.new("L", (32, 24), 255).save(mask)
    (tmp_path / "photos").mkdir()
    return {"image": image, "mask": mask, "folder": tmp_path / "photos", "dir": tmp_path}


# --- detect ------------------------------------------------------------------------------------------


def detect_given(dir: Path) -> dict[str, tuple[list[str], object]]:
    """For every option of `detect`: what to type, and the value the options object must then hold."""
    return {
        "output": (["-o", str(dir / "masks")], dir / "masks"),
        "overlay": (["--no-overlay"], False),
        "overwrite": (["--overwrite"], True),
        "dry_run": (["--dry-run"], True),
        "quiet": (["-q"], True),
        "detector": (["--detector", "classical"], DetectorName.CLASSICAL),
        "checkpoint": (["--checkpoint", str(dir / "w.pt")], dir / "w.pt"),
        "threshold": (["--threshold", "0.25"], 0.25),
        "high_res": (["--official-scale"], False),
        "recursive": (["-r"], True),
        "fail_fast": (["--fail-fast"], True),
        "max_pixels": (["--max-pixels", "1000"], 1000),
        "report": (["--report", str(dir / "r.json")], dir / "r.json"),
        "html": (["--html", str(dir / "page.html")], dir / "page.html"),
        "intermediates_dir": (["--save-intermediates", str(dir / "inter")], dir / "inter"),
        "device": (["--device", "cuda:1"], "cuda:1"),
        "jobs": (["--jobs", "3"], 3),
        "ray": (["--ray"], "auto"),
        **{name: (["--ray", "auto", flag, "3"], 3) for name, flag in ON_RAY.items()},
    }


ON_RAY = {
    "workers": "--workers",
    "cpus_per_worker": "--cpus-per-worker",
    "gpus_per_worker": "--gpus-per-worker",
}
"""The options refused without --ray (the table types `--ray auto` before them)."""


def test_the_detect_table_covers_every_field(tmp_path: Path) -> None:
    assert {spec.name for spec in dataclasses.fields(DetectOptions)} - {"input"} == set(
        detect_given(tmp_path)
    )


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The requests `detect` plans (the library stops there with a usage error)."""
    from inpaint_cli.batch.kinds import detect as detect_kind
    from inpaint_cli.errors import UsageError

    seen: list[object] = []

    def fake_plan(request: object) -> None:
        seen.append(request)
        raise UsageError("stopped by the test")

    monkeypatch.setattr(detect_kind, "plan_detection", fake_plan)
    return seen


def test_every_detect_option_reaches_the_library_request_with_its_value(
    photo: dict[str, Path], requests: list[object]
) -> None:
    from inpaint_cli.batch.kinds.detect import DetectRequest

    defaults = detect_request(DetectOptions(input=photo["image"]))
    for name, (typed, expected) in detect_given(photo["dir"]).items():
        result = runner.invoke(app, ["detect", str(photo["image"]), *typed])
        assert result.exit_code == 2 and "error: stopped by the test" in result.output, (name, result.output)
        (request,) = requests
        requests.clear()
        assert isinstance(request, DetectRequest)
        changed = {
            spec.name: getattr(request, spec.name)
            for spec in dataclasses.fields(DetectRequest)
            if getattr(request, spec.name) != getattr(defaults, spec.name)
        }
        if name in ("dry_run", "quiet"):  # the command's own: how it prints, not what the library does
            assert changed == {}, name
        else:
            value = expected.value if isinstance(expected, DetectorName) else expected
            assert changed == {name: value} | ({"ray": "auto"} if name in ON_RAY else {}), name


def test_the_detect_request_has_no_field_the_options_do_not_set() -> None:
    """The conversion names every field of the request: a field added or renamed there fails here."""
    from inpaint_cli.batch.kinds.detect import DetectRequest

    request_fields = {spec.name for spec in dataclasses.fields(DetectRequest)}
    option_fields = {spec.name for spec in dataclasses.fields(DetectOptions)} - {"dry_run", "quiet"}
    assert request_fields == option_fields


def test_detect_refuses_an_unknown_detector_and_an_out_of_range_threshold(photo: dict[str, Path]) -> None:
    unknown = runner.invoke(app, ["detect", str(photo["image"]), "--detector", "magic"])
    assert unknown.exit_code == 2
    assert unknown.output.startswith("error: Invalid value for '--detector': 'magic' is not one of")
    high = runner.invoke(app, ["detect", str(photo["image"]), "--threshold", "1.5"])
    assert (high.exit_code, high.output) == (2, "error: --threshold 1.5 is out of range (between 0 and 1)\n")


# --- compare ------------------------------------------------------------------------------------------


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The requests `compare` plans (the library stops there with a usage error)."""
    from inpaint_cli.batch.kinds import compare as compare_kind
    from inpaint_cli.errors import UsageError

    calls: list[object] = []

    def fake(request: object) -> None:
        calls.append(request)
        raise UsageError("stopped by the test")

    monkeypatch.setattr(compare_kind, "plan_comparison", fake)
    return calls


def test_compare_gives_the_library_typed_choices_and_the_model_list(
    photo: dict[str, Path], compared: list[object]
) -> None:
    from inpaint_cli.batch.kinds.compare import CompareRequest

    image, mask = str(photo["image"]), str(photo["mask"])
    typed = ["--models", " telea, ns ,", "--precision", "bf16", "--strategy", "tile", "--device", "cpu"]
    result = runner.invoke(app, ["compare", image, "-m", mask, *typed, "--overwrite"])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    (request,) = compared
    assert request == CompareRequest(
        photo["image"],
        photo["mask"],
        ("telea", "ns"),
        device="cpu",
        precision="bf16",
        strategy="tile",
        overwrite=True,
    )
    compared.clear()
    assert runner.invoke(app, ["compare", image, "-m", mask]).exit_code == 2
    assert compared[0].models == DEFAULT_COMPARE_MODELS
    assert (compared[0].precision, compared[0].strategy, compared[0].overwrite) == ("auto", "auto", False)


@pytest.mark.parametrize(("option", "value"), [("--precision", "fp8"), ("--strategy", "zoom")])
def test_compare_refuses_an_unknown_precision_or_strategy_before_loading(
    photo: dict[str, Path], compared: list[dict[str, object]], option: str, value: str
) -> None:
    result = runner.invoke(app, ["compare", str(photo["image"]), "-m", str(photo["mask"]), option, value])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: Invalid value for '{option}': '{value}' is not one of")
    assert compared == []


def test_compare_options_hold_enums() -> None:
    options = CompareOptions(input=Path("a.png"), mask=Path("m.png"))
    assert (options.precision, options.strategy) == (Precision.AUTO, StrategyName.AUTO)
    assert options.models == DEFAULT_COMPARE_MODELS


# --- report -------------------------------------------------------------------------------------------


def test_report_options_reach_the_page_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inpaint_cli.errors import UsageError
    from inpaint_cli.review import page

    calls: list[tuple[object, ...]] = []

    def fake(report: Path, html: Path, **kwargs: object) -> None:
        calls.append((report, html, kwargs))
        raise UsageError("stopped by the test")

    monkeypatch.setattr(page, "rebuild_page", fake)
    report, html = tmp_path / "r.json", tmp_path / "p.html"
    typed = [
        "--html",
        str(html),
        "--title",
        "Scans 1950",
        "--model",
        "lama",
        "--overwrite",
        "--max-pixels",
        "1000",
    ]
    assert runner.invoke(app, ["report", str(report), *typed]).exit_code == 2
    assert runner.invoke(app, ["report", str(report), "--html", str(html)]).exit_code == 2
    assert calls == [
        (report, html, {"title": "Scans 1950", "model": "lama", "overwrite": True, "max_pixels": 1000}),
        (
            report,
            html,
            {"title": "inpaint review", "model": "", "overwrite": False, "max_pixels": 250_000_000},
        ),
    ]
    missing = runner.invoke(app, ["report", str(report)])
    assert (missing.exit_code, missing.output) == (
        2,
        "error: Missing option '--html' (see inpaint report --help)\n",
    )
    assert ReportOptions(report_file=report, html=html).title == "inpaint review"


# --- --ray: an optional value decided by the address grammar -------------------------------------------


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[RunOptions]:
    calls: list[RunOptions] = []

    def fake_run(options: RunOptions, events: object = None) -> pipeline.RunResult:
        calls.append(options)
        return pipeline.RunResult(plan=None, dry_run=[])  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "run", fake_run)
    return calls


@pytest.mark.parametrize(
    ("words", "ray", "input"),
    [
        (["--ray", "{folder}", "-m", "{mask}"], "auto", "{folder}"),  # an existing folder: the input
        (["--ray", "{dir}/not-yet", "-m", "{mask}"], "auto", "{dir}/not-yet"),  # a missing one too
        (["{folder}", "-m", "{mask}", "--ray"], "auto", "{folder}"),  # last word
        (["--ray", "--dry-run", "{folder}", "-m", "{mask}"], "auto", "{folder}"),  # another option
        (["--ray", "10.0.0.5:6379", "{folder}", "-m", "{mask}"], "10.0.0.5:6379", "{folder}"),
        (["--ray", "ray://head:10001", "{folder}", "-m", "{mask}"], "ray://head:10001", "{folder}"),
        (["--ray", "auto", "{folder}", "-m", "{mask}"], "auto", "{folder}"),
        (["--ray=[::1]:6379", "{folder}", "-m", "{mask}"], "[::1]:6379", "{folder}"),
        (["-m", "{mask}", "--ray", "--", "auto"], "auto", "auto"),  # after --, a word is an argument
    ],
)
def test_ray_takes_the_next_word_only_when_it_is_a_cluster_address(
    photo: dict[str, Path], received: list[RunOptions], words: list[str], ray: str, input: str
) -> None:
    places = {key: str(value) for key, value in photo.items()}
    result = runner.invoke(app, ["run", *(word.format(**places) for word in words)])
    assert result.exit_code == 0, result.output
    (options,) = received
    assert (options.ray, str(options.input)) == (ray, input.format(**places))


def test_a_ray_value_that_is_not_an_address_is_a_usage_error(photo: dict[str, Path]) -> None:
    result = runner.invoke(app, ["run", str(photo["folder"]), "-m", str(photo["mask"]), "--ray=my cluster"])
    assert result.exit_code == 2
    assert result.output == (
        "error: --ray 'my cluster' is not a cluster address (auto, HOST:PORT or ray://HOST:PORT)\n"
    )


@pytest.mark.parametrize("text", ["auto", "127.0.0.1:6379", "head-node.local:6379", "ray://10.0.0.1:10001"])
def test_the_address_grammar_accepts(text: str) -> None:
    assert ray_address(text) == text


@pytest.mark.parametrize("text", ["photos", "photos/", "./a:b", "host:", ":6379", "host:port", "s3://bucket"])
def test_the_address_grammar_refuses(text: str) -> None:
    with pytest.raises(Exception, match="is not a cluster address"):
        ray_address(text)


# --- the generator ----------------------------------------------------------------------------------


def port(text: str) -> str:
    if not text.isdigit():
        raise UsageError(f"{text!r} is not a port")
    return text


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """A toy command: its own bare-valued option, to show commands share nothing."""

    folder: Path = field(metadata=cli("A folder.", metavar="FOLDER", argument=True))
    serve: str | None = field(
        default=None,
        metadata=cli("Serve on PORT.", metavar="[PORT]", bare="8000", parse=port),
    )
    count: int = field(default=1, metadata=cli("How many.", metavar="N", minimum=1, maximum=9))

    def __post_init__(self) -> None:
        check_bounds(self)


def test_a_second_application_built_from_another_class_shares_nothing_with_the_first(
    photo: dict[str, Path], received: list[RunOptions]
) -> None:
    served: list[ServeOptions] = []
    toy = typer.Typer()
    command.add_command(toy, "serve", ServeOptions, served.append)
    command.add_command(toy, "other", ServeOptions, served.append)  # Typer needs two to keep the name
    assert runner.invoke(toy, ["serve", "--serve", str(photo["folder"])]).exit_code == 0
    assert runner.invoke(toy, ["serve", "--serve", "9000", str(photo["folder"])]).exit_code == 0
    assert [(o.serve, o.folder) for o in served] == [("8000", photo["folder"]), ("9000", photo["folder"])]
    bad = runner.invoke(toy, ["serve", str(photo["folder"]), "--count", "10"])
    assert (bad.exit_code, bad.output) == (2, "error: --count 10 is out of range (between 1 and 9)\n")
    # `run` does not know `--serve`, and its own `--ray` is unchanged.
    result = runner.invoke(app, ["run", str(photo["folder"]), "-m", str(photo["mask"]), "--serve"])
    assert result.exit_code == 2 and result.output.startswith("error: no such option --serve")
    assert runner.invoke(app, ["run", "--ray", str(photo["folder"]), "-m", str(photo["mask"])]).exit_code == 0
    assert received[-1].ray == "auto"


def test_the_command_module_keeps_no_mutable_state() -> None:
    """No dict, list or set at module level is filled while commands register (only named constants)."""
    mutable = {
        name
        for name, value in vars(command).items()
        if isinstance(value, dict | list | set) and not name.isupper() and not name.startswith("__")
    }
    assert mutable == set()
    before = {name: repr(value) for name, value in vars(command).items() if name.isupper()}
    command.add_command(typer.Typer(), "serve", ServeOptions, print)
    assert before == {name: repr(value) for name, value in vars(command).items() if name.isupper()}


def test_with_bare_values_fills_only_where_the_grammar_says() -> None:
    fill = command.with_bare_values
    assert fill(["--serve"], ServeOptions) == ["--serve", "8000"]
    assert fill(["--serve", "x"], ServeOptions) == ["--serve", "8000", "x"]
    assert fill(["--serve", "80", "x"], ServeOptions) == ["--serve", "80", "x"]
    assert fill(["--serve=80", "x"], ServeOptions) == ["--serve=80", "x"]
    assert fill(["x", "--", "--serve"], ServeOptions) == ["x", "--", "--serve"]


def test_every_options_class_puts_every_field_in_a_named_panel() -> None:
    for options_class in (RunOptions, DetectOptions, CompareOptions, ReportOptions):
        for spec in dataclasses.fields(options_class):
            assert spec.metadata["cli"].panel is not Panel.OTHER, (options_class.__name__, spec.name)


# --- sizes -------------------------------------------------------------------------------------------


def test_reading_a_memory_budget_imports_no_torch() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from inpaint_cli.batch.run_options import RunOptions, parse_memory_size\n"
        "assert parse_memory_size('4GB') == 4_000_000_000\n"
        "RunOptions(input='a.png', mask='m.png', memory_budget=2**30)\n"
        "print(sorted(name for name in ('torch', 'cv2', 'numpy') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_dry_run_and_the_weight_free_listing_import_no_torch(photo: dict[str, Path]) -> None:
    """Start-up (issue 30 item 10): what a command does not need, it does not import. A dry run plans
    and checks without a model; `models` reads the manifest."""
    import subprocess

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from inpaint_cli.cli.app import app\n"
        f"args = ['run', {str(photo['image'])!r}, '-m', {str(photo['mask'])!r}, '--model', 'telea']\n"
        "args.append('--dry-run')\n"
        "for words in (args, ['models']):\n"
        "    result = CliRunner().invoke(app, words)\n"
        "    assert result.exit_code == 0, result.output\n"
        "print(sorted(name for name in ('torch', 'safetensors') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
