"""Issue 27's reproductions, end to end: hostile JSON files, broken homes, odd URLs and paths.

Each case runs `inpaint` in a subprocess with a timeout, as a person would: a FIFO must not hang the
tool, /dev/zero must not exhaust memory, and every problem is one line naming the file (exit 1), or
no problem at all where the file is only a cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HEIGHT, WIDTH = 32, 40
TIMEOUT = 120
"""Seconds a command may take here (a FIFO read hung forever before issue 27)."""
DEEP = "[" * 100_000 + "]" * 100_000


def make_deep(path: Path) -> None:
    path.write_text(DEEP)


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


HOSTILE: dict[str, Callable[[Path], None]] = {"deep": make_deep, "fifo": make_fifo, "dev-zero": make_dev_zero}
PROBLEM = {
    "deep": "JSON nested deeper than 64 levels",
    "fifo": "not a regular file but a pipe (give a JSON file)",
    "dev-zero": "not a regular file but a device (give a JSON file)",
}


def inpaint(*args: str | Path, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`inpaint ARGS` in a fresh process with `home` as INPAINT_HOME; fails the test if it hangs."""
    environment = {**os.environ, "INPAINT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    environment.pop("INPAINT_MANIFEST", None)
    return subprocess.run(
        [sys.executable, "-m", "inpaint_cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment,
        cwd=cwd,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], line: str, code: int = 1) -> None:
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == code, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"error: {line}"


def photos(folder: Path, count: int = 2) -> Path:
    """`count` noisy photos in `folder` and a mask beside it; returns the mask."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(
            folder / f"{index}.png"
        )
    hole = np.zeros((HEIGHT, WIDTH), np.uint8)
    hole[10:18, 12:26] = 255
    mask = folder.parent / "defect.png"
    Image.fromarray(hole).save(mask)
    return mask


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(input folder, mask, output folder, home) after one complete telea run with a report."""
    folder, out, home = tmp_path / "in", tmp_path / "out", tmp_path / "home"
    mask = photos(folder)
    done = inpaint(
        "run",
        folder,
        "--mask",
        mask,
        "-o",
        out,
        "--model",
        "telea",
        "--report",
        tmp_path / "r.json",
        home=home,
    )
    assert done.returncode == 0, done.stderr
    return folder, mask, out, home


# --- hostile JSON files (deep, FIFO, /dev/zero) in every place the tool reads JSON ------------------------


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_report_is_one_line(batch: tuple[Path, Path, Path, Path], kind: str) -> None:
    report = batch[2].parent / "hostile.json"
    HOSTILE[kind](report)
    done = inpaint("report", report, "--html", batch[2].parent / "page.html", home=batch[3])
    assert_one_line_error(done, f"{report}: {PROBLEM[kind]}")
    assert not (batch[2].parent / "page.html").exists()


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("kind", HOSTILE)
def test_one_hostile_provenance_record_fails_its_job_only(
    batch: tuple[Path, Path, Path, Path], kind: str, dry_run: bool
) -> None:
    folder, mask, out, home = batch
    record = out / ".0.png.inpaint.json"
    before = (out / "0.png").read_bytes()
    record.unlink()
    HOSTILE[kind](record)

    done = inpaint(
        "run",
        folder,
        "--mask",
        mask,
        "-o",
        out,
        "--model",
        "telea",
        *(["--dry-run"] if dry_run else []),
        home=home,
    )

    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]
    said = done.stdout + done.stderr  # a dry run lists its verdicts on stdout
    assert f"{record}: {PROBLEM[kind].split(' (')[0]} (use --overwrite" in said
    assert "1.png" in said  # the other job was judged too (skipped)
    assert (out / "0.png").read_bytes() == before


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_cache_index_is_a_lost_cache(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    HOSTILE[kind](home / "index.json")
    mask = photos(tmp_path / "in", 1)

    done = inpaint("run", tmp_path / "in" / "0.png", "--mask", mask, "--model", "telea", home=home)
    listed = inpaint("weights", "list", home=home)

    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert (tmp_path / "in" / "0_inpainted.png").is_file()
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr[-3000:]


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_rows_cache_on_a_resumed_html_run_is_one_line(
    batch: tuple[Path, Path, Path, Path], kind: str
) -> None:
    """A `rows.json` that cannot be read is not taken for a page of ours: the page is not replaced
    without --overwrite (one line), and with it the page and a good cache are made anew."""
    folder, mask, out, home = batch
    page = out.parent / "page.html"
    command = ["run", folder, "--mask", mask, "-o", out, "--model", "telea", "--html", page]
    first = inpaint(*command, home=home)
    assert first.returncode == 0, first.stderr
    rows = out.parent / "page_files" / "rows.json"
    rows.unlink()
    HOSTILE[kind](rows)

    resumed = inpaint(*command, home=home)
    replaced = inpaint(*command, "--overwrite", home=home)

    assert_one_line_error(
        resumed,
        f"{page}: exists and is not a review page made by inpaint "
        "(give another --html, or --overwrite to replace it)",
    )
    assert replaced.returncode == 0 and "Traceback" not in replaced.stderr, replaced.stderr[-3000:]
    assert rows.is_file() and not rows.is_symlink()
    assert json.loads(rows.read_text())["version"] == 1


@pytest.mark.parametrize(
    ("part", "field", "value"),
    [
        ("rows", "masks", 5),
        ("rows", "warnings", "slow"),
        ("rows", "image", 5),
        ("rows", "seconds", "fast"),
        ("rows", "mask_options", {"threshold": "high"}),
        ("rows", "mask_options", {"dilate": 10**9}),
        ("rows", "judge_fill", "yes"),
        ("thumbs", "findings", "abc"),
        ("thumbs", "thumbs", []),
        ("thumbs", "thumbs", {"input": 5}),
    ],
)
def test_a_rows_cache_with_fields_of_the_wrong_shape_is_not_used(
    tmp_path: Path, part: str, field: str, value: object
) -> None:
    """Issue 27: a corrupted `<page>_files/rows.json` made a resumed `run --html` end in a traceback."""
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    mask = photos(tmp_path / "in")
    page, rows = tmp_path / "page.html", tmp_path / "page_files" / "rows.json"
    command = ["run", str(tmp_path / "in"), "--mask", str(mask), "-o", str(tmp_path / "out")]
    command += ["--model", "telea", "--html", str(page)]
    assert CliRunner().invoke(app, command).exit_code == 0
    cache = json.loads(rows.read_text())
    for entry in cache[part].values():
        entry[field] = value
    rows.write_text(json.dumps(cache))

    resumed = CliRunner().invoke(app, command)

    assert resumed.exception is None or isinstance(resumed.exception, SystemExit), repr(resumed.exception)
    assert resumed.exit_code == 0, resumed.output
    rebuilt = json.loads(rows.read_text())
    assert all(
        isinstance(row["masks"], list) and isinstance(row["warnings"], list)
        for row in rebuilt["rows"].values()
    )
    assert all(isinstance(made["findings"], list) for made in rebuilt["thumbs"].values())


# --- malformed fields of a report given to `inpaint report` -------------------------------------------


def _set(report: dict, where: str, value: object) -> None:
    """Set the field at `where` (`inputs.0.provenance.mask.threshold`) of a report to `value`."""
    *parents, last = [int(part) if part.isdigit() else part for part in where.split(".")]
    target = report
    for part in parents:
        target = target[part]
    target[last] = value


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        ("inputs.0.masks", 5, "input 1 of the report: 'masks' is not a list of text"),
        ("inputs.1.warnings", 5, "input 2 of the report: 'warnings' is not a list of text"),
        ("inputs.0.output", ["a.png"], "input 1 of the report: 'output' is not text"),
        (
            "inputs.0.provenance.mask.threshold",
            "high",
            "input 1 of the report: 'provenance.mask' has a setting of the wrong type",
        ),
        (
            "inputs.0.provenance.mask.threshold",
            300,
            "input 1 of the report: 'provenance.mask.threshold' is 300, outside 0..255",
        ),
        (
            "inputs.0.provenance.mask.dilate",
            -1,
            "input 1 of the report: 'provenance.mask.dilate' is -1, outside 0..256",
        ),
        ("not_run", 5, "the report's 'not_run' is not a list of text"),
        (
            "inputs.0.image",
            "in/a\x00b.png",
            'input 1 of the report: "in/a\\u0000b.png" is not a usable file name',
        ),
        (
            "inputs.0.image",
            "in/\ud800.png",
            'input 1 of the report: "in/\\ud800.png" is not a usable file name',
        ),
        ("not_run", ["in/\ud800.png"], 'the report\'s "in/\\ud800.png" is not a usable file name'),
        ("inputs", {"0": 1}, "not a batch report (no 'inputs' list)"),
    ],
)
def test_malformed_report_fields_are_one_line_naming_the_field(
    tmp_path: Path, where: str, value: object, problem: str
) -> None:
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    mask = photos(tmp_path / "in")
    report_file, page = tmp_path / "r.json", tmp_path / "page.html"
    made = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "in"),
            "--mask",
            str(mask),
            "-o",
            str(tmp_path / "out"),
            "--model",
            "telea",
            "--report",
            str(report_file),
        ],
    )
    assert made.exit_code == 0, made.output
    report = json.loads(report_file.read_text())
    _set(report, where, value)
    report_file.write_text(json.dumps(report))

    result = CliRunner().invoke(app, ["report", str(report_file), "--html", str(page)])

    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == f"error: {report_file}: {problem} (give a --report file)"
    assert not page.exists() and not (tmp_path / "page_files").exists()


def test_a_file_name_that_is_not_utf8_survives_report_page_and_resume(tmp_path: Path) -> None:
    """A photo named with a byte that is not UTF-8 (Python holds it as a lone surrogate) broke every
    JSON file the batch writes (record, report, rows.json) with a traceback and left no output."""
    folder, out, home = tmp_path / "in", tmp_path / "out", tmp_path / "home"
    mask = photos(folder, 1)
    odd = folder / os.fsdecode(b"caf\xe9.png")  # Latin-1 'é': not UTF-8
    (folder / "0.png").rename(odd)
    report, page = tmp_path / "r.json", tmp_path / "page.html"
    command = [
        "run",
        folder,
        "--mask",
        mask,
        "-o",
        out,
        "--model",
        "telea",
        "--report",
        report,
        "--html",
        page,
    ]

    first = inpaint(*command, home=home)
    again = inpaint(*command, home=home)
    rebuilt = inpaint("report", report, "--html", tmp_path / "again.html", home=home)

    for done in (first, again, rebuilt):
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (record,) = json.loads(report.read_bytes().decode("utf-8"))["inputs"]  # valid UTF-8 text
    assert os.fsencode(record["image"]) == os.fsencode(odd) and record["status"] == "skipped"
    assert (out / odd.name).is_file()
    assert b"caf%E9.png" in page.read_bytes() or b"caf%e9" in page.read_bytes().lower()


# --- an INPAINT_HOME that cannot hold the model cache -------------------------------------------------

BUNDLED = Path(__file__).resolve().parents[2] / "inpaint_cli" / "bundled"


@pytest.mark.parametrize("kind", ["read-only", "a-file", "dev-null"])
@pytest.mark.parametrize("command", ["run", "detect", "weights-import"])
def test_an_unusable_inpaint_home_is_one_line(
    tmp_path: Path, unwritable: Path, kind: str, command: str
) -> None:
    home = {"read-only": unwritable, "a-file": tmp_path / "home", "dev-null": Path("/dev/null")}[kind]
    if kind == "a-file":
        home.write_text("not a folder")
    mask = photos(tmp_path / "in", 1)
    photo = tmp_path / "in" / "0.png"
    args = {
        "run": ["run", photo, "--mask", mask, "--model", "pconv-tiny"],
        "detect": ["detect", photo],
        "weights-import": ["weights", "import", "pconv-tiny", BUNDLED / "pconv-tiny.safetensors"],
    }[command]

    done = inpaint(*args, home=home)

    reason = "not a folder" if kind != "read-only" else "Permission denied"
    assert_one_line_error(
        done, f"{home}: cannot keep models here: {reason} (set INPAINT_HOME to a folder you can write)"
    )
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["0.png"]


# --- stores and paths -----------------------------------------------------------------------------------


ALONE = "cannot be opened from a URL alone (give a folder, or an object store such as s3://)"


ALONE = "cannot be opened from a URL alone (give a folder, or an object store such as s3://)"


def _run_in(folder: Path, *args: str) -> object:
    """`inpaint run ARGS` in-process with `folder` as the working folder."""
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    previous = Path.cwd()
    os.chdir(folder)
    try:
        return CliRunner().invoke(app, ["run", *args])
    finally:
        os.chdir(previous)


def _last_line(result: object) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.output.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("input", "problem"),
    [
        ("memory://in", "memory://in: no such file or folder"),
        ("zip://in", f"zip://in: zip:// {ALONE}"),
        ("ftp://127.0.0.1:9/in", f"ftp://127.0.0.1:9/in: ftp:// {ALONE}"),
    ],
)
def test_urls_inpaint_cannot_use_are_one_line(tmp_path: Path, input: str, problem: str) -> None:
    mask = photos(tmp_path / "in", 1)
    result = _run_in(tmp_path, input, "--mask", str(mask), "--model", "telea", "-o", "out")
    assert _last_line(result) == f"error: {problem}"
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_a_store_that_keeps_nothing_is_refused_as_output(tmp_path: Path) -> None:
    mask = photos(tmp_path / "in")
    result = _run_in(tmp_path, "in", "--mask", str(mask), "--model", "telea", "-o", "memory://out")
    assert _last_line(result) == (
        "error: memory://out: memory:// keeps nothing once inpaint exits "
        "(write to a folder, or to a lasting store such as s3://)"
    )
    assert result.exit_code == 2


def test_a_report_url_is_refused_not_taken_for_a_local_path(tmp_path: Path) -> None:
    mask = photos(tmp_path / "in")
    result = _run_in(
        tmp_path, "in", "--mask", str(mask), "--model", "telea", "-o", "out", "--report", "memory://r.json"
    )
    assert (
        _last_line(result)
        == "error: memory://r.json: the report must be a local path, not a URL (give --report a local path)"
    )
    assert result.exit_code == 2
    assert not (tmp_path / "memory:").exists() and not (tmp_path / "out").exists()


def test_a_file_url_without_a_third_slash_is_relative(tmp_path: Path) -> None:
    written, where = "file://out-27.png", "out-27.png"
    mask = photos(tmp_path / "in", 1)
    at_root = Path("/") / where
    assert not at_root.exists()
    try:
        result = _run_in(tmp_path, "in/0.png", "--mask", str(mask), "--model", "telea", "-o", written)
        assert result.exit_code == 0, result.output
        assert (tmp_path / where).is_file() and not at_root.exists()
    finally:
        at_root.unlink(missing_ok=True)


def test_a_file_url_with_three_slashes_is_absolute(tmp_path: Path) -> None:
    mask = photos(tmp_path / "in", 1)
    result = _run_in(
        tmp_path, "in/0.png", "--mask", str(mask), "--model", "telea", "-o", f"file://{tmp_path}/abs.png"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "abs.png").is_file()


# --- memory from small files: the --max-pixels header check of report and compare -----------------------


def zero_png(path: Path, width: int, height: int) -> Path:
    """An all-zero grey PNG: 12 MP in about 12 KB (the 240 MP one of issue 27 is 233 KB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    rows = b"".join(packer.compress(b"\x00" * (width + 1)) for _ in range(height)) + packer.flush()
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


OVER = "image has more than 1,000,000 pixels"


def test_report_thumbnails_obey_max_pixels(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    bomb = zero_png(tmp_path / "bomb.png", 4000, 3000)
    assert bomb.stat().st_size < 20_000
    report = tmp_path / "r.json"
    record = {"image": str(bomb), "masks": [str(bomb)], "output": str(bomb), "status": "done"}
    report.write_text(json.dumps({"inputs": [record]}))

    result = CliRunner().invoke(
        app, ["report", str(report), "--html", str(tmp_path / "p.html"), "--max-pixels", "1000000"]
    )

    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "p_files" / "rows.json").read_text())["thumbs"].values()
    assert row["thumbs"] == {"input": None, "mask": None, "result": None}
    assert f"no thumbnail: {bomb}: {OVER}" in " ".join(row["findings"])
    assert not list((tmp_path / "p_files").glob("*.jpg"))


def test_compare_obeys_max_pixels(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    bomb = zero_png(tmp_path / "bomb.png", 4000, 3000)
    result = CliRunner().invoke(
        app, ["compare", str(bomb), "--mask", str(bomb), "--models", "telea", "--max-pixels", "1000000"]
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {bomb}: {OVER} (refused as a possible")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png"]
