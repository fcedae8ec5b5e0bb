"""DeepFill v2: gated convolutions with contextual attention.

Paper: J. Yu, Z. Lin, J. Yang, X. Shen, X. Lu, T. Huang, "Free-Form Image Inpainting with Gated
Convolution", ICCV 2019. Origin of the layout and weights: the PyTorch port nipponjo/deepfillv2-pytorch
of JiahuiYu/generative_inpainting v2.0.0 (weights licensed CC BY-NC 4.0 by the original authors).

The port ships two generator definitions with identical tensors but different names and numerics:
`pt` (its own, fine-tuned weights: symmetric padding, fuse step on in contextual attention) and `tf`
(the converted TensorFlow weights: TensorFlow SAME padding, no fuse, TensorFlow's align-corners
nearest downscaling). Both are built from one layer table; the variant comes from the checkpoint's
keys and is kept in the config. Our layout keeps the official key names of each variant, so gate
names (`gate.<layer>`) match the checkpoint's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.errors import CheckpointError
from inpaint_cli.models.base import (
    SIGNED_UNIT_RANGE,
    FamilyConfig,
    InpaintModel,
    Intermediates,
    bounded,
    conv2d,
)
from inpaint_cli.models.contextual_attention import (
    ATTENTION_MATCH_KERNEL,
    ATTENTION_RATE,
    FEATURE_STRIDE,
    MASK_STRIDE,
    ContextualAttention,
    Variant,
)

VARIANTS: tuple[Variant, ...] = ("pt", "tf")
"""In the order of the names in `Layer.names`."""

NETWORK_INPUT_CHANNELS = 5
"""Masked RGB image, a constant ones channel (the TF release's sketch slot) and the mask."""
RGB = 3

GATED_INIT_GAIN = 2.0
"""He's gain √2 keeps the signal through ReLU-like layers; a gate (about 0.5 at initialisation)
halves it again. With PyTorch's default initialisation the activations of DeepFill v2's stage 1
fall to 2 % of the input's within two layers (measured) and learning crawls; with this gain they
stay within 0.4-0.03 over its 17 layers (2√2 makes them explode)."""
PASTE_KERNEL = 2 * ATTENTION_RATE
FUSE_PASSES = 2
"""The fuse step sums 3 terms along the diagonals twice (row-major, then column-major)."""


@dataclass(frozen=True)
class Layer:
    """One convolution of the generator: its official names and geometry."""

    names: tuple[str, str]
    """(pt name, tf name); the state-dict keys are `<name>.conv.weight` / `.bias`."""
    quarters: int
    """Feature width in units of cnum/4 (0 for the ungated to-RGB layers, which output RGB)."""
    kernel: int = 3
    stride: int = 1
    dilation: int = 1
    upsample: bool = False
    """Nearest ×2 upsampling before the convolution."""
    activation: Literal["elu", "relu"] = "elu"


def _layers(*rows: tuple[str, str, int, dict[str, Any]]) -> tuple[Layer, ...]:
    """Layers from rows (pt name, tf name, quarters, other fields)."""
    return tuple(Layer((pt, tf), quarters, **fields) for pt, tf, quarters, fields in rows)


# SPEC §3, in execution order. The asymmetric widths of stage 2's down blocks are the official ones.
STAGE1 = _layers(
    ("stage1.conv1", "conv1", 2, {"kernel": 5}),
    ("stage1.down_block1.conv1_downsample", "conv2_downsample", 4, {"stride": 2}),
    ("stage1.down_block1.conv2", "conv3", 4, {}),
    ("stage1.down_block2.conv1_downsample", "conv4_downsample", 8, {"stride": 2}),
    ("stage1.down_block2.conv2", "conv5", 8, {}),
    ("stage1.conv_bn1", "conv6", 8, {}),
    ("stage1.conv_bn2", "conv7_atrous", 8, {"dilation": 2}),
    ("stage1.conv_bn3", "conv8_atrous", 8, {"dilation": 4}),
    ("stage1.conv_bn4", "conv9_atrous", 8, {"dilation": 8}),
    ("stage1.conv_bn5", "conv10_atrous", 8, {"dilation": 16}),
    ("stage1.conv_bn6", "conv11", 8, {}),
    ("stage1.conv_bn7", "conv12", 8, {}),
    ("stage1.up_block1.conv1_upsample.conv", "conv13_upsample.conv", 4, {"upsample": True}),
    ("stage1.up_block1.conv2", "conv14", 4, {}),
    ("stage1.up_block2.conv1_upsample.conv", "conv15_upsample.conv", 2, {"upsample": True}),
    ("stage1.up_block2.conv2", "conv16", 1, {}),
    ("stage1.conv_to_rgb", "conv17", 0, {}),
)
HALLUCINATION_BRANCH = _layers(
    ("stage2.conv_conv1", "xconv1", 2, {"kernel": 5}),
    ("stage2.conv_down_block1.conv1_downsample", "xconv2_downsample", 2, {"stride": 2}),
    ("stage2.conv_down_block1.conv2", "xconv3", 4, {}),
    ("stage2.conv_down_block2.conv1_downsample", "xconv4_downsample", 4, {"stride": 2}),
    ("stage2.conv_down_block2.conv2", "xconv5", 8, {}),
    ("stage2.conv_conv_bn1", "xconv6", 8, {}),
    ("stage2.conv_conv_bn2", "xconv7_atrous", 8, {"dilation": 2}),
    ("stage2.conv_conv_bn3", "xconv8_atrous", 8, {"dilation": 4}),
    ("stage2.conv_conv_bn4", "xconv9_atrous", 8, {"dilation": 8}),
    ("stage2.conv_conv_bn5", "xconv10_atrous", 8, {"dilation": 16}),
)
ATTENTION_BRANCH = _layers(
    ("stage2.ca_conv1", "pmconv1", 2, {"kernel": 5}),
    ("stage2.ca_down_block1.conv1_downsample", "pmconv2_downsample", 2, {"stride": 2}),
    ("stage2.ca_down_block1.conv2", "pmconv3", 4, {}),
    ("stage2.ca_down_block2.conv1_downsample", "pmconv4_downsample", 8, {"stride": 2}),
    ("stage2.ca_down_block2.conv2", "pmconv5", 8, {}),
    ("stage2.ca_conv_bn1", "pmconv6", 8, {"activation": "relu"}),
)
CONTEXTUAL_ATTENTION_NAMES = ("stage2.contextual_attention", "contextual_attention")
ATTENTION_TAIL = _layers(
    ("stage2.ca_conv_bn4", "pmconv9", 8, {}),
    ("stage2.ca_conv_bn5", "pmconv10", 8, {}),
)
MERGE = _layers(
    ("stage2.conv_bn6", "allconv11", 8, {}),
    ("stage2.conv_bn7", "allconv12", 8, {}),
    ("stage2.up_block1.conv1_upsample.conv", "allconv13_upsample.conv", 4, {"upsample": True}),
    ("stage2.up_block1.conv2", "allconv14", 4, {}),
    ("stage2.up_block2.conv1_upsample.conv", "allconv15_upsample.conv", 2, {"upsample": True}),
    ("stage2.up_block2.conv2", "allconv16", 1, {}),
    ("stage2.conv_to_rgb", "allconv17", 0, {}),
)

FUSE_WEIGHT_KEY = CONTEXTUAL_ATTENTION_NAMES[VARIANTS.index("pt")] + ".fuse_weight"


# --- modules ----------------------------------------------------------------------------------------


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) of one side of length `size`."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class PaddedConv(nn.Module):
    """A convolution stored as `<name>.conv`, zero-padded the way its variant does it.

    pt pads `dilation·(kernel−1)/2` on every side; tf pads SAME from the actual input size, which
    for stride 2 on an even side puts the one padding row/column at the bottom/right only.
    """

    def __init__(self, in_channels: int, out_channels: int, layer: Layer, variant: Variant) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, layer.kernel, layer.stride, dilation=layer.dilation)
        self.tf_same = variant == "tf"
        self.upsample = layer.upsample

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        kernel, stride, dilation = self.conv.kernel_size[0], self.conv.stride[0], self.conv.dilation[0]
        if self.tf_same:
            top, bottom = same_padding(x.shape[-2], kernel, stride, dilation)
            left, right = same_padding(x.shape[-1], kernel, stride, dilation)
            if (top, left) != (bottom, right):
                x = F.pad(x, (left, right, top, bottom))
                top = left = 0
            padding = (top, left)
        else:
            padding = (dilation * (kernel - 1) // 2,) * 2
        return conv2d(self.conv, x, padding)

    def forward(self, x: torch.Tensor, intermediates: Intermediates | None = None) -> torch.Tensor:
        """The to-RGB layers: nothing to capture, and their tanh is applied by the network."""
        return self._convolve(x)


class GatedConv(PaddedConv):
    """Gated convolution: one convolution gives features (rows 0..C−1) and gates (rows C..2C−1).

    Output = act(features) · sigmoid(gates). The gates are captured as `gate.<name>` when asked.
    """

    def __init__(self, in_channels: int, features: int, layer: Layer, variant: Variant, name: str) -> None:
        super().__init__(in_channels, 2 * features, layer, variant)
        self.activation = F.relu if layer.activation == "relu" else F.elu
        self.name = name

    def forward(self, x: torch.Tensor, intermediates: Intermediates | None = None) -> torch.Tensor:
        features, gates = self._convolve(x).chunk(2, dim=1)
        gates = torch.sigmoid(gates)
        if intermediates is not None:
            intermediates[f"gate.{self.name}"] = gates
        return self.activation(features) * gates


# --- network -----------------------------------------------------------------------------------------


def _attach(root: nn.Module, path: str, module: nn.Module) -> None:
    """Register `module` under a dotted official name, creating empty parents as needed."""
    *parents, leaf = path.split(".")
    for part in parents:
        children = dict(root.named_children())
        if part not in children:
            root.add_module(part, nn.Module())
        root = root.get_submodule(part)
    root.add_module(leaf, module)


@dataclass(frozen=True)
class GatedConvConfig(FamilyConfig):
    """The port's variant and base width (48 in the released weights)."""

    variant: Variant
    cnum: int = bounded(4, 256)

    def validate(self) -> None:
        if self.cnum % 4:
            raise CheckpointError(f"config cnum = {self.cnum}: DeepFill v2 needs a multiple of 4")


class DeepFillV2(InpaintModel):
    """DeepFill v2 generator: coarse gated-conv network, then refinement with contextual attention."""

    family = "gatedconv"
    Config = GatedConvConfig
    config: GatedConvConfig
    max_parameters = 200_000_000
    """The released generator (cnum 48) has 4.1 M parameters."""
    normalization = SIGNED_UNIT_RANGE
    hole_value = 1.0
    # Symmetric (edge-including) mirroring continues textures into the at most 7 padded rows/columns,
    # so they are plausible background for contextual attention; zeros would add flat grey patches.
    pad_mode = "symmetric"
    training_size = 256
    activation_bytes_per_pixel = 800
    """Peak fp32 bytes per input pixel of everything but contextual attention's score arrays, measured
    at 256² where those are small (790-880; benchmarks/bench_gatedconv_attention.py). Adding the score
    arrays of a chunk over-estimates larger inputs by up to 1.5×: the two peaks are not simultaneous."""

    def __init__(self, config: GatedConvConfig | Mapping[str, Any]) -> None:
        super().__init__(config)
        self.variant: Variant = self.config.variant
        self.cnum = self.config.cnum
        self._conv_shares: list[tuple[PaddedConv, float]] = []
        """Every convolution with the share of the input's pixels it computes (for the cost model)."""
        # Modules are registered under their official names; these tuples only give the execution order.
        self.coarse_layers = self._build(STAGE1, NETWORK_INPUT_CHANNELS)
        self.hallucination_layers = self._build(HALLUCINATION_BRANCH, RGB)
        self.attention_layers = self._build(ATTENTION_BRANCH, RGB)
        _attach(self, self._name(CONTEXTUAL_ATTENTION_NAMES), ContextualAttention(self.variant))
        bottleneck = FEATURE_STRIDE**-2
        self.attention_tail_layers = self._build(
            ATTENTION_TAIL, self._width(ATTENTION_BRANCH[-1]), bottleneck
        )
        merged = self._width(HALLUCINATION_BRANCH[-1]) + self._width(ATTENTION_TAIL[-1])
        self.merge_layers = self._build(MERGE, merged, bottleneck)

    # --- checkpoints ------------------------------------------------------------------------------

    @classmethod
    def recognizes(cls, state_dict: Mapping[str, torch.Tensor]) -> bool:
        return variant_of(state_dict) is not None

    @classmethod
    def convert_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return convert_deepfill_state_dict(state_dict)

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> GatedConvConfig:
        return deepfill_config_from_state_dict(state_dict)

    # --- network ------------------------------------------------------------------------------------

    @property
    def attention_module(self) -> ContextualAttention:
        return self.get_submodule(self._name(CONTEXTUAL_ATTENTION_NAMES))

    def _name(self, names: tuple[str, str]) -> str:
        return names[VARIANTS.index(self.variant)]

    def _width(self, layer: Layer) -> int:
        return layer.quarters * self.cnum // 4 if layer.quarters else RGB

    def _build(self, layers: Sequence[Layer], in_channels: int, share: float = 1.0) -> tuple[PaddedConv, ...]:
        """The layers' modules; `share` is the input's pixel count relative to the network input's."""
        built = []
        for layer in layers:
            share *= (4.0 if layer.upsample else 1.0) / layer.stride**2
            name = self._name(layer.names)
            if layer.quarters:
                module = GatedConv(in_channels, self._width(layer), layer, self.variant, name)
            else:
                module = PaddedConv(in_channels, RGB, layer, self.variant)
            _attach(self, name, module)
            built.append(module)
            self._conv_shares.append((module, share))
            in_channels = self._width(layer)
        return tuple(built)

    @staticmethod
    def _run(
        layers: Sequence[PaddedConv], x: torch.Tensor, intermediates: Intermediates | None
    ) -> torch.Tensor:
        for layer in layers:
            x = layer(x, intermediates)
        return x

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, intermediates: Intermediates | None = None
    ) -> torch.Tensor:
        masked = image * (1 - mask)
        x = torch.cat([masked, torch.ones_like(mask), mask], dim=1)
        coarse = torch.tanh(self._run(self.coarse_layers, x, intermediates))
        if intermediates is not None:
            intermediates["coarse"] = coarse
        x = coarse * mask + masked * (1 - mask)
        hallucinated = self._run(self.hallucination_layers, x, intermediates)
        attended = self.attention_module(self._run(self.attention_layers, x, intermediates), mask)
        attended = self._run(self.attention_tail_layers, attended, intermediates)
        return torch.tanh(
            self._run(self.merge_layers, torch.cat([hallucinated, attended], dim=1), intermediates)
        )

    def float_modules(self, precision: str) -> list[nn.Module]:
        """Under int8 the coarse stage stays float: its output is the refinement's input, and 8-bit
        inputs there (about 1.5 % noise per layer) put 2.7/255 of mean error in the hole of
        gatedconv-tiny's fill, against 0.56/255 with it in float (benchmarks/bench_precision.py)."""
        return list(self.coarse_layers) if precision == "int8" else []

    def memory_estimate(self, height: int, width: int) -> int:
        """Activations linear in the pixel count plus one chunk of contextual attention's scores."""
        grid = (height // MASK_STRIDE, width // MASK_STRIDE)
        attention = self.attention_module
        chunk = attention.chunk_memory(attention.chunk_size(*grid), *grid)
        return self.activation_bytes_per_pixel * height * width + chunk

    def macs_per_pixel(self) -> float:
        return sum(conv.conv.weight.numel() * share for conv, share in self._conv_shares)

    def prepare_for_training(self) -> None:
        """Normal weights of std `GATED_INIT_GAIN`/sqrt(fan-in), zero biases (DeepFill v2 has no norms)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=GATED_INIT_GAIN / math.sqrt(module.weight[0].numel()))
                nn.init.zeros_(module.bias)

    def cost_estimate(self, height: int, width: int) -> float:
        """Convolutions (linear) plus contextual attention, quadratic in the pixel count.

        Over L = (h/8)·(w/8) positions, matching multiplies every 3×3 query window with every
        background one (L²·9C) and pasting blends L 4×4 patches per position (L²·16C), C being
        the attention features' width; the pt fuse step adds two 3-term diagonal sums (L²·4).
        """
        length = (height // MASK_STRIDE) * (width // MASK_STRIDE)
        channels = self._width(ATTENTION_BRANCH[-1])
        per_pair = channels * (ATTENTION_MATCH_KERNEL**2 + PASTE_KERNEL**2)
        attention = 2 * length**2 * per_pair + (2 * FUSE_PASSES * length**2 if self.variant == "pt" else 0)
        return super().cost_estimate(height, width) + attention / 1e9


# --- checkpoint conversion ---------------------------------------------------------------------------

MARKER_KEYS = {
    variant: (f"{STAGE1[0].names[i]}.conv.weight", f"{MERGE[-1].names[i]}.conv.weight")
    for i, variant in enumerate(VARIANTS)
}
"""Keys that identify a variant: its first and last layer (the port checks the first one only)."""


def variant_of(state_dict: Mapping[str, torch.Tensor]) -> Variant | None:
    """`pt` or `tf` by the names of the first and last layers, None for other layouts."""
    for variant, keys in MARKER_KEYS.items():
        if all(key in state_dict for key in keys):
            return variant
    return None


def convert_deepfill_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The port's generator state dict (already unwrapped from `G`) in our layout: the same keys.

    Names are kept per variant so that gate names follow the checkpoint. The pt fuse kernel must be
    the constant 3×3 identity, which the network applies implicitly.
    """
    converted = dict(state_dict)
    fuse = converted.get(FUSE_WEIGHT_KEY)
    if fuse is not None and not torch.equal(fuse.float().reshape(-1), torch.eye(3).reshape(-1)):
        raise CheckpointError(f"{FUSE_WEIGHT_KEY} is not the 3×3 identity the DeepFill v2 port always stores")
    return converted


def deepfill_config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> GatedConvConfig:
    """Variant from the key names, base width `cnum` from the first layer (2 × cnum/2 outputs)."""
    variant = variant_of(state_dict)
    if variant is None:
        expected = " or ".join(" + ".join(keys) for keys in MARKER_KEYS.values())
        raise CheckpointError(
            f"not a DeepFill v2 generator: expected {expected}",
            hint="give the port's checkpoint (its 'G' entry is read)",
        )
    cnum = int(state_dict[MARKER_KEYS[variant][0]].shape[0])
    if cnum % 4:
        raise CheckpointError(
            f"{MARKER_KEYS[variant][0]} has {cnum} outputs; DeepFill v2 needs a multiple of 4"
        )
    return GatedConvConfig.from_json({"variant": variant, "cnum": cnum})
