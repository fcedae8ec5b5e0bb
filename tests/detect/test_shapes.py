"""The network detector's post-processing by shape, on small arrays: hysteresis, skeleton length,
mean width, and the surround check for compact regions only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inpaint_cli.detect.network import NetworkDetector, Shapes, morphological_skeleton
from inpaint_cli.errors import CheckpointError
from inpaint_cli.models.scratch import ScratchConfig, ScratchUNet


def detector(**settings: float) -> NetworkDetector:
    network = ScratchUNet(ScratchConfig(in_channels=3, wf=0, depth=1))
    return NetworkDetector(network, "test", **settings)


def busy_picture(size: int = 400, seed: int = 0) -> np.ndarray:
    """Leaves-like texture: blotches of every colour, so a blob's colour continues around it."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (size // 4, size // 4, 3)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.uint8)


def test_a_one_pixel_line_is_its_own_skeleton_and_a_disk_is_compact() -> None:
    mask = np.zeros((60, 200), bool)
    mask[30, 10:190] = True
    assert np.array_equal(morphological_skeleton(mask), mask)
    shapes = Shapes.of(mask)
    assert shapes.count == 2 and shapes.length[1] == 180 and shapes.width()[1] == 1.0
    disk = np.zeros((60, 60), np.uint8)
    cv2.circle(disk, (30, 30), 14, 1, -1)
    blob = Shapes.of(disk.astype(bool))
    assert blob.area[1] == 613 and blob.width()[1] > 20  # a 613-px disk has a skeleton of a few px
    assert not blob.lines(40, 5.0)[1]


def test_the_width_of_a_line_is_between_half_and_all_of_its_thickness() -> None:
    # Odd widths leave a 1-px skeleton, even ones a 2-px one: 3 px measures 3, 4 px measures 2.
    for thickness, low, high in ((1, 1.0, 1.0), (3, 2.9, 3.0), (4, 2.0, 2.0), (7, 6.8, 7.0)):
        mask = np.zeros((80, 400), bool)
        mask[40 : 40 + thickness, 20:380] = True
        shapes = Shapes.of(mask)
        assert low <= shapes.width()[1] <= high, (thickness, shapes.width()[1])
        assert shapes.lines(100, 8.0)[1]


def test_a_long_thin_scratch_is_kept_and_a_blob_of_the_same_area_in_a_busy_region_is_not() -> None:
    rgb = busy_picture()
    probability = np.zeros(rgb.shape[:2], np.float32)
    probability[100:102, 50:350] = 0.95  # a 2-px scratch 300 px long: 600 px
    cv2.circle(probability, (200, 300), 14, 0.95, -1)  # a compact blob of about the same area (613 px)
    rules = detector(threshold=0.5, strong=0.9, min_area=1280, min_length=100, line_width=4.0)
    mask = rules.judge(probability, rgb, 0.5)
    assert mask[100:102, 50:350].all()
    assert not mask[286:315, 186:215].any()
    # The area rule alone (no shape rule) would have dropped both.
    assert not detector(threshold=0.5, strong=0.9, min_area=1280).judge(probability, rgb, 0.5).any()


def test_a_compact_spot_that_differs_all_round_is_kept_by_its_contrast() -> None:
    rgb = np.full((200, 200, 3), 120, np.uint8)
    cv2.circle(rgb, (100, 100), 12, (250, 250, 245), -1)  # a white spot on grey
    probability = np.zeros((200, 200), np.float32)
    cv2.circle(probability, (100, 100), 12, 0.95, -1)
    rules = detector(threshold=0.5, strong=0.9, min_area=100, min_length=100, line_width=4.0)
    assert rules.judge(probability, rgb, 0.5)[100, 100]
    plain = detector(
        threshold=0.5, strong=0.9, min_area=100, min_length=100, line_width=4.0, min_surround_contrast=20.0
    )
    assert plain.judge(probability, rgb, 0.5)[100, 100]  # Lab distance white-grey far above 20
    flat = np.full((200, 200, 3), 120, np.uint8)  # the same region over plain grey: nothing to see there
    assert not plain.judge(probability, flat, 0.5).any()


def test_hysteresis_keeps_a_weak_line_only_where_it_reaches_the_strong_level() -> None:
    rgb = np.full((100, 300, 3), 128, np.uint8)
    probability = np.zeros((100, 300), np.float32)
    probability[30, 20:280] = 0.6
    probability[30, 150] = 0.95
    probability[70, 20:280] = 0.6  # never strong
    mask = detector(threshold=0.5, strong=0.9, min_area=1000, min_length=50, line_width=3.0).judge(
        probability, rgb, 0.5
    )
    assert mask[30, 20:280].all() and not mask[70].any()


def test_a_short_line_is_not_a_line() -> None:
    rgb = np.full((100, 100, 3), 128, np.uint8)
    probability = np.zeros((100, 100), np.float32)
    probability[50, 40:60] = 0.95  # 20 px
    rules = detector(threshold=0.5, strong=0.9, min_area=200, min_length=40, line_width=3.0)
    assert not rules.judge(probability, rgb, 0.5).any()


@pytest.mark.parametrize(
    ("field", "value"), [("min_length", -1), ("min_length", 10**6), ("line_width", 65.0)]
)
def test_shape_settings_have_ceilings(field: str, value: float) -> None:
    with pytest.raises(CheckpointError, match=field):
        ScratchConfig(**{field: value})


class _Silent(NetworkDetector):
    """A network that finds nothing: what remains is the classical detector's."""

    def probability(self, pixels: np.ndarray, mode: object) -> np.ndarray:
        return np.zeros(pixels.shape[:2], np.float32)


def test_with_classical_adds_what_the_top_hats_find() -> None:
    rng = np.random.default_rng(1)
    photo = np.clip(120 + rng.normal(0, 2, (240, 320, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8)
    cv2.line(photo, (20, 30), (300, 200), (250, 250, 250), 2)
    network = ScratchUNet(ScratchConfig(in_channels=3, wf=0, depth=1))
    assert _Silent(network, "alone", threshold=0.5).detect(photo).no_damage
    found = _Silent(network, "together", threshold=0.5, with_classical=1).detect(photo).mask
    assert found[photo[..., 0] == 250].mean() > 0.9 and found.sum() < 3 * (photo[..., 0] == 250).sum()
