"""`inpaint detect` end to end: what it refuses to write (#27), resuming a killed batch, the review page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from inpaint_cli.cli.app import app


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
    for args, target in [([single], single), ([tmp_path / "in"], folder_photo)]:
        before = target.read_bytes()
        result = detect(*args, "--detector", "classical", "--report", target)
        assert result.exit_code == 2, result.output
        assert result.output.strip().endswith(
            f"{target}: is an input image and cannot be the report (choose another --report)"
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
