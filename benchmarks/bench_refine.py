"""LaMa feature refinement (`--refine`) on CPU: time per megapixel and peak memory, and what it gains.

`speed`: a big-lama-sized generator (ngf 64, 18 FFC blocks; random weights, prepared like a loaded
checkpoint) refines a photo-sized input with a centred hole a quarter of its area, once per size, each
in a fresh process (no allocator cache from earlier sizes). The pixel budget is raised to the input's
size, so that 2 and 4 MP are refined at that size (with the default 1.8 MP budget they would be shrunk
to it and cost what 1.8 MP costs), at two scales (as the default budget always gives: three need a
1449 px short side). `--iters 2` (one Adam step per refined scale) keeps the run short; a
step is the time between two forward passes of the finest scale (backward through the rear with its
blocks recomputed, the Adam update, the next forward), and the default 15 iterations are estimated as
the coarse scale's pass + the first forward + 14 steps at the refined scale. Peak RSS is the process's
high-water mark (weights included) and its growth during the refinement. `--official` also measures the
refinement keeping every activation for backward, as the official code does (about 3x the memory).

`quality`: the bundled lama-tiny with and without `--refine` (official defaults, `--strategy full`) on
the held-out photographs of `tools/train_demo_models.py` (`EVAL_COLOUR`, never trained on) at 1.6 MP
(1600x1000 centre crops) with large holes (a square of 0.35 of the short side and a brush stroke): PSNR,
SSIM and L1 over the hole. `--picture` writes a before/after crop for docs/refinement.md. lama-tiny is a
2.8 MB demo model; what refinement gains with the real big-lama cannot be measured offline here.

    nice python benchmarks/bench_refine.py speed [--megapixels 1 2 4] [--iters 2] [--official]
    nice python benchmarks/bench_refine.py quality [--picture docs/refinement_before_after.png]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from measure import machine_summary, peak_rss, peak_rss_increase, pin_threads, run_in_child
from PIL import Image
from released import released_architecture

from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.refine import refine
from inpaint_cli.engine.refine_plan import Refinement
from inpaint_cli.engine.strategies import InpaintOptions
from inpaint_cli.review.metrics import psnr, ssim

ROOT = Path(__file__).resolve().parents[1]
ASPECT = 4 / 3
DEFAULT_ITERS = Refinement().iters
QUALITY_SIZE = (1000, 1600)
"""Held-out photos (2560x1600) are cropped at their centre to 1.6 MP: two scales with the defaults."""
QUALITY_SEED = 2028
PICTURE_WINDOW, PICTURE_SIDE = 640, 400
"""The before/after picture: a 640 px window around the hole, shown at 400 px."""


# --- speed and memory ---------------------------------------------------------------------------------------


def photo_size(megapixels: float) -> tuple[int, int]:
    """(height, width) of a 4:3 input of about this many megapixels, multiples of 8."""
    height = round(math.sqrt(megapixels * 1e6 / ASPECT) / 8) * 8
    return height, round(height * ASPECT / 8) * 8


def refine_in_child(height: int, width: int, iters: int, recompute: bool) -> dict[str, object]:
    """One two-scale refinement in this (fresh) process: peak memory, wall and CPU seconds of its parts.

    The clock reads at every forward pass of the rear: the first ends the coarse scale's plain pass
    (with the pyramid), the second the finest scale's front and first forward (the cost of a plain
    pass at that size), each later one a step.
    """
    network = released_architecture("lama")
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, height, width, generator=generator)
    image = torch.nn.functional.avg_pool2d(image, 9, stride=1, padding=4)  # smooth, photo-like noise
    hole = torch.zeros(1, 1, height, width)
    hole[..., height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    settings = Refinement(iters=iters, max_scales=2, px_budget=height * width)
    clock = [(time.perf_counter(), time.process_time())]

    def on_forward() -> None:
        clock.append((time.perf_counter(), time.process_time()))

    refined, growth = peak_rss_increase(
        lambda: refine(network, image, hole, settings, on_forward=on_forward, recompute_blocks=recompute)
    )
    wall, cpu = ([later[n] - earlier[n] for earlier, later in itertools.pairwise(clock)] for n in (0, 1))
    return {
        "sizes": [scale.size for scale in refined.scales],
        "wall": wall,
        "cpu": cpu,
        "peak_rss": peak_rss(),
        "growth": growth,
        "finite": bool(torch.isfinite(refined.values).all()),
    }


def default_estimate(parts: list[float]) -> float:
    """Seconds of the default 15 iterations from one run's parts (coarse pass, finest first forward,
    steps): the coarse pass, the first forward and 14 steps."""
    return parts[0] + parts[1] + (DEFAULT_ITERS - 1) * float(np.median(parts[2:]))


def speed(args: argparse.Namespace) -> None:
    print(machine_summary())
    iters = f"{args.iters} iterations per refined scale"
    print(f"big-lama-sized random weights, fp32, {iters}, a centred hole of 1/4 of the image")
    print("wall and CPU seconds of this process (other processes inflate CPU time least)")
    print(
        "| input | scales | peak RSS (growth) | pass at the finest scale: wall (CPU) s | step: wall (CPU) s "
        "| step/pass (CPU) | 15 iterations, estimated: wall (CPU) s per MP |"
    )
    print("|---|---|---|---|---|---|---|")
    variants = [(mp, True) for mp in args.megapixels] + [
        (mp, False) for mp in args.megapixels if args.official
    ]
    for megapixels, recompute in variants:
        height, width = photo_size(megapixels)
        measured = run_in_child(refine_in_child, height, width, args.iters, recompute, threads=args.threads)
        wall, cpu = measured["wall"], measured["cpu"]
        size = height * width / 1e6
        kept = "" if recompute else ", every activation kept"
        scales = " + ".join(f"{w}x{h}" for h, w in measured["sizes"])
        memory = f"{measured['peak_rss'] / 2**30:.2f} GiB ({measured['growth'] / 2**30:.2f})"
        step_wall, step_cpu = float(np.median(wall[2:])), float(np.median(cpu[2:]))
        print(
            f"| {width}x{height} ({size:.2f} MP){kept} | {scales} | {memory} | {wall[1]:.0f} ({cpu[1]:.0f}) "
            f"| {step_wall:.0f} ({step_cpu:.0f}) | {step_cpu / cpu[1]:.2f} "
            f"| {default_estimate(wall) / size:.0f} ({default_estimate(cpu) / size:.0f}) |",
            flush=True,
        )
        if not measured["finite"]:
            print("  the refined values were not finite", file=sys.stderr)


# --- quality ------------------------------------------------------------------------------------------------


def held_out_photos() -> list[tuple[str, np.ndarray]]:
    """The held-out colour photographs, cropped at their centre to `QUALITY_SIZE`."""
    sys.path.insert(0, str(ROOT / "tools"))
    import photo_data
    import train_demo_models as training

    photos = []
    for photo in training.split_photos(photo_data.DEFAULT_DATA)["eval_colour"]:
        with Image.open(photo.file) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        height, width = QUALITY_SIZE
        top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
        photos.append((photo.name, pixels[top : top + height, left : left + width].copy()))
    return photos


def large_hole(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A square of 0.35 of the short side and a thick brush stroke, placed at random."""
    rng = np.random.default_rng(seed)
    height, width = shape
    hole = np.zeros(shape, np.uint8)
    side = int(0.35 * min(shape))
    top, left = rng.integers(0, height - side), rng.integers(0, width - side)
    hole[top : top + side, left : left + side] = 1
    points = np.stack([rng.integers(0, width, 4), rng.integers(0, height, 4)], axis=1).astype(np.int32)
    cv2.polylines(hole, [points], False, 1, thickness=int(0.06 * min(shape)))
    return hole.astype(bool)


def quality(args: argparse.Namespace) -> None:
    print(machine_summary())
    plain_options = InpaintOptions(strategy="full")
    model = Inpainter.from_name("lama-tiny", device="cpu", precision="fp32", options=plain_options)
    refined_options = InpaintOptions(strategy="full", refine=True)
    print(
        "| photo | hole | PSNR plain / refined (dB) | SSIM plain / refined | L1 plain / refined | refine s |"
    )
    print("|---|---|---|---|---|---|")
    totals: dict[str, list[float]] = {"plain": [], "refined": []}
    best: tuple[float, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    for index, (name, pixels) in enumerate(held_out_photos()):
        if args.photos and name not in args.photos:
            continue
        hole = large_hole(pixels.shape[:2], QUALITY_SEED + index)
        plain = model.inpaint(pixels, hole).pixels
        started = time.perf_counter()
        result = model.inpaint(pixels, hole, options=refined_options)
        seconds = time.perf_counter() - started
        scores = {
            key: _scores(filled, pixels, hole)
            for key, filled in (("plain", plain), ("refined", result.pixels))
        }
        for key in totals:
            totals[key].append(scores[key][0])
        (p0, s0, l0), (p1, s1, l1) = scores["plain"], scores["refined"]
        print(
            f"| {name} | {hole.mean():.1%} | {p0:.2f} / {p1:.2f} | {s0:.3f} / {s1:.3f} | {l0:.4f} / {l1:.4f} "
            f"| {seconds:.0f} |",
            flush=True,
        )
        if best is None or p1 - p0 > best[0]:
            best = (p1 - p0, name, pixels, hole, plain, result.pixels)
    plain_mean, refined_mean = np.mean(totals["plain"]), np.mean(totals["refined"])
    print(f"mean PSNR in the hole: plain {plain_mean:.2f} dB, refined {refined_mean:.2f} dB")
    if args.picture is not None and best is not None:
        before_after(*best[1:], args.picture)


def _scores(filled: np.ndarray, original: np.ndarray, hole: np.ndarray) -> tuple[float, float, float]:
    l1 = float(np.abs(filled.astype(np.float64) - original)[hole].mean() / 255)
    return psnr(filled, original, hole), ssim(filled, original, hole), l1


def before_after(
    name: str, pixels: np.ndarray, hole: np.ndarray, plain: np.ndarray, refined: np.ndarray, path: Path
) -> None:
    """Original with the hole marked | one pass | refined: a window around the hole's middle (the hole
    and some of its surroundings), shown at `PICTURE_SIDE` px."""
    rows, cols = np.nonzero(hole)
    top, left = int(np.median(rows)), int(np.median(cols))
    side = min(PICTURE_WINDOW, *hole.shape)
    top = min(max(0, top - side // 2), hole.shape[0] - side)
    left = min(max(0, left - side // 2), hole.shape[1] - side)
    window = (slice(top, top + side), slice(left, left + side))
    marked = pixels.copy()
    marked[hole] = (marked[hole] * 0.4 + np.array([255, 0, 255]) * 0.6).astype(np.uint8)
    shown = [
        cv2.resize(panel[window], (PICTURE_SIDE, PICTURE_SIDE), interpolation=cv2.INTER_AREA)
        for panel in (marked, plain, refined)
    ]
    gap = np.full((PICTURE_SIDE, 8, 3), 255, np.uint8)
    panels = [shown[0], gap, shown[1], gap, shown[2]]
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)
    print(f"wrote {path}: {name}, hole marked | lama-tiny one pass | lama-tiny refined")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["speed", "quality"])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[1, 2, 4])
    parser.add_argument("--iters", type=int, default=2, help="iterations per refined scale (speed)")
    parser.add_argument("--official", action="store_true", help="also keep every activation (speed)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--picture", type=Path, default=None, help="before/after picture (quality)")
    parser.add_argument("--photos", nargs="+", default=None, help="only these held-out photos (quality)")
    args = parser.parse_args()
    if args.iters < 2:
        parser.error("--iters must be at least 2 (one step to time)")
    pin_threads(args.threads)
    if args.part == "speed":
        speed(args)
    else:
        quality(args)


if __name__ == "__main__":
    main()
