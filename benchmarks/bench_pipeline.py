"""How much the pipeline around the network costs: planning, cutting, padding, normalising,
blending, compositing (and, file to file, decoding and encoding), relative to the network's time.

    python benchmarks/bench_pipeline.py                    # lama-tiny, 2048², 5 runs per row
    python benchmarks/bench_pipeline.py --size 1024 --runs 3 --threads 2

Start-up (imports, model load) is excluded: the model is loaded once and warmed up on a small
image. Each row is the median of `--runs` runs. `network` is the time inside the network's forward
calls as the engine measures it (`InpaintResult.seconds["network"]`); `overhead` is everything
else of the call, and the ratio is overhead / network (the goal is under 20 %). `engine` times
`Inpainter.inpaint` on arrays in memory; `file to file` adds reading the image and mask and
writing the result as PNG, as `inpaint run` does for one image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.strategies import InpaintOptions
from inpaint_cli.imaging import imageio, masks


def make_image(side: int) -> np.ndarray:
    """A smooth colour image with some texture (so PNG encoding does real work)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 6, (side, side, 3))
    base = np.stack([x / side * 200, y / side * 200, (x + y) / side * 100 + 50], axis=-1)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_hole(kind: str, side: int) -> np.ndarray:
    """`scratches`: 40 vertical lines 4 px wide (about 8 % of the pixels); `blob`: a 40 % × 40 %
    rectangle (16 %); `both`."""
    hole = np.zeros((side, side), bool)
    if kind in ("scratches", "both"):
        rng = np.random.default_rng(1)
        for column in rng.integers(0, side - 4, 40):
            hole[:, column : column + 4] = True
    if kind in ("blob", "both"):
        hole[side * 3 // 10 : side * 7 // 10, side * 3 // 10 : side * 7 // 10] = True
    return hole


def one_run(
    inpainter: Inpainter, image: np.ndarray, hole: np.ndarray, options: InpaintOptions, folder: Path | None
) -> tuple[float, dict[str, float], str]:
    """(wall seconds, seconds per stage, plan) of one image, in memory or file to file."""
    if folder is None:
        started = time.perf_counter()
        result = inpainter.inpaint(image, hole, options=options)
        return time.perf_counter() - started, result.seconds, result.plan.describe()
    output = folder / "out.png"
    output.unlink(missing_ok=True)
    started = time.perf_counter()
    picture = imageio.read_image(folder / "image.png")
    mask = masks.read_mask(folder / "mask.png", size=picture.size)
    result = inpainter.inpaint(picture.pixels, mask, options=options)
    imageio.write_image(output, picture.with_pixels(result.pixels))
    return time.perf_counter() - started, result.seconds, result.plan.describe()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="lama-tiny")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strategies", nargs="+", default=["full", "auto"])
    parser.add_argument("--masks", nargs="+", default=["both", "scratches"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inpainter = Inpainter.from_name(args.model, device="cpu", precision="fp32")
    inpainter.inpaint(make_image(256), make_hole("both", 256))  # warm-up: kernels, allocator
    image = make_image(args.size)
    print(
        f"{args.model} on {args.size}x{args.size}, {args.threads} thread(s), torch {torch.__version__}, "
        f"median of {args.runs} runs; overhead = wall time - network time"
    )
    header = (
        f"{'mode':<13}{'mask':<10}{'strategy':<9}{'wall s':>8}{'network s':>10}{'overhead':>9}  stages (s)"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        Image.fromarray(image).save(folder / "image.png")
        for kind in args.masks:
            hole = make_hole(kind, args.size)
            Image.fromarray(hole.astype(np.uint8) * 255).save(folder / "mask.png")
            for strategy in args.strategies:
                options = InpaintOptions(strategy=strategy, memory_budget=64 * 10**9)
                for mode, where in (("engine", None), ("file to file", folder)):
                    runs = [one_run(inpainter, image, hole, options, where) for _ in range(args.runs)]
                    wall = statistics.median(run[0] for run in runs)
                    network = statistics.median(run[1]["network"] for run in runs)
                    stages = {
                        stage: round(statistics.median(run[1][stage] for run in runs), 3)
                        for stage in ("plan", "preprocess", "composite")
                    }
                    ratio = (wall - network) / network
                    row = f"{mode:<13}{kind:<10}{strategy:<9}{wall:>8.2f}{network:>10.2f}{ratio:>9.1%}"
                    print(f"{row}  {stages}")
                print(f"{'':<13}{'':<10}plan: {runs[0][2]}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
