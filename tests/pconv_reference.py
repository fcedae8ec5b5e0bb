"""An independent implementation of the PConv reference formula: the oracle of tests/test_pconv.py.

The reference (naoto0804 `PartialConv`) computes each layer's valid count with a second convolution
as wide as the real one, over a per-channel mask, with an all-ones kernel (SPEC §1.1). Ours drops
those kernels and counts with one single-channel box filter; benchmarks/bench_pconv.py times both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.models import pconv


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
