"""The bundled demo models against OpenCV's `telea` and `ns` and a mean-colour fill, on held-out photos.

Crops of the photographs `tools/train_demo_models.py` never trains on (`EVAL_COLOUR`, and the same
as grey plus `EVAL_GREY`), with holes of each evaluated kind (thin scratches ≤ 8 px, dust, medium
brush strokes, large holes ≥ 1/4 of the side: ≥ 64 px at the default 256 px) drawn from a seed
training does not use. Every method runs through the engine (`Inpainter(..., device="cpu",
precision="fp32")`) on 8-bit pixels, exactly as `inpaint run` does. Scores over the hole pixels
only (outside it every method returns the input): PSNR (dB), SSIM (`inpaint_cli.review.metrics`, its map
averaged over the hole) and L1 (mean absolute error in [0, 1]), averaged over crops; and the colour
error along thin scratches on the colour crops: the mean CIELAB chroma distance
sqrt(Δa*² + Δb*²) between fill and original (lightness left out; about 2.3 is a just noticeable
difference), and the cast, the length of the mean (Δa*, Δb*) (a systematic tint).

    python benchmarks/eval_demo_models.py [--crops 2] [--size 256] [--weights DIR] [--grid PNG]

The photographs are fetched like the training script fetches them (`--data`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from inpaint_cli.checkpoints.containers import read_checkpoint
from inpaint_cli.checkpoints.loading import network_from_checkpoint
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.review.metrics import psnr, ssim

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import photo_data  # noqa: E402  (scripts beside the package, not modules of it)
import train_demo_models as training  # noqa: E402

EVAL_SEED = 2024
"""Training draws its crops and masks from seed 0 and its validation crops from seed 1."""

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(H×W×3 uint8 pixels, H×W bool hole) -> filled pixels."""
Case = tuple[np.ndarray, np.ndarray]


def chroma_errors(filled: np.ndarray, original: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    """(mean CIELAB chroma distance, length of the mean chroma difference) over the hole, 8-bit RGB."""
    ours = cv2.cvtColor(filled, cv2.COLOR_RGB2LAB)[hole][:, 1:].astype(np.float64)
    theirs = cv2.cvtColor(original, cv2.COLOR_RGB2LAB)[hole][:, 1:].astype(np.float64)
    difference = ours - theirs  # OpenCV's 8-bit a*, b* are offset by 128, in CIELAB units
    return float(np.hypot(*difference.T).mean()), float(np.hypot(*difference.mean(axis=0)))


def hole_scores(filled: np.ndarray, original: np.ndarray, hole: np.ndarray) -> tuple[float, float, float]:
    """(PSNR dB, SSIM, L1) over the hole pixels."""
    error = np.abs(filled[hole].astype(np.float64) - original[hole].astype(np.float64)) / 255
    return psnr(filled, original, hole), ssim(filled, original, hole), float(error.mean())


def mean_colour_fill(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Every hole pixel set to the mean colour of the image's known pixels."""
    filled = pixels.copy()
    filled[hole] = pixels[~hole].mean(axis=0).round().astype(np.uint8)
    return filled


def methods(weights: Path) -> dict[str, Method]:
    """The demo models from their files in `weights`, then the baselines."""
    found: dict[str, Method] = {}
    for name in training.DEMO_MODELS:
        network = network_from_checkpoint(read_checkpoint(weights / f"{name}.safetensors"))
        inpainter = Inpainter(network, name=name, device="cpu", precision="fp32")
        found[name] = lambda pixels, hole, inpainter=inpainter: inpainter.inpaint(pixels, hole).pixels
    for name in ("telea", "ns"):
        inpainter = Inpainter.from_name(name, device="cpu", precision="fp32")
        found[name] = lambda pixels, hole, inpainter=inpainter: inpainter.inpaint(pixels, hole).pixels
    found["mean fill"] = mean_colour_fill
    return found


def held_out_cases(data: Path, crops: int, size: int, seed: int) -> dict[tuple[str, str], list[Case]]:
    """Per (colour or grey, mask kind): (uint8 crop, hole) pairs, `crops` from each held-out photo."""
    rng = np.random.default_rng(seed)
    split = training.split_photos(data)
    colour = [training.load_photo(photo) for photo in split["eval_colour"]]
    grey = [training.load_photo(photo, grey=True) for photo in split["eval_colour"] + split["eval_grey"]]
    cases: dict[tuple[str, str], list[Case]] = {}
    for tone, photos in (("colour", colour), ("grey", grey)):
        for kind in training.EVAL_KINDS:
            for photo in photos:
                for _ in range(crops):
                    crop = (training.random_crop(photo, rng, size) * 255).round().astype(np.uint8)
                    cases.setdefault((tone, kind), []).append((crop, training.hole_of_kind(kind, rng, size)))
    return cases


def table(rows: dict[str, dict[str, tuple[float, ...]]], columns: list[str]) -> str:
    """Markdown: one row per method, `PSNR / SSIM / L1` per column; the best PSNR of a column in bold."""
    best = {column: max(scores[column][0] for scores in rows.values()) for column in columns}
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for method, scores in rows.items():
        cells = []
        for column in columns:
            value, structure, l1 = scores[column]
            cell = f"{value:.1f} / {structure:.3f} / {l1:.3f}"
            cells.append(f"**{cell}**" if value == best[column] else cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def picture_grid(cases: dict[tuple[str, str], list[Case]], found: dict[str, Method], path: Path) -> None:
    """One row per (tone, kind): damaged (hole in magenta), each method's fill, the original."""
    rows = []
    for (tone, kind), pairs in cases.items():
        crop, hole = pairs[len(pairs) // 2]
        damaged = crop.copy()
        damaged[hole] = (255, 0, 255)
        tiles = [damaged] + [found[name](crop, hole) for name in found] + [crop]
        rows.append(
            np.hstack([np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255) for tile in tiles])
        )
        print(f"  grid row {len(rows)}: {tone} {kind}", flush=True)
    Image.fromarray(np.vstack(rows)).save(path, optimize=True)
    print(f"wrote {path}: columns damaged, {', '.join(found)}, original")


def evaluate(
    found: dict[str, Method], cases: dict[tuple[str, str], list[Case]]
) -> tuple[dict[str, dict[str, tuple[float, ...]]], dict[str, tuple[float, float]]]:
    """Scores per method and column, and (chroma error, cast) along thin scratches on colour crops."""
    rows: dict[str, dict[str, tuple[float, ...]]] = {}
    tint: dict[str, tuple[float, float]] = {}
    for name, method in found.items():
        scores: dict[str, tuple[float, ...]] = {}
        for (tone, kind), pairs in cases.items():
            filled = [method(crop, hole) for crop, hole in pairs]
            per_crop = [hole_scores(f, crop, hole) for f, (crop, hole) in zip(filled, pairs, strict=True)]
            scores[f"{tone} {kind}"] = tuple(np.mean(per_crop, axis=0))
            if (tone, kind) == ("colour", "thin"):
                chroma = [chroma_errors(f, crop, hole) for f, (crop, hole) in zip(filled, pairs, strict=True)]
                tint[name] = tuple(np.mean(chroma, axis=0))
        rows[name] = scores
        print(f"  {name} done", flush=True)
    return rows, tint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=2, help="crops per held-out photo, tone and mask kind")
    parser.add_argument("--size", type=int, default=256, help="crop side (a multiple of 32)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=photo_data.DEFAULT_DATA)
    parser.add_argument(
        "--weights", type=Path, default=training.BUNDLED_DIR, help="folder of the tiny models"
    )
    parser.add_argument("--grid", type=Path, help="also write the picture grid here (PNG)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    started = time.perf_counter()
    cases = held_out_cases(args.data, args.crops, args.size, args.seed)
    found = methods(args.weights)
    rows, tint = evaluate(found, cases)
    columns = list(next(iter(rows.values())))
    count = sum(len(pairs) for pairs in cases.values())
    photos = ", ".join(training.EVAL_COLOUR + training.EVAL_GREY)
    print(
        f"\n{count} held-out {args.size}x{args.size} crops of {photos} (seed {args.seed}), weights from "
        f"{args.weights}; hole PSNR dB / SSIM / L1, mean over crops; {time.perf_counter() - started:.0f} s\n"
    )
    print(table(rows, columns))
    print("\n| method | chroma error along thin colour scratches (ΔE a*b*) | cast |\n|---|---|---|")
    for name, (error, cast) in tint.items():
        print(f"| {name} | {error:.2f} | {cast:.2f} |")
    print()
    for name in training.DEMO_MODELS:
        gaps = [f"{column} {rows[name][column][0] - rows['telea'][column][0]:+.1f} dB" for column in columns]
        print(f"{name} against telea: {', '.join(gaps)}")
    if args.grid:
        picture_grid({key: value for key, value in cases.items() if key[1] != "dust"}, found, args.grid)
    worse = [
        name for name in training.DEMO_MODELS for c in columns if rows[name][c][2] >= rows["mean fill"][c][2]
    ]
    if worse:
        sys.exit(f"not better than the mean-colour fill (hole L1) somewhere: {', '.join(sorted(set(worse)))}")


if __name__ == "__main__":
    main()
