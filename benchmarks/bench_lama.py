"""Throughput and peak memory of a big-lama-sized LaMa generator on CPU.

Random weights with the big-lama architecture (ngf 64, 3 down-samplings, 18 FFC blocks, 75 %
global channels); BatchNorm statistics are calibrated on random data and then perturbed, so every
BN is a non-trivial affine map and the output is not saturated. Variants are timed interleaved
(one run of each in turn), so that load from other processes hits them alike:

- `unfolded fp32`: the network as loaded, BatchNorm layers separate, contiguous (NCHW) tensors;
- `folded fp32 nchw`: BatchNorm folded into the convolutions, NCHW;
- `folded fp32`: what `prepare_for_inference` gives (folded, channels-last);
- `folded bf16`: the same under bf16 autocast (FFTs, encoder and output sigmoid stay fp32).

Wall time gives the throughput; speed-ups are ratios of the process's CPU time, which other
processes on a shared machine do not inflate (with `--threads 1` it is the compute time itself).
Peak memory is measured in a fresh process per precision (Linux only).

Run: `python benchmarks/bench_lama.py --sizes 512 1024 --repeats 5 [--threads 1]`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable
from contextlib import nullcontext

import torch
from measure import interleaved, machine_summary, peak_rss_increase, pin_threads, run_in_child
from released import BIG_LAMA

from inpaint_cli.models.lama import Lama

CALIBRATION_SIZE = 128
HOLE_FRACTION_SIDE = 0.5
"""The hole is a centred square with half the image side (a quarter of the pixels)."""
PRECISIONS: dict[str, Callable[[], object]] = {
    "fp32": nullcontext,
    "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
}


@torch.no_grad()
def random_big_lama(seed: int = 0) -> Lama:
    """big-lama architecture with random weights and calibrated, perturbed BatchNorm statistics."""
    torch.manual_seed(seed)
    model = Lama(BIG_LAMA)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None  # cumulative average: one pass sets the statistics of that pass
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    model.train()
    image = torch.rand(2, 3, CALIBRATION_SIZE, CALIBRATION_SIZE)
    model(image, hole_mask(CALIBRATION_SIZE).expand(2, -1, -1, -1))
    for norm in norms:
        norm.running_mean.add_(torch.randn_like(norm.running_mean) * 0.1)
        norm.running_var.mul_(torch.empty_like(norm.running_var).uniform_(0.6, 1.5))
    return model.eval()


def hole_mask(size: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    start = int(size * (1 - HOLE_FRACTION_SIDE) / 2)
    end = start + int(size * HOLE_FRACTION_SIDE)
    mask[..., start:end, start:end] = 1
    return mask


def peak_activation_bytes(size: int, precision: str) -> int:
    """Peak resident memory added by one forward pass of a prepared network, in a fresh process.

    A fresh process holds no allocator cache from earlier passes; the kernel's high-water mark is
    reset (Linux `clear_refs`) just before the pass, so building the network does not count.
    """
    return run_in_child(_measure_in_child, size, precision)


def _measure_in_child(size: int, precision: str) -> int:
    model = Lama(BIG_LAMA).eval()  # weight values do not change the memory a pass needs
    model.prepare_for_inference()
    image, mask = torch.rand(1, 3, size, size), hole_mask(size)
    return peak_rss_increase(lambda: run(model, PRECISIONS[precision], image, mask))[1]


def variants(model: Lama) -> dict[str, tuple[Lama, Callable[[], object]]]:
    folded_nchw = copy.deepcopy(model)
    folded_nchw.prepare_for_inference()
    folded_nchw.channels_last = False
    folded_nchw.to(memory_format=torch.contiguous_format)
    prepared = copy.deepcopy(model)
    prepared.prepare_for_inference()
    return {
        "unfolded fp32": (model, PRECISIONS["fp32"]),
        "folded fp32 nchw": (folded_nchw, PRECISIONS["fp32"]),
        "folded fp32": (prepared, PRECISIONS["fp32"]),
        "folded bf16": (prepared, PRECISIONS["bf16"]),
    }


def run(
    model: Lama, precision: Callable[[], object], image: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    with torch.inference_mode(), precision():
        return model(image, mask).float()


def bench_size(
    size: int, repeats: int, models: dict[str, tuple[Lama, Callable[[], object]]], measure_memory: bool
) -> None:
    torch.manual_seed(size)
    image, mask = torch.rand(1, 3, size, size), hole_mask(size)
    outputs = {name: run(m, precision, image, mask) for name, (m, precision) in models.items()}  # warm-up
    cpu: dict[str, list[float]] = {}
    passes = {
        name: (lambda m=m, p=precision: run(m, p, image, mask)) for name, (m, precision) in models.items()
    }
    wall = interleaved(passes, rounds=repeats, warmup=0, cpu_seconds=cpu)
    megapixels = size * size / 1e6
    median_cpu = {name: statistics.median(samples) for name, samples in cpu.items()}
    print(f"\n{size}x{size} ({megapixels:.2f} MP), median of {repeats}")
    print(f"  {'variant':<18} {'wall s':>7} {'MP/s':>7} {'CPU s':>7} {'speed-up (CPU time)':>20}")
    for name, samples in wall.items():
        seconds = statistics.median(samples)
        speedup = median_cpu["unfolded fp32"] / median_cpu[name]
        throughput = megapixels / seconds
        print(f"  {name:<18} {seconds:7.2f} {throughput:7.3f} {median_cpu[name]:7.2f} {speedup:19.2f}x")
    hole = mask.bool().expand_as(outputs["folded fp32"])
    folding_error = (outputs["folded fp32"] - outputs["unfolded fp32"]).abs().max().item()
    bf16_error = (outputs["folded bf16"] - outputs["folded fp32"]).abs()[hole].mean().item()
    fp32 = median_cpu["folded fp32"]
    print(f"  folded vs unfolded: {median_cpu['unfolded fp32'] / fp32:.2f}x, max |diff| {folding_error:.2e}")
    print(f"  channels-last vs NCHW (folded fp32): {median_cpu['folded fp32 nchw'] / fp32:.2f}x")
    print(
        f"  bf16 vs fp32 (folded): {fp32 / median_cpu['folded bf16']:.2f}x,"
        f" mean |diff| in the hole {bf16_error:.5f} = {bf16_error * 255:.2f}/255"
    )
    if measure_memory:
        for precision in PRECISIONS:
            peak = peak_activation_bytes(size, precision)
            print(
                f"  peak activation memory, prepared {precision}: {peak / 2**20:.0f} MiB"
                f" = {peak / (size * size):.0f} bytes per pixel"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="square input sides")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    args = parser.parse_args()
    pin_threads(args.threads)
    print(machine_summary())
    models = variants(random_big_lama())
    for size in args.sizes:
        bench_size(size, args.repeats, models, not args.no_memory)


if __name__ == "__main__":
    main()
