"""Pixel arrays in the forms other code needs them: numpy only (no torch, no OpenCV), so detectors,
review pages and writers share one rule for 16-bit to 8-bit and for grey or alpha to RGB.
"""

from __future__ import annotations

import numpy as np


def to_8bit(samples: np.ndarray) -> np.ndarray:
    """uint8 samples of a uint8 or uint16 array (any shape): v / 257 rounded to the nearest."""
    if samples.dtype != np.uint16:
        return samples
    # round(v / 257) in integers (v / 257 is never exactly halfway: 257 is odd).
    return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 of an H×W or H×W×C uint8/uint16 array (grey replicated, alpha dropped), with one
    full-size temporary at most: review pages and grids of 240 MP scans stay a few bytes a pixel."""
    pixels = to_8bit(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])
