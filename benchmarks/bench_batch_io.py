"""Batch throughput: does background decoding/encoding (`--jobs`) keep the model busy?

A folder of 50 small photos (JPEG, 640×480 by default) with one mask each (thin scratches and a
blotch) is restored through `engine.run_jobs` (the inpaint kind), by default with `telea` (no weights;
any `--model` and `--device` of `inpaint run` can be given):

- `serial`: read, fill, write one image after another in one thread (no pipeline);
- `jobs N`: the pipeline with N decode threads and N encode threads beside the model.

`--simulated-model-ms T` replaces the model by one that waits T ms without using the CPU, as a GPU
model does from the CPU's point of view: it shows how much file work the pipeline hides even where
the cores are too few or too busy for a CPU model and the codecs to run side by side.

Variants are timed interleaved (one run of each in turn), so that load from other processes hits
them alike; the best of the repeats is reported, with the peak resident memory of the process.
The gain is bounded by the cores: on a 2-core machine the model and the codecs share them.

Run: `python benchmarks/bench_batch_io.py --images 50 --jobs 1 4 --repeats 3`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from measure import RssSampler, machine_summary
from PIL import Image

from inpaint_cli.batch import engine
from inpaint_cli.batch.jobs import Existing, Job
from inpaint_cli.batch.kinds.inpaint import InpaintKind, RunSettings, plan_folder
from inpaint_cli.batch.outcomes import JobOutcome, Status
from inpaint_cli.engine.inpainter import Inpainter, InpaintResult
from inpaint_cli.engine.strategies import InpaintOptions
from inpaint_cli.options import StrategyName

JPEG_QUALITY = 92


def make_folder(root: Path, count: int, width: int, height: int) -> None:
    """`count` photo-like JPEGs (smooth gradients plus grain) in `root/photos`, masks in `root/masks`."""
    rng = np.random.default_rng(0)
    (root / "photos").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = np.mgrid[0:height, 0:width]
    for index in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        base = np.stack([np.sin(cols / 97 + rows / 151 + p) for p in phase], axis=-1) * 80 + 128
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"photos/{index:03d}.jpg", quality=JPEG_QUALITY)
        mask = np.zeros((height, width), dtype=np.uint8)
        for _ in range(4):
            start = rng.integers(0, [width, height])
            end = rng.integers(0, [width, height])
            cv2.line(mask, tuple(map(int, start)), tuple(map(int, end)), 255, thickness=5)
        centre = tuple(map(int, rng.integers(0, [width, height])))
        cv2.circle(mask, centre, height // 16, 255, thickness=-1)
        Image.fromarray(mask).save(root / f"masks/{index:03d}_mask.png")


class SimulatedDevice:
    """A model that takes a fixed time and leaves the CPU free, like a network on a GPU."""

    name, dtype_label, device = "simulated", "float32", "cpu"
    options = InpaintOptions(strategy=StrategyName.FULL)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def plan(self, hole: np.ndarray, *, capture: bool = False) -> None:
        return None

    def estimate_seconds(self, plan: None) -> None:
        return None

    def inpaint(self, pixels: np.ndarray, hole: np.ndarray, **options: object) -> InpaintResult:
        time.sleep(self.seconds)
        return InpaintResult(pixels.copy(), [])


def run_serial(inpainter: Inpainter, jobs: list[Job], settings: RunSettings) -> None:
    kind = InpaintKind(inpainter, settings)
    for job in jobs:
        outcome = JobOutcome(job, Status.DONE)
        loaded = kind.load(outcome)
        result = inpainter.inpaint(loaded.picture.pixels, loaded.hole)
        kind.save(outcome, loaded, result)


def run_pipeline(workers: int) -> Callable[[Inpainter, list[Job], RunSettings], None]:
    def run(inpainter: Inpainter, jobs: list[Job], settings: RunSettings) -> None:
        outcomes = engine.run_jobs(InpaintKind(inpainter, settings), jobs, workers=workers)
        failed = [o.error for o in outcomes if o.status is not Status.DONE]
        if failed:
            raise RuntimeError(f"benchmark inputs failed: {failed[:3]}")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="telea")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--simulated-model-ms", type=float, default=None)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_batch_io_"))
    try:
        make_folder(root, args.images, args.width, args.height)
        plan = plan_folder(root / "photos", root / "masks", root / "out")
        settings = RunSettings(existing=Existing.OVERWRITE)
        if args.simulated_model_ms is None:
            inpainter = Inpainter.from_name(args.model, device=args.device)
        else:
            inpainter = SimulatedDevice(args.simulated_model_ms / 1000)
        variants = {"serial": run_serial} | {f"jobs {n}": run_pipeline(n) for n in args.jobs}
        best = dict.fromkeys(variants, float("inf"))
        peaks = dict.fromkeys(variants, 0)
        for _ in range(args.repeats):
            for name, run in variants.items():
                shutil.rmtree(root / "out", ignore_errors=True)
                with RssSampler() as sampled:
                    started = time.perf_counter()
                    run(inpainter, plan.jobs, settings)
                    best[name] = min(best[name], time.perf_counter() - started)
                peaks[name] = max(peaks[name], sampled.peak)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(machine_summary())
    model = args.model if args.simulated_model_ms is None else f"simulated {args.simulated_model_ms:g} ms"
    print(f"{args.images} JPEGs {args.width}x{args.height}, model {model}, best of {args.repeats}")
    print(f"{'variant':<10} {'images/s':>9} {'vs serial':>10} {'vs jobs 1':>10} {'peak RSS':>10}")
    for name, seconds in best.items():
        rate = args.images / seconds
        versus_one = f"{best['jobs 1'] / seconds:.2f}x" if "jobs 1" in best else "-"
        print(
            f"{name:<10} {rate:>9.2f} {best['serial'] / seconds:>9.2f}x {versus_one:>10} "
            f"{peaks[name] / 2**20:>7.0f} MiB"
        )


if __name__ == "__main__":
    main()
