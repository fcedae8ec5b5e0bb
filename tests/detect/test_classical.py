"""The weight-free classical detector (`detect/classical.py`)."""

from __future__ import annotations

from detect_helpers import scratched, smooth_photo


def test_classical_finds_a_scratch_and_dust_and_nothing_else() -> None:
    from inpaint_cli.detect.classical import ClassicalDetector

    damaged, truth = scratched(smooth_photo())
    detection = ClassicalDetector().detect(damaged)
    found = detection.mask
    precision = (found & truth).sum() / found.sum()
    recall = (found & truth).sum() / truth.sum()
    assert precision > 0.9 and recall > 0.9, (precision, recall)
    assert detection.probability.shape == truth.shape and detection.probability.max() <= 1


def test_classical_reports_no_damage_on_a_grainy_clean_photo() -> None:
    from inpaint_cli.detect.classical import ClassicalDetector

    detection = ClassicalDetector().detect(smooth_photo(grain=6.0))
    assert detection.raw_fraction < 0.001
    assert detection.no_damage and not detection.mask.any()


def test_a_thin_scratch_on_a_large_picture_is_not_discarded() -> None:
    from inpaint_cli.detect.classical import ClassicalDetector

    photo = smooth_photo(1200, 1200)  # 1.44 MP
    photo[300, 100:1100] = 250  # a 1-px scratch: 0.07 % of the pixels
    detection = ClassicalDetector().detect(photo)
    assert detection.fraction < 0.001 and not detection.no_damage
    assert detection.mask[300, 110:1090].mean() > 0.95
