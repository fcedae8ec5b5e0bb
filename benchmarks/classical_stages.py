"""Which stage of the `classical` detector drops the true damage of a picture with a known mask (issue #14).

    python benchmarks/classical_stages.py [IMAGE MASK [CLEAN]]

Defaults to the README's example print (`examples/portrait_damaged.png`, its exact mask and the
undamaged print). Prints the noise estimate, the levels a defect must reach, and for each stage how
many connected components of the true mask still have a pixel in a surviving component: weak
(hysteresis low level), strong (a seed above the busyness level), shape (line or blob) and the
one-background step check. With CLEAN, also the busyness level the undamaged print alone gives at
the damaged pixels (how much the damage raises its own bar).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from inpaint_cli.detect.classical import ClassicalDetector, step_ratio

ROOT = Path(__file__).resolve().parents[1]


def grey_of(path: Path) -> np.ndarray:
    return cv2.cvtColor(np.asarray(Image.open(path).convert("RGB")), cv2.COLOR_RGB2GRAY)


def stage_counts(detector: ClassicalDetector, grey: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """True-mask components reaching each stage of `detector.detect` (default threshold)."""
    response = detector.response(grey)
    sigma = max(detector.noise_sigma(grey), 1.0)
    level = detector.local_level(response) * detector.busyness
    level = np.maximum(level, max(detector.strong * sigma, detector.minimum_contrast))
    values = response.astype(np.float32)
    strong = values >= level
    weak = (values >= max(detector.weak * sigma, detector.minimum_contrast / 2)) & (values * 2 >= level)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(weak.view(np.uint8), connectivity=8)
    seeded = np.bincount(labels[strong], minlength=count) > 0
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    length = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    line = (length >= detector.min_line_length) & (length**2 / np.maximum(area, 1) >= detector.min_elongation)
    shaped = seeded & (line | (area <= detector.max_blob))
    shaped[0] = seeded[0] = False
    steps = step_ratio(labels, count, shaped, detector.blurred(grey), values, detector.element)
    kept = shaped & (steps <= detector.max_step_ratio)
    parts, truth_labels = cv2.connectedComponents(truth.view(np.uint8), connectivity=8)
    counts = dict.fromkeys(("weak", "strong seed", "line or blob", "one background"), 0)
    counts = {"true components": parts - 1, **counts}
    for part in range(1, parts):
        touched = np.unique(labels[truth_labels == part])
        touched = touched[touched > 0]
        counts["weak"] += touched.size > 0
        counts["strong seed"] += bool(seeded[touched].any())
        counts["line or blob"] += bool(shaped[touched].any())
        counts["one background"] += bool(kept[touched].any())
    print(
        f"noise sigma {sigma:.1f} (floored at 1); strong level: median {np.median(level[truth]):.0f} "
        f"on the damage, constant floor {max(detector.strong * sigma, detector.minimum_contrast):.0f}; "
        f"top-hat on the damage: median {np.median(values[truth]):.0f}, 90th percentile "
        f"{np.percentile(values[truth], 90):.0f}"
    )
    return counts


def main() -> None:
    paths = [Path(arg) for arg in sys.argv[1:]] or [
        ROOT / "examples" / "portrait_damaged.png",
        ROOT / "examples" / "portrait_mask.png",
        ROOT / "examples" / "portrait_original.png",
    ]
    grey, truth = grey_of(paths[0]), np.asarray(Image.open(paths[1]).convert("L")) > 127
    detector = ClassicalDetector()
    print(stage_counts(detector, grey, truth))
    if len(paths) > 2:
        clean = detector.local_level(detector.response(grey_of(paths[2]))) * detector.busyness
        damaged = detector.local_level(detector.response(grey)) * detector.busyness
        print(
            f"busyness level on the damaged pixels: {np.median(damaged[truth]):.0f} with the damage, "
            f"{np.median(clean[truth]):.0f} from the undamaged print alone"
        )


if __name__ == "__main__":
    main()
