"""`inpaint run FOLDER`: a messy real-world folder, dry runs, quiet output, exit codes, and runs
killed mid-batch (SIGKILL, Ctrl-C) that leave only complete outputs and resume on the next run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from storage_helpers import interruptible
from typer.testing import CliRunner

from inpaint_cli.batch import provenance
from inpaint_cli.batch.kinds.inpaint import RunSettings
from inpaint_cli.cli.app import app
from inpaint_cli.engine import inpainter as engine
from inpaint_cli.imaging import imageio

HEIGHT, WIDTH = 32, 40
ORIENTATION_RIGHT_TOP = 6  # EXIF: stored sideways, shown turned 90° clockwise


def make_hole(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    hole = np.zeros((height, width), dtype=bool)
    hole[10:18, 12:26] = True
    return hole


def save_mask(path: Path, hole: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(hole.astype(np.uint8) * 255).save(path)


def noise(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def invoke(*args: str | Path) -> object:
    return CliRunner().invoke(app, ["run", *map(str, args)])


GOOD = [
    "good.jpg",
    "good.png",
    "colour16.tif",
    "grey16.png",
    "grey.png",
    "rgba.png",
    "rotated.jpg",
    "nested/deeper/inner.png",
    "Straße 1 é.png",
]
LOSSLESS = [name for name in GOOD if not name.endswith(".jpg")]


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, Path]:
    """A folder as users have them: every format and mode, and every kind of broken file."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    (photos / "nested/deeper").mkdir(parents=True)
    hole = make_hole()
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=1)).save(photos / "good.jpg", quality=95)
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=2)).save(photos / "good.png")
    cv2.imwrite(str(photos / "colour16.tif"), noise((HEIGHT, WIDTH, 3), np.uint16, seed=3))
    cv2.imwrite(str(photos / "grey16.png"), noise((HEIGHT, WIDTH), np.uint16, seed=4))
    Image.fromarray(noise((HEIGHT, WIDTH), seed=5)).save(photos / "grey.png")
    Image.fromarray(noise((HEIGHT, WIDTH, 4), seed=6), "RGBA").save(photos / "rgba.png")
    sideways = Image.fromarray(noise((WIDTH, HEIGHT, 3), seed=7))  # upright it is HEIGHT × WIDTH
    exif = Image.Exif()
    exif[imageio.ORIENTATION_TAG] = ORIENTATION_RIGHT_TOP
    sideways.save(photos / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=8)).save(photos / "nested/deeper/inner.png")
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=9)).save(photos / "Straße 1 é.png")
    whole = (photos / "good.png").read_bytes()
    (photos / "corrupt.png").write_bytes(whole[: len(whole) // 2])
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text [draft].jpg").write_text("a shopping list, not a photo\n")
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=10)).save(photos / "wrongsize.png")
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=11)).save(photos / "nomask.png")
    (photos / "notes.txt").write_text("not an image extension: not an input\n")
    for name in [*GOOD, "corrupt.png", "empty.jpg", "text [draft].jpg"]:
        save_mask(masks / Path(name).with_suffix(".png"), hole)
    save_mask(masks / "wrongsize_mask.png", make_hole(HEIGHT + 2, WIDTH))
    save_mask(masks / "orphan_mask.png", hole)
    return photos, masks


def test_messy_folder_every_good_image_done_every_bad_one_explained(
    tmp_path: Path, messy: tuple[Path, Path]
) -> None:
    photos, masks = messy
    out, report = tmp_path / "out", tmp_path / "report.json"
    inputs_before = tree_hashes(photos)

    result = invoke(
        photos, "--mask", masks, "-o", out, "--model", "telea", "-r", "--report", report, "-j", "3"
    )

    assert result.exit_code == 1, result.stderr
    records = {
        Path(r["image"]).relative_to(photos).as_posix(): r for r in json.loads(report.read_text())["inputs"]
    }
    assert {name for name, r in records.items() if r["status"] == "done"} == set(GOOD)
    errors = {name: r["error"] for name, r in records.items() if r["status"] == "failed"}
    assert errors.pop("corrupt.png").startswith(
        f"{photos / 'corrupt.png'}: image data is truncated or corrupt"
    )
    assert errors == {
        "empty.jpg": f"{photos / 'empty.jpg'}: file is empty (0 bytes) "
        "(the copy or download may have failed)",
        "text [draft].jpg": f"{photos / 'text [draft].jpg'}: not a PNG, JPEG, TIFF or WebP image "
        "(or a damaged one) (convert it to PNG or JPEG)",
        # Filed under the image, like every other problem of this input.
        "wrongsize.png": f"{photos / 'wrongsize.png'}: its mask {masks / 'wrongsize_mask.png'} is 40x34 "
        "but the image is 40x32 (a mask must have the image's size once both are turned upright by EXIF)",
        "nomask.png": f"{photos / 'nomask.png'}: no mask found "
        f"(looked for {masks / 'nomask'}.* and {masks / 'nomask'}_mask*.*)",
    }
    assert json.loads(report.read_text())["unused_masks"] == [str(masks / "orphan_mask.png")]
    for message in errors.values():
        assert f"error: {message}" in " ".join(result.stderr.split()), message

    hole = make_hole()
    for name in GOOD:
        source, filled = imageio.read_image(photos / name), imageio.read_image(out / name)
        assert records[name]["output"] == str(out / name)
        assert (filled.pixels.shape, filled.pixels.dtype) == (source.pixels.shape, source.pixels.dtype)
        if name in LOSSLESS:
            np.testing.assert_array_equal(filled.pixels[~hole], source.pixels[~hole])
            assert (filled.pixels[hole] != source.pixels[hole]).any()
    np.testing.assert_array_equal(
        imageio.read_image(out / "rgba.png").alpha, imageio.read_image(photos / "rgba.png").alpha
    )
    assert tree_hashes(photos) == inputs_before
    records_beside = [provenance.record_path(Path(name)).as_posix() for name in GOOD]
    assert sorted(tree_hashes(out)) == sorted([*GOOD, *records_beside])
    outputs_before = tree_hashes(out)

    again = invoke(photos, "--mask", masks, "-o", out, "--model", "telea", "-r", "--report", report)

    assert again.exit_code == 1
    summary = json.loads(report.read_text())["summary"]
    assert summary == {"done": 0, "skipped": len(GOOD), "failed": 5, "not_run": 0, "unused_masks": 1}
    assert tree_hashes(out) == outputs_before and tree_hashes(photos) == inputs_before


def test_dry_run_reads_headers_lists_what_would_fail_and_exits_1(
    tmp_path: Path, messy: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, masks = messy
    out = tmp_path / "out"
    plan_options = {"max_side": None, "tile_size": None, "tile_overlap": 64, "crop_margin": None}
    for name, model in [("good.png", "lama"), ("grey16.png", "telea")]:  # outputs of earlier runs
        save_mask(out / name, make_hole())
        made_with = provenance.for_run(
            model=model,
            weights_sha256=provenance.weights_checksum(model),
            strategy="auto",
            precision="float32",
            settings=RunSettings(),
            plan_options=plan_options,
        )
        provenance.write_record(
            provenance.record_path(out / name),
            made_with,
            kind="inpaint",
            image=photos / name,
            written=[out / name],
            intermediates=None,
            complete=True,
        )
    save_mask(out / "grey.png", make_hole())  # an output of unknown origin: refused, not replaced

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run loaded a model")

    monkeypatch.setattr(engine.Inpainter, "from_name", no_model)
    monkeypatch.setattr(imageio, "read_image", no_model)  # headers only: no pixel is decoded
    result = invoke(photos, "--mask", masks, "-o", out, "--model", "lama", "--dry-run")

    assert result.exit_code == 1, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    by_image = {row[0]: row[1:] for row in rows}
    assert by_image[str(photos / "good.jpg")] == [str(masks / "good.png"), str(out / "good.jpg"), "run"]
    assert by_image[str(photos / "good.png")][2] == "skip: output exists, made with the same settings"
    assert by_image[str(photos / "grey16.png")][2] == (
        f"{out / 'grey16.png'}: output made with other settings: model telea (now lama) "
        f"(to keep both: -o {out}_lama/; to redo it: --overwrite)"
    )
    assert by_image[str(photos / "grey.png")][2].endswith(
        "has no provenance record (made by another program "
        f"or an older inpaint) (to keep both: -o {out}_lama/; to redo it: --overwrite)"
    )
    assert by_image[str(photos / "corrupt.png")][2] == (
        f"{photos / 'corrupt.png'}: file is truncated (re-export or re-scan it)"
    )
    assert by_image[str(photos / "wrongsize.png")][2] == (
        f"{photos / 'wrongsize.png'}: its mask {masks / 'wrongsize_mask.png'} is 40x34 but the image is "
        "40x32 (a mask must have the image's size once both are turned upright by EXIF)"
    )
    assert by_image[str(photos / "empty.jpg")][2].endswith(
        "file is empty (0 bytes) (the copy or download may have failed)"
    )
    assert "not a PNG, JPEG, TIFF or WebP image" in by_image[str(photos / "text [draft].jpg")][2]
    assert by_image[str(photos / "nomask.png")][:2] == ["-", str(out / "nomask.png")]
    assert by_image[str(photos / "nomask.png")][2].endswith(f"{masks / 'nomask'}_mask*.*)")
    assert ["-", str(masks / "orphan_mask.png"), "-", "unused: no image has this name"] in rows
    assert str(photos / "nested/deeper/inner.png") not in by_image  # no --recursive
    assert not (out / "good.jpg").exists()

    good_only = invoke(photos / "good.jpg", "--mask", masks / "good.png", "-o", out, "--dry-run")
    assert good_only.exit_code == 0, good_only.stderr


def test_quiet_prints_only_the_written_paths(tmp_path: Path) -> None:
    folder, mask = tmp_path / "in", tmp_path / "defect.png"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=index)).save(folder / f"{index}.png")
    save_mask(mask, make_hole())

    result = invoke(folder, "--mask", mask, "--model", "telea", "-q")

    assert result.exit_code == 0, result.stderr
    out = tmp_path / "in_inpainted"
    assert result.stdout.splitlines() == [str(out / f"{index}.png") for index in range(3)]
    assert result.stderr == ""


def test_fail_fast_stops_and_the_report_lists_what_never_ran(tmp_path: Path) -> None:
    folder, mask = tmp_path / "in", tmp_path / "defect.png"
    folder.mkdir()
    Image.fromarray(noise((HEIGHT, WIDTH, 3))).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"")
    Image.fromarray(noise((HEIGHT, WIDTH, 3))).save(folder / "c.png")
    save_mask(mask, make_hole())

    result = invoke(
        folder, "--mask", mask, "--model", "telea", "--fail-fast", "-j", "1", "--report", tmp_path / "r.json"
    )

    assert result.exit_code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(r["image"], r["status"]) for r in report["inputs"]] == [
        (str(folder / "a.png"), "done"),
        (str(folder / "b.png"), "failed"),
    ]
    assert report["not_run"] == [str(folder / "c.png")]


def test_usage_errors_exit_2_and_a_single_image_refuses_to_overwrite(tmp_path: Path) -> None:
    image, mask = tmp_path / "photo.png", tmp_path / "photo_mask.png"
    Image.fromarray(noise((HEIGHT, WIDTH, 3))).save(image)
    save_mask(mask, make_hole())

    assert invoke(tmp_path / "missing.png", "--mask", mask, "--model", "telea").exit_code == 2
    same = invoke(tmp_path, "--mask", tmp_path, "-o", tmp_path, "--model", "telea")
    assert same.exit_code == 2 and "the output folder is the input folder" in same.stderr
    (tmp_path / "nothing").mkdir()
    nothing = invoke(tmp_path / "nothing", "--mask", mask, "--model", "telea")
    assert nothing.exit_code == 2 and "no images found" in nothing.stderr

    assert invoke(image, "--mask", mask, "--model", "telea").exit_code == 0
    output = tmp_path / "photo_inpainted.png"
    written = output.read_bytes()
    refused = invoke(image, "--mask", mask, "--model", "telea")
    assert refused.exit_code == 1 and f"{output}: output exists, made with --model telea (" in refused.stderr
    assert output.read_bytes() == written
    assert invoke(image, "--mask", mask, "--model", "telea", "--overwrite").exit_code == 0


def test_a_second_model_on_the_same_photo_is_told_the_o_that_keeps_both(tmp_path: Path) -> None:
    """Issue 30: trying another model stopped at "output exists"; the line now says what to type, and
    what it says works (image tools that name outputs after the model: photo_inpainted_ns.png)."""
    image, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(noise((HEIGHT, WIDTH, 3))).save(image)
    save_mask(mask, make_hole())
    assert invoke(image, "--mask", mask, "--model", "telea").exit_code == 0
    second = invoke(image, "--mask", mask, "--model", "ns")
    first_output, kept = tmp_path / "photo_inpainted.png", tmp_path / "photo_inpainted_ns.png"
    assert second.exit_code == 1
    assert second.stderr.strip() == (
        f"error: {first_output}: output exists, made with --model telea "
        f"(to keep both: -o {kept}; to replace it: --overwrite)"
    )
    assert invoke(image, "--mask", mask, "--model", "ns", "-o", kept).exit_code == 0
    assert kept.read_bytes() != first_output.read_bytes()
    (photos := tmp_path / "photos").mkdir()
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=2)).save(photos / "a.png")
    assert invoke(photos, "--mask", mask, "--model", "telea").exit_code == 0
    batch = invoke(photos, "--mask", mask, "--model", "ns")
    assert batch.exit_code == 1
    assert (
        f"(to keep both: -o {tmp_path / 'photos_inpainted_ns'}{os.sep}; to redo it: --overwrite)"
        in batch.stderr
    )


# --- killed mid-batch ------------------------------------------------------------------------------

KILL_COUNT = 40
KILL_SIZE = 96


@pytest.fixture
def long_batch(tmp_path: Path) -> tuple[Path, Path, Path]:
    folder, mask = tmp_path / "in", tmp_path / "defect.png"
    folder.mkdir()
    for index in range(KILL_COUNT):
        Image.fromarray(noise((KILL_SIZE, KILL_SIZE, 3), seed=index)).save(folder / f"scan {index:03d}.png")
    save_mask(mask, make_hole(KILL_SIZE, KILL_SIZE))
    return folder, mask, tmp_path / "out"


def batch_command(folder: Path, mask: Path, out: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "inpaint_cli", "run", str(folder), "--mask", str(mask), "-o", str(out)]
    return [*command, "--model", "telea", "-q", "--jobs", "2", *extra]


def start_batch(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
        preexec_fn=interruptible,
    )


def visible_outputs(out: Path) -> list[Path]:
    return sorted(path for path in out.iterdir() if not path.name.startswith(".")) if out.exists() else []


def wait_for_outputs(process: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(visible_outputs(out)) < count and process.poll() is None:
        assert time.monotonic() < deadline, "the batch wrote nothing"
        time.sleep(0.005)


def hidden_files(out: Path) -> list[str]:
    """Temporary files and provenance records: a finished run leaves only the records."""
    return sorted(path.name for path in out.iterdir() if path.name.startswith("."))


def assert_all_complete(out: Path) -> None:
    for path in visible_outputs(out):
        assert path.name.startswith("scan ") and path.suffix == ".png", path
        assert imageio.read_image(path).pixels.shape == (KILL_SIZE, KILL_SIZE, 3)  # decodes to the end


@pytest.mark.slow
def test_sigkill_mid_batch_leaves_only_complete_outputs_and_a_rerun_finishes(
    long_batch: tuple[Path, Path, Path],
) -> None:
    folder, mask, out = long_batch
    command = batch_command(folder, mask, out)
    process = start_batch(command)
    wait_for_outputs(process, out, 3)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert_all_complete(out)
    finished = visible_outputs(out)
    assert len(finished) < KILL_COUNT, "the batch ended before it could be killed"
    # An output renamed into place just before the kill, with its record still saying "not complete",
    # is redone (it is ours); the others are skipped.
    complete = [path for path in finished if provenance.read_record(path)["complete"]]
    # A write cut short by the kill: a temporary file (named as `atomic_path` names them) nobody holds.
    (out / f".scan {KILL_COUNT - 1:03d}.0badc0de.part.png").write_bytes(b"\x89PNG half")

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert rerun.returncode == 0, rerun.stderr
    assert len(rerun.stdout.splitlines()) == KILL_COUNT - len(complete)
    assert hidden_files(out) == sorted(provenance.record_path(path).name for path in visible_outputs(out))
    assert len(visible_outputs(out)) == KILL_COUNT
    assert_all_complete(out)


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery")
def test_ctrl_c_writes_the_report_so_far_and_exits_130(
    long_batch: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    folder, mask, out = long_batch
    report = tmp_path / "report.json"
    process = start_batch(batch_command(folder, mask, out, "--report", str(report)))
    # Wait for a condition, not a time: two outcomes reported (-q prints each written output), however
    # slow the machine. The batch is then still running: each image takes longer than reading a line.
    reported = [process.stdout.readline() for _ in range(2)]
    assert all(reported) and process.poll() is None, "the batch ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    written = json.loads(report.read_text())
    summary = written["summary"]
    done = {record["output"] for record in written["inputs"] if record["status"] == "done"}
    # Every output printed before or while stopping is in the report, every output on disk is one of
    # the report's, and every input is either done or listed as not run: nothing is lost or unaccounted.
    assert {line.strip() for line in [*reported, *rest.splitlines()]} <= done
    assert {str(path) for path in visible_outputs(out)} == done and len(done) >= 2
    assert summary["done"] + summary["not_run"] == KILL_COUNT
    assert hidden_files(out) == sorted(provenance.record_path(path).name for path in visible_outputs(out))
    assert_all_complete(out)


# --- nothing the run reads is ever written (issue 12 §1) -------------------------------------------------


@pytest.fixture
def users_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A photo, its mask under several names a run could write, and a small batch; cwd is their folder."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(noise((HEIGHT, WIDTH, 3))).save("p.png")
    for name in ["m.png", "p_inpainted.png", "p_inpainted_panel.png"]:
        save_mask(tmp_path / name, make_hole())
    for folder in ["in", "in2"]:
        (tmp_path / folder).mkdir()
        Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=1)).save(tmp_path / folder / "a.png")
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=2)).save(tmp_path / "in2/a_panel.png")
    save_mask(tmp_path / "masks/a.png", make_hole())
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "p.png --mask m.png -o o.png --report p.png",
            "p.png: is the image and cannot be the report (choose another --report)",
        ),
        (
            "p.png --mask m.png -o m.png --overwrite",
            "m.png: is the mask of p.png and cannot be the output (choose another -o)",
        ),
        (
            "p.png --mask p_inpainted.png --overwrite",
            "p_inpainted.png: is the mask of p.png and cannot be the output (choose another -o)",
        ),
        (
            "p.png --mask p_inpainted_panel.png --panel",
            "p_inpainted_panel.png: is the mask of p.png and cannot be the panel (choose another -o)",
        ),
        (
            "in --mask masks -o out --report in/a.png",
            "in/a.png: is an input image and cannot be the report (choose another --report)",
        ),
        (
            "p.png --mask m.png -o p.png --overwrite",
            "p.png: is the image and cannot be the output (choose another -o)",
        ),
        (
            "in2 --mask m.png -o out2 --panel",
            "out2/a_panel.png: is the panel of in2/a.png and cannot be the output of in2/a_panel.png "
            "(choose another -o)",
        ),
    ],
)
def test_nothing_the_run_reads_is_written_and_no_two_writes_share_a_target(
    users_files: Path, args: str, message: str
) -> None:
    before = tree_hashes(users_files)

    result = invoke(*args.split(), "--model", "telea")

    assert result.exit_code == 2, result.stderr
    assert result.stderr == f"error: {message}\n"
    assert tree_hashes(users_files) == before  # byte-identical, and nothing new written


def test_the_checkpoint_is_never_a_target(users_files: Path) -> None:
    shutil.copy(Path(__file__).parents[2] / "inpaint_cli/bundled/pconv-tiny.safetensors", "w.safetensors")
    before = tree_hashes(users_files)
    result = invoke("p.png", "--mask", "m.png", "--checkpoint", "w.safetensors", "--report", "w.safetensors")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: w.safetensors: is the checkpoint and cannot be the report (choose another --report)\n"
    )
    assert tree_hashes(users_files) == before


def test_writes_are_checked_before_anything_runs(users_files: Path) -> None:
    before = tree_hashes(users_files)
    for args, message in [
        (["--report", "."], "error: .: the report must be a file, not a folder (give --report a file name)"),
        (
            ["--save-intermediates", "m.png"],
            "error: m.png: the intermediates folder must be a folder, not a file "
            "(choose another --save-intermediates)",
        ),
        (
            ["-o", "m.png/out.png"],
            "error: m.png/out.png: m.png is ",  # not a folder
        ),
    ]:
        result = invoke("in", "--mask", "masks", "-o", "out", "--model", "telea", *args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith(message), result.stderr
        assert tree_hashes(users_files) == before and not Path("out").exists()


def test_an_unwritable_report_folder_is_refused_before_any_output(
    users_files: Path, unwritable: Path
) -> None:
    result = invoke(
        "in", "--mask", "masks", "-o", "out", "--model", "telea", "--report", unwritable / "r.json"
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {unwritable / 'r.json'}: cannot write into {unwritable} (")
    assert not Path("out").exists()


def test_output_paths_a_trailing_slash_a_file_name_for_a_folder_and_missing_parents(
    users_files: Path,
) -> None:
    single = invoke("in", "--mask", "masks", "-o", "single.png", "--model", "telea")
    assert single.exit_code == 2
    assert single.stderr.startswith("error: single.png: -o names an image file, but the input is a folder")
    typo = invoke("p.png", "--mask", "m.png", "-o", "typo/deeper/o.png", "--model", "telea")
    assert typo.exit_code == 2 and "folder typo/deeper does not exist" in typo.stderr
    report = invoke("p.png", "--mask", "m.png", "-o", "o.png", "--report", "typo/r.json", "--model", "telea")
    assert report.exit_code == 2 and "folder typo does not exist" in report.stderr
    assert not Path("single.png").exists() and not Path("typo").exists() and not Path("o.png").exists()

    into = invoke("in", "--mask", "masks", "-o", "new", "--model", "telea")  # the folder itself is created
    assert into.exit_code == 0, into.stderr
    assert Path("new/a.png").is_file()
    # A trailing slash (kept from the command line, even on a name with a dot), or no extension:
    # a folder for a single image too.
    for folder in ["dir/", "plain", "out.d/"]:
        single_into = invoke("p.png", "--mask", "m.png", "-o", folder, "--model", "telea")
        assert single_into.exit_code == 0, single_into.stderr
        assert sorted(path.name for path in Path(folder).iterdir()) == [
            ".p_inpainted.png.inpaint.json",
            "p_inpainted.png",
        ]
    assert not Path("out.d").is_file()


def test_a_file_name_with_a_newline_stays_one_line(users_files: Path) -> None:
    Image.fromarray(noise((HEIGHT, WIDTH, 3))).save(Path("in") / "bad\nname.png")

    result = invoke("in", "--mask", "masks", "-o", "out", "--model", "telea", "-q")

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: in/bad\\nname.png: no mask found (looked for masks/bad\\nname.* and masks/bad\\nname_mask*.*)"
    ]


def test_only_the_first_frame_of_an_apng_or_a_multipage_tiff_is_used_with_a_warning(
    users_files: Path,
) -> None:
    frames = [Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=seed)) for seed in (5, 6, 7)]
    frames[0].save("anim.png", save_all=True, append_images=frames[1:])
    frames[0].save("pages.tif", save_all=True, append_images=frames[1:2])
    for name, what in [("anim.png", "has 3 frames"), ("pages.tif", "has 2 pages")]:
        result = invoke(name, "--mask", "m.png", "--model", "telea")
        assert result.exit_code == 0, result.stderr
        assert f"warning: {name}: {what}; only the first is used" in result.stderr
        output = Image.open(Path(name).with_name(f"{Path(name).stem}_inpainted{Path(name).suffix}"))
        assert getattr(output, "n_frames", 1) == 1


def test_max_pixels_applies_to_masks_before_they_are_decoded(users_files: Path) -> None:
    Path("huge_mask.png").write_bytes(huge_png_header(16000, 15000))  # 240 MP declared, 60 bytes on disk
    too_many = invoke(
        "p.png", "--mask", "huge_mask.png", "-o", "o.png", "--model", "telea", "--max-pixels", "1000000"
    )
    assert too_many.exit_code == 1
    assert too_many.stderr.startswith("error: huge_mask.png: image has more than 1,000,000 pixels")
    # Under the limit it is refused for its size, read from the header: never decoded (it holds no pixels).
    wrong = invoke("p.png", "--mask", "huge_mask.png", "-o", "o.png", "--model", "telea")
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith(
        "error: p.png: its mask huge_mask.png is 16000x15000 but the image is 40x32"
    )


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG that declares a grey image of this size and holds one empty data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# --- resume with other settings (issue 12 §4) -------------------------------------------------------------


def test_resume_with_another_model_refuses_outputs_made_with_the_first(tmp_path: Path) -> None:
    folder, mask, out = tmp_path / "in", tmp_path / "defect.png", tmp_path / "out"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=index)).save(folder / f"{index}.png")
    save_mask(mask, make_hole())
    first = invoke(folder, "--mask", mask, "-o", out, "--model", "gatedconv-tiny", "--panel")
    assert first.exit_code == 0, first.stderr
    (out / "2.png").unlink()  # as if the first run was stopped before it
    (out / "0_panel.png").unlink()  # a panel lost: recreated by a resume with the same settings
    made_by_gatedconv = tree_hashes(out)

    mixed = invoke(
        folder, "--mask", mask, "-o", out, "--model", "telea", "--panel", "--report", tmp_path / "r.json"
    )

    assert mixed.exit_code == 1
    records = {Path(r["image"]).name: r for r in json.loads((tmp_path / "r.json").read_text())["inputs"]}
    assert records["2.png"]["status"] == "done" and records["2.png"]["provenance"]["model"] == "telea"
    for name in ["0.png", "1.png"]:
        assert records[name]["status"] == "failed"
        assert records[name]["error"].startswith(
            f"{out / name}: output made with other settings: model gatedconv-tiny (now telea), "
            "weights sha256 "
        )
        assert records[name]["error"].endswith(f"(to keep both: -o {out}_telea/; to redo it: --overwrite)")
        assert (out / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
    assert {name: made_by_gatedconv[name] for name in ["0.png", "1.png", "1_panel.png"]} == {
        name: tree_hashes(out)[name] for name in ["0.png", "1.png", "1_panel.png"]
    }

    same = invoke(
        folder,
        "--mask",
        mask,
        "-o",
        out,
        "--model",
        "gatedconv-tiny",
        "--panel",
        "--report",
        tmp_path / "r.json",
    )
    assert same.exit_code == 1  # 2.png is telea's now
    statuses = {
        Path(r["image"]).name: r["status"] for r in json.loads((tmp_path / "r.json").read_text())["inputs"]
    }
    assert statuses == {
        "0.png": "done",
        "1.png": "skipped",
        "2.png": "failed",
    }  # 0.png: its panel was missing
    assert (out / "0_panel.png").is_file() and tree_hashes(out)["0.png"] == made_by_gatedconv["0.png"]

    redo = invoke(folder, "--mask", mask, "-o", out, "--model", "telea", "--panel", "--overwrite")
    assert redo.exit_code == 0, redo.stderr
    assert {provenance.read_record(out / f"{index}.png")["provenance"]["model"] for index in range(3)} == {
        "telea"
    }
