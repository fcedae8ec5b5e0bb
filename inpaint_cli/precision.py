"""Precision of a loaded network: half-precision weights converted once, int8 convolutions on CPU.

`apply_precision` turns a float32 network into the one `--precision` asks for:

- `fp16`/`bf16`: the weights of every convolution autocast would cast are converted once, here,
  instead of on every pass (51 M weights per pass for big-lama); autocast still casts activations
  at layer boundaries, and what a family keeps in float32 (`float_modules`) keeps fp32 weights.
- `int8` (CPU): post-training static quantization of the convolutions. Weights per output channel
  (symmetric int8), inputs per tensor (uint8) with scales calibrated once on the project's own photo
  (`bundled/calibration.jpg`, the example portrait); outputs stay float32 (oneDNN's int8 convolution
  writes fp32 directly), so there is no requantisation step and everything between convolutions
  (FFTs, attention, softmax, sigmoid gates, residual sums, output layers) stays float.
- `auto` on CPU: `auto_precision.py` measures bf16 and int8 against fp32 once per machine and model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.errors import UsageError
from inpaint_cli.models.base import KERNEL_ATTRIBUTE, InpaintModel

HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
MIN_INT8_CHANNELS = 16
"""Convolutions with fewer input channels (first layers: pixels and the mask) stay float: little
work, and an 8-bit scale of raw pixels loses what the whole network builds on."""
RGB_OUTPUT = 3
"""Convolutions with this many outputs or fewer are output layers: they stay float."""
CALIBRATION_IMAGE = "calibration.jpg"
"""The example portrait (examples/portrait_original.png, 384²): the project's own photo."""
CALIBRATION_SIDES = (384, 256)
"""The photo whole, and a crop: activation ranges at two input sizes."""
UINT8_LEVELS = 255
INT8_LEVELS = 127


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


def pad(x: torch.Tensor, padding: int | tuple[int, int], mode: str, zero: int = 0) -> torch.Tensor:
    """Pad H and W on both sides as the convolution would (`zeros`, `reflect`, `replicate`, `circular`);
    `zero` is the value of a zero (an int8 input's zero point)."""
    rows, cols = (padding, padding) if isinstance(padding, int) else padding
    if rows == 0 and cols == 0:
        return x
    if mode == "zeros":
        return F.pad(x, (cols, cols, rows, rows), value=zero)
    return F.pad(x, (cols, cols, rows, rows), mode=mode)


class RangeObserver:
    """Calibration stand-in for a convolution: records its (padded) inputs' range, computes in float."""

    def __init__(self, conv: nn.Conv2d) -> None:
        self.conv = conv
        self.low, self.high = 0.0, 0.0  # the range always holds 0: padding must be exact

    def __call__(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool = True) -> torch.Tensor:
        return self.observe(x, padding, bias, "zeros")

    def observe(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool, mode: str) -> torch.Tensor:
        x = pad(x.float(), padding, mode)
        low, high = torch.aminmax(x)
        self.low, self.high = min(self.low, float(low)), max(self.high, float(high))
        conv = self.conv
        return F.conv2d(x, conv.weight, conv.bias if bias else None, conv.stride, 0, conv.dilation)


@dataclass(frozen=True)
class InputScale:
    """uint8 quantisation of a layer's input: x ≈ (q − zero_point) · scale."""

    scale: float
    zero_point: int

    @classmethod
    def for_range(cls, low: float, high: float) -> InputScale:
        scale = max(high - low, 1e-8) / UINT8_LEVELS
        return cls(scale, int(np.clip(round(-low / scale), 0, UINT8_LEVELS)))


class Int8Convolution:
    """One convolution in int8: weights per output channel, input per tensor, float32 output."""

    def __init__(self, conv: nn.Conv2d, input_scale: InputScale) -> None:
        weight = conv.weight.detach().float()
        self.weight_scales = (weight.abs().amax(dim=(1, 2, 3)) / INT8_LEVELS).clamp(min=1e-12)
        self.weight_zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
        quantized = (weight / self.weight_scales.view(-1, 1, 1, 1)).round().clamp(-128, 127).to(torch.int8)
        self.input = input_scale
        self.stride, self.dilation = list(conv.stride), list(conv.dilation)
        self.packed = torch.ops.onednn.qconv_prepack(
            quantized,
            self.weight_scales,
            input_scale.scale,
            input_scale.zero_point,
            self.stride,
            [0, 0],
            self.dilation,
            1,
            None,
        )
        self.bias = conv.bias.detach().float() if conv.bias is not None else None

    def __call__(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool = True) -> torch.Tensor:
        return self.run(x, padding, bias, "zeros")

    def run(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool, mode: str) -> torch.Tensor:
        scale, zero = self.input.scale, self.input.zero_point
        codes = torch.mul(x.float(), 1 / scale).round_().add_(zero).clamp_(0, UINT8_LEVELS).to(torch.uint8)
        # Padded here, not by the kernel (which pads codes with 0): a padded zero is the zero point.
        codes = pad(codes, padding, mode, zero)
        return torch.ops.onednn.qconv2d_pointwise(
            codes,
            scale,
            zero,
            self.packed,
            self.weight_scales,
            self.weight_zero_points,
            self.bias if bias else None,
            self.stride,
            [0, 0],
            self.dilation,
            1,
            1.0,
            0,
            torch.float32,
            "none",
            [],
            "",
        )


def attach(conv: nn.Conv2d, kernel: RangeObserver | Int8Convolution | None) -> None:
    """Make `conv` run `kernel`, whether the family calls it as a module or through `base.conv2d`."""
    if kernel is None:
        conv.__dict__.pop(KERNEL_ATTRIBUTE, None)
        conv.__dict__.pop("forward", None)
        return
    method = kernel.observe if isinstance(kernel, RangeObserver) else kernel.run
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
        hole[box : 2 * box, 2 * box : 3 * box] = 1
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


@torch.inference_mode()
def quantize_int8(network: InpaintModel, predict: Predict, sides: tuple[int, ...] = CALIBRATION_SIDES) -> int:
    """Quantize the network's convolutions in place, calibrated by running `predict(image, hole)`
    (the runner's pass: padding, normalisation, mask convention) on the calibration photo at `sides`.
    Returns the number of int8 layers."""
    if not int8_available():
        raise UsageError(
            "this PyTorch build has no oneDNN int8 convolutions",
            hint="use --precision fp32 or bf16, or a PyTorch 2.4+ CPU build",
        )
    layers = list(quantizable_convolutions(network))
    observers = {name: RangeObserver(conv) for name, conv in layers}
    for name, conv in layers:
        attach(conv, observers[name])
    try:
        for image, hole in calibration_inputs(sides):
            predict(image, hole)
    finally:
        for _, conv in layers:
            attach(conv, None)
    for name, conv in layers:
        observed = observers[name]
        attach(conv, Int8Convolution(conv, InputScale.for_range(observed.low, observed.high)))
    return len(layers)


def apply_precision(
    network: InpaintModel,
    precision: str,
    device: torch.device,
    predict: Predict,
    calibration_sides: tuple[int, ...] = CALIBRATION_SIDES,
) -> None:
    """Make `network` (float32, eval, on `device`) run at `precision` (fp32, fp16, bf16 or int8)."""
    if precision in HALF_DTYPES:
        convert_half(network, precision)
    elif precision == "int8":
        if device.type != "cpu":
            raise UsageError("--precision int8 runs on the CPU only", hint="use fp16 or bf16 on a GPU")
        quantize_int8(network, predict, calibration_sides)


def copy_network(network: InpaintModel) -> InpaintModel:
    """An independent copy of a float32 network (for measuring another precision next to it)."""
    return copy.deepcopy(network)
