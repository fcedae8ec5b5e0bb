"""`inpaint run` on single images, `models`, `doctor`: results, exit codes and one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from inpaint_cli.cli.app import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def photo(tmp_path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A smooth RGB picture with a rectangular hole, as PNG files."""
    y, x = np.mgrid[0:48, 0:64]
    pixels = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    hole = np.zeros((48, 64), bool)
    hole[18:26, 20:34] = True
    pixels_with_damage = pixels.copy()
    pixels_with_damage[hole] = 255
    image_path, mask_path = tmp_path / "photo.png", tmp_path / "photo_mask.png"
    Image.fromarray(pixels_with_damage).save(image_path)
    Image.fromarray(hole.astype(np.uint8) * 255).save(mask_path)
    return image_path, mask_path, pixels_with_damage, hole


def test_telea_fills_the_hole_and_keeps_every_other_pixel(photo, tmp_path):
    image_path, mask_path, pixels, hole = photo
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "--panel")
    assert result.exit_code == 0, result.output
    output = tmp_path / "photo_inpainted.png"
    filled = np.asarray(Image.open(output))
    np.testing.assert_array_equal(filled[~hole], pixels[~hole])
    assert np.all(filled[hole] < 250)  # the white damage is gone
    panel = Image.open(tmp_path / "photo_inpainted_panel.png")
    assert panel.width >= 3 * 64 and panel.height > 48


def test_ns_on_16bit_grey_keeps_depth_mode_and_unmasked_pixels(tmp_path):
    values = (np.arange(40 * 50).reshape(40, 50) * 31).astype(np.uint16)
    hole = np.zeros((40, 50), bool)
    hole[10:20, 10:20] = True
    Image.fromarray(values).save(tmp_path / "scan.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    result = invoke("run", tmp_path / "scan.png", "--mask", tmp_path / "mask.png", "--model", "ns")
    assert result.exit_code == 0, result.output
    out = Image.open(tmp_path / "scan_inpainted.png")
    assert out.mode.startswith("I;16") or out.mode == "I"
    filled = np.asarray(out).astype(np.uint16)
    np.testing.assert_array_equal(filled[~hole], values[~hole])


def test_jpeg_in_gives_jpeg_out(photo, tmp_path):
    _, mask_path, pixels, _ = photo
    Image.fromarray(pixels).save(tmp_path / "scan.jpg", quality=90)
    result = invoke("run", tmp_path / "scan.jpg", "--mask", mask_path, "--model", "telea")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "scan_inpainted.jpg").format == "JPEG"


def test_empty_mask_warns_and_copies_the_image_through(photo, tmp_path):
    image_path, _, pixels, _ = photo
    Image.new("L", (64, 48), 0).save(tmp_path / "empty.png")
    result = invoke("run", image_path, "--mask", tmp_path / "empty.png", "--model", "telea")
    assert result.exit_code == 0, result.output
    assert "no hole pixels" in result.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "photo_inpainted.png")), pixels)


def test_all_hole_mask_still_runs(photo, tmp_path):
    image_path, _, _, _ = photo
    Image.new("L", (64, 48), 255).save(tmp_path / "full.png")
    result = invoke(
        "run", image_path, "--mask", tmp_path / "full.png", "--model", "telea", "-o", tmp_path / "o.png"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.png").exists()


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("missing", ["image", "mask"])
def test_missing_file_on_the_command_line_is_a_usage_error(photo, tmp_path, missing):
    image_path, mask_path, _, _ = photo
    args = {"image": (tmp_path / "nope.png", mask_path), "mask": (image_path, tmp_path / "nope.png")}[missing]
    result = invoke("run", args[0], "--mask", args[1], "--model", "telea")
    assert result.exit_code == 2
    assert "nope.png" in one_line_error(result.output)


def make_bad_input(kind: str, tmp_path: Path, photo_path: Path) -> Path:
    path = tmp_path / f"bad_{kind}.png"
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = photo_path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not-an-image":
        path.write_text("these are my holiday notes, not a picture\n")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("zero-byte", "empty"),
        ("truncated", "truncated|corrupt"),
        ("not-an-image", "not a PNG, JPEG, TIFF or WebP image"),
    ],
)
def test_bad_image_gives_one_line_error_naming_it_and_exit_1(photo, tmp_path, kind, message):
    image_path, mask_path, _, _ = photo
    bad = make_bad_input(kind, tmp_path, image_path)
    result = invoke("run", bad, "--mask", mask_path, "--model", "telea")
    assert result.exit_code == 1, result.output
    line = one_line_error(result.output)
    assert bad.name in line
    assert any(word in line for word in message.split("|")), line
    assert not list(tmp_path.glob("bad_*_inpainted*"))


@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "not-an-image"])
def test_a_bad_image_is_named_before_a_model_that_is_not_downloaded(photo, tmp_path, monkeypatch, kind):
    # The default model is not in the (empty) cache and downloads are off: the image's own problem is
    # what the user must hear, not that the model could not be fetched for it.
    from weights_helpers import clean_environment

    clean_environment(tmp_path, monkeypatch)
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    image_path, mask_path, _, _ = photo
    bad = make_bad_input(kind, tmp_path, image_path)
    result = invoke("run", bad, "--mask", mask_path)
    assert result.exit_code == 1, result.output
    line = one_line_error(result.output)
    assert bad.name in line
    assert any(word in line for word in ("empty", "truncated", "corrupt", "not a PNG")), line
    assert "offline" not in result.output.lower() and "lama" not in result.output.lower(), result.output


def test_a_bad_image_whose_output_exists_is_still_judged_by_that_output(photo, tmp_path):
    image_path, mask_path, _, _ = photo
    bad = make_bad_input("not-an-image", tmp_path, image_path)
    output = tmp_path / "mine.png"
    output.write_bytes(image_path.read_bytes())
    result = invoke("run", bad, "--mask", mask_path, "--model", "telea", "-o", output)
    assert result.exit_code == 1, result.output
    assert "exists" in one_line_error(result.output), result.output
    assert output.read_bytes() == image_path.read_bytes()


def test_a_batch_with_one_good_image_still_asks_for_the_model(photo, tmp_path, monkeypatch):
    from weights_helpers import clean_environment

    clean_environment(tmp_path, monkeypatch)
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    image_path, mask_path, _, _ = photo
    result = invoke("run", image_path, "--mask", mask_path)
    assert result.exit_code != 0
    assert "offline" in result.output.lower() and "lama" in result.output.lower(), result.output


def test_mask_of_another_size_is_refused(photo, tmp_path):
    image_path, _, _, _ = photo
    Image.new("L", (32, 32), 255).save(tmp_path / "small_mask.png")
    result = invoke("run", image_path, "--mask", tmp_path / "small_mask.png", "--model", "telea")
    assert result.exit_code == 1
    line = one_line_error(result.output)
    assert "small_mask.png" in line and "32x32" in line and "64x48" in line


def test_decompression_bomb_limit_is_configurable(photo):
    image_path, mask_path, _, _ = photo
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "--max-pixels", "1000")
    assert result.exit_code == 1
    assert "photo.png" in one_line_error(result.output)
    assert (
        invoke("run", image_path, "--mask", mask_path, "--model", "telea", "--max-pixels", "5000").exit_code
        == 0
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_folder_is_reported(photo, tmp_path):
    image_path, mask_path, _, _ = photo
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "-o", locked / "out.png")
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 1
    assert "out.png" in one_line_error(result.output)


def test_output_inside_a_file_is_a_usage_error_before_anything_runs(photo, tmp_path):
    image_path, mask_path, _, _ = photo
    blocker = tmp_path / "file_not_folder"
    blocker.write_text("x")
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "-o", blocker / "out.png")
    assert result.exit_code == 2  # found before anything runs, not "File exists" after the fill
    assert one_line_error(result.output) == (
        f"error: {blocker / 'out.png'}: {blocker} is a file, "
        "so -o cannot be written inside it (give another -o)"
    )


def test_existing_output_is_refused_unless_overwrite_and_input_is_never_the_output(photo, tmp_path):
    image_path, mask_path, _, _ = photo
    original = image_path.read_bytes()
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "-o", out)
    assert result.exit_code == 1 and "--overwrite" in one_line_error(result.output)
    assert out.read_bytes() == b"keep me"
    assert (
        invoke("run", image_path, "--mask", mask_path, "--model", "telea", "-o", out, "--overwrite").exit_code
        == 0
    )
    assert Image.open(out).size == (64, 48)
    result = invoke(
        "run", image_path, "--mask", mask_path, "--model", "telea", "-o", image_path, "--overwrite"
    )
    assert result.exit_code == 2  # found before anything runs
    assert image_path.read_bytes() == original


def test_bad_option_values_are_usage_errors(photo):
    image_path, mask_path, _, _ = photo
    assert (
        invoke("run", image_path, "--mask", mask_path, "--model", "telea", "--device", "tpu").exit_code == 2
    )
    assert invoke("run", image_path, "--mask", mask_path, "--model", "no-such-model").exit_code == 2
    assert invoke("run", image_path, "--mask", mask_path, "--precision", "fp8").exit_code == 2
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "--memory-budget", "lots")
    assert result.exit_code == 2 and "lots" in one_line_error(result.output)


def test_models_lists_manifest_and_classical_methods():
    result = invoke("models")
    assert result.exit_code == 0, result.output
    for name in ("lama", "gatedconv", "pconv", "telea", "ns"):
        assert name in result.output


def test_doctor_reports_versions_devices_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INPAINT_HOME", str(tmp_path / "cache"))
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    assert torch.__version__ in result.output
    assert "cache" in result.output and "lama" in result.output


def test_every_command_explains_its_options():
    for command in (["run"], ["models"], ["doctor"], ["weights"], ["weights", "pull"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output, command


@pytest.mark.skipif(shutil.which("inpaint") is None, reason="the package is not installed")
def test_installed_command_runs_the_readme_example(tmp_path):
    output = tmp_path / "restored.png"
    completed = subprocess.run(
        [
            "inpaint",
            "run",
            EXAMPLES / "portrait_damaged.png",
            "--mask",
            EXAMPLES / "portrait_mask.png",
            "--model",
            "telea",
            "-o",
            output,
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(output)
    damaged = np.asarray(Image.open(EXAMPLES / "portrait_damaged.png").convert("RGB"))
    hole = np.asarray(Image.open(EXAMPLES / "portrait_mask.png").convert("L")) > 127
    restored = np.asarray(Image.open(output).convert("RGB"))
    np.testing.assert_array_equal(restored[~hole], damaged[~hole])
    original = np.asarray(Image.open(EXAMPLES / "portrait_original.png").convert("RGB")).astype(int)
    # filling beats leaving the damage in place
    assert np.abs(restored[hole] - original[hole]).mean() < np.abs(damaged[hole] - original[hole]).mean()


def test_python_dash_m_entry_point():
    completed = subprocess.run(
        [sys.executable, "-m", "inpaint_cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0 and completed.stdout.startswith("inpaint ")


# --- the first hour of a new user (issue 15) ---------------------------------------------------------

BUNDLED = ROOT / "inpaint_cli" / "bundled"


def lines_starting(output: str, prefix: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith(prefix)]


def test_a_checkpoint_without_model_is_recognised_from_the_file(photo, tmp_path):
    image_path, mask_path, pixels, hole = photo
    output = tmp_path / "out.png"
    result = invoke(
        "run",
        image_path,
        "--mask",
        mask_path,
        "--checkpoint",
        BUNDLED / "pconv-tiny.safetensors",
        "-o",
        output,
        "-v",
    )
    assert result.exit_code == 0, result.output
    assert lines_starting(result.output, "model pconv-tiny.safetensors (pconv) on cpu")
    filled = np.asarray(Image.open(output))
    np.testing.assert_array_equal(filled[~hole], pixels[~hole])
    assert (filled[hole] != 255).any()


def test_verbose_says_device_precision_threads_load_time_plan_and_stage_times(photo, tmp_path):
    image_path, mask_path, _, _ = photo
    result = invoke("run", image_path, "--mask", mask_path, "--model", "pconv-tiny", "--threads", "1", "-v")
    assert result.exit_code == 0, result.output
    (model,) = lines_starting(result.output, "model ")
    assert re.fullmatch(r"model pconv-tiny \(pconv\) on cpu, fp32, 1 thread: loaded in \d+\.\d\d s", model)
    (plan,) = lines_starting(result.output, "plan: ")
    assert plan.startswith("plan: auto: ") and "pass" in plan
    (times,) = lines_starting(result.output, "time: ")
    stage = r"\d+\.\d\d s"
    assert re.fullmatch(
        rf"time: read {stage}, fill {stage} \(plan {stage}, preprocess {stage}, network {stage}, "
        rf"composite {stage}\), write {stage}",
        times,
    ), times
    (wrote,) = lines_starting(result.output, "wrote ")
    whole, image = map(float, re.fullmatch(r"wrote .* in (\S+) s \(this image (\S+) s, .*\)", wrote).groups())
    assert whole >= image > 0  # the whole time includes start-up and the model load


def test_verbose_says_how_many_convolutions_int8_runs(photo, tmp_path, monkeypatch):
    monkeypatch.setenv("INPAINT_HOME", str(tmp_path / "home"))  # the int8 plan is kept there
    image_path, mask_path, _, _ = photo
    args = ("run", image_path, "--mask", mask_path, "--model", "pconv-tiny", "--threads", "1", "-v")
    result = invoke(*args, "--precision", "int8", "-o", tmp_path / "int8.png")
    assert result.exit_code == 0, result.output
    (model,) = lines_starting(result.output, "model ")
    assert re.fullmatch(
        r"model pconv-tiny \(pconv\) on cpu, int8 \(\d of 8 convolutions(, \d kept in float for accuracy)?\),"
        r" 1 thread: loaded in \d+\.\d\d s",
        model,
    ), model


def test_without_verbose_nothing_of_that_is_said(photo):
    image_path, mask_path, _, _ = photo
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea")
    assert result.exit_code == 0, result.output
    assert not lines_starting(result.output, "model ") and not lines_starting(result.output, "plan: ")


def test_a_demo_model_gets_one_note_naming_the_model_for_real_work(photo):
    image_path, mask_path, _, _ = photo
    result = invoke("run", image_path, "--mask", mask_path, "--model", "gatedconv-tiny")
    assert result.exit_code == 0, result.output
    assert lines_starting(result.output, "note:") == [
        "note: gatedconv-tiny is a small demo-quality model bundled for trying the tool offline; "
        "for real restorations use --model gatedconv (inpaint weights pull gatedconv)"
    ]
    quiet = invoke("run", image_path, "--mask", mask_path, "--model", "gatedconv-tiny", "-q", "--overwrite")
    assert quiet.exit_code == 0 and "note:" not in quiet.output
    telea = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "--overwrite")
    assert telea.exit_code == 0 and "note:" not in telea.output


def test_intermediates_are_summed_up_in_one_line(photo, tmp_path):
    image_path, mask_path, _, _ = photo
    folder = tmp_path / "inter"
    result = invoke(
        "run",
        image_path,
        "--mask",
        mask_path,
        "--model",
        "pconv-tiny",
        "--save-intermediates",
        folder,
        "--panel",
    )
    assert result.exit_code == 0, result.output
    written = sorted(path for path in folder.rglob("*") if path.is_file())
    size = sum(path.stat().st_size for path in written) / 1e6
    assert len(written) >= 3
    assert lines_starting(result.output, "intermediates:") == [
        f"intermediates: {len(written)} files, {size:.1f} MB in {folder / 'photo'}"
    ]
    assert lines_starting(result.output, "also wrote") == [
        f"also wrote {tmp_path / 'photo_inpainted_panel.png'}"
    ]


def test_other_tools_habits_get_a_hint_and_output_has_a_long_form(photo, tmp_path):
    image_path, mask_path, _, _ = photo
    result = invoke("run", "--image", image_path, "--mask", mask_path, "--model", "telea")
    assert result.exit_code == 2
    assert one_line_error(result.output) == (
        "error: no such option --image "
        "(the image or folder is the first argument: inpaint run IMAGE --mask MASK)"
    )
    output = tmp_path / "long.png"
    assert (
        invoke("run", image_path, "--mask", mask_path, "--model", "telea", "--output", output).exit_code == 0
    )
    assert Image.open(output).size == (64, 48)


def test_help_shows_no_bool_metavars_nor_braces():
    result = invoke("run", "--help")
    assert result.exit_code == 0
    assert "<bool>" not in result.output and "{input}" not in result.output
    assert re.search(r"Usage: .*run INPUT --mask MASK \[OPTIONS\]", result.output)
    assert "--dilate" in result.output and "--output" in result.output


def test_the_pixel_limit_error_names_the_option(photo):
    image_path, mask_path, _, _ = photo
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "--max-pixels", "1000")
    assert result.exit_code == 1
    assert "raise --max-pixels" in one_line_error(result.output)


def test_jpeg_output_of_a_16bit_image_says_it_drops_to_8_bits(tmp_path):
    values = (np.arange(40 * 50 * 3).reshape(40, 50, 3) * 97 % 65536).astype(np.uint16)
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "scan16.png"), values)
    Image.new("L", (50, 40), 255).save(tmp_path / "m.png")
    output = tmp_path / "scan.jpg"
    result = invoke(
        "run",
        tmp_path / "scan16.png",
        "--mask",
        tmp_path / "m.png",
        "--model",
        "telea",
        "--format",
        "jpg",
        "-o",
        output,
    )
    assert result.exit_code == 0, result.output
    assert lines_starting(result.output, "warning:") == [
        f"warning: {output}: the 16-bit image was written as 8-bit JPEG "
        "(use --format png or tiff to keep 16 bits)"
    ]
    png = invoke("run", tmp_path / "scan16.png", "--mask", tmp_path / "m.png", "--model", "telea")
    assert png.exit_code == 0 and "warning" not in png.output


# --- options that crash or mislead (issue 12 §6) ----------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--dilate", "100000", "error: --dilate 100000 is out of range (between 0 and 256)"),
        ("--memory-budget", "inf", "error: --memory-budget 'inf': cannot read size 'inf'"),
        ("--memory-budget", "nan", "error: --memory-budget 'nan': cannot read size 'nan'"),
        ("--memory-budget", "1e400", "error: --memory-budget '1e400': size must be a finite number of bytes"),
        ("--memory-budget", "1B", "error: --memory-budget '1B' is too small (no network pass fits in less"),
        ("--memory-budget", "lots", "error: --memory-budget 'lots': cannot read size 'lots'"),
        ("--quality", "0", "error: --quality 0 is out of range (between 1 and 100)"),
        ("--jobs", "0", "error: --jobs 0 is out of range (at least 1)"),
    ],
)
def test_option_values_are_checked_before_anything_runs(photo, tmp_path, option, value, message):
    image_path, mask_path, _, _ = photo
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", option, value)
    assert result.exit_code == 2, result.output
    assert one_line_error(result.output).startswith(message)
    assert not (tmp_path / "photo_inpainted.png").exists()


def test_a_newline_in_a_file_name_keeps_the_message_on_one_line(photo, tmp_path):
    _, mask_path, _, _ = photo
    odd = tmp_path / "two\nlines.png"
    odd.write_bytes(b"")
    result = invoke("run", odd, "--mask", mask_path, "--model", "telea")
    assert result.exit_code == 1
    assert "two\\nlines.png" in one_line_error(result.output)


def test_output_inside_the_mask_file_gets_a_real_message(photo):
    image_path, mask_path, _, _ = photo
    result = invoke("run", image_path, "--mask", mask_path, "--model", "telea", "-o", mask_path / "out.png")
    assert result.exit_code == 2
    assert one_line_error(result.output) == (
        f"error: {mask_path / 'out.png'}: {mask_path} is a file, "
        "so -o cannot be written inside it (give another -o)"
    )
