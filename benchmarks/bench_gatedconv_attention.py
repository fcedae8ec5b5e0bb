"""Peak memory and time of DeepFill v2 (GatedConv) versus input size, and what contextual attention costs.

Contextual attention compares every position at 1/8 resolution with every other (L = H·W/64
patches, an L×L score array), so without care its memory grows with the square of the pixel
count. Ours computes the scores in chunks of query positions of at most `--chunk-mib` MiB;
`--chunk-mib 0` gives one chunk (the whole L×L array at once, as the reference does).

Each measurement runs in a fresh process (random weights, a centred square hole of a quarter of
the pixels, fp32, batch 1): peak memory is the process's high-water resident set size minus its
size just before the pass, so it counts everything the pass allocates. The table also shows
`memory_estimate`, which the engine compares with its memory budget.

Run: `python benchmarks/bench_gatedconv_attention.py --sizes 256 512 768 1024 --variants pt tf`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import psutil
import torch
from measure import machine_summary, peak_rss, pin_threads, reset_peak_rss

from inpaint_cli.models.gatedconv import DeepFillV2

CNUM = 48
"""Base width of every public DeepFill v2 checkpoint."""
WARM_UP_SIZE = 64
HOLE_SIDE_FRACTION = 0.5
"""The hole is a centred square with half the image side (a quarter of the pixels)."""
MIB = 2**20
MEASURING_ENVIRONMENT = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
"""A fixed glibc mmap threshold: big buffers are unmapped when freed, so the resident size follows
the live allocations (by default glibc raises the threshold and keeps freed memory in its heap)."""


def hole_mask(height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, height, width)
    top, left = int(height * (1 - HOLE_SIDE_FRACTION) / 2), int(width * (1 - HOLE_SIDE_FRACTION) / 2)
    mask[..., top : top + int(height * HOLE_SIDE_FRACTION), left : left + int(width * HOLE_SIDE_FRACTION)] = 1
    return mask


def measure(variant: str, height: int, width: int, chunk_mib: int) -> dict[str, float]:
    """One pass in this process: seconds (total and in contextual attention) and peak bytes."""
    torch.manual_seed(0)
    model = DeepFillV2({"variant": variant, "cnum": CNUM}).eval()
    attention = model.attention_module
    attention.chunk_bytes = chunk_mib * MIB if chunk_mib else 1 << 62
    attention_seconds = 0.0

    def timed_attention(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal attention_seconds
        attention_seconds += time.perf_counter() - started_attention

    def start_attention(module: torch.nn.Module, args: tuple) -> None:
        nonlocal started_attention
        started_attention = time.perf_counter()

    started_attention = 0.0
    attention.register_forward_pre_hook(start_attention)
    attention.register_forward_hook(timed_attention)
    with torch.inference_mode():
        model(torch.rand(1, 3, WARM_UP_SIZE, WARM_UP_SIZE) * 2 - 1, hole_mask(WARM_UP_SIZE, WARM_UP_SIZE))
        image, mask = torch.rand(1, 3, height, width) * 2 - 1, hole_mask(height, width)
        attention_seconds = 0.0
        reset_peak_rss()
        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        model(image, mask)
        seconds = time.perf_counter() - started
    peak = peak_rss()
    return {
        "seconds": seconds,
        "attention_seconds": attention_seconds,
        "peak_bytes": peak - before,
        "estimate_bytes": model.memory_estimate(height, width),
    }


def measure_in_subprocess(variant: str, height: int, width: int, chunk_mib: int, threads: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        str(height),
        str(width),
        str(chunk_mib),
        str(threads),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=MEASURING_ENVIRONMENT)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512, 768, 1024])
    parser.add_argument("--variants", nargs="+", default=["pt", "tf"], choices=["pt", "tf"])
    parser.add_argument("--chunk-mib", type=int, nargs="+", default=[256], help="0 = one chunk (unbounded)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, height, width, chunk_mib, threads = args.child
        pin_threads(int(threads))
        print(json.dumps(measure(variant, int(height), int(width), int(chunk_mib))))
        return

    pin_threads(args.threads)
    print(f"# {machine_summary()}")
    header = "| variant | chunk | input | L | time s | in CA s | peak MiB | estimate MiB | estimate/peak |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for variant in args.variants:
        for chunk_mib in args.chunk_mib:
            for size in args.sizes:
                row = measure_in_subprocess(variant, size, size, chunk_mib, args.threads)
                length = (size // 8) ** 2
                chunk = f"{chunk_mib} MiB" if chunk_mib else "none"
                print(
                    f"| {variant} | {chunk} | {size}×{size} | {length} | {row['seconds']:.2f} | "
                    f"{row['attention_seconds']:.2f} | {row['peak_bytes'] / MIB:.0f} | "
                    f"{row['estimate_bytes'] / MIB:.0f} | {row['estimate_bytes'] / row['peak_bytes']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
