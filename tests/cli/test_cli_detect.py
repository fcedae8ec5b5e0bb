"""`inpaint detect` end to end: what it refuses to write (#27), resuming a killed batch, the review page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from detect_helpers import DATA, EXAMPLES, SMALL, grey_levels, scratched, smooth_photo
from PIL import Image
from typer.testing import CliRunner

from inpaint_cli.cli.app import app
from inpaint_cli.detect.network import Mode, NetworkDetector
from inpaint_cli.imaging import imageio


def detect(*args: object):
    return CliRunner().invoke(app, ["detect", *map(str, args)])


def photo(path: Path, seed: int = 0) -> Path:
    """A 64×80 photo with a bright scratch (the classical detector finds it)."""
    pixels = np.random.default_rng(seed).normal(120, 4, (64, 80, 3)).clip(0, 255).astype(np.uint8)
    pixels[30:32, 5:75] = 250
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_the_report_is_never_written_over_an_input(tmp_path: Path) -> None:
    """#27: `detect a.png --report a.png` and `detect in --report in/a.png` wrote JSON over the photo."""
    single = photo(tmp_path / "a.png")
    folder_photo = photo(tmp_path / "in" / "a.png", seed=1)
    for args, target, role in [
        ([single], single, "the image"),
        ([tmp_path / "in"], folder_photo, "an input image"),
    ]:
        before = target.read_bytes()
        result = detect(*args, "--detector", "classical", "--report", target)
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (
            f"error: {target}: is {role} and cannot be the report (choose another --report)"
        )
        assert target.read_bytes() == before
    assert not (tmp_path / "a_mask.png").exists() and not (tmp_path / "in_masks").exists()


def test_intermediates_never_replace_a_photo_of_the_batch(tmp_path: Path) -> None:
    """#27: `detect in -r --save-intermediates in` with in/a.png and a photo in/a/probability.png
    overwrote the photo with a.png's probability map."""
    photo(tmp_path / "in" / "a.png")
    inner = photo(tmp_path / "in" / "a" / "probability.png", seed=2)
    before = inner.read_bytes()
    result = detect(tmp_path / "in", "-r", "--detector", "classical", "--save-intermediates", tmp_path / "in")
    assert result.exit_code == 2, result.output
    role = f"the intermediates folder of {tmp_path / 'in' / 'a.png'}"
    assert result.output.strip() == (
        f"error: {inner}: is an input image and cannot be {role} (choose another --save-intermediates)"
    )
    assert inner.read_bytes() == before


def test_an_existing_overlay_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    """#27: `detect photo.png` rewrote an existing `photo_overlay.jpg` it did not make."""
    image = photo(tmp_path / "photo.png")
    overlay = tmp_path / "photo_overlay.jpg"
    overlay.write_bytes(b"my own picture")
    result = detect(image, "--detector", "classical")
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {overlay}: overlay exists (use --overwrite to replace it)"
    assert overlay.read_bytes() == b"my own picture" and not (tmp_path / "photo_mask.png").exists()
    assert detect(image, "--detector", "classical", "--overwrite").exit_code == 0
    assert Image.open(overlay).format == "JPEG"


def test_a_mask_corrected_by_hand_is_kept_even_with_overwrite(tmp_path: Path) -> None:
    """A mask saved by `inpaint edit` exists nowhere else: `detect --overwrite` replaced it silently."""
    from inpaint_cli.imaging.masks import write_mask
    from inpaint_cli.review.editor import records

    photo(tmp_path / "in" / "a.png")
    photo(tmp_path / "in" / "b.png", seed=1)
    masks = tmp_path / "masks"
    assert detect(tmp_path / "in", "-o", masks, "--detector", "classical").exit_code == 0
    edited = masks / "a_mask.png"
    original = records.original_path(edited)
    original.write_bytes(edited.read_bytes())
    hole = np.zeros((64, 80), bool)
    hole[10:20, 10:20] = True  # what the person painted
    write_mask(edited, hole)
    records.write_edit_record(edited, records.new_record(edited, no_damage=False, originals=(original.name,)))
    before = edited.read_bytes()
    for extra in ([], ["--overwrite"]):
        result = detect(tmp_path / "in", "-o", masks, "--detector", "classical", *extra)
        assert result.exit_code == 1, result.output
        assert (
            f"error: {edited}: edited by hand (inpaint edit), so kept (delete it to detect again; the "
            f"detector's mask is kept as {original.name})"
        ) in result.output
        assert edited.read_bytes() == before and records.hand_edit(edited) is not None
    assert detect(tmp_path / "in", "-o", masks, "--detector", "classical", "--overwrite").exit_code == 1


def test_run_takes_detect_overlays_for_neither_masks_nor_unused(tmp_path: Path) -> None:
    """`run photos --mask masks` on a folder `detect` wrote listed every `_overlay.jpg` as an unused mask."""
    photo(tmp_path / "in" / "a.png")
    masks = tmp_path / "masks"
    assert detect(tmp_path / "in", "-o", masks, "--detector", "classical").exit_code == 0
    assert (masks / "a_overlay.jpg").is_file()
    (masks / "orphan_overlay.jpg").write_bytes((masks / "a_overlay.jpg").read_bytes())  # no mask beside it
    report = tmp_path / "report.json"
    out = tmp_path / "out"
    args = ["run", tmp_path / "in", "--mask", masks, "--model", "telea", "-o", out, "--report", report]
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["unused_masks"] == [str(masks / "orphan_overlay.jpg")]


def test_detect_one_image_with_the_official_checkpoint(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes((DATA / "case_b_image.png").read_bytes())
    result = detect(image, "--checkpoint", SMALL, "--official-scale")
    assert result.exit_code == 0, result.output
    mask = grey_levels(tmp_path / "photo_mask.png")
    assert mask.shape == (300, 420) and set(np.unique(mask)) == {0, 255}
    expected = NetworkDetector.from_file(SMALL).detect(imageio.read_image(image).pixels, Mode.FULL_SIZE)
    assert np.array_equal(mask == 255, expected.mask)
    assert f"{expected.fraction:.2%} damaged" in result.output
    overlay = np.asarray(Image.open(tmp_path / "photo_overlay.jpg").convert("RGB")).astype(int)
    original = imageio.read_image(image).pixels.astype(int)
    # Damage is tinted red, the rest is the photo (up to JPEG, whose colour bleeds next to red).
    assert (overlay[expected.mask, 0] - overlay[expected.mask, 1]).mean() > 60
    assert np.median(np.abs(overlay[~expected.mask] - original[~expected.mask])) <= 3
    # A second run refuses to replace the mask of a single image; --overwrite does.
    again = detect(image, "--checkpoint", SMALL, "--official-scale")
    assert again.exit_code == 1
    assert (
        f"error: {tmp_path / 'photo_mask.png'}: mask exists (use --overwrite to replace it)" in again.output
    )
    assert detect(image, "--checkpoint", SMALL, "--overwrite", "--threshold", "0.99").exit_code == 0
    assert (grey_levels(tmp_path / "photo_mask.png") == 255).sum() < expected.mask.sum()


def test_detect_masks_have_the_upright_size_of_exif_rotated_photos(tmp_path: Path) -> None:
    damaged, truth = scratched(smooth_photo())
    picture = Image.fromarray(np.ascontiguousarray(np.rot90(damaged)))  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and tagged "rotate 90° clockwise to view"
    picture.save(tmp_path / "scan.jpg", quality=98, exif=exif.tobytes())
    result = detect(tmp_path / "scan.jpg", "--detector", "classical", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    mask = grey_levels(tmp_path / "out" / "scan_mask.png") == 255
    assert mask.shape == truth.shape == (240, 320)
    assert (mask & truth).sum() / truth.sum() > 0.8 and (mask & truth).sum() / mask.sum() > 0.8


def test_detect_a_folder_recursively_resumes_and_reports(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "album").mkdir(parents=True)
    damaged, _ = scratched(smooth_photo())
    Image.fromarray(damaged).save(photos / "a.png")
    Image.fromarray(smooth_photo(grain=6.0, seed=1)).save(photos / "album" / "clean.png")
    (photos / "album" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(photos / "a_mask.png")  # a mask, not a photo
    report = tmp_path / "report.json"

    dry = detect(photos, "--detector", "classical", "-r", "--dry-run")
    assert dry.exit_code == 0
    masks = tmp_path / "photos_masks"
    assert dry.output.splitlines() == [
        f"{photos / 'a.png'}\t{masks / 'a_mask.png'}\tdetect",
        f"{photos / 'album' / 'broken.jpg'}\t{masks / 'album' / 'broken_mask.png'}\tdetect",
        f"{photos / 'album' / 'clean.png'}\t{masks / 'album' / 'clean_mask.png'}\tdetect",
    ]
    assert not masks.exists()

    result = detect(photos, "--detector", "classical", "-r", "--report", report)
    assert result.exit_code == 1
    assert f"error: {photos / 'album' / 'broken.jpg'}: " in result.output
    assert "Traceback" not in result.output
    assert "no damage found" in result.output
    assert "2 done (1 without damage), 0 skipped, 1 failed" in result.output
    assert not grey_levels(masks / "album" / "clean_mask.png").any()
    assert (grey_levels(masks / "a_mask.png") == 255).sum() > 500
    records = {Path(r["image"]).name: r for r in json.loads(report.read_text())["inputs"]}
    assert records["clean.png"]["no_damage"] is True and records["clean.png"]["damage_fraction"] == 0
    assert records["a.png"]["damage_fraction"] > 0.005 and records["broken.jpg"]["status"] == "failed"

    written = (masks / "a_mask.png").stat().st_mtime_ns
    rerun = detect(photos, "--detector", "classical", "-r")
    assert rerun.exit_code == 1  # the broken file fails again; the others are skipped
    assert "0 done (0 without damage), 2 skipped, 1 failed" in rerun.output
    assert (masks / "a_mask.png").stat().st_mtime_ns == written


def test_detect_saves_the_probability_map(tmp_path: Path) -> None:
    from safetensors.numpy import load_file as load_numpy

    image = tmp_path / "photo.png"
    image.write_bytes((DATA / "case_b_image.png").read_bytes())
    folder = tmp_path / "intermediates"
    result = detect(image, "--checkpoint", SMALL, "--official-scale", "--save-intermediates", folder)
    assert result.exit_code == 0, result.output
    probability = load_numpy(folder / "photo" / "probability.safetensors")["probability"]
    expected = NetworkDetector.from_file(SMALL).probability(imageio.read_image(image).pixels, Mode.FULL_SIZE)
    assert np.array_equal(probability, expected)
    assert np.array_equal(
        grey_levels(folder / "photo" / "probability.png"), np.round(expected * 255).astype(np.uint8)
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.png"], 2, "missing.png: no such file or folder"),
        (["{image}", "--detector", "classical", "--checkpoint", "{image}"], 2, "takes no --checkpoint"),
        (["{image}", "--checkpoint", "{image}"], 1, "error: {image}: "),
        (["{image}", "--threshold", "1.5"], 2, "error: --threshold 1.5 is out of range (between 0 and 1)"),
    ],
)
def test_detect_bad_usage_is_one_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes((DATA / "case_b_image.png").read_bytes())
    result = detect(
        *(a.format(image=image) if "{" in a else str(tmp_path / a) if a == "missing.png" else a for a in args)
    )
    assert result.exit_code == code, result.output
    assert message.format(image=image) in " ".join(result.output.split())
    assert "Traceback" not in result.output
    if "error:" in result.output:
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "photo_mask.png").exists()


def test_scratch_tiny_works_offline_by_default_and_leaves_the_clean_example_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INPAINT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    result = detect(EXAMPLES / "portrait_original.png", "-o", tmp_path)  # --detector scratch-tiny
    assert result.exit_code == 0, result.output
    assert "no damage found" in result.output
    # The detector of before hard-negative mining marked 1.7 % of this clean print.
    assert not grey_levels(tmp_path / "portrait_original_mask.png").any()


# --- killed mid-batch ------------------------------------------------------------------------------

KILL_COUNT = 40


@pytest.mark.slow
def test_a_killed_detect_batch_resumes_to_the_same_masks_with_provenance(tmp_path: Path) -> None:
    """#24: a killed `detect` batch left masks without provenance. Killed with SIGKILL after a few
    masks, it leaves only complete masks, each with its record; the rerun redoes only the rest, and
    every mask is the one an uninterrupted batch makes."""
    import signal
    import subprocess
    import sys
    import time

    from storage_helpers import interruptible

    from inpaint_cli.batch import provenance

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(KILL_COUNT):
        Image.fromarray(scratched(smooth_photo(seed=index))[0]).save(folder / f"scan {index:03d}.png")
    command = [sys.executable, "-m", "inpaint_cli", "detect", str(folder), "--detector", "classical", "-q"]
    uninterrupted = tmp_path / "whole"
    subprocess.run([*command, "-o", str(uninterrupted)], check=True, capture_output=True, timeout=600)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*command, "-o", str(out), "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 300
    while len(list(out.glob("*_mask.png")) if out.exists() else []) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "the batch wrote nothing"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    masks = sorted(out.glob("*_mask.png"))
    assert 3 <= len(masks) < KILL_COUNT, "the batch ended before it could be killed"
    complete = [mask for mask in masks if provenance.read_record(mask)["complete"]]
    for mask in masks:
        assert provenance.read_record(mask)["kind"] == "detect"  # written before the mask itself
        assert grey_levels(mask).shape == (240, 320)  # decodes to the end: renamed into place whole

    rerun = subprocess.run([*command, "-o", str(out)], capture_output=True, text=True, timeout=600)

    assert rerun.returncode == 0, rerun.stderr
    assert len(rerun.stdout.splitlines()) == KILL_COUNT - len(complete)  # -q: the masks it wrote
    for mask in sorted(uninterrupted.glob("*_mask.png")):
        resumed = out / mask.name
        assert np.array_equal(grey_levels(resumed), grey_levels(mask)), mask.name
        record = provenance.read_record(resumed)
        assert record["complete"] and record["provenance"]["model"] == "classical"
    assert not [path.name for path in out.iterdir() if ".part" in path.name]
