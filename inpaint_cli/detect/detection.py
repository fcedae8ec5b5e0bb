"""What every damage detector returns, and the small helpers they share (no torch, no OpenCV).

`detect` (networks) and `detect_classical` (top-hats) both import this module, never each other's
internals, so the detectors stay independent of one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class Mode(str, Enum):
    FULL_SIZE = "full_size"
    SCALE_256 = "scale_256"
    HIGH_RES = "high_res"


@dataclass
class Detection:
    """What a detector found in one image, at the image's size."""

    probability: np.ndarray
    """H×W float32 in [0, 1]."""
    mask: np.ndarray
    """H×W bool, True = damage: what survives the detector's post-processing (and `min_fraction`)."""
    raw_fraction: float
    """Fraction of pixels of the post-processed mask, before the optional `min_fraction`."""
    raw_mask: np.ndarray | None = None
    """The mask before the optional `min_fraction` (the same array when it is off or did not apply)."""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def no_damage(self) -> bool:
        return not self.mask.any()


def finish(probability: np.ndarray, mask: np.ndarray, min_fraction: float = 0.0) -> Detection:
    """A detection from the post-processed mask. 'No damage found' is an empty mask: nothing survived
    the post-processing. `min_fraction` (off by default) also drops masks covering less than that
    fraction of the pixels, for users who prefer to leave images with very little damage untouched."""
    raw = float(mask.mean()) if mask.size else 0.0
    kept = np.zeros_like(mask) if raw < min_fraction else mask
    return Detection(probability, kept, raw, raw_mask=mask)
