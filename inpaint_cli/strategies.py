"""How an image is cut into network passes: which boxes, at which scale.

A plan is a list of `Box`es. The engine cuts each box out of the image (still uint8/uint16),
resizes it when the box's scale is below 1, runs the network, and pastes back hole pixels only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np


class Strategy(str, Enum):
    AUTO = "auto"
    FULL = "full"
    CROP = "crop"
    TILE = "tile"
    RESIZE = "resize"


@dataclass(frozen=True)
class Box:
    """A rectangle of the image [top, bottom) × [left, right), processed at `scale` (1 = native)."""

    top: int
    left: int
    bottom: int
    right: int
    scale: float = 1.0

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def scaled_size(self) -> tuple[int, int]:
        """(height, width) of the box as the network sees it."""
        return max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale))


def whole_image(hole: np.ndarray, scale: float = 1.0) -> list[Box]:
    height, width = hole.shape
    return [Box(0, 0, height, width, scale)]


def scale_to_fit(height: int, width: int, max_side: int | None) -> float:
    """The largest scale <= 1 that brings the longer side down to `max_side`."""
    if not max_side or max(height, width) <= max_side:
        return 1.0
    return max_side / max(height, width)


SHRINK_STEP = math.sqrt(0.5)
"""Each automatic downscale halves the pixel count."""


def shrink_until(
    fits: Callable[[int, int], bool], height: int, width: int, step: float = SHRINK_STEP
) -> float:
    """Largest scale in a geometric series 1, step, step², ... for which `fits(h, w)` is true."""
    scale = 1.0
    while not fits(max(1, round(height * scale)), max(1, round(width * scale))):
        scale *= step
        if min(height, width) * scale < 1:
            raise ValueError("no scale fits")
    return scale
