"""LaMa: resolution-robust large mask inpainting with Fourier convolutions.

Paper: R. Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier Convolutions",
WACV 2022. Origin: github.com/advimman/lama (code under Apache-2.0; the released big-lama and
lama-fourier weights are distributed by the authors from the links in that repository's README).

The generator is a ResNet-style encoder/decoder whose residual blocks are Fast Fourier
Convolutions (FFC, in `ffc.py`): the channels are split into a local branch (ordinary 3×3
convolutions) and a global branch (a 1×1 convolution in the 2-D Fourier domain, whose receptive
field is the whole image). The module tree and names follow the official `FFCResNetGenerator`, so
our state dict keys equal the official ones without their `generator.` prefix, and the architecture
(width, depths, channel split, LFU) is read back from the tensors. Reference: SPEC.md of the LaMa
fixtures (tests/data/lama/FIXTURES.md describes the compact set).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from inpaint_cli.errors import CheckpointError
from inpaint_cli.models.base import UNIT_RANGE, FamilyConfig, InpaintModel, Intermediates, bounded
from inpaint_cli.models.ffc import (
    Branches,
    ConcatBranches,
    FFCNormAct,
    FFCResnetBlock,
    FourierUnit,
    SpectralTransform,
    fold_batch_norm,
)

OFFICIAL_PREFIX = "generator."
"""The Lightning module stores the generator under this attribute; every other entry is ignored."""
FIRST_KEY = "model.1.ffc.convl2l.weight"
INIT_KERNEL = 7
"""The first and last convolutions are 7×7 behind a ReflectionPad2d(3)."""
NATIVE_SIDE_FACTOR = 8
"""LaMa's Fourier convolutions see the whole input and carry over to ~2k px from 256-px training
crops (Suvorov et al., 2022), twice as far as the other families."""
FFT_FLOP_FACTOR = 2.5
"""A real FFT of N points costs about 2.5·N·log2(N) floating-point operations."""
RECOMPUTE_BLOCKS = 2
"""Residual blocks recomputed together in backward: keeping every block's input cost big-lama 380 B
per pixel more at the peak (2,918 -> 2,540 B/px at 384², one refinement step), groups of 3 or 6 saved
no more (their recomputed activations add up)."""
SPECTRUM_SHARE = 0.5
"""A real spectrum has W/2 + 1 columns: about half the pixels of its input."""


@dataclass(frozen=True)
class LamaConfig(FamilyConfig):
    """`FFCResNetGenerator`'s architecture. Ceilings are far above big-lama's (64, 3, 18, 512, 384)."""

    ngf: int = bounded(1, 256)
    n_downsampling: int = bounded(1, 6)
    n_blocks: int = bounded(0, 64)
    max_features: int = bounded(1, 2048)
    """Cap on the width of every level."""
    global_channels: int = bounded(0, 2048)
    """Channels of the bottleneck's global (Fourier) branch."""
    enable_lfu: bool = False
    input_nc: int = bounded(4, 4, default=4)
    """The masked RGB image and the mask."""
    output_nc: int = bounded(3, 3, default=3)

    @property
    def bottleneck_width(self) -> int:
        return min(self.max_features, self.ngf * 2**self.n_downsampling)

    def validate(self) -> None:
        # A global branch of one channel would have an empty spectral transform (half its width).
        if not 0 <= self.global_channels < self.bottleneck_width or self.global_channels == 1:
            raise CheckpointError(
                f"config global_channels = {self.global_channels} must be 0 or 2 to "
                f"{self.bottleneck_width - 1} (the bottleneck is {self.bottleneck_width} wide)"
            )


class Lama(InpaintModel):
    """The LaMa generator (`FFCResNetGenerator` with the big-lama / lama-fourier settings)."""

    family = "lama"
    Config = LamaConfig
    config: LamaConfig
    normalization = UNIT_RANGE
    hole_value = 1.0
    pad_mode = "symmetric"
    training_size = 256
    max_parameters = 500_000_000
    """big-lama's generator has 51 M parameters."""
    # Peak RSS growth of one prepared fp32 pass of big-lama (benchmarks/bench_lama.py): 826 B/px at
    # 512², 654 at 1024². Under bf16 autocast it is not smaller (960 and 825: FFTs, encoder and the
    # residual stream stay fp32, and the weights are cast on each pass).
    activation_bytes_per_pixel = 832
    refine_bytes_per_pixel = 1450
    refine_fixed_bytes = 900_000_000
    """Peak RSS growth of refining an input, per padded pixel of its finest scale and fixed (big-lama,
    fp32, blocks recomputed in pairs, two scales; benchmarks/bench_refine.py measured 2.16, 3.37 and
    6.04 GiB at 1, 2 and 4 MP; this gives 1 %, 5 % and 4 % more)."""
    refine_step_passes = 2.5
    """Time of one refinement step (backward through the rear with its blocks recomputed, and the
    next forward of the rear) over that of one plain pass: 2.46, 2.49 and 2.63 in CPU time at 1, 2
    and 4 MP (benchmarks/bench_refine.py)."""

    def __init__(self, config: LamaConfig | Mapping[str, object]) -> None:
        super().__init__(config)
        config = self.config
        ngf, depth = config.ngf, config.n_downsampling
        widths = [min(config.max_features, ngf * 2**level) for level in range(depth + 1)]
        bottleneck = (widths[-1] - config.global_channels, config.global_channels)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(INIT_KERNEL // 2),
            # The explicit ReflectionPad2d before it does the padding of the 7×7 convolution.
            FFCNormAct((config.input_nc, 0), (ngf, 0), INIT_KERNEL, padding=0),
        ]
        for level in range(depth):
            out = bottleneck if level == depth - 1 else (widths[level + 1], 0)
            layers.append(FFCNormAct((widths[level], 0), out, stride=2))
        layers += [FFCResnetBlock(bottleneck, config.enable_lfu) for _ in range(config.n_blocks)]
        layers.append(ConcatBranches())
        for level in reversed(range(depth)):
            layers += [
                nn.ConvTranspose2d(
                    widths[level + 1], widths[level], 3, stride=2, padding=1, output_padding=1
                ),
                nn.BatchNorm2d(widths[level]),
                nn.ReLU(inplace=True),
            ]
        layers += [
            nn.ReflectionPad2d(INIT_KERNEL // 2),
            nn.Conv2d(ngf, config.output_nc, INIT_KERNEL),
            nn.Sigmoid(),
        ]
        self.model = nn.Sequential(*layers)
        self.stage_names = dict(self._stages())
        # Under autocast the encoder and the output sigmoid stay in fp32: bf16's 8 significant bits
        # cannot hold 8- or 16-bit pixel levels, and rounding errors made before the blocks are
        # amplified by all of them (measured on big-lama: mean error in the hole 1.36/255 -> 0.81/255,
        # for about 5 % of the speed-up). The residual stream then stays fp32 too (fp32 + bf16 -> fp32).
        self.full_precision_layers = {*range(1, 2 + depth), len(self.model) - 1}
        self.channels_last = False

    # --- checkpoints ------------------------------------------------------------------------------

    @classmethod
    def recognizes(cls, state_dict: Mapping[str, torch.Tensor]) -> bool:
        """An official LaMa state dict (with or without `generator.`) or one of ours."""
        return FIRST_KEY in state_dict or OFFICIAL_PREFIX + FIRST_KEY in state_dict

    @classmethod
    def convert_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return convert_lama_state_dict(state_dict)

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> LamaConfig:
        return lama_config_from_state_dict(state_dict)

    # --- geometry and cost ------------------------------------------------------------------------

    def _stages(self) -> Iterator[tuple[int, str]]:
        """(index after which a stage ends, its name): FFC layers and blocks, then upsampling triplets.

        An upsampling stage is named after its ConvTranspose2d, the first index it has in the state dict.
        """
        for index, layer in enumerate(self.model):
            if isinstance(layer, FFCNormAct | FFCResnetBlock):
                yield index, f"model.{index}"
            elif isinstance(layer, nn.ConvTranspose2d):
                yield index + 2, f"model.{index}"

    @property
    def pad_multiple(self) -> int:
        return 2**self.config.n_downsampling

    @property
    def min_size(self) -> int:
        # The bottleneck must be at least 2 pixels wide: reflect padding of 1 needs a neighbour.
        return 2 * self.pad_multiple

    @property
    def native_side(self) -> int:
        return NATIVE_SIDE_FACTOR * self.training_size

    def _fourier_units(self) -> Iterator[tuple[FourierUnit, float]]:
        """Every Fourier unit with the share of the input's pixels its spectrum covers."""
        bottleneck_share = 4.0**-self.config.n_downsampling
        for module in self.modules():
            if isinstance(module, SpectralTransform):
                yield module.fu, bottleneck_share
                if module.lfu is not None:  # a quarter of the channels, cut into 2×2 tiles
                    yield module.lfu, bottleneck_share / 4

    def macs_per_pixel(self) -> float:
        """Each convolution at its level's resolution; a 1×1 convolution in a spectrum on half its pixels."""
        share, total = 1.0, 0.0
        fourier = {id(unit.conv_layer) for unit, _ in self._fourier_units()}
        for layer in self.model:
            if isinstance(layer, nn.ConvTranspose2d):
                total += layer.weight.numel() * share  # every input pixel scatters one kernel
                share *= 4
                continue
            convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
            if convs and convs[0].stride[0] == 2:
                share /= 4
            for conv in convs:
                if id(conv) in fourier:
                    continue
                total += conv.weight.numel() * share
        for unit, unit_share in self._fourier_units():
            total += unit.conv_layer.weight.numel() * unit_share * SPECTRUM_SHARE
        return total

    def cost_estimate(self, height: int, width: int) -> float:
        """Convolutions, plus a forward and an inverse real FFT per channel of every Fourier unit."""
        fft = 0.0
        for unit, share in self._fourier_units():
            points = max(height * width * share, 2.0)
            fft += 2 * unit.conv_layer.in_channels / 2 * FFT_FLOP_FACTOR * points * math.log2(points)
        return super().cost_estimate(height, width) + fft / 1e9

    @property
    def first_block(self) -> int:
        """Index in `model` of the first residual block, where feature refinement splits the network:
        the encoder before it runs once per scale, the features it receives are what is optimised."""
        return 2 + self.config.n_downsampling

    def refine_memory_estimate(self, height: int, width: int) -> int:
        """Peak bytes of optimising the features of one scale of this (padded) size."""
        return self.refine_fixed_bytes + self.refine_bytes_per_pixel * height * width

    def refine_step_cost(self, height: int, width: int) -> float:
        """Cost of one refinement step at this (padded) size, in `cost_estimate`'s units."""
        return self.refine_step_passes * self.cost_estimate(height, width)

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, intermediates: Intermediates | None = None
    ) -> torch.Tensor:
        return self.decode(self.encode(image, mask, intermediates), intermediates)

    def encode(
        self, image: torch.Tensor, mask: torch.Tensor, intermediates: Intermediates | None = None
    ) -> torch.Tensor | Branches:
        """The front of the network: masked image and mask -> the (local, global) bottleneck features."""
        x = torch.cat([image * (1 - mask), mask], dim=1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._layers(x, range(self.first_block), intermediates)

    def decode(
        self,
        features: torch.Tensor | Branches,
        intermediates: Intermediates | None = None,
        *,
        recompute_blocks: bool = False,
    ) -> torch.Tensor:
        """The rear: residual blocks and decoder -> the prediction. `recompute_blocks` keeps only the
        input of every `RECOMPUTE_BLOCKS` blocks for backward and recomputes them then (activation
        checkpointing, for feature refinement)."""
        if not recompute_blocks:
            return self._layers(features, range(self.first_block, len(self.model)), intermediates)
        end = self.first_block + self.config.n_blocks
        for start in range(self.first_block, end, RECOMPUTE_BLOCKS):
            stop = min(start + RECOMPUTE_BLOCKS, end)
            features = checkpoint(self._segment, start, stop, *features, use_reentrant=False)
        return self._layers(features, range(end, len(self.model)), intermediates)

    def _segment(self, start: int, stop: int, local: torch.Tensor, global_: torch.Tensor | None) -> Branches:
        return self._layers((local, global_), range(start, stop), None)

    def _layers(
        self, x: torch.Tensor | Branches, indices: range, intermediates: Intermediates | None
    ) -> torch.Tensor | Branches:
        for index in indices:
            layer = self.model[index]
            if index in self.full_precision_layers:
                with torch.autocast(_device_type(x), enabled=False):
                    x = layer(_as_float(x))
            else:
                x = layer(x)
            if intermediates is not None and index in self.stage_names:
                _capture(intermediates, f"feature.{self.stage_names[index]}", x)
        return x

    def float_modules(self, precision: str) -> list[nn.Module]:
        """The encoder and the output layer (fp32 under autocast too), and for int8 the 1×1 convolutions
        in the spectra, whose inputs (Fourier coefficients, DC terms far above the rest) an 8-bit scale
        cannot hold."""
        fourier = [unit for unit, _ in self._fourier_units()] if precision == "int8" else []
        return [self.model[index] for index in sorted(self.full_precision_layers)] + fourier

    def prepare_for_inference(self) -> None:
        """Fold every BatchNorm into the convolution(s) before it and switch to channels-last tensors.

        Idempotent: a second call finds no BatchNorm left. Channels-last measured 1.08× faster on CPU.
        """
        for index, layer in enumerate(self.model):
            if isinstance(layer, FFCNormAct | FFCResnetBlock):
                layer.fold_batch_norm()
            elif isinstance(layer, nn.BatchNorm2d):
                fold_batch_norm([self.model[index - 1]], layer)
                self.model[index] = nn.Identity()
        self.channels_last = True
        self.to(memory_format=torch.channels_last)


def _device_type(x: torch.Tensor | Branches) -> str:
    return (x if isinstance(x, torch.Tensor) else x[0]).device.type


def _as_float(x: torch.Tensor | Branches) -> torch.Tensor | Branches:
    if isinstance(x, torch.Tensor):
        return x.float()
    return tuple(branch.float() if branch is not None else None for branch in x)


def _capture(intermediates: Intermediates, name: str, x: torch.Tensor | Branches) -> None:
    if isinstance(x, torch.Tensor):
        intermediates[name] = x.detach().float().cpu()
        return
    for branch, values in zip(("local", "global"), x, strict=True):
        if values is not None:
            intermediates[f"{name}.{branch}"] = values.detach().float().cpu()


# --- checkpoints ----------------------------------------------------------------------------------


def convert_lama_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official Lightning `state_dict` -> ours: keep exactly the `generator.` entries, prefix stripped.

    `generator_average.`, `discriminator.`, `loss_*` and evaluator entries are dropped. A bare
    generator state dict (no prefix, e.g. ours) is returned unchanged.
    """
    if not any(key.startswith(OFFICIAL_PREFIX) for key in state_dict):
        return dict(state_dict)
    return {
        key[len(OFFICIAL_PREFIX) :]: value
        for key, value in state_dict.items()
        if key.startswith(OFFICIAL_PREFIX)
    }


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    found = {int(m.group(1)) for key in state_dict if (m := re.fullmatch(pattern, key))}
    return sorted(found)


def lama_config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> LamaConfig:
    """Read width, depths, channel split and LFU from the tensor shapes of a state dict in our layout."""
    if FIRST_KEY not in state_dict:
        raise CheckpointError(f"not a LaMa generator: no {FIRST_KEY}")
    ngf, input_nc = state_dict[FIRST_KEY].shape[:2]
    down = _indices(state_dict, r"model\.(\d+)\.ffc\.convl2l\.weight")[1:]
    blocks = _indices(state_dict, r"model\.(\d+)\.conv1\.ffc\.\S+")
    depth = len(down)
    if down != list(range(2, 2 + depth)) or blocks != list(range(2 + depth, 2 + depth + len(blocks))):
        raise CheckpointError("LaMa layers are not numbered like FFCResNetGenerator's (model.<index>)")
    if depth == 0:
        raise CheckpointError("LaMa state dict has no downsampling layer (model.2)")
    last_down = f"model.{1 + depth}.ffc"
    local = state_dict[f"{last_down}.convl2l.weight"].shape[0]
    global_key = f"{last_down}.convl2g.weight"
    global_channels = state_dict[global_key].shape[0] if global_key in state_dict else 0
    final_conv = f"model.{4 + 4 * depth + len(blocks)}.weight"
    if final_conv not in state_dict:
        raise CheckpointError(f"LaMa state dict has no final convolution {final_conv}")
    return LamaConfig.from_json(
        {
            "input_nc": int(input_nc),
            "output_nc": int(state_dict[final_conv].shape[0]),
            "ngf": int(ngf),
            "n_downsampling": depth,
            "n_blocks": len(blocks),
            "max_features": int(local + global_channels),
            "global_channels": int(global_channels),
            "enable_lfu": any(".convg2g.lfu." in key for key in state_dict),
        }
    )
