"""A weight-free damage detector: morphological top-hats, noise-relative thresholds, shape filtering.

Dust, spots and thin scratches are small structures much lighter or darker than what surrounds
them. A white top-hat (image minus its opening) keeps light structures narrower than the
structuring element, a black top-hat (closing minus image) dark ones. Their response is compared
with the image's own noise (film grain, paper texture), estimated robustly, with hysteresis: a
component is kept if part of it is strong. Components are then judged by shape: long thin ones are
scratches, small compact ones dust and spots; large irregular ones are texture and are dropped.
It cannot see tears, missing corners or foxing stains, which are larger than any structuring
element that leaves the picture's own details alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inpaint_cli.detect.detection import Detection, Mode, finish
from inpaint_cli.imaging.pixels import to_rgb8

NOISE_SAMPLE = 1_000_000
"""Pixels sampled to estimate the noise level (enough for a stable median)."""
MAD_TO_SIGMA = 1.4826


@dataclass
class ClassicalDetector:
    """Top-hat detector. `element`: side (px) of the structuring element, larger than any defect width;
    `strong` and `weak`: response thresholds in noise standard deviations (hysteresis)."""

    name: str = "classical"
    element: int = 15
    strong: float = 9.0
    weak: float = 5.0
    minimum_contrast: float = 50.0
    """Grey levels (0-255) a defect must differ from its surroundings by, whatever the noise."""
    busyness: float = 12.0
    """A defect must also stand out this many times above the mean response of its neighbourhood:
    in foliage, stars or fabric everything is a small bright or dark structure, and nothing is kept."""
    neighbourhood: int = 64
    max_blob: int = 300
    """Largest compact component (pixels) taken for a dust speck or spot."""
    max_step_ratio: float = 0.2
    """A defect lies on one background: the step between its two sides (the blurred picture a quarter
    element either side) must stay under this fraction of its own contrast. The rims of cups and
    shells and other thin edges of real objects separate two different regions and are dropped."""
    min_line_length: int = 20
    min_elongation: float = 8.0
    threshold: float = 0.5
    """Probability scale: the strong threshold maps to `threshold`, twice it to 1."""
    min_fraction: float = 0.0
    """Optional: a mask covering less than this fraction of the image is dropped (off by default)."""

    def response(self, grey: np.ndarray) -> np.ndarray:
        """Per pixel, the larger of the light and dark top-hat (grey levels), uint8."""
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.element, self.element))
        light = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel)
        dark = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)
        np.maximum(light, dark, out=light)
        return light

    def local_level(self, response: np.ndarray) -> np.ndarray:
        """Mean response over each pixel's neighbourhood (block means, bilinearly interpolated)."""
        height, width = response.shape
        small = (max(1, width // self.neighbourhood), max(1, height // self.neighbourhood))
        means = cv2.resize(response.astype(np.float32), small, interpolation=cv2.INTER_AREA)
        means = cv2.blur(means, (3, 3))
        return cv2.resize(means, (width, height), interpolation=cv2.INTER_LINEAR)

    def noise_sigma(self, grey: np.ndarray, rng_seed: int = 0) -> float:
        """Robust noise level: MAD of the difference from a 3×3 median, on a sample of pixels."""
        residual = cv2.absdiff(grey, cv2.medianBlur(grey, 3)).ravel()
        if residual.size > NOISE_SAMPLE:
            residual = np.random.default_rng(rng_seed).choice(residual, NOISE_SAMPLE, replace=False)
        return float(np.median(residual)) * MAD_TO_SIGMA

    def detect(
        self, pixels: np.ndarray, mode: Mode = Mode.HIGH_RES, threshold: float | None = None
    ) -> Detection:
        """Damage of upright H×W×C uint8/uint16 pixels (at full resolution whatever the mode)."""
        grey = cv2.cvtColor(to_rgb8(pixels), cv2.COLOR_RGB2GRAY)
        response = self.response(grey)
        sigma = max(self.noise_sigma(grey), 1.0)
        blurred = self.blurred(grey)
        del grey
        # In place, with two float maps at most: a 48 MP scan stays well under 2 GiB.
        level = self.local_level(response)
        level *= self.busyness
        np.maximum(level, max(self.strong * sigma, self.minimum_contrast), out=level)  # the strong level
        weak_floor = max(self.weak * sigma, self.minimum_contrast / 2)
        values = response.astype(np.float32)
        del response
        # A user threshold moves both levels with it: the strong level is probability `threshold`.
        scale = np.float32((self.threshold if threshold is None else threshold) / self.threshold)
        strong = values >= level * scale
        weak = (values >= weak_floor * scale) & (values * 2 >= level * scale)
        mask = self._components(weak, strong, blurred, values)
        del weak, strong, blurred
        values *= self.threshold
        values /= level
        probability = np.clip(values, 0, 1, out=values)
        return finish(probability, mask, self.min_fraction)

    def _components(
        self, weak: np.ndarray, strong: np.ndarray, blurred: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """Hysteresis and shape filtering: weak components with a strong pixel that look like damage
        and lie on one background."""
        count, labels, stats, _ = cv2.connectedComponentsWithStats(weak.view(np.uint8), connectivity=8)
        if count <= 1:
            return np.zeros_like(weak)
        has_strong = np.bincount(labels[strong], minlength=count) > 0
        width = stats[:, cv2.CC_STAT_WIDTH].astype(np.float64)
        height = stats[:, cv2.CC_STAT_HEIGHT].astype(np.float64)
        area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
        length = np.hypot(width, height)
        # A thin line of length L covers about L * thickness pixels: elongation = L / thickness.
        elongation = length**2 / np.maximum(area, 1)
        line = (length >= self.min_line_length) & (elongation >= self.min_elongation)
        blob = area <= self.max_blob
        keep = has_strong & (line | blob)
        keep[0] = False
        if keep.any():
            keep &= step_ratio(labels, count, keep, blurred, values, self.element) <= self.max_step_ratio
        return keep[labels]

    def blurred(self, grey: np.ndarray) -> np.ndarray:
        """The picture `step_ratio` compares the two sides of a defect on."""
        return cv2.GaussianBlur(grey, (0, 0), self.element / 4)


def step_ratio(
    labels: np.ndarray, count: int, keep: np.ndarray, blurred: np.ndarray, values: np.ndarray, element: int
) -> np.ndarray:
    """Per component (`keep`: which to measure): mean step across it (blurred differences a quarter
    element either side, x and y) over its mean response `values`. About 0 for a scratch on a smooth
    background, 1 or more for the edge of a real object."""
    ys, xs = np.nonzero(keep[labels])
    reach = max(1, round(element / 4))
    height, width = blurred.shape

    def at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return blurred[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)].astype(np.float32)

    across_x = at(ys, xs + reach) - at(ys, xs - reach)
    across_y = at(ys + reach, xs) - at(ys - reach, xs)
    ids = labels[ys, xs]
    step = np.bincount(ids, np.hypot(across_x, across_y), count)
    contrast = np.bincount(ids, values[ys, xs], count)
    return step / np.maximum(contrast, 1)
