"""The bundled detector on small crops of real scanned prints (tests/data/detect/SOURCES.md): their
cracks are marked, undamaged old prints are left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint_cli.detect.network import NetworkDetector

DATA = Path(__file__).resolve().parents[1] / "data" / "detect"
BUNDLED = Path(__file__).resolve().parents[2] / "inpaint_cli" / "bundled" / "scratch-tiny.safetensors"


@pytest.fixture(scope="module")
def detector() -> NetworkDetector:
    return NetworkDetector.from_file(BUNDLED)


def crop(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name).convert("RGB"))


@pytest.mark.parametrize(
    ("name", "least", "lighter"), [("cracked_b.png", 0.05, 40), ("cracked_d.png", 0.07, 80)]
)
def test_the_cracks_of_a_real_print_are_marked_and_they_are_the_light_paper(
    detector: NetworkDetector, name: str, least: float, lighter: float
) -> None:
    pixels = crop(name)
    mask = detector.detect(pixels).mask
    # Measured: 8.0 % of cracked_b and 10.2 % of cracked_d marked.
    assert mask.mean() >= least, mask.mean()
    grey = pixels.mean(axis=2)
    # The cracks show the paper: what is marked is lighter (measured 196 against 134, 203 against 89).
    assert grey[mask].mean() > grey[~mask].mean() + lighter


@pytest.mark.parametrize("name", ["clean_h.png", "clean_b.png"])
def test_an_undamaged_old_print_is_left_alone(detector: NetworkDetector, name: str) -> None:
    assert detector.detect(crop(name)).no_damage  # busy beard, check cloth, foliage, grain
