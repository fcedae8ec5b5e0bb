"""`inpaint run --mask auto` end to end: detect, grow, fill, save the mask and the probability map."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from detect_helpers import grey_levels, scratched, smooth_photo
from PIL import Image


def _run(*args: object):
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    return CliRunner().invoke(app, ["run", *map(str, args)])


def test_run_mask_auto_detects_dilates_fills_and_saves_the_mask(tmp_path: Path) -> None:
    import cv2

    from inpaint_cli.detect.classical import ClassicalDetector

    damaged, truth = scratched(smooth_photo())
    Image.fromarray(damaged).save(tmp_path / "photo.png")
    out = tmp_path / "out.png"
    args = ["--mask", "auto", "--detector", "classical", "--model", "telea", "--save-mask", "--panel"]
    result = _run(tmp_path / "photo.png", *args, "-o", out)
    assert result.exit_code == 0, result.output
    detected = ClassicalDetector().detect(damaged).mask
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))  # the classical default: 2 px
    expected = cv2.dilate(detected.view(np.uint8), disc).astype(bool)
    saved = grey_levels(tmp_path / "out_mask.png") == 255
    assert np.array_equal(saved, expected)
    assert (saved & truth).sum() / truth.sum() > 0.95
    filled = np.asarray(Image.open(out))
    assert np.array_equal(filled[~saved], damaged[~saved])  # only the detected damage changes
    assert np.abs(filled[truth].astype(int) - damaged[truth].astype(int)).mean() > 40  # white scratch gone
    panel = Image.open(tmp_path / "out_panel.png")
    assert panel.width > 3 * 320  # input | mask | result
    # --dilate 0: the detector's own mask.
    assert _run(tmp_path / "photo.png", *args, "-o", tmp_path / "raw.png", "--dilate", "0").exit_code == 0
    assert np.array_equal(grey_levels(tmp_path / "raw_mask.png") == 255, detected)


def test_run_mask_auto_saves_the_probability_map_with_the_intermediates(tmp_path: Path) -> None:
    from safetensors.numpy import load_file as load_numpy

    from inpaint_cli.detect.classical import ClassicalDetector

    damaged, _ = scratched(smooth_photo())
    Image.fromarray(damaged).save(tmp_path / "photo.png")
    folder = tmp_path / "inter"
    args = ["--mask", "auto", "--detector", "classical", "--model", "telea", "--save-intermediates", folder]
    result = _run(tmp_path / "photo.png", *args, "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    expected = ClassicalDetector().detect(damaged).probability
    saved = load_numpy(folder / "photo" / "probability.safetensors")["probability"]
    assert saved.dtype == np.float32 and np.array_equal(saved, expected)
    picture = grey_levels(folder / "photo" / "probability.png")
    assert np.array_equal(picture, np.round(expected * 255).astype(np.uint8))
    assert picture.max() > 127 and (picture > 127).mean() < 0.05  # the scratch and dust, not the photo
    # Without --save-intermediates, nothing of the kind is written.
    assert _run(tmp_path / "photo.png", *args[:-2], "-o", tmp_path / "b.png").exit_code == 0
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == ["b.png", "inter", "out.png", "photo.png"]
    assert sorted(p.name for p in (folder / "photo").iterdir()) == [
        "probability.png",
        "probability.safetensors",
    ]


def test_run_mask_auto_copies_a_clean_folder_through(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    clean = smooth_photo(grain=6.0, seed=2)
    Image.fromarray(clean).save(photos / "clean.png")
    damaged, _ = scratched(smooth_photo(seed=3))
    Image.fromarray(damaged).save(photos / "old.png")
    out, report, page = tmp_path / "restored", tmp_path / "report.json", tmp_path / "page.html"
    auto = ("--mask", "auto", "--detector", "classical", "--model", "telea")
    result = _run(photos, *auto, "-o", out, "--report", report, "--html", page)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "no damage found; image copied through" in said
    assert "clean.png (no damage found: the photo copied through)" in said
    assert re.search(r"no damage found \(copied through\) │ 1 ", said)  # the batch summary counts it
    assert np.array_equal(np.asarray(Image.open(out / "clean.png")), clean)
    assert not np.array_equal(np.asarray(Image.open(out / "old.png")), damaged)
    records = {
        Path(r["image"]).name: r.get("no_damage", False) for r in json.loads(report.read_text())["inputs"]
    }
    assert records == {"clean.png": True, "old.png": False}
    assert '"s":"no damage found"' in page.read_text()  # its status on the review page
