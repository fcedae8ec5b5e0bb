"""Scratch detector: the U-Net of *Bringing Old Photos Back to Life* (BOPBtL) that finds damage.

Paper: Z. Wan et al., "Bringing Old Photos Back to Life", CVPR 2020. Network and released weights:
microsoft/Bringing-Old-Photos-Back-to-Life (MIT), `Global/detection_models/networks.py` `UNet`,
checkpoint `checkpoints/detection/FT_Epoch_latest.pt` (a `torch.save` dict; the weights are under
`model_state`, everything else is training state and ignored).

The network maps a normalised picture (grey for the official weights) to one logit per pixel:
a 7×7 stem, `depth` levels of [conv, BN, LReLU, blur-pool] + two [conv, BN, LReLU] rounds, and a
decoder of bilinear ×2, conv, concatenation with the skip, two rounds again. Every convolution pads
by reflection and has a bias. The module keeps the official names (`first.1`, `down_path.<i>.block.<j>`,
`down_sample.<i>.4.filt`, `up_path.<j>.up.2`, ...), so an official state dict loads as it is; our
bundled `scratch-tiny` is the same network, narrower and fed RGB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.errors import CheckpointError
from inpaint_cli.models.base import FamilyConfig, Network, bounded

FAMILY_NAME = "scratch"
LEAKY_SLOPE = 0.2
BATCH_NORM_EPSILON = 1e-5
BLUR_TAPS = (1.0, 2.0, 1.0)
"""The blur-pool filter is outer(BLUR_TAPS, BLUR_TAPS) / 16, one copy per channel."""
MAX_WIDTH_EXPONENT = 8
"""`wf` above this (256 stem channels, 4x the official width) is refused: no file asks for a huge net."""
MAX_DEPTH = 6
MAX_PARAMETERS = 160_000_000
"""About 4x the official network's 37.6 M: a file describing more (wf 8 with depth 6 is 9.7 G, 39 GB of
float32) is refused before anything of its size is allocated."""
MAX_MIN_AREA = 1_000_000
MAX_STEP_RATIO = 100.0
MAX_REFERENCE_SIDE = 100_000
MAX_SURROUND_CONTRAST = 255.0
MAX_MIN_LENGTH = 100_000
MAX_LINE_WIDTH = 64.0
DEFAULT_THRESHOLD = 0.4
"""A pixel is damage where its probability is at least this (BOPBtL's `>= 0.4`)."""


def blur_filter(channels: int) -> torch.Tensor:
    taps = torch.tensor(BLUR_TAPS)
    kernel = torch.outer(taps, taps) / 16
    return kernel.expand(channels, 1, 3, 3).clone()


class BlurPool(nn.Module):
    """Anti-aliased downsampling by 2: reflect-pad 1, depthwise [1,2,1]⊗[1,2,1]/16, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", blur_filter(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def _conv_bn_lrelu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_channels, out_channels, 3),
        nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPSILON),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    ]


class ConvBlock(nn.Module):
    """Two rounds of [reflect-pad 1, conv 3×3, BN, LReLU]; the first changes the width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *_conv_bn_lrelu(in_channels, out_channels), *_conv_bn_lrelu(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """Bilinear ×2, reflect-pad 1, conv 3×3 (no BN, no activation); concatenated [up, skip]; ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, out_channels, 3),
        )
        self.conv_block = ConvBlock(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), skip], dim=1))


@dataclass(frozen=True)
class ScratchConfig(FamilyConfig):
    """The detector's architecture (BOPBtL: 1 grey channel in, 1 logit out, depth 4, wf 6) and the
    defaults the pipeline uses with these weights: `threshold`, and `scale` of the high-res mode."""

    in_channels: int = 1
    out_channels: int = 1
    depth: int = 4
    wf: int = 6
    threshold: float = DEFAULT_THRESHOLD
    scale: float = 1.0
    strong: float = 0.0
    """Hysteresis: a region above `threshold` is kept only if it reaches this somewhere (0: off)."""
    min_area: int = 0
    """Regions of fewer pixels are dropped (0: off); on pictures whose short side is under
    `reference_side`, fewer (`detect.scaled_min_area`)."""
    max_step_ratio: float = 0.0
    """Thin regions whose two sides differ by more than this times their own contrast are edges of
    real objects (rims, wires), not damage, and are dropped (0: off; `detect_classical.step_ratio`)."""
    reference_side: int = 0
    """Short side (px) at which `min_area` was calibrated: on smaller pictures the minimum region
    shrinks with the square of the short side, so it asks for the same share of the picture (0: off,
    `min_area` everywhere)."""
    min_surround_contrast: float = 0.0
    """Compact regions whose colour differs from the picture around them by less than this (median
    distance in 8-bit Lab) are part of the photo, not damage, and are dropped (0: off;
    `detect.drop_plain_blobs`)."""
    min_length: int = 0
    """Shape rule (0: off, `min_area` judges every region): a region whose skeleton is at least this
    long (px) and whose mean width (area / skeleton length) is at most `line_width` is a line
    (scratch, crack, fold, hair) and is kept however small its area; `min_area` and the surround
    check then judge only the other, compact regions (`detect.shapes`)."""
    line_width: float = 0.0
    """Widest mean width (px) of a line under the shape rule."""
    with_classical: int = bounded(0, 1, default=0)
    """1: the weight-free `classical` detector's findings are added to the network's (both detectors
    together: its top-hats see isolated specks and faint thin scratches the network leaves)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Sizes and post-processing values within what the pipeline supports."""
        if not (0 <= self.wf <= MAX_WIDTH_EXPONENT and 1 <= self.depth <= MAX_DEPTH):
            raise CheckpointError(f"unsupported detector size: wf={self.wf}, depth={self.depth}")
        if self.in_channels not in (1, 3) or self.out_channels != 1:
            raise CheckpointError(f"unsupported channels: {self.in_channels} in, {self.out_channels} out")
        if not (0 < self.threshold < 1 and 0 < self.scale <= 4 and 0 <= self.strong < 1):
            raise CheckpointError(
                f"unsupported threshold {self.threshold}, strong {self.strong} or scale {self.scale}"
            )
        if not 0 <= self.max_step_ratio <= MAX_STEP_RATIO:
            raise CheckpointError(f"unsupported max_step_ratio {self.max_step_ratio}")
        if not 0 <= self.min_area <= MAX_MIN_AREA:
            raise CheckpointError(f"unsupported min_area {self.min_area}")
        if not 0 <= self.reference_side <= MAX_REFERENCE_SIDE:
            raise CheckpointError(f"unsupported reference_side {self.reference_side}")
        if not 0 <= self.min_surround_contrast <= MAX_SURROUND_CONTRAST:
            raise CheckpointError(f"unsupported min_surround_contrast {self.min_surround_contrast}")
        if not (0 <= self.min_length <= MAX_MIN_LENGTH and 0 <= self.line_width <= MAX_LINE_WIDTH):
            raise CheckpointError(f"unsupported min_length {self.min_length} or line_width {self.line_width}")


class ScratchUNet(Network):
    """BOPBtL's detection U-Net for a `ScratchConfig`.

    Input N×in_channels×H×W normalised to [-1, 1], H and W multiples of 2**depth and at least
    2**(depth+1); output: logits N×1×H×W.
    """

    family = FAMILY_NAME
    Config = ScratchConfig
    max_parameters = MAX_PARAMETERS
    config: ScratchConfig

    def __init__(self, config: ScratchConfig | Mapping[str, object] | None = None) -> None:
        super().__init__(config if config is not None else {})
        self.in_channels = self.config.in_channels
        self.depth = self.config.depth
        widths = [2 ** (self.config.wf + level) for level in range(self.depth + 1)]
        self.first = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(self.in_channels, widths[0], 7), nn.LeakyReLU(LEAKY_SLOPE, True)
        )
        self.down_path = nn.ModuleList(ConvBlock(widths[i], widths[i + 1]) for i in range(self.depth))
        self.down_sample = nn.ModuleList(
            nn.Sequential(*_conv_bn_lrelu(width, width), BlurPool(width)) for width in widths[: self.depth]
        )
        self.up_path = nn.ModuleList(UpBlock(widths[i + 1], widths[i]) for i in reversed(range(self.depth)))
        self.last = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(widths[0], self.config.out_channels, 3))

    @property
    def pad_multiple(self) -> int:
        return 2**self.depth

    @property
    def min_size(self) -> int:
        """Reflect-padding the deepest level by 1 needs 2 pixels there."""
        return 2 ** (self.depth + 1)

    @classmethod
    def recognizes(cls, state_dict: Mapping[str, torch.Tensor]) -> bool:
        return recognizes(state_dict)

    @classmethod
    def convert_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return convert_state_dict(state_dict)

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> ScratchConfig:
        return config_from_state_dict(state_dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        skips = []
        for down_sample, down_path in zip(self.down_sample, self.down_path, strict=True):
            skips.append(x)
            x = down_path(down_sample(x))
        for up, skip in zip(self.up_path, reversed(skips), strict=True):
            x = up(x, skip)
        return self.last(x)


# --- checkpoints --------------------------------------------------------------------------------------

STEM_WEIGHT = "first.1.weight"
LAST_WEIGHT = "last.1.weight"


def recognizes(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """The official layout and ours are the same: a stem, blur-pool filters and a last conv."""
    return STEM_WEIGHT in state_dict and LAST_WEIGHT in state_dict and "down_sample.0.4.filt" in state_dict


def convert_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official `model_state` -> ours: the same keys; the fixed blur filters are checked."""
    converted = dict(state_dict)
    for key, value in converted.items():
        if key.endswith(".4.filt") and value.ndim == 4:
            expected = blur_filter(value.shape[0]).to(value.dtype)
            if value.shape != expected.shape or not torch.equal(value, expected):
                raise CheckpointError(f"{key} is not the fixed [1,2,1] blur filter")
    return converted


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> ScratchConfig:
    """Architecture from the tensors: channels from the stem and last conv, depth from the levels."""
    stem = state_dict.get(STEM_WEIGHT)
    last = state_dict.get(LAST_WEIGHT)
    if stem is None or last is None or stem.ndim != 4 or last.ndim != 4:
        raise CheckpointError(f"not a scratch detector: no 4-d {STEM_WEIGHT} and {LAST_WEIGHT}")
    width = int(stem.shape[0])
    wf = int(math.log2(width)) if width > 0 else -1
    if 2**wf != width or wf > MAX_WIDTH_EXPONENT:
        raise CheckpointError(f"{STEM_WEIGHT} has {width} channels; expected a power of two up to 256")
    depth = len({key.split(".")[1] for key in state_dict if key.startswith("down_path.")})
    if not 1 <= depth <= MAX_DEPTH:
        raise CheckpointError(f"the detector has {depth} levels; expected 1 to {MAX_DEPTH}")
    return ScratchConfig(in_channels=int(stem.shape[1]), out_channels=int(last.shape[0]), depth=depth, wf=wf)
