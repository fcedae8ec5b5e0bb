"""The bundled detector on small crops of real scanned prints (tests/data/detect/SOURCES.md): a crack
network is marked, undamaged old prints are left alone. (The thin cracks of `cracked_b.png` are not
found at the bundled settings: lines shorter than 160 px are dropped to keep clean photos quiet.)"""

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


def test_the_crack_network_of_a_real_print_is_marked_and_it_is_the_light_paper(
    detector: NetworkDetector,
) -> None:
    pixels = crop("cracked_d.png")
    mask = detector.detect(pixels).mask
    assert mask.mean() >= 0.03, mask.mean()  # measured 4.4 %: the widest cracks and the torn corner
    grey = pixels.mean(axis=2)
    # The cracks show the paper: what is marked is far lighter than the print (measured 237 against 94).
    assert grey[mask].mean() > grey[~mask].mean() + 100


@pytest.mark.parametrize("name", ["clean_h.png", "clean_b.png"])
def test_an_undamaged_old_print_is_left_alone(detector: NetworkDetector, name: str) -> None:
    assert detector.detect(crop(name)).no_damage  # busy beard, check cloth, foliage, grain
