"""Holes shared by the planner and engine tests."""

from __future__ import annotations

import numpy as np


def scratches(height: int, width: int) -> np.ndarray:
    """Three thin scratches and a speck, far apart: damage that a crop plan fills at native resolution."""
    hole = np.zeros((height, width), bool)
    hole[100:400, 200:203] = True
    hole[700:704, 900:1300] = True
    hole[850:860, 150:160] = True
    return hole
