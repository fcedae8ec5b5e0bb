"""The training tools' synthetic damage (`tools/damage.py`): truth masks say exactly what was painted,
and the photograph's own lines (the hard negatives) are never in them."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import damage


def flat_photo(value: int = 120, size: int = 128) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


@pytest.mark.parametrize("kind", [k for k in damage.KINDS if k not in ("fold", "foxing")])
def test_damage_changes_pixels_only_where_its_layer_paints(kind: str) -> None:
    # A fold also shades the ridge beside its line, and foxing fades into a halo fainter than the
    # truth's TRUTH_ALPHA (neither is damage); every other kind paints its layer only. Over noise,
    # whatever is painted differs from what was there.
    image = np.random.default_rng(0).uniform(0, 1, (192, 192, 3)).astype(np.float32)
    painted, truth = damage.add_damage(image, kind, np.random.default_rng(7))
    assert truth.any(), kind
    changed = np.abs(painted - image).max(axis=2) > 0.02
    near_truth = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    # Anti-aliased edges and a crack's shadowed rim may touch pixels just outside the truth.
    assert np.count_nonzero(changed & ~near_truth) <= 0.01 * changed.size, kind
    assert np.count_nonzero(changed & truth) >= 0.8 * np.count_nonzero(truth), kind


def gradient_photo(size: int = 128) -> np.ndarray:
    """Dark to light across, as float32 RGB in [0, 1]."""
    return np.repeat(np.linspace(0.1, 0.9, size, dtype=np.float32)[None, :, None], size, axis=0).repeat(3, 2)


def test_scene_lines_draw_into_the_photograph_and_are_no_damage() -> None:
    rng = np.random.default_rng(3)
    photo = gradient_photo()
    drawn = [damage.scene_lines(photo, rng) for _ in range(20)]
    assert all(d.shape == photo.shape and d.dtype == np.float32 for d in drawn)
    assert all(d.min() >= 0 and d.max() <= 1 for d in drawn)
    changed = [np.count_nonzero(np.abs(d - photo).max(axis=2) > 0.05) for d in drawn]
    assert sum(0 < c < 0.6 * photo.shape[0] ** 2 for c in changed) >= 15
    pixels, truths = damage.synthesize(flat_photo(), [], np.random.default_rng(4), lines=True)
    assert pixels.shape == (128, 128, 3) and truths == {}


def test_scene_lines_take_the_photographs_tones_not_paper_white() -> None:
    # On a dark picture with a strip of mid-grey, scene lines are at most about as light as its
    # lightest tone (a tint may lift a channel by 30 %), whereas light scratches mostly show paper.
    photo = np.full((128, 128, 3), 0.1, np.float32)
    photo[:8] = 0.4
    rng = np.random.default_rng(11)
    assert max(float(damage.scene_lines(photo, rng).max()) for _ in range(30)) <= 0.4 * 1.3 + 1e-6
    lightest = []
    for seed in range(20):
        scratched, truth = damage.add_damage(photo, "scratch_light", np.random.default_rng(seed))
        lightest.append(float(scratched[truth].max()) if truth.any() else 0.0)
    assert sum(value > 0.6 for value in lightest) >= 12


def test_the_same_seed_makes_the_same_print() -> None:
    a = damage.synthesize(flat_photo(), ["crack", "dust"], np.random.default_rng(5), lines=True)
    b = damage.synthesize(flat_photo(), ["crack", "dust"], np.random.default_rng(5), lines=True)
    assert np.array_equal(a[0], b[0])
    assert all(np.array_equal(a[1][k], b[1][k]) for k in ("crack", "dust"))
