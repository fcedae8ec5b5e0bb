"""Pictures and fixtures the detection tests share (importable by name: tests/ is on pytest's path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "scratch"
SMALL = DATA / "small_detection.pt"
"""BOPBtL's detector architecture at width 2 with random weights, in the official zip container."""
SMALL_LEGACY = DATA / "small_detection_legacy.pt"
BUNDLED = ROOT / "inpaint_cli" / "bundled" / "scratch-tiny.safetensors"
EXAMPLES = ROOT / "examples"


def smooth_photo(height: int = 240, width: int = 320, grain: float = 2.0, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with film grain (8-bit RGB): nothing in it is damage."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([60 + 120 * x / width, 80 + 90 * y / height, 140 - 60 * x / width], axis=-1)
    return np.clip(base + rng.normal(0, grain, (height, width, 1)), 0, 255).round().astype(np.uint8)


def scratched(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2-px white scratch and three dark dust specks, with their exact footprint."""
    import cv2

    truth = np.zeros(photo.shape[:2], np.uint8)
    cv2.line(truth, (30, 40), (290, 200), 1, 2)
    for centre in ((60, 180), (200, 60), (250, 120)):
        cv2.circle(truth, centre, 2, 2, -1)
    damaged = photo.copy()
    damaged[truth == 1] = 250
    damaged[truth == 2] = 15
    return damaged, truth > 0


def grey_levels(path: Path) -> np.ndarray:
    """The levels of an 8-bit grey picture (a mask), checking that it is one."""
    with Image.open(path) as picture:
        assert picture.mode == "L"
        return np.asarray(picture)
