"""LaMa feature refinement: a few Adam steps on the bottleneck features at each scale of a pyramid.

P. Kulshreshtha, B. Pugh, S. Jiddi, "Feature Refinement to Improve High Resolution Image Inpainting",
2022; the official implementation is `refine_predict` in advimman/lama's
`saicinpainting/evaluation/refinement.py` (Apache-2.0). This is our own implementation of the facts in
tests/data/lama/refine/SPEC.md, checked against fixtures made by running the official code.

The input is shrunk to a pixel budget if it is larger, and a pyramid is built by blurring and halving.
The coarsest scale is one plain pass. At every finer scale the front of the network (up to the first
residual block) runs once without gradients; its output, the (local, global) bottleneck features, is
then optimised so that the prediction keeps the known pixels (L1) and, downscaled, agrees with the
previous scale's result inside the hole, away from its border (L1 on an eroded mask). Only the rear of
the network carries gradients, with its residual blocks recomputed in backward (activation
checkpointing); a scale's features, optimiser state and activations are freed before the next one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from inpaint_cli.engine.refine_plan import Refinement
from inpaint_cli.engine.regions import padded_size
from inpaint_cli.engine.runner import pad_bottom_right
from inpaint_cli.errors import UsageError
from inpaint_cli.models.lama import Lama

log = logging.getLogger(__name__)

HOLE = 1e-8
"""A mask value at least this is a hole (the official threshold): any pixel a hole touches."""
PYRAMID_BLUR_SIDE = 5
BLUR_SIGMA = 1.0
"""The pyramid's Gaussian blur before each halving, 5×5 separable with a mirrored (reflect) border."""
ELLIPSE_HALF_WIDTHS = (0, 4, 5, 6, 6, 7, 7, 7, 7, 7, 6, 6, 5, 4, 0)
"""OpenCV's 15×15 elliptic structuring element, row by row: the cells |dx| <= half width of row dy
(169 cells; not symmetric under transposition). The hole of the downscaled-result loss is eroded by it."""
WHOLE = 0.5
"""Counts of cells (integers) compared with this, so that a convolution's rounding cannot matter."""


def supports(family: str) -> bool:
    """Whether networks of a family can be refined: LaMa's generator (any width, depth or checkpoint)."""
    return family == Lama.family


def check_supported(options: Refinement | None, family: str, name: str) -> None:
    """A UsageError when refinement is asked of a model that cannot do it (before anything loads)."""
    if options is not None and not supports(family):
        raise UsageError(
            f"--refine works with LaMa models only, not {name} ({family})",
            hint="use --model lama, lama-fourier, lama-tiny or a LaMa --checkpoint",
        )


@dataclass
class Scale:
    """What happened at one scale: its size, padded size, losses per forward pass and time; with
    `keep`, the scale's image, hole and composited result (unpadded)."""

    size: tuple[int, int]
    padded: tuple[int, int]
    losses: list[float] = field(default_factory=list)
    """`L_known + L_ms` of each forward pass (NaN where the eroded hole is empty); none at the coarsest."""
    known_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Refined:
    """A refined input: `values` 1×3×H×W at the input's size (its hole holds the fill, upscaled
    bicubically when the input was shrunk to the pixel budget), and what each scale did."""

    values: torch.Tensor
    shrunk: tuple[int, int] | None
    scales: list[Scale]


def refine(
    network: Lama,
    image: torch.Tensor,
    hole: torch.Tensor,
    settings: Refinement,
    *,
    autocast: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    on_forward: Callable[[], None] | None = None,
    keep: bool = False,
    recompute_blocks: bool = True,
) -> Refined:
    """Refine one input: 1×3×H×W image in [0, 1] and 1×1×H×W hole (1 = hole) on the network's device.

    `autocast` is entered around each run of the network (the FFTs, the encoder and the output stay
    fp32 inside the network); `on_forward` hears each forward pass of the rear; `keep` keeps each
    scale's tensors (tests); `recompute_blocks` False keeps every activation of the rear for backward,
    as the official code does (benchmarks).
    """
    if image.shape[0] != 1:
        raise ValueError(f"refinement takes one image at a time, not {image.shape[0]}")
    if network.training:
        raise ValueError("refinement needs the network in eval mode")
    network.requires_grad_(False)  # gradients reach the features only
    height, width = image.shape[-2:]
    sizes = settings.pyramid(height, width)
    levels = pyramid(*shrink(image, hole, sizes[-1]), sizes)
    refiner = _Refiner(network, settings, autocast, on_forward, recompute_blocks)
    result: torch.Tensor | None = None
    scales = []
    for index, (level_image, level_hole) in enumerate(levels):
        started = time.perf_counter()
        result, scale = refiner.scale(level_image, level_hole, result)
        scale.seconds = time.perf_counter() - started
        if keep:
            scale.tensors.update(image=level_image, hole=level_hole, result=result)
        scales.append(scale)
        _log_scale(index, len(levels), scale)
    assert result is not None
    shrunk = sizes[-1] if sizes[-1] != (height, width) else None
    if shrunk is not None:  # the official code stops here, at the shrunk size
        result = F.interpolate(result, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    return Refined(result, shrunk, scales)


def refine_each(
    network: Lama,
    settings: Refinement,
    image: torch.Tensor,
    hole: torch.Tensor,
    *,
    autocast: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    on_forward: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Each of N×3×H×W images with its N×1×H×W hole refined on its own -> N×3×H×W values on the CPU."""
    return torch.cat(
        [
            refine(
                network, image[i : i + 1], hole[i : i + 1], settings, autocast=autocast, on_forward=on_forward
            ).values.cpu()
            for i in range(image.shape[0])
        ]
    )


def shrink(
    image: torch.Tensor, hole: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input at the pixel budget's size (bilinear, no antialiasing, as the official code does);
    every hole pixel touched by a hole becomes a whole one."""
    if tuple(image.shape[-2:]) == size:
        return image, hole
    hole = resize(hole, size)
    return resize(image, size), torch.where(hole > HOLE, torch.ones_like(hole), hole)


def pyramid(
    image: torch.Tensor, hole: torch.Tensor, sizes: tuple[tuple[int, int], ...]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(image, hole) at each size, coarsest first: each blurred and halved from the next finer one; a
    coarser hole covers every pixel the finer hole touches."""
    levels = [(image, hole)]
    for size in reversed(sizes[:-1]):
        finer_image, finer_hole = levels[0]
        coarse_hole = resize(gaussian_blur(finer_hole), size) >= HOLE
        levels.insert(0, (resize(gaussian_blur(finer_image), size), coarse_hole.float()))
    return levels


@dataclass(frozen=True)
class _Refiner:
    """How every scale of one input is run."""

    network: Lama
    settings: Refinement
    autocast: Callable[[], AbstractContextManager[object]]
    on_forward: Callable[[], None] | None
    recompute_blocks: bool

    def scale(
        self, image: torch.Tensor, hole: torch.Tensor, reference: torch.Tensor | None
    ) -> tuple[torch.Tensor, Scale]:
        """One scale: the features of its front, optimised against `reference` (the coarser scale's
        result) unless this is the coarsest; returns the composited result at the scale's size."""
        network = self.network
        height, width = image.shape[-2:]
        padded = tuple(padded_size(side, network.pad_multiple, network.min_size) for side in (height, width))
        image = pad_reflect(image, padded)
        hole = (pad_reflect(hole, padded) >= HOLE).float()
        with torch.no_grad(), self.autocast():
            local, global_ = network.encode(image, hole)
        features = [branch.detach().requires_grad_() for branch in (local, global_) if branch is not None]
        scale = Scale((height, width), padded)
        if reference is None:
            with torch.no_grad():
                prediction = self.forward(features)
        else:
            loss = ScaleLoss(image, hole, reference, (height, width))
            prediction = self.optimise(features, loss, scale)
        result = hole * prediction + (1 - hole) * image
        return result[..., :height, :width].detach(), scale

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The rear of the network on the features (local, then global if the network has one)."""
        branches = (features[0], features[1] if len(features) > 1 else None)
        recompute = self.recompute_blocks and torch.is_grad_enabled()
        with self.autocast():
            prediction = self.network.decode(branches, recompute_blocks=recompute).float()
        if self.on_forward is not None:
            self.on_forward()
        return prediction

    def optimise(self, features: list[torch.Tensor], loss: ScaleLoss, scale: Scale) -> torch.Tensor:
        """`iters` forward passes with an Adam step after each but the last (a fresh optimiser per
        scale); returns the last prediction."""
        iters = self.settings.iters
        optimizer = torch.optim.Adam(features, lr=self.settings.lr)
        for step in range(iters):
            last = step == iters - 1
            optimizer.zero_grad()
            with torch.set_grad_enabled(not last):  # the last pass only predicts: nothing kept for backward
                prediction = self.forward(features)
                known, downscaled = loss(prediction)
                total = known + downscaled
            scale.losses.append(float(total.detach()))
            scale.known_losses.append(float(known.detach()))
            if not last:
                total.backward()
                optimizer.step()
        return prediction.detach()


class ScaleLoss:
    """L1 on the known pixels of the padded scale (the mirrored border included), plus L1 between the
    prediction blurred and halved and the coarser result, inside the hole eroded by a 15×15 ellipse.

    Both are means over their own elements; the second is NaN when the eroded hole is empty (thin
    holes), and then adds nothing to the gradient.
    """

    def __init__(
        self, image: torch.Tensor, hole: torch.Tensor, reference: torch.Tensor, size: tuple[int, int]
    ) -> None:
        self.size = size
        self.known = (hole < HOLE).expand(-1, 3, -1, -1)
        self.known_values = image.expand(-1, 3, -1, -1)[self.known]
        self.inside = ms_mask(hole, size).expand(-1, 3, -1, -1)
        self.reference_values = reference[self.inside]

    def __call__(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        known = torch.abs(prediction[self.known] - self.known_values).mean()
        height, width = self.size
        downscaled = resize(gaussian_blur(prediction[..., :height, :width]), (height // 2, width // 2))
        return known, torch.abs(downscaled[self.inside] - self.reference_values).mean()


def ms_mask(hole: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Where the halved prediction is compared with the coarser result: pixels of the halved scale whose
    whole bilinear footprint is hole, eroded by the ellipse (1×1×h/2×w/2 bool).

    The official threshold, 1 - 1e-8, is exactly 1.0 in float32: a pixel the bilinear kernel rounds to
    0.99999994 is dropped with its ellipse, as there (SPEC §9.5), so this compares with 1.0 exactly.
    """
    height, width = size
    halved = resize(hole[:, :1, :height, :width], (height // 2, width // 2))
    return erode(halved >= 1.0)


def erode(inside: torch.Tensor) -> torch.Tensor:
    """Binary erosion by the 15×15 ellipse; positions outside the image are ignored (count as inside)."""
    element = ellipse(inside.device)
    radius = element.shape[-1] // 2
    outside = F.conv2d((~inside).float(), element, padding=radius)  # zero padding: the border is no hole edge
    return outside < WHOLE


def ellipse(device: torch.device) -> torch.Tensor:
    """The structuring element as a 1×1×15×15 float kernel."""
    radius = len(ELLIPSE_HALF_WIDTHS) // 2
    offsets = torch.arange(-radius, radius + 1)
    half_widths = torch.tensor(ELLIPSE_HALF_WIDTHS)
    rows = offsets[None, :].abs() <= half_widths[:, None]
    return rows.float()[None, None].to(device)


def gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """5×5 Gaussian blur (sigma 1) of an N×C×H×W tensor, rows then columns, mirrored border."""
    offsets = torch.arange(PYRAMID_BLUR_SIDE, dtype=torch.float32, device=x.device) - PYRAMID_BLUR_SIDE // 2
    taps = torch.exp(-(offsets**2) / (2 * BLUR_SIGMA**2))
    taps = (taps / taps.sum()).to(x.dtype)
    channels, radius = x.shape[1], PYRAMID_BLUR_SIDE // 2
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="reflect"),
        taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1),
        groups=channels,
    )
    return F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="reflect"),
        taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1),
        groups=channels,
    )


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize without antialiasing (pixel centres aligned)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pad_reflect(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad at the bottom and right to `size`, mirroring without repeating the edge (unlike the plain
    pass's symmetric padding: this is the refinement's own)."""
    return pad_bottom_right(x, *size, "reflect")


def _log_scale(index: int, count: int, scale: Scale) -> None:
    height, width = scale.size
    if not scale.losses:
        log.info(
            "refine scale %d/%d (%dx%d): one pass, %.1f s", index + 1, count, width, height, scale.seconds
        )
        return
    log.info(
        "refine scale %d/%d (%dx%d): loss %.4f -> %.4f in %d Adam step(s), %.1f s",
        index + 1,
        count,
        width,
        height,
        scale.losses[0],
        scale.losses[-1],
        len(scale.losses) - 1,
        scale.seconds,
    )
