"""What every detector returns (`detect/detection.py`): the no-damage rule and the optional minimum."""

from __future__ import annotations

import numpy as np
import pytest


def test_small_real_detections_are_kept_unless_a_minimum_fraction_is_asked() -> None:
    from inpaint_cli.detect.network import finish

    probability = np.zeros((100, 100), np.float32)
    mask = np.zeros((100, 100), bool)
    mask[0, :9] = True  # 0.09 %: a thin scratch on a big scan is this small, and it is real
    kept = finish(probability, mask)
    assert not kept.no_damage and kept.fraction == pytest.approx(0.0009)
    assert finish(probability, np.zeros_like(mask)).no_damage  # nothing survived: no damage found
    dropped = finish(probability, mask, min_fraction=0.001)  # the optional minimum area
    assert dropped.no_damage and dropped.raw_fraction == pytest.approx(0.0009)
    assert np.array_equal(dropped.raw_mask, mask)
    mask[0, :10] = True  # 0.1 %: reaches the minimum
    assert finish(probability, mask, min_fraction=0.001).fraction == pytest.approx(0.001)
