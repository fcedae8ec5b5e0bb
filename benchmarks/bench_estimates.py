"""How close `inpaint run`'s time estimates come to the time taken (issue 30: 1.4-10x too long).

For each bundled model and plan (a photo-sized image in tiles, a few crop boxes, one torn corner), an
image is filled twice in a row, as the first two images of a batch:

- first image: the estimate told after its first network call (`on_estimate`), against the time the
  rest of the image took;
- second image: the estimate before it starts (`estimate_seconds`, from the first image's passes),
  against the time it took;
- and what the old estimate (one timed 256² pass, scaled by the cost model) would have said.

Each plan is measured `--rounds` times, the models taking turns (a change of load hits them alike);
the table gives the median of estimate/actual per column (1.00 = exact; within 0.5-2 is the goal).

    python benchmarks/bench_estimates.py [--rounds 3] [--threads 2] [--models lama-tiny,pconv-tiny]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import torch
from measure import machine_summary, pin_threads

from inpaint_cli.engine.inpainter import Inpainter, InpaintOptions, padded_size

OLD_CALIBRATION_SIDE = 256


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colour picture with some texture (the network's time does not depend on content)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-12, 13, (height, width, 3))
    return np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)


def holes(kind: str, height: int, width: int) -> np.ndarray:
    hole = np.zeros((height, width), np.uint8)
    rng = np.random.default_rng(1)
    if kind == "scratches":
        for _ in range(14):
            (x0, y0), (x1, y1) = rng.integers(0, [width, height], size=(2, 2))
            cv2.line(hole, (int(x0), int(y0)), (int(x1), int(y1)), 1, 4)
    elif kind == "spots":
        for _ in range(5):
            x, y = rng.integers(100, [width - 100, height - 100])
            cv2.circle(hole, (int(x), int(y)), 30, 1, -1)
    else:  # a torn corner
        cv2.fillPoly(hole, [np.array([[width - 1, 0], [width - 400, 0], [width - 1, 300]], np.int32)], 1)
    return hole.astype(bool)


CASES = [
    ("2000x1500 scratches, tiles", (1500, 2000), "scratches", "tile"),
    ("2000x1500 spots, auto", (1500, 2000), "spots", "auto"),
    ("2000x1500 torn corner, auto", (1500, 2000), "corner", "auto"),
]


def old_estimate(model: Inpainter, cost: float) -> float:
    """The estimate before issue 30: one timed pass at 256² after a warm-up, scaled by cost."""
    geometry = model.geometry
    side = padded_size(OLD_CALIBRATION_SIDE, geometry.pad_multiple, geometry.min_size)
    image, hole = torch.rand(1, 3, side, side), torch.zeros(1, 1, side, side)
    hole[..., side // 4 : side // 2, side // 4 : side // 2] = 1
    model.runner.predict(image, hole)
    started = time.perf_counter()
    model.runner.predict(image, hole)
    return cost * (time.perf_counter() - started) / geometry.pass_cost(side, side)


def one_round(name: str, case: tuple) -> dict[str, float]:
    """estimate/actual for the first image (after its first call), the second (before it), and the old
    estimate; a fresh model each round, so nothing is known at the start."""
    _, (height, width), kind, strategy = case
    model = Inpainter.from_name(
        name, device="cpu", precision="fp32", options=InpaintOptions(strategy=strategy)
    )
    pixels, hole = photo(height, width, 0), holes(kind, height, width)
    plan = model.plan(hole)
    told: list[tuple[float, float]] = []  # (estimate, when it was told)
    started = time.perf_counter()
    model.inpaint(pixels, hole, plan=plan, on_estimate=lambda s: told.append((s, time.perf_counter())))
    ended = time.perf_counter()
    ratios = {"passes": float(plan.passes)}
    if told:
        estimate, at = told[0]
        ratios["first image, after its first pass"] = estimate / (ended - at)
    before = model.estimate_seconds(plan)
    started = time.perf_counter()
    model.inpaint(photo(height, width, 1), hole, plan=plan)
    took = time.perf_counter() - started
    if before is not None:
        ratios["second image, before it starts"] = before / took
    ratios["old: 256² pass scaled by cost"] = old_estimate(model, plan.cost) / took
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", default="lama-tiny,gatedconv-tiny,pconv-tiny")
    args = parser.parse_args()
    pin_threads(args.threads)
    print(machine_summary())
    models = args.models.split(",")
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for case in CASES:
            for name in models:  # the models take turns within each round
                samples.setdefault((name, case[0]), []).append(one_round(name, case))
    print("\n| model | plan | passes | first image, after its first pass | second image, before it starts "
          "| old: 256² pass scaled by cost |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    columns = [
        "first image, after its first pass",
        "second image, before it starts",
        "old: 256² pass scaled by cost",
    ]
    for (name, label), rounds in samples.items():
        cells = []
        for column in columns:
            values = [r[column] for r in rounds if column in r]
            cells.append(f"{statistics.median(values):.2f}" if values else "–")
        print(f"| {name} | {label} | {rounds[0]['passes']:.0f} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
