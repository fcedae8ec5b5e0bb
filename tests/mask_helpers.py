"""Holes shared by the planner and engine tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def scratches(height: int, width: int) -> np.ndarray:
    """Three thin scratches and a speck, far apart: damage that a crop plan fills at native resolution."""
    hole = np.zeros((height, width), bool)
    hole[100:400, 200:203] = True
    hole[700:704, 900:1300] = True
    hole[850:860, 150:160] = True
    return hole


TORN_SIZE = (750, 1200)
TORN_CORNER = (slice(0, 270), slice(900, 1200))
"""Where `torn_photo`'s torn corner lies (its ragged edge stays inside)."""


def torn_photo() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(damaged, hole, original) of a 1200×750 sepia print (the example portrait's middle, enlarged)
    with a torn-off top-right corner, about 190 px deep, and five long scratches: issue 30's case."""
    import cv2
    from PIL import Image

    examples = Path(__file__).resolve().parents[1] / "examples"
    with Image.open(examples / "portrait_original.png") as picture:
        portrait = np.asarray(picture.convert("RGB"))
    original = cv2.resize(portrait[60:300], TORN_SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(7)
    mask = np.zeros(TORN_SIZE, np.uint8)
    edge_y = np.linspace(0, 260, 20)
    edge_x = 1199 - (260 - edge_y) * 1.1 + rng.normal(0, 8, edge_y.size)
    tear = np.concatenate([[[1199, 0]], np.stack([edge_x, edge_y], 1), [[1199, 260]]])
    cv2.fillPoly(mask, [tear.round().astype(np.int32)], 255)
    for _ in range(5):
        x, y = (int(v) for v in (rng.integers(0, 1100), rng.integers(300, 740)))
        end = (x + int(rng.integers(-200, 200)), y - int(rng.integers(50, 250)))
        cv2.line(mask, (x, y), end, 255, 3)
    hole = mask > 0
    damaged = original.copy()
    damaged[hole] = (236, 228, 208)  # the paper behind the print
    return damaged, hole, original
