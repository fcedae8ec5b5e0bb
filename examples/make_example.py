"""Regenerate the example "old family photo": a clean aged print, the same print damaged, and its mask.

The source is scikit-image's `astronaut` sample (NASA photograph of Eileen Collins, public domain).
scikit-image is needed only here, not by the package:

    pip install scikit-image && python examples/make_example.py

Writes, beside this script, `portrait_original.png` (the undamaged print, to measure restorations
against), `portrait_damaged.png` (scratches, dust spots and a torn corner) and `portrait_mask.png`
(white = damaged = to fill). Every damaged pixel is in the mask and only those, so the pixels outside
the mask are the original ones. Deterministic: the same files every run.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SIDE = 384
SEED = 1962
HERE = Path(__file__).resolve().parent
SEPIA_SHADOW = np.array([38, 24, 14], dtype=np.float32)
SEPIA_HIGHLIGHT = np.array([246, 232, 200], dtype=np.float32)
PAPER = np.array([236, 228, 208], dtype=np.float32)


def aged_print(rgb: np.ndarray) -> np.ndarray:
    """Sepia tones between a brown shadow and a cream highlight, faded contrast, darker corners."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    grey = 0.08 + 0.84 * grey  # faded: no true black or white left
    rows, cols = np.mgrid[-1 : 1 : SIDE * 1j, -1 : 1 : SIDE * 1j]
    grey *= 1.0 - 0.22 * np.clip(rows**2 + cols**2 - 0.35, 0, None)  # vignette
    toned = SEPIA_SHADOW + grey[..., None] * (SEPIA_HIGHLIGHT - SEPIA_SHADOW)
    return np.clip(np.round(toned), 0, 255).astype(np.uint8)


def damage(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A hole mask (uint8, 255 = damaged) and the colour each damaged pixel takes."""
    mask = np.zeros((SIDE, SIDE), np.uint8)
    light = np.zeros((SIDE, SIDE), np.uint8)  # 255 where the damage is light (paper), else dark (dirt)
    for _ in range(7):  # scratches: long, thin, gently curving
        x0, y0 = rng.uniform(0, SIDE, 2)
        angle = rng.uniform(0, np.pi)
        steps = np.linspace(0, rng.uniform(90, 260), 24)
        bend = rng.uniform(-0.004, 0.004) * steps**2
        xs = x0 + steps * np.cos(angle) - bend * np.sin(angle)
        ys = y0 + steps * np.sin(angle) + bend * np.cos(angle)
        points = np.stack([xs, ys], axis=1).round().astype(np.int32)
        width = int(rng.integers(1, 4))
        cv2.polylines(mask, [points], False, 255, width, cv2.LINE_8)
        cv2.polylines(light, [points], False, 255, width, cv2.LINE_8)
    for _ in range(28):  # dust and mould spots, some dark, most light
        centre = tuple(int(v) for v in rng.integers(0, SIDE, 2))
        radius = int(rng.integers(1, 6))
        cv2.circle(mask, centre, radius, 255, -1, cv2.LINE_8)
        cv2.circle(light, centre, radius, 255 if rng.random() < 0.7 else 0, -1, cv2.LINE_8)
    # A torn-off top-right corner with a ragged edge.
    edge_y = np.linspace(0, 110, 16)
    edge_x = SIDE - 1 - (110 - edge_y) * 0.9 + rng.normal(0, 4, edge_y.size)
    tear = np.concatenate([[[SIDE - 1, 0]], np.stack([edge_x, edge_y], axis=1), [[SIDE - 1, 110]]])
    cv2.fillPoly(mask, [tear.round().astype(np.int32)], 255, cv2.LINE_8)
    cv2.fillPoly(light, [tear.round().astype(np.int32)], 255, cv2.LINE_8)
    shade = rng.normal(0, 6, (SIDE, SIDE, 1)).astype(np.float32)
    colour = np.where(light[..., None] > 0, PAPER + shade, SEPIA_SHADOW + 10 + shade)
    return mask, np.clip(np.round(colour), 0, 255).astype(np.uint8)


def main() -> None:
    from skimage.data import astronaut  # only this script needs scikit-image

    rgb = cv2.resize(astronaut(), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    original = aged_print(rgb)
    mask, colour = damage(np.random.default_rng(SEED))
    damaged = np.where(mask[..., None] > 0, colour, original)
    Image.fromarray(original).save(HERE / "portrait_original.png", optimize=True)
    Image.fromarray(damaged).save(HERE / "portrait_damaged.png", optimize=True)
    Image.fromarray(mask).save(HERE / "portrait_mask.png", optimize=True)
    print(f"hole: {(mask > 0).mean():.1%} of {SIDE}x{SIDE} pixels")


if __name__ == "__main__":
    main()
