"""PConv U-Net: our partial convolutions against a straightforward implementation of the reference formula.

The reference (naoto0804 `PartialConv`) computes each layer's valid count with a second convolution
as wide as the real one, over a per-channel mask, with an all-ones kernel. Ours drops those kernels
and counts with one single-channel box filter. This script builds the full-size network (depth 7,
random weights drawn like the fixtures', SPEC §7.1), checks both give the same output, and prints
the time per forward pass, the speed-up and the approximate peak memory of one pass.

    python benchmarks/bench_pconv.py [--size 512] [--depth 7] [--repeats 3] [--threads N]

`Reference*` below are also the independent oracle of tests/test_pconv.py.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections.abc import Callable

import psutil
import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.loading import load_strict
from inpaint_cli.models import pconv
from inpaint_cli.models.base import IMAGENET

RSS_SAMPLE_SECONDS = 0.005


class ReferencePartialConv(nn.Module):
    """The reference layer as SPEC §1.1 states it: input conv plus an all-ones mask conv, per-channel mask."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool) -> None:
        super().__init__()
        padding = kernel // 2
        self.input_conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=bias)
        self.mask_conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        nn.init.constant_(self.mask_conv.weight, 1.0)
        self.mask_conv.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.input_conv(x * mask)
        bias = self.input_conv.bias.view(1, -1, 1, 1) if self.input_conv.bias is not None else 0
        with torch.no_grad():
            window_sum = self.mask_conv(mask)
        empty = window_sum == 0
        output = (output - bias) / window_sum.masked_fill(empty, 1.0) + bias
        output = output.masked_fill(empty, 0.0)
        return output, (~empty).to(output.dtype)


class ReferenceBlock(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, *, bn: bool, activ: str
    ):
        super().__init__()
        self.conv = ReferencePartialConv(in_channels, out_channels, kernel, stride, bias=activ == "none")
        if bn:
            self.bn = nn.BatchNorm2d(out_channels)
        self.activation = {"relu": nn.ReLU(), "leaky": nn.LeakyReLU(0.2), "none": nn.Identity()}[activ]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.conv(x, mask)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.activation(x), mask


class ReferencePConvUNet(nn.Module):
    """naoto0804 `PConvUNet` in its official state-dict layout, 3-channel masks throughout (SPEC §2)."""

    def __init__(self, layer_size: int, base_channels: int = pconv.BASE_CHANNELS) -> None:
        super().__init__()
        self.layer_size = layer_size

        def width(level: int) -> int:
            return pconv.encoder_width(level, base_channels)

        for level in range(1, layer_size + 1):
            kernel = pconv.ENCODER_KERNELS[min(level, len(pconv.ENCODER_KERNELS)) - 1]
            block = ReferenceBlock(width(level - 1), width(level), kernel, 2, bn=level > 1, activ="relu")
            self.add_module(f"enc_{level}", block)
        for level in range(layer_size, 0, -1):
            inner = level > 1
            channels = width(level) + width(level - 1)
            block = ReferenceBlock(
                channels, width(level - 1), 3, 1, bn=inner, activ="leaky" if inner else "none"
            )
            self.add_module(f"dec_{level}", block)

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, trace: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """image already masked (N×3×H×W, normalised), mask N×3×H×W with 1 = valid."""
        levels = [(image, mask)]
        for level in range(1, self.layer_size + 1):
            levels.append(getattr(self, f"enc_{level}")(*levels[-1]))
            if trace is not None:
                trace[f"mask.enc_{level}"] = levels[-1][1]
        h, m = levels.pop()
        for level in range(self.layer_size, 0, -1):
            skip, skip_mask = levels.pop()
            h = torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skip], dim=1)
            m = torch.cat([F.interpolate(m, scale_factor=2.0, mode="nearest"), skip_mask], dim=1)
            h, m = getattr(self, f"dec_{level}")(h, m)
            if trace is not None:
                trace[f"mask.dec_{level}"] = m
        return h


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Fixture-like random weights (SPEC §7.1): conv ~ N(0,1)·sqrt(fan_in), random BN statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("input_conv.weight"):
                tensor.normal_(generator=generator).mul_(math.sqrt(tensor[0].numel()))
            elif name.endswith("input_conv.bias"):
                tensor.normal_(0.0, 0.1, generator=generator)
            elif name.endswith("bn.weight"):
                tensor.uniform_(0.5, 1.5, generator=generator)
            elif name.endswith(("bn.bias", "bn.running_mean")):
                tensor.normal_(0.0, 0.2, generator=generator)
            elif name.endswith("bn.running_var"):
                tensor.uniform_(0.5, 2.0, generator=generator)
    return model


def random_hole(height: int, width: int, seed: int) -> torch.Tensor:
    """1×1×H×W {0,1} hole (1 = hole): an ellipse and thick random strokes, about a quarter of the image."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(height).view(-1, 1).float()
    cols = torch.arange(width).view(1, -1).float()
    hole = ((rows - 0.4 * height) / (0.2 * height)) ** 2 + ((cols - 0.6 * width) / (0.15 * width)) ** 2 < 1
    for _ in range(6):
        start, end = torch.rand(2, 2, generator=generator) * torch.tensor([height, width])
        radius = max(2.0, 0.02 * min(height, width))
        for t in torch.linspace(0, 1, 64):
            y, x = start + t * (end - start)
            hole |= (rows - y) ** 2 + (cols - x) ** 2 < radius**2
    return hole.float()[None, None]


def best_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest wall time of each run; the runs alternate so that a busy machine slows them alike."""
    best = dict.fromkeys(runs, math.inf)
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def peak_rss_increase(run: Callable[[], object]) -> int:
    """Approximate peak resident memory above the level before `run` (sampled, bytes)."""
    process = psutil.Process()
    baseline = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(RSS_SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return max(0, peak - baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="side of the square input")
    parser.add_argument("--depth", type=int, default=7, help="layer_size of the U-Net")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    reference = randomize_(ReferencePConvUNet(args.depth), args.seed).eval()
    converted = pconv.PConvUNet.convert_state_dict(reference.state_dict())
    ours = pconv.PConvUNet.build(pconv.PConvUNet.config_from_state_dict(converted))
    load_strict(ours, converted)
    ours.eval()
    ours.prepare_for_inference()

    torch.manual_seed(args.seed)
    image = IMAGENET.to_network(torch.rand(1, 3, args.size, args.size))
    valid = 1 - random_hole(args.size, args.size, args.seed)
    masked, valid3 = image * valid, valid.expand(-1, 3, -1, -1).contiguous()

    with torch.inference_mode():
        ours_peak = peak_rss_increase(lambda: ours(image, valid))
        reference_peak = peak_rss_increase(lambda: reference(masked, valid3))
        ours_out, reference_out = ours(image, valid), reference(masked, valid3)
        seconds = best_seconds(
            {"ours": lambda: ours(image, valid), "reference": lambda: reference(masked, valid3)}, args.repeats
        )
    ours_time, reference_time = seconds["ours"], seconds["reference"]

    difference = (ours_out - reference_out).abs().max().item()
    scale = reference_out.abs().max().item()
    same = torch.allclose(ours_out, reference_out, rtol=1e-4, atol=1e-4)
    pixels = args.size * args.size
    print(f"PConv U-Net depth {args.depth}, {args.size}x{args.size}, {torch.get_num_threads()} CPU threads")
    print(f"hole fraction           {1 - valid.mean().item():.3f}")
    print(f"reference formula       {reference_time:.3f} s/pass   peak +{reference_peak / 2**20:.0f} MiB")
    print(f"inpaint (box filter)    {ours_time:.3f} s/pass   peak +{ours_peak / 2**20:.0f} MiB")
    print(f"speed-up                {reference_time / ours_time:.2f}x")
    print(f"peak bytes per pixel    {ours_peak / pixels:.0f} (ours)")
    print(f"max |difference|        {difference:.2e} (outputs up to {scale:.1f}; allclose 1e-4: {same})")
    if not same:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
