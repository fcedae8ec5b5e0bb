"""The bundled demo models against OpenCV's Telea method and a mean-colour fill, on held-out data.

Crops of the photos `tools/train_demo_models.py` never trains on (`HELD_OUT_IMAGES`), with masks
drawn by its mask generators from a seed that training does not use, grouped by mask kind; plus
the shipped example (`examples/portrait_damaged.png` and its mask, against `portrait_original.png`).
Every method runs through the engine (`Inpainter(network, device="cpu", precision="fp32")`) on
8-bit pixels, exactly as `inpaint run` does. Scores are computed over hole pixels only (outside
the hole every method returns the input): mean absolute error in [0, 1] (L1, lower is better) and
PSNR in dB (higher is better), averaged over crops.

    pip install scikit-image        # the held-out photos (not a dependency of inpaint)
    python benchmarks/eval_demo_models.py [--crops 4] [--size 128] [--seed 2024]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inpaint_cli.checkpoints import read_checkpoint
from inpaint_cli.engine import Inpainter
from inpaint_cli.loading import network_from_checkpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import train_demo_models as training  # noqa: E402  (a script beside the package, not a module of it)

EXAMPLES = ROOT / "examples"
EVAL_SEED = 2024
"""Training draws its crops and masks from seed 0 (and its progress check from seed 1)."""

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(H×W×3 uint8 pixels, H×W bool hole) -> filled pixels."""


def hole_scores(filled: np.ndarray, original: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    """(L1, PSNR in dB) over the hole pixels of two uint8 images."""
    error = filled[hole].astype(np.float64) / 255 - original[hole].astype(np.float64) / 255
    mse = float(np.mean(error**2))
    return float(np.mean(np.abs(error))), 10 * math.log10(1 / mse) if mse > 0 else math.inf


def mean_colour_fill(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Every hole pixel set to the mean colour of the image's known pixels."""
    filled = pixels.copy()
    filled[hole] = pixels[~hole].mean(axis=0).round().astype(np.uint8)
    return filled


def engine_method(inpainter: Inpainter) -> Method:
    return lambda pixels, hole: inpainter.inpaint(pixels, hole).pixels


def methods() -> dict[str, Method]:
    """The demo models from their bundled files, then the baselines."""
    found: dict[str, Method] = {}
    for name in training.DEMO_MODELS:
        network = network_from_checkpoint(read_checkpoint(training.BUNDLED_DIR / f"{name}.safetensors"))
        found[name] = engine_method(Inpainter(network, name=name, device="cpu", precision="fp32"))
    found["telea"] = engine_method(Inpainter.from_name("telea", device="cpu", precision="fp32"))
    found["mean colour"] = mean_colour_fill
    return found


def held_out_cases(
    crops_per_kind: int, size: int, seed: int
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per mask kind: (uint8 crop, hole) pairs, `crops_per_kind` from each held-out photo."""
    rng = np.random.default_rng(seed)
    photos = [training.load_photo(name) for name in training.HELD_OUT_IMAGES]
    cases: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for kind in training.MASK_KINDS:
        for photo in photos:
            for _ in range(crops_per_kind):
                crop = (training.random_crop(photo, rng, size) * 255).round().astype(np.uint8)
                hole = kind(rng, size)
                while not hole.any():
                    hole = kind(rng, size)
                cases.setdefault(kind.__name__.replace("_", " "), []).append((crop, hole))
    return cases


def example_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(damaged pixels, hole, original pixels) of the shipped example."""
    damaged = np.asarray(Image.open(EXAMPLES / "portrait_damaged.png").convert("RGB"))
    hole = np.asarray(Image.open(EXAMPLES / "portrait_mask.png").convert("L")) > 127
    original = np.asarray(Image.open(EXAMPLES / "portrait_original.png").convert("RGB"))
    return damaged, hole, original


def table(rows: dict[str, dict[str, tuple[float, float]]], columns: list[str]) -> str:
    """Markdown: one row per method, `L1 / PSNR` per column; the best PSNR of a column in bold."""
    best = {column: max(scores[column][1] for scores in rows.values()) for column in columns}
    lines = [
        "| method | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for method, scores in rows.items():
        cells = []
        for column in columns:
            l1, psnr = scores[column]
            cell = f"{l1:.3f} / {psnr:.1f} dB"
            cells.append(f"**{cell}**" if psnr == best[column] else cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=4, help="crops per held-out photo and mask kind")
    parser.add_argument("--size", type=int, default=128, help="crop side (a multiple of 32)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cases = held_out_cases(args.crops, args.size, args.seed)
    damaged, example_hole, original = example_case()
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    for method_name, method in methods().items():
        scores: dict[str, tuple[float, float]] = {}
        every = []
        for kind, pairs in cases.items():
            per_crop = [hole_scores(method(crop, hole), crop, hole) for crop, hole in pairs]
            every += per_crop
            scores[kind] = tuple(np.mean(per_crop, axis=0))
        scores["all held-out crops"] = tuple(np.mean(every, axis=0))
        scores["example portrait"] = hole_scores(method(damaged, example_hole), original, example_hole)
        rows[method_name] = scores
    columns = list(next(iter(rows.values())))
    count = sum(len(pairs) for pairs in cases.values())
    print(
        f"{count} held-out {args.size}x{args.size} crops of {', '.join(training.HELD_OUT_IMAGES)} "
        f"(seed {args.seed}); hole L1 / hole PSNR, mean over crops; {time.perf_counter() - started:.0f} s\n"
    )
    print(table(rows, columns))
    print()
    for name in training.DEMO_MODELS:
        worse = [column for column in columns if rows["telea"][column][1] > rows[name][column][1]]
        print(f"telea has a higher PSNR than {name} on: {', '.join(worse) or 'nothing'}")
    mean_fill = rows["mean colour"]["all held-out crops"]
    failing = [name for name in training.DEMO_MODELS if rows[name]["all held-out crops"][0] >= mean_fill[0]]
    if failing:
        sys.exit(f"\nnot better than the mean-colour fill: {', '.join(failing)}")


if __name__ == "__main__":
    main()
