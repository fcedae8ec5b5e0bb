"""Tolerant pixel scores of a damage mask, and held-out style crops with one kind of damage each.

Shared by `train_scratch_tiny.py` (validation on the calibration photos during training) and
`benchmarks/eval_detectors.py` (the held-out tables), so that both measure the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import damage
import numpy as np

TOLERANCE = 2
"""Pixels of slack at boundaries: a mask 1 px fatter or thinner than the truth is not an error."""
CROP = 512


class Counts:
    """Tolerant counts: (detected pixels near damage, detected pixels, damaged pixels found, damaged)."""

    def __init__(self) -> None:
        self.right = self.found = self.hit = self.truth = 0

    def add(self, found: np.ndarray, truth: np.ndarray) -> None:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * TOLERANCE + 1,) * 2)
        near_truth = cv2.dilate(truth.view(np.uint8), disk).view(bool)
        near_found = cv2.dilate(found.view(np.uint8), disk).view(bool)
        self.right += int(np.count_nonzero(found & near_truth))
        self.found += int(np.count_nonzero(found))
        self.hit += int(np.count_nonzero(truth & near_found))
        self.truth += int(np.count_nonzero(truth))

    def merge(self, other: Counts) -> None:
        self.right += other.right
        self.found += other.found
        self.hit += other.hit
        self.truth += other.truth

    @property
    def precision(self) -> float:
        return self.right / max(self.found, 1)

    @property
    def recall(self) -> float:
        return self.hit / max(self.truth, 1)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / max(p + r, 1e-9)

    def row(self) -> str:
        return f"{self.precision:.2f} / {self.recall:.2f} / **{self.f1:.2f}**"

    def as_json(self) -> dict[str, float]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def damaged_crops(
    photos: dict[str, np.ndarray], repeats: int, seed: int, papers: list[np.ndarray]
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(kind, damaged crop, truth) for each photo, kind and repeat; each crop carries one kind."""
    rng = np.random.default_rng(seed)
    for photo in photos.values():
        for kind in damage.KINDS:
            for _ in range(repeats):
                side = min(CROP, *photo.shape[:2])  # scikit-image's coffee is 400 px high
                y = rng.integers(0, photo.shape[0] - side + 1)
                x = rng.integers(0, photo.shape[1] - side + 1)
                crop = np.ascontiguousarray(photo[y : y + side, x : x + side])
                pixels, truths = damage.synthesize(crop, [kind], rng, papers)
                yield kind, pixels, truths[kind]
