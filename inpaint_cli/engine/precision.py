"""Precision of a loaded network: half-precision weights converted once, int8 convolutions on CPU.

`convert_half` and `quantize_int8` turn a float32 network into the one `--precision` asks for:

- `fp16`/`bf16`: the weights of every convolution autocast would cast are converted once, here,
  instead of on every pass (51 M weights per pass for big-lama); autocast still casts activations
  at layer boundaries, and what a family keeps in float32 (`float_modules`) keeps fp32 weights.
- `int8` (CPU): post-training quantization of the convolutions. Weights per output channel
  (symmetric int8; 7 bits where the CPU's kernel would saturate, see `weight_levels`), inputs per
  tensor (uint8) over the range each call's input spans; outputs stay
  float32 (oneDNN's int8 convolution writes fp32 directly), so there is no requantisation step and
  everything between convolutions (FFTs, attention, softmax, sigmoid gates, residual sums, output
  layers) stays float. A guard calibrated on the project's own photo (`bundled/calibration.jpg`,
  the example portrait) keeps the layers whose rounding moves the fill most in float, as few as it
  takes to stay within `INT8_HOLE_ERROR` of fp32.
- `auto` on CPU: `auto_precision.py` measures bf16 and int8 against fp32 once per machine and model.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.engine.device import HALF_DTYPES
from inpaint_cli.errors import UsageError
from inpaint_cli.models.base import KERNEL_ATTRIBUTE, InpaintModel

MIN_INT8_CHANNELS = 16
"""Convolutions with fewer input channels (first layers: pixels and the mask) stay float: little
work, and an 8-bit scale of raw pixels loses what the whole network builds on."""
RGB_OUTPUT = 3
"""Convolutions with this many outputs or fewer are output layers: they stay float."""
CALIBRATION_IMAGE = "calibration.jpg"
"""The example portrait (examples/portrait_original.png, 384²): the project's own photo."""
CALIBRATION_SIDES = (384, 256)
"""The photo whole, and a crop: activation ranges at two input sizes."""
INT8_HOLE_ERROR = 0.5 / 255
"""Largest mean difference from float32 inside the calibration holes (0..1 scale) int8 may cause;
more sensitive layers stay float until it holds. Half the 1/255 promised on photos, as a margin for
photos other than the calibration one."""
UINT8_LEVELS = 255
INT8_LEVELS = 127
SATURATION_SAFE_LEVELS = 64
"""Weight levels where the kernel sums pairs of uint8 × int8 products in 16 bits: 2 · 255 · 64 =
32,640 fits in an int16 (with 127 levels a pair reaches 64,770 and saturates at 32,767). Measured on
the bundled models with every layer in int8: 7-bit weights moved the fill by 0.47/0.57/0.75 levels
(lama/gatedconv/pconv-tiny) where 8-bit ones moved it by 0.47/0.54/0.62; 7-bit activations instead
(PyTorch's `reduce_range`) by 1.05/0.85/1.35."""


# --- which layers ----------------------------------------------------------------------------------------


def float_module_ids(network: InpaintModel, precision: str) -> set[int]:
    """Ids of every module inside what the family keeps in float32 at `precision`."""
    return {id(module) for kept in network.float_modules(precision) for module in kept.modules()}


def convertible_convolutions(
    network: InpaintModel, precision: str
) -> Iterator[nn.Conv2d | nn.ConvTranspose2d]:
    """Convolutions autocast would run in half precision, outside the family's float modules."""
    kept = float_module_ids(network, precision)
    for module in network.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) and id(module) not in kept:
            yield module


def quantizable_convolutions(network: InpaintModel) -> Iterator[tuple[str, nn.Conv2d]]:
    """(name, convolution) of the layers int8 runs: plain 2-D convolutions with enough input channels,
    not output layers, outside the family's float modules."""
    kept = float_module_ids(network, "int8")
    for name, module in network.named_modules():
        if (
            type(module) is not nn.ConvTranspose2d
            and isinstance(module, nn.Conv2d)
            and id(module) not in kept
            and module.groups == 1
            and module.in_channels >= MIN_INT8_CHANNELS
            and module.out_channels > RGB_OUTPUT
        ):
            yield name, module


# --- half precision -----------------------------------------------------------------------------------


@torch.no_grad()
def convert_half(network: InpaintModel, precision: str) -> int:
    """Convert the weights autocast would cast on every pass, once; returns how many tensors changed."""
    converted, dtype = 0, HALF_DTYPES[precision]
    for conv in convertible_convolutions(network, precision):
        for parameter in (conv.weight, conv.bias):
            if parameter is not None and parameter.dtype != dtype:
                parameter.data = parameter.data.to(dtype)
                converted += 1
    return converted


# --- int8 ------------------------------------------------------------------------------------------------


def int8_available() -> bool:
    """True when this PyTorch build has oneDNN's int8 convolution with float output."""
    return hasattr(torch.ops.onednn, "qconv2d_pointwise") and hasattr(torch.ops.onednn, "qconv_prepack")


@functools.cache
def weight_levels() -> int:
    """`INT8_LEVELS`, or `SATURATION_SAFE_LEVELS` where this CPU's int8 convolution saturates.

    oneDNN on CPUs without VNNI (AVX2, AVX-512 before Cascade Lake) multiplies uint8 inputs by int8
    weights with `vpmaddubsw`, which adds each pair of products into a saturating 16-bit integer:
    large inputs times large weights are clipped, and the output is wrong by up to half (measured:
    16 % relative error on random inputs). Which kernel runs depends on the CPU and on
    `ONEDNN_MAX_CPU_ISA`, so this asks the kernel: one convolution of the largest codes, exact or not.
    """
    channels = 16
    weight = torch.full((channels, channels, 1, 1), INT8_LEVELS, dtype=torch.int8)
    scales = torch.ones(channels)
    packed = torch.ops.onednn.qconv_prepack(weight, scales, 1.0, 0, [1, 1], [0, 0], [1, 1], 1, None)
    codes = torch.full((1, channels, 4, 4), UINT8_LEVELS, dtype=torch.uint8)
    output = _int8_convolution(codes, 1.0, 0, packed, scales, None, [1, 1], [1, 1])
    exact = UINT8_LEVELS * INT8_LEVELS * channels
    return INT8_LEVELS if bool((output == exact).all()) else SATURATION_SAFE_LEVELS


def _int8_convolution(
    codes: torch.Tensor,
    scale: float,
    zero: int,
    packed: torch.Tensor,
    weight_scales: torch.Tensor,
    bias: torch.Tensor | None,
    stride: list[int],
    dilation: list[int],
) -> torch.Tensor:
    """oneDNN's int8 convolution of unpadded uint8 `codes` with prepacked weights, float32 output."""
    zero_points = torch.zeros(weight_scales.shape[0], dtype=torch.long)
    return torch.ops.onednn.qconv2d_pointwise(
        codes,
        scale,
        zero,
        packed,
        weight_scales,
        zero_points,
        bias,
        stride,
        [0, 0],
        dilation,
        1,
        1.0,
        0,
        torch.float32,
        "none",
        [],
        "",
    )


def pad(x: torch.Tensor, padding: int | tuple[int, int], mode: str, zero: int = 0) -> torch.Tensor:
    """Pad H and W on both sides as the convolution would (`zeros`, `reflect`, `replicate`, `circular`);
    `zero` is the value of a zero (an int8 input's zero point)."""
    rows, cols = (padding, padding) if isinstance(padding, int) else padding
    if rows == 0 and cols == 0:
        return x
    if mode == "zeros":
        return F.pad(x, (cols, cols, rows, rows), value=zero)
    return F.pad(x, (cols, cols, rows, rows), mode=mode)


def _float_convolution(conv: nn.Conv2d, padded: torch.Tensor, bias: bool) -> torch.Tensor:
    return F.conv2d(padded, conv.weight, conv.bias if bias else None, conv.stride, 0, conv.dilation)


class InputScale(NamedTuple):
    """uint8 quantisation of a layer's input: x ≈ (q − zero_point) · scale."""

    scale: float
    zero_point: int

    @classmethod
    def for_range(cls, low: float, high: float) -> InputScale:
        scale = max(high - low, 1e-8) / UINT8_LEVELS
        return cls(scale, int(np.clip(round(-low / scale), 0, UINT8_LEVELS)))


class Int8Convolution:
    """One convolution in int8: weights per output channel, input per tensor with its range measured on
    every call (what one photo's activations span is no guide to another's), float32 output."""

    def __init__(self, conv: nn.Conv2d) -> None:
        weight = conv.weight.detach().float()
        self.weight_scales = (weight.abs().amax(dim=(1, 2, 3)) / weight_levels()).clamp(min=1e-12)
        quantized = (weight / self.weight_scales.view(-1, 1, 1, 1)).round().clamp(-128, 127).to(torch.int8)
        self.stride, self.dilation = list(conv.stride), list(conv.dilation)
        # The input's scale and zero point given here are placeholders: the kernel takes them per call.
        self.packed = torch.ops.onednn.qconv_prepack(
            quantized, self.weight_scales, 1.0, 0, self.stride, [0, 0], self.dilation, 1, None
        )
        self.bias = conv.bias.detach().float() if conv.bias is not None else None

    def __call__(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool = True) -> torch.Tensor:
        return self.run(x, padding, bias, "zeros")

    def run(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool, mode: str) -> torch.Tensor:
        x = x.float()
        low, high = torch.aminmax(x)
        scale, zero = InputScale.for_range(min(float(low), 0.0), max(float(high), 0.0))
        codes = torch.mul(x, 1 / scale).round_().add_(zero).clamp_(0, UINT8_LEVELS).to(torch.uint8)
        # Padded here, not by the kernel (which pads codes with 0): a padded zero is the zero point.
        codes = pad(codes, padding, mode, zero)
        return _int8_convolution(
            codes,
            scale,
            zero,
            self.packed,
            self.weight_scales,
            self.bias if bias else None,
            self.stride,
            self.dilation,
        )


class ErrorProbe:
    """Calibration stand-in that runs a layer in int8 and in float, records the int8 output's error
    relative to the float one, and passes the float output on (each layer's own error, in isolation)."""

    def __init__(self, conv: nn.Conv2d, kernel: Int8Convolution) -> None:
        self.conv, self.kernel = conv, kernel
        self.error = self.energy = 0.0

    def __call__(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool = True) -> torch.Tensor:
        return self.run(x, padding, bias, "zeros")

    def run(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool, mode: str) -> torch.Tensor:
        approximate = self.kernel.run(x, padding, bias, mode)
        exact = _float_convolution(self.conv, pad(x.float(), padding, mode), bias)
        self.error += float((approximate - exact).square().sum())
        self.energy += float(exact.square().sum())
        return exact

    @property
    def relative_error(self) -> float:
        return (self.error / max(self.energy, 1e-30)) ** 0.5


class Kernel(Protocol):
    """What `attach` can put in a convolution's place: `__call__(x, padding, bias)` for families calling
    through `base.conv2d`, `run(x, padding, bias, padding_mode)` for module calls."""

    def __call__(
        self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool = True
    ) -> torch.Tensor: ...

    def run(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool, mode: str) -> torch.Tensor: ...


def attach(conv: nn.Conv2d, kernel: Kernel | None) -> None:
    """Make `conv` run `kernel`, whether the family calls it as a module or through `base.conv2d`."""
    if kernel is None:
        conv.__dict__.pop(KERNEL_ATTRIBUTE, None)
        conv.__dict__.pop("forward", None)
        return
    method = kernel.run
    conv.__dict__[KERNEL_ATTRIBUTE] = kernel
    # Module calls (LaMa's FFC paths) use the layer's own padding and padding mode; an instance
    # attribute wins over the class's `forward`.
    conv.__dict__["forward"] = lambda x: method(x, tuple(conv.padding), True, conv.padding_mode)


def calibration_inputs(
    sides: tuple[int, ...] = CALIBRATION_SIDES,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(N×3×H×W image in [0, 1], N×1×H×W hole) pairs from the bundled photo: colour and grey, with
    brush strokes, a box and thin scratches, a centred crop at each of `sides`."""
    import cv2

    data = resources.files("inpaint_cli").joinpath("bundled", CALIBRATION_IMAGE).read_bytes()
    photo = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    for side in sides:
        top = (photo.shape[0] - side) // 2
        crop = photo[top : top + side, top : top + side]
        grey = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        image = torch.from_numpy(np.stack([crop, grey])).permute(0, 3, 1, 2).float() / 255
        yield image, torch.from_numpy(np.stack([calibration_hole(side, 0), calibration_hole(side, 1)]))


def calibration_hole(side: int, kind: int) -> np.ndarray:
    """1×side×side float hole: strokes and a box (kind 0), or thin scratches and dots (kind 1)."""
    import cv2

    hole = np.zeros((side, side), np.uint8)
    rng = np.random.default_rng(side + kind)
    if kind == 0:
        box = side // 4
        hole[box : 3 * box, box : 3 * box] = 1
        points = rng.integers(0, side, size=(6, 2))
        cv2.polylines(hole, [points.astype(np.int32)], False, 1, thickness=max(4, side // 24))
    else:
        for _ in range(8):
            start, end = rng.integers(0, side, size=(2, 2))
            cv2.line(hole, tuple(map(int, start)), tuple(map(int, end)), 1, thickness=2)
        for x, y in rng.integers(0, side, size=(12, 2)):
            cv2.circle(hole, (int(x), int(y)), 3, 1, -1)
    return hole[None].astype(np.float32)


Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Int8Plan:
    """What `quantize_int8` did: layers in int8, layers kept in float for accuracy (most sensitive
    first), and the mean difference from float32 inside the calibration holes (0..1 scale)."""

    quantized: tuple[str, ...]
    kept_float: tuple[str, ...]
    hole_error: float


@torch.inference_mode()
def quantize_int8(
    network: InpaintModel,
    predict: Predict,
    sides: tuple[int, ...] = CALIBRATION_SIDES,
    max_hole_error: float = INT8_HOLE_ERROR,
    known: Int8Plan | None = None,
) -> Int8Plan:
    """Quantize the network's convolutions in place, calibrated by running `predict(image, hole)`
    (the runner's pass: padding, normalisation, mask convention) on the calibration photo at `sides`.

    Layers whose int8 error would take the fill further than `max_hole_error` from float32's (mean
    inside the calibration holes) stay float, the most sensitive first, as few as the bound allows.
    A `known` plan for these weights (the same layers) is applied as it is, without calibration;
    with an infinite bound every layer is int8, also without (its `hole_error` is then NaN).
    """
    if not int8_available():
        raise UsageError(
            "this PyTorch build has no oneDNN int8 convolutions",
            hint="use --precision fp32 or bf16, or a PyTorch 2.4+ CPU build",
        )
    layers = dict(quantizable_convolutions(network))
    if known is not None and set(known.quantized) | set(known.kept_float) == set(layers):
        for name in known.quantized:
            attach(layers[name], Int8Convolution(layers[name]))
        return known
    if math.isinf(max_hole_error):
        for conv in layers.values():
            attach(conv, Int8Convolution(conv))
        return Int8Plan(tuple(layers), (), math.nan)
    inputs = list(calibration_inputs(sides))
    references = _calibration_passes(layers, {}, predict, inputs)
    kernels = {name: Int8Convolution(conv) for name, conv in layers.items()}

    def hole_error(in_float: list[str]) -> float:
        chosen = {name: kernel for name, kernel in kernels.items() if name not in in_float}
        return _mean_hole_error(_calibration_passes(layers, chosen, predict, inputs), references, inputs)

    kept_float: list[str] = []
    error = hole_error(kept_float)
    if error > max_hole_error:
        # Rank the layers by their own error, then bisect on how many of the worst stay float (the
        # fill's error falls as more do; with all of them it is none).
        probes = {name: ErrorProbe(conv, kernels[name]) for name, conv in layers.items()}
        _calibration_passes(layers, probes, predict, inputs)
        ranked = sorted(layers, key=lambda name: probes[name].relative_error, reverse=True)
        low, high, error = 0, len(ranked), 0.0
        while high - low > 1:
            middle = (low + high) // 2
            middle_error = hole_error(ranked[:middle])
            if middle_error <= max_hole_error:
                high, error = middle, middle_error
            else:
                low = middle
        kept_float = ranked[:high]
    quantized = [name for name in layers if name not in kept_float]
    for name in quantized:
        attach(layers[name], kernels[name])
    return Int8Plan(tuple(quantized), tuple(kept_float), error)


def _calibration_passes(
    layers: dict[str, nn.Conv2d],
    kernels: Mapping[str, Kernel],
    predict: Predict,
    inputs: list[tuple[torch.Tensor, torch.Tensor]],
) -> list[torch.Tensor]:
    """The network's predictions on `inputs` with `kernels` in their layers' place (the others in
    float); every layer is float again afterwards."""
    for name, kernel in kernels.items():
        attach(layers[name], kernel)
    try:
        return [predict(image, hole) for image, hole in inputs]
    finally:
        for conv in layers.values():
            attach(conv, None)


def _mean_hole_error(
    outputs: list[torch.Tensor],
    references: list[torch.Tensor],
    inputs: list[tuple[torch.Tensor, torch.Tensor]],
) -> float:
    total = count = 0.0
    for output, reference, (_, hole) in zip(outputs, references, inputs, strict=True):
        inside = hole.expand_as(output) > 0
        total += float((output - reference).abs()[inside].sum())
        count += int(inside.sum())
    return total / max(count, 1)


def copy_network(network: InpaintModel) -> InpaintModel:
    """An independent copy of a float32 network (for measuring another precision next to it)."""
    return copy.deepcopy(network)
