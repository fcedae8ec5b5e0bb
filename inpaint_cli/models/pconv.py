"""PConv: the partial-convolution U-Net for irregular holes.

Paper: G. Liu, F. A. Reda, K. J. Shih, T.-C. Wang, A. Tao, B. Catanzaro, "Image Inpainting for
Irregular Holes Using Partial Convolutions", ECCV 2018.
Network and released weights: naoto0804/pytorch-inpainting-with-partial-conv (MIT), `PConvUNet`,
checkpoint `1000000.pth` (a `torch.save` dict with the weights under `model`).
The layer also implements the re-normalisation of NVIDIA/partialconv (BSD-3), which ships the
layer only and no inpainting weights.

A partial convolution sees only valid pixels: it convolves `X * M`, rescales each window by how
many valid inputs it had, and marks an output position valid when its window had any. The
reference computes the valid count with a second, all-ones convolution as wide as the real one
(stored in its checkpoint as `mask_conv.weight`); every mask in the U-Net has equal channels, so
here the count is one single-channel box filter per layer, and those kernels are dropped on load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.errors import CheckpointError
from inpaint_cli.models.base import IMAGENET, FamilyConfig, InpaintModel, Intermediates, bounded, conv2d

Renormalization = Literal["mask_sum", "window_ratio"]
"""`mask_sum`: divide by sum(M) (naoto0804, the U-Net's checkpoint); `window_ratio`: multiply by
sum(1)/sum(M) (the paper and NVIDIA's layer)."""

WINDOW_RATIO_EPSILON = 1e-8
"""NVIDIA adds it to sum(M) before dividing; it matters only for fractional masks."""

IMAGE_CHANNELS = 3
BASE_CHANNELS = 64
"""Output width of `enc_1` in the reference U-Net; narrower networks (the bundled demo) scale every width."""
ENCODER_WIDTH_FACTORS = (1, 2, 4, 8)
ENCODER_KERNELS = (7, 5, 5, 3)
"""Output width (× base channels) and kernel size of `enc_1..enc_4`; every deeper encoder is as
wide as `enc_4` with 3×3 kernels."""
DECODER_KERNEL = 3
LEAKY_SLOPE = 0.2
BATCH_NORM_EPSILON = 1e-5


class PartialConv2d(nn.Conv2d):
    """Convolution of the valid pixels only, re-normalised by the number of valid inputs per window.

    `forward(x, mask)` takes a mask of 1 channel (shared by every input channel) or of one channel
    per input channel, 1 = valid, and returns `(output, new_mask)`; the new mask is N×1×h×w
    because every output channel has the same one. With `multi_channel` the valid count runs over
    channels and window (the U-Net's layer always counts channels); without it, the mask has one
    channel and only the window is counted (NVIDIA's default). Padding is zero padding, counted as
    hole, and at most half the kernel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        renormalization: Renormalization = "mask_sum",
        multi_channel: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        if renormalization == "mask_sum" and not multi_channel:
            raise ValueError("the mask_sum rule always counts the valid inputs of every channel")
        self.renormalization = renormalization
        self.multi_channel = multi_channel
        self.folded_window_size = 1
        """What `fold_window_size` divided the weight by; the mask_sum rescaling multiplies it back."""

    @property
    def window_size(self) -> int:
        """Inputs in one full window: sum(1) of the window-ratio rule."""
        channels = self.in_channels if self.multi_channel else 1
        return channels * self.kernel_size[0] * self.kernel_size[1]

    def fold_window_size(self) -> None:
        """Move the mask_sum rule's window size from the rescaling into the weight (once).

        Same result, but the convolution's sums stay at the output's magnitude instead of up to
        window_size (9216 in the deep decoder) times it, which overflows float16.
        """
        if self.renormalization == "mask_sum" and self.folded_window_size == 1:
            with torch.no_grad():
                self.weight.div_(self.window_size)
            self.folded_window_size = self.window_size

    def valid_count(self, mask: torch.Tensor) -> torch.Tensor:
        """Per pixel, how many input values of the window sum are valid (N×1×H×W)."""
        if mask.shape[1] == 1:
            return mask * self.in_channels if self.multi_channel else mask
        if not self.multi_channel or mask.shape[1] != self.in_channels:
            raise ValueError(
                f"mask has {mask.shape[1]} channels; expected 1"
                + (f" or {self.in_channels}" if self.multi_channel else "")
            )
        return mask.sum(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid_count = self.valid_count(mask)  # first: it checks the mask's channels
        return self.forward_masked(x * mask, valid_count)

    def forward_masked(
        self, masked_input: torch.Tensor, valid_count: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The partial convolution of an input already multiplied by its mask.

        `valid_count` (N×1×H×W) is `valid_count(mask)`, or its sum over concatenated parts.
        """
        # A sum pool (not a convolution) so that autocast leaves the counts in the mask's precision.
        window_sum = F.avg_pool2d(
            valid_count,
            self.kernel_size,
            self.stride,
            self.padding,
            count_include_pad=True,
            divisor_override=1,
        )
        scale, new_mask = self._rescaling(window_sum)
        output = conv2d(self, masked_input, self.padding, bias=False)
        output.mul_(scale.to(output.dtype))
        if self.bias is not None:
            # Empty windows give 0 in both rules: the bias is cleared with them.
            output.add_(self.bias.view(1, -1, 1, 1)).mul_(new_mask.to(output.dtype))
        return output, new_mask

    def _rescaling(self, window_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(factor applied to the convolution, new mask), both N×1×h×w; the factor is 0 on empty windows."""
        if self.renormalization == "mask_sum":
            valid = window_sum != 0
            return torch.where(valid, self.folded_window_size / window_sum, 0), valid.to(window_sum.dtype)
        covered = window_sum.clamp(0, 1)
        return self.window_size / (window_sum + WINDOW_RATIO_EPSILON) * covered, covered


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with its running statistics, for inference only (no `num_batches_tracked`)."""

    def __init__(self, channels: int, eps: float = BATCH_NORM_EPSILON) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


class PConvBlock(nn.Module):
    """Partial convolution, then optional batch norm and activation; the mask skips both."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        *,
        batch_norm: bool,
        activation: nn.Module,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv = PartialConv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=bias)
        self.bn = FrozenBatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.activation = activation

    def forward(
        self, masked_input: torch.Tensor, valid_count: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, mask = self.conv.forward_masked(masked_input, valid_count)
        return self.activation(self.bn(features)), mask


def encoder_width(level: int, base_channels: int = BASE_CHANNELS) -> int:
    """Channels of `enc_<level>`'s output; level 0 is the image."""
    if level == 0:
        return IMAGE_CHANNELS
    return base_channels * ENCODER_WIDTH_FACTORS[min(level, len(ENCODER_WIDTH_FACTORS)) - 1]


@dataclass(frozen=True)
class PConvConfig(FamilyConfig):
    """Depth (7 in the released weights) and `enc_1`'s width (64 in the reference)."""

    layer_size: int = bounded(1, 10)
    """A 10-deep U-Net already needs sides that are multiples of 1024."""
    base_channels: int = bounded(1, 512, default=BASE_CHANNELS)


class PConvUNet(InpaintModel):
    """The U-Net of `layer_size` stride-2 partial convolutions and as many decoder ones.

    Inside, the network keeps the reference's conventions (ImageNet normalisation, 1 = valid,
    sides multiples of 2^layer_size); the engine pads and converts the user's mask to them.
    """

    family = "pconv"
    Config = PConvConfig
    config: PConvConfig
    max_parameters = 1_000_000_000
    """The released U-Net (depth 7, width 64) has 25.8 M parameters."""
    normalization = IMAGENET
    hole_value = 0.0
    # Mirrored content next to the border is plausible context for the partial convolutions;
    # the padded mask is mirrored with it, so a hole touching the border stays a hole.
    pad_mode = "symmetric"
    training_size = 256
    activation_bytes_per_pixel = 1500  # measured 1140-1460 (peak RSS of a depth-7 pass at 512² and 1024²)

    def __init__(self, config: PConvConfig | Mapping[str, Any]) -> None:
        super().__init__(config)
        self.layer_size = self.config.layer_size
        base = self.config.base_channels

        def width(level: int) -> int:
            return encoder_width(level, base)

        for level in range(1, self.layer_size + 1):
            kernel = ENCODER_KERNELS[min(level, len(ENCODER_KERNELS)) - 1]
            block = PConvBlock(
                width(level - 1),
                width(level),
                kernel,
                stride=2,
                batch_norm=level > 1,
                activation=nn.ReLU(inplace=True),
            )
            self.add_module(f"enc_{level}", block)
        for level in range(self.layer_size, 0, -1):
            outermost = level == 1
            block = PConvBlock(
                width(level) + width(level - 1),
                width(level - 1),
                DECODER_KERNEL,
                stride=1,
                batch_norm=not outermost,
                activation=nn.Identity() if outermost else nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
                bias=outermost,
            )
            self.add_module(f"dec_{level}", block)

    @property
    def pad_multiple(self) -> int:
        return 2**self.layer_size

    @property
    def fill_reach(self) -> float:
        """How far the encoder's mask updates carry known pixels into a hole, at least: `enc_<i>` (stride
        2, kernel k) marks a position known when any of its k×k window is, which advances the known
        edge by k // 2 of its input cells of 2^(i-1) pixels. A deeper hole reaches the bottleneck as
        hole and comes out flat (pconv-tiny: 39 px, the released U-Net: 135 px; issue 30's torn corner,
        about 190 px deep at native scale, came out a flat block with coloured blots around it)."""
        total = 0
        for level in range(1, self.layer_size + 1):
            kernel = getattr(self, f"enc_{level}").conv.kernel_size[0]
            total += kernel // 2 * 2 ** (level - 1)
        return float(total)

    def macs_per_pixel(self) -> float:
        """`enc_<i>` computes at 1/4^i of the input's pixels, `dec_<i>` at 1/4^(i-1)."""
        total = 0.0
        for level in range(1, self.layer_size + 1):
            total += getattr(self, f"enc_{level}").conv.weight.numel() * 4.0**-level
            total += getattr(self, f"dec_{level}").conv.weight.numel() * 4.0 ** -(level - 1)
        return total

    # --- checkpoints ------------------------------------------------------------------------------

    @classmethod
    def recognizes(cls, state_dict: Mapping[str, torch.Tensor]) -> bool:
        """The naoto0804 layout (`enc_1.conv.input_conv.weight`) or ours (`enc_1.conv.weight` + `dec_1`)."""
        return "enc_1.conv.input_conv.weight" in state_dict or (
            "enc_1.conv.weight" in state_dict and "dec_1.conv.bias" in state_dict
        )

    @classmethod
    def convert_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return convert_naoto_state_dict(state_dict)

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> PConvConfig:
        return pconv_config_from_state_dict(state_dict)

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, intermediates: Intermediates | None = None
    ) -> torch.Tensor:
        """Raw prediction (normalised space) for an image and a N×1×H×W mask with 1 = valid.

        The reference feeds the mask as 3 equal channels; every mask here keeps one channel and the
        partial convolutions count the channels it stands for. With `intermediates`, the mask after
        each partial convolution is stored as `mask.enc_<i>` / `mask.dec_<i>` (N×1×h×w).
        """
        valid = mask.to(image.dtype)
        # Every level as (features * mask, mask): the next encoder's input and a decoder's skip.
        levels = [(image * valid, valid)]
        for level in range(1, self.layer_size + 1):
            masked, level_mask = levels[-1]
            name = f"enc_{level}"
            features, level_mask = getattr(self, name)(masked, level_mask * masked.shape[1])
            levels.append((features * level_mask, level_mask))
            self._record(intermediates, name, level_mask)
        features, level_mask = levels.pop()
        for level in range(self.layer_size, 0, -1):
            skip, skip_mask = levels.pop()
            # Nearest upsampling commutes with masking, so mask at the lower resolution.
            deep = F.interpolate(features * level_mask, scale_factor=2.0, mode="nearest")
            deep_mask = F.interpolate(level_mask, scale_factor=2.0, mode="nearest")
            valid_count = deep_mask * deep.shape[1] + skip_mask * skip.shape[1]
            name = f"dec_{level}"
            features, level_mask = getattr(self, name)(torch.cat([deep, skip], dim=1), valid_count)
            self._record(intermediates, name, level_mask)
        return features

    def prepare_for_inference(self) -> None:
        """Fold each layer's window size into its weight, so float16 sums cannot overflow.

        The state dict then no longer holds the trained weights; converted files are written from
        `convert_state_dict`'s output, never from a prepared network.
        """
        for module in self.modules():
            if isinstance(module, PartialConv2d):
                module.fold_window_size()

    def prepare_for_training(self) -> None:
        """Trainable batch norms, and the weights in their folded (well-scaled) form.

        The U-Net's batch norms are inference-only (running statistics); they are swapped for
        `nn.BatchNorm2d` while training. The mask_sum rule divides by up to C·k² valid inputs, which
        would make a freshly initialised layer's output tiny; folded (`fold_window_size`), the layer
        computes the same function with weights of the usual scale, so they are re-initialised there.
        """
        for module in list(self.modules()):
            if isinstance(getattr(module, "bn", None), FrozenBatchNorm2d):
                module.bn = nn.BatchNorm2d(module.bn.weight.numel(), eps=module.bn.eps)
            if isinstance(module, PartialConv2d):
                module.fold_window_size()
                module.reset_parameters()

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """Unfolded weights, without the batch-norm counters inference never reads."""
        state = super().trained_state_dict()
        for name, module in self.named_modules():
            if isinstance(module, PartialConv2d):
                state[f"{name}.weight"] *= module.folded_window_size
        return {key: value for key, value in state.items() if not key.endswith(BATCH_COUNTER)}

    @staticmethod
    def _record(intermediates: Intermediates | None, layer: str, mask: torch.Tensor) -> None:
        if intermediates is not None:
            intermediates[f"mask.{layer}"] = mask


# --- checkpoints --------------------------------------------------------------------------------------

OFFICIAL_CONV = ".conv.input_conv."
OFFICIAL_MASK_KERNEL = ".conv.mask_conv.weight"
OUR_CONV = ".conv."
BATCH_COUNTER = ".num_batches_tracked"
MAX_LISTED_PROBLEMS = 8


def _mask_kernel_problems(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Every official partial convolution needs its all-ones mask kernel of the same shape."""
    problems = []
    for key, value in state_dict.items():
        if key.endswith(OFFICIAL_MASK_KERNEL):
            partner = state_dict.get(key.replace(OFFICIAL_MASK_KERNEL, OFFICIAL_CONV + "weight"))
            if partner is None:
                problems.append(f"{key} has no input_conv.weight")
            elif value.shape != partner.shape:
                problems.append(f"{key} {tuple(value.shape)} != input_conv {tuple(partner.shape)}")
            elif not bool(torch.all(value == 1)):
                problems.append(f"{key} is not all ones")
        elif (
            key.endswith(OFFICIAL_CONV + "weight")
            and key.replace(OFFICIAL_CONV + "weight", OFFICIAL_MASK_KERNEL) not in state_dict
        ):
            problems.append(f"{key} has no mask_conv.weight")
    return problems


def convert_naoto_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """naoto0804 `PConvUNet` state dict (or ours) -> ours.

    `X.conv.input_conv.*` becomes `X.conv.*`; the all-ones `mask_conv` kernels are checked and
    dropped (the box filter replaces them), and so are the batch-norm counters, which inference
    never reads (files from torch < 0.4.1 lack them). Other keys pass through for strict loading.
    """
    problems = _mask_kernel_problems(state_dict)
    if problems:
        raise CheckpointError(
            "not a PConv U-Net checkpoint: "
            + "; ".join(problems[:MAX_LISTED_PROBLEMS])
            + (f"; ... ({len(problems)} in all)" if len(problems) > MAX_LISTED_PROBLEMS else ""),
            hint="the partial convolutions need the reference's constant all-ones mask_conv kernels",
        )
    return {
        key.replace(OFFICIAL_CONV, OUR_CONV): value
        for key, value in state_dict.items()
        if not key.endswith((OFFICIAL_MASK_KERNEL, BATCH_COUNTER))
    }


def pconv_config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> PConvConfig:
    """The depth is the deepest `enc_<i>`, the base width `enc_1`'s output channels; strict
    loading then checks every block is there."""
    first = state_dict.get("enc_1.conv.weight")
    if first is None:
        raise CheckpointError("not a PConv U-Net checkpoint: no enc_1.conv.weight")
    if first.shape[1] != IMAGE_CHANNELS:
        raise CheckpointError(
            f"this PConv U-Net reads {first.shape[1]}-channel images; only RGB is supported"
        )
    depths = [int(match.group(1)) for key in state_dict if (match := re.match(r"enc_(\d{1,6})\.", key))]
    return PConvConfig.from_json({"layer_size": max(depths), "base_channels": int(first.shape[0])})
