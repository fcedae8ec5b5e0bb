"""Speed and peak memory of the resolution strategies, per family, strategy and image size.

Every measurement runs in its own subprocess, so that the peak resident set size (RSS, the
process's whole life: Python, torch, the image, the model) belongs to that run alone. Networks
have random weights (seeded), so speeds and memory are those of the real architectures, while
the filled pixels mean nothing beyond "how far does a strategy move the network's output away
from a full pass": that is what the mean absolute difference (MAD) inside the hole reports.

Images are smooth random colour fields; masks are `scratches` (near-vertical film scratches,
about 1 % of the pixels, 2 px wide per 1000 px of the shorter side) or `blob` (one ellipse of
15 % of the pixels).

Each job reports wall time and the process's CPU time (the fastest of `--repeats` runs), the
pixels fed to the network, the plan, and peak RSS. On a machine shared with other work, use
`--threads 1`: CPU time then measures the work done regardless of the load.

Quick subset (a few minutes):  python benchmarks/bench_strategies.py --quick
Crop against full on a scan:   python benchmarks/bench_strategies.py --models lama-small --threads 1 \
                                   --strategies full crop --sizes 6000x4000 --margins 128 32 16 \
                                   --memory-budget 100GB   # LaMa's estimate would refuse full
A 15 % hole with big-lama:     python benchmarks/bench_strategies.py --models big-lama \
                                   --strategies auto --sizes 8000x6000 --mask blob
On a GPU: add `--device cuda --precisions fp32 fp16 bf16`.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
import torch
from measure import machine_summary, peak_rss, reset_peak_rss

from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.strategies import InpaintOptions
from inpaint_cli.errors import InpaintError
from inpaint_cli.models import FAMILIES, InpaintModel, classical
from inpaint_cli.options import parse_size

LAMA_BLOCKS = {"input_nc": 4, "output_nc": 3, "n_downsampling": 3, "n_blocks": 18, "enable_lfu": False}
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "big-lama": ("lama", {**LAMA_BLOCKS, "ngf": 64, "max_features": 512, "global_channels": 384}),
    # big-lama's depth and layout at a quarter of the width: 1/16 of the compute, 1/4 of the activations.
    "lama-small": ("lama", {**LAMA_BLOCKS, "ngf": 16, "max_features": 128, "global_channels": 96}),
    "gatedconv": ("gatedconv", {"variant": "pt", "cnum": 48}),
    "pconv": ("pconv", {"layer_size": 7}),
}
"""Benchmarked networks: family and config (random weights); classical methods by name."""

SCRATCH_COVERAGE = 0.01
SCRATCH_WIDTH_PER_PIXEL = 0.002
SCRATCH_MAX_ANGLE = 5.0
"""Degrees from vertical: scratches run along the film."""
SCRATCH_LENGTHS = (0.05, 0.3)
"""Shortest and longest scratch, as a share of the image height."""
BLOB_COVERAGE = 0.15
BLOB_ASPECT = 4 / 3
COLOUR_FIELD_CELLS = 24
"""The image is a random colour field of this many cells on its shorter side, smoothly upscaled."""
WARM_UP_SIZE = 256
CALIBRATION_SIZE = 256


# --- inputs ----------------------------------------------------------------------------------------


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour field, made at low resolution and upscaled: uint8 from the start."""
    cells = max(2, round(COLOUR_FIELD_CELLS * max(height, width) / min(height, width)))
    shape = (COLOUR_FIELD_CELLS, cells) if width >= height else (cells, COLOUR_FIELD_CELLS)
    small = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def make_mask(kind: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    rng = np.random.default_rng(seed)
    if kind == "blob":
        area = BLOB_COVERAGE * height * width
        major = math.sqrt(area * BLOB_ASPECT / math.pi)
        axes = round(major), round(area / (math.pi * major))
        cv2.ellipse(canvas, (width // 2, height // 2), axes, 20, 0, 360, 255, thickness=-1)
        return canvas > 0
    thickness = max(2, round(SCRATCH_WIDTH_PER_PIXEL * min(height, width)))
    while np.count_nonzero(canvas) < SCRATCH_COVERAGE * height * width:
        length = rng.uniform(*SCRATCH_LENGTHS) * height
        angle = math.radians(rng.uniform(-SCRATCH_MAX_ANGLE, SCRATCH_MAX_ANGLE))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        dx, dy = length * math.sin(angle) / 2, length * math.cos(angle) / 2
        cv2.line(canvas, (round(x - dx), round(y - dy)), (round(x + dx), round(y + dy)), 255, thickness)
    return canvas > 0


def build(name: str) -> InpaintModel:
    if name in classical.MODELS:
        return classical.ClassicalInpainter.build(classical.MODELS[name])
    family, config = MODELS[name]
    if family not in FAMILIES:
        raise SystemExit(f"family {family!r} is not registered in inpaint_cli.models.FAMILIES")
    torch.manual_seed(0)
    network = FAMILIES[family].build(config)
    calibrate_batch_norms(network)
    network.eval()
    network.prepare_for_inference()
    return network


@torch.no_grad()
def calibrate_batch_norms(network: InpaintModel) -> None:
    """Set the statistics of every `nn.BatchNorm2d` (LaMa's) from one image, with random affine maps.

    With default statistics, random weights shrink activations layer after layer and LaMa's output
    is a flat 0.5 whatever the input; calibrated, it varies with the input as a trained network's
    does, so differences between strategies become visible.
    """
    norms = [module for module in network.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: the statistics of the calibration pass
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    image = torch.from_numpy(make_image(CALIBRATION_SIZE, CALIBRATION_SIZE, seed=2)).permute(2, 0, 1)
    hole = torch.from_numpy(make_mask("scratches", CALIBRATION_SIZE, CALIBRATION_SIZE, seed=2))[None, None]
    mask = hole.float() if network.hole_value == 1 else 1 - hole.float()
    network.train()
    network(network.normalization.to_network(image[None].float() / 255), mask)


# --- one measurement, in a subprocess --------------------------------------------------------------


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Run one inpainting job; report seconds, network pixels, plan and peak memory."""
    device = torch.device(job["device"])
    network = build(job["model"])
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    options = InpaintOptions(strategy=job["strategy"], crop_margin=job["margin"], memory_budget=job["budget"])
    inpainter = Inpainter(
        network, name=job["model"], device=job["device"], precision=job["precision"], options=options
    )
    warm = make_image(WARM_UP_SIZE, WARM_UP_SIZE, seed=1)
    inpainter.inpaint(warm, make_mask("scratches", WARM_UP_SIZE, WARM_UP_SIZE, seed=1))
    fed = []  # pixels of every network input, padding included
    network.register_forward_pre_hook(lambda _, inputs: fed.append(inputs[0][:, 0].numel()))
    height, width = job["height"], job["width"]
    pixels, hole = make_image(height, width), make_mask(job["mask"], height, width)
    baseline = psutil.Process().memory_info().rss
    reset_peak_rss()  # the passes' own peak: building the model and the warm-up do not count
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    report: dict[str, Any] = {**job, "hole_share": float(hole.mean())}
    timings = []
    for _ in range(job["repeats"]):
        fed.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            result = inpainter.inpaint(pixels, hole)
        except InpaintError as error:
            return {**report, "error": error.one_line()}
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append((time.perf_counter() - start, time.process_time() - start_cpu))
    if device.type == "cuda":
        report["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device)
    # The run least disturbed by other processes.
    report["seconds"], report["cpu_seconds"] = min(timings)
    report["network_pixels"] = sum(fed)
    report["passes"] = result.passes
    report["boxes"] = len(result.boxes)
    report["box_share"] = sum(box.area for box in result.boxes) / hole.size
    report["scales"] = sorted({round(box.scale, 3) for box in result.boxes})
    report["tiles"] = sorted({box.tile for box in result.boxes if box.tile})
    report["baseline_rss"] = baseline
    report["peak_rss"] = peak_rss()
    np.save(job["keep"], result.pixels[hole])
    return report


# --- the grid, run from the parent ------------------------------------------------------------------


def parse_image_size(text: str) -> tuple[int, int]:
    """`512` -> 512x512; `6000x4000` -> width 6000, height 4000; returned as (height, width)."""
    width, _, height = text.partition("x")
    return int(height or width), int(width)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {**job, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(report: dict[str, Any]) -> str:
    size = f"{report['width']}x{report['height']}"
    name = report["strategy"] + (f"@{report['margin']}" if report["strategy"] in ("crop", "auto") else "")
    head = f"{report['model']:<11} {report['precision']:<5} {size:>10} {report['mask']:<9} {name:<9}"
    if "error" in report:
        return f"{head} {report['error']}"
    megapixels = report["width"] * report["height"] / 1e6
    plan = f"{report['boxes']} box(es) {report['box_share']:.0%}, scales {report['scales']}"
    plan += f", tiles {report['tiles']}"
    memory = f"{report['peak_rss'] / 2**30:6.2f} GiB"
    if "cuda_peak_bytes" in report:
        memory += f" (CUDA {report['cuda_peak_bytes'] / 2**30:.2f} GiB)"
    return (
        f"{head} {report['seconds']:8.1f} s ({report['cpu_seconds']:7.1f} s CPU)"
        f" {megapixels / report['seconds']:8.3f} MP/s"
        f" {report['network_pixels'] / 1e6:8.2f} MP fed, {report['passes']:3d} calls, peak RSS {memory}"
        f" (before the call {report['baseline_rss'] / 2**30:.2f}); {plan}"
    )


def compare(reports: list[dict[str, Any]]) -> None:
    """Speed-up and mean absolute difference in the hole of every strategy against `full`."""
    full = {
        (r["model"], r["precision"], r["height"], r["width"], r["mask"]): r
        for r in reports
        if r["strategy"] == "full" and "error" not in r
    }
    for report in reports:
        key = (report["model"], report["precision"], report["height"], report["width"], report["mask"])
        reference = full.get(key)
        if reference is None or report is reference or "error" in report:
            continue
        difference = np.abs(np.load(report["keep"]).astype(np.int32) - np.load(reference["keep"]))
        print(
            f"  {report['model']} {report['width']}x{report['height']} {report['strategy']}"
            f"@{report['margin']}: {reference['seconds'] / report['seconds']:.1f}x faster than full"
            f" ({reference['cpu_seconds'] / report['cpu_seconds']:.1f}x less CPU time,"
            f" {reference['network_pixels'] / report['network_pixels']:.1f}x fewer pixels fed),"
            f" MAD in the hole {difference.mean():.2f}/255"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["telea", "lama-small", "big-lama", "gatedconv", "pconv"]
    )
    parser.add_argument("--strategies", nargs="+", default=["full", "crop", "tile", "resize", "auto"])
    parser.add_argument(
        "--sizes", nargs="+", default=["512", "2048", "6000x4000"], help="WIDTHxHEIGHT or SIDE"
    )
    parser.add_argument("--mask", choices=["scratches", "blob"], default="scratches")
    parser.add_argument(
        "--margins",
        nargs="+",
        type=int,
        default=[128],
        help="--crop-margin values for crop; auto gets the first",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], help="fp32 fp16 bf16 (CUDA)")
    parser.add_argument("--memory-budget", help="e.g. 100GB (default: the engine's, from free memory)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per job (the fastest counts)")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's); 1 makes CPU time a fair measure"
    )
    parser.add_argument("--quick", action="store_true", help="telea and lama-small at 512 and 2048 only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    if args.quick:
        args.models, args.sizes = ["telea", "lama-small"], ["512", "2048"]
    print(f"{machine_summary()}, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, device {args.device}")
    budget = parse_size(args.memory_budget) if args.memory_budget else None
    reports = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            for precision in args.precisions:
                for size in args.sizes:
                    height, width = parse_image_size(size)
                    for strategy in args.strategies:
                        margins = args.margins if strategy == "crop" else args.margins[:1]
                        for margin in margins:
                            job = {
                                "model": model,
                                "precision": precision,
                                "device": args.device,
                                "height": height,
                                "width": width,
                                "mask": args.mask,
                                "strategy": strategy,
                                "margin": margin,
                                "budget": budget,
                                "repeats": args.repeats,
                                "threads": args.threads,
                                "keep": str(Path(folder) / f"{len(reports)}.npy"),
                            }
                            reports.append(run_job(job))
                            print(row(reports[-1]), flush=True)
        print("\nagainst full (same model, precision, size and mask):")
        compare(reports)


if __name__ == "__main__":
    main()
