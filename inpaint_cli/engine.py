"""The inference engine: one loaded network, and the way from pixels to filled pixels.

`Inpainter` owns the device, the precision and the family-independent steps around a network
pass: cutting boxes out of the image, padding to the family's multiple with its padding mode,
normalising, converting the mask to the family's convention, un-padding, and compositing only
hole pixels back in the input's own integer precision, so pixels outside the hole stay bit-exact.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inpaint_cli import strategies
from inpaint_cli.checkpoints import read_checkpoint
from inpaint_cli.errors import InpaintError, UsageError
from inpaint_cli.models import FAMILIES, InpaintModel, classical, network_from_checkpoint
from inpaint_cli.models.base import PadMode
from inpaint_cli.strategies import Box, Strategy

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

CPU_BUDGET_FRACTION = 0.5
"""Share of the available RAM one network pass may use when no budget is given."""
CUDA_BUDGET_FRACTION = 0.8
"""Share of the free CUDA memory one network pass may use when no budget is given."""


def select_device(spec: str = "auto") -> torch.device:
    """`auto` = CUDA if available, else Apple MPS, else CPU; `cuda:N` is checked to exist."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}", hint="use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA is not available on this machine", hint="use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"no CUDA device {device.index} (this machine has {torch.cuda.device_count()})",
                hint="use --device cuda:0",
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("Apple MPS is not available on this machine", hint="use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {spec!r}", hint="use auto, cpu, cuda, cuda:N or mps")
    return device


def select_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype: `auto` is fp32 on CPU/MPS, bf16 on CUDA where supported, else fp16."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint="use auto, fp32, fp16 or bf16")
    if precision == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _HALF_DTYPES.get(precision, torch.float32)


def default_memory_budget(device: torch.device) -> int:
    """Bytes one network pass may use: a share of free CUDA memory or of available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    import psutil

    return int(psutil.virtual_memory().available * CPU_BUDGET_FRACTION)


def parse_size(text: str) -> int:
    """`4GB`, `512MiB`, `1.5G`, `800000000` -> bytes."""
    units = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
    units |= {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
    cleaned = text.strip().lower().removesuffix("b")
    number = cleaned.rstrip("kmgti")
    unit = cleaned[len(number) :]
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError):
        raise UsageError(f"cannot read size {text!r}", hint="write it like 4GB, 512MiB or 2.5G") from None
    if value <= 0:
        raise UsageError(f"size must be positive: {text!r}")
    return int(value)


def pad_indices(size: int, padded: int, mode: PadMode) -> torch.Tensor:
    """Source index of every position of a side padded at its end from `size` to `padded`.

    `symmetric` mirrors including the edge sample (numpy's mode: ... c b a | a b c ...),
    `reflect` excluding it (PyTorch's), `replicate` repeats the edge; both mirror modes keep
    bouncing when the padding is longer than the side, as numpy does.
    """
    index = torch.arange(padded)
    if mode == "replicate" or size == 1:
        return index.clamp(max=size - 1)
    period = 2 * size if mode == "symmetric" else 2 * size - 2
    folded = index % period
    mirror = period - 1 - folded if mode == "symmetric" else period - folded
    return torch.where(folded < size, folded, mirror)


def pad_bottom_right(tensor: torch.Tensor, height: int, width: int, mode: PadMode) -> torch.Tensor:
    """Pad an N×C×H×W tensor at the bottom and right to height × width."""
    if mode == "constant":
        return F.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]))
    rows = pad_indices(tensor.shape[-2], height, mode).to(tensor.device)
    cols = pad_indices(tensor.shape[-1], width, mode).to(tensor.device)
    return tensor.index_select(-2, rows).index_select(-1, cols)


def padded_size(size: int, multiple: int, minimum: int) -> int:
    return max(-(-size // multiple) * multiple, -(-minimum // multiple) * multiple)


def to_float(pixels: np.ndarray) -> torch.Tensor:
    """H×W×C integer pixels -> 1×3×H×W float32 in [0, 1] (grey replicated to three channels)."""
    scale = float(np.iinfo(pixels.dtype).max)
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / scale
    return tensor.expand(-1, 3, -1, -1) if tensor.shape[1] == 1 else tensor


def to_integer(values: torch.Tensor, dtype: np.dtype, channels: int) -> np.ndarray:
    """1×3×H×W float in [0, 1] -> H×W×C integers of `dtype`, rounded (grey = channel mean)."""
    if channels == 1:
        values = values.mean(dim=1, keepdim=True)
    scale = float(np.iinfo(dtype).max)
    array = (values[0].float().clamp(0, 1) * scale).round().permute(1, 2, 0).cpu().numpy()
    return array.astype(dtype)


def upscale_to_box(values: torch.Tensor, box: Box) -> torch.Tensor:
    """A prediction made at the box's reduced scale, brought back to the box's native size."""
    return F.interpolate(values, size=(box.height, box.width), mode="bicubic", align_corners=False)


@dataclass
class InpaintResult:
    """The filled image and what was learned on the way."""

    pixels: np.ndarray
    boxes: list[Box]
    intermediates: dict[str, torch.Tensor] = field(default_factory=dict)
    intermediates_hole: torch.Tensor | None = None
    """The N×1×H×W hole mask at the (padded) size the intermediates were computed at."""
    coarse: np.ndarray | None = None
    """A two-stage family's first-stage result, as pixels like `pixels` (single-pass plans only)."""

    @property
    def changed(self) -> bool:
        return bool(self.boxes)


def family_of(name: str) -> str:
    """The family of a family name or a manifest entry name."""
    if name in FAMILIES:
        return name
    from inpaint_cli import weights

    manifest = weights.load_manifest()
    if name not in manifest:
        known = sorted({*FAMILIES, *manifest, *classical.MODELS} - {"classical"})
        raise UsageError(f"unknown model {name!r}", hint=f"known: {', '.join(known)}")
    return manifest[name].family


class Inpainter:
    """A loaded network plus device, precision and resolution strategy. Load once, call many times."""

    def __init__(
        self,
        network: InpaintModel,
        *,
        name: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        strategy: Strategy | str = Strategy.AUTO,
        max_side: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int = 64,
        crop_margin: int = 128,
        memory_budget: int | None = None,
    ) -> None:
        self.device = select_device(device)
        self.dtype = select_precision(precision, self.device)
        if threads:
            torch.set_num_threads(threads)
        self.network = network.to(self.device)
        self.name = name or network.family
        self.strategy = Strategy(strategy)
        self.max_side = max_side
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.crop_margin = crop_margin
        self.memory_budget = memory_budget or default_memory_budget(self.device)

    # --- loading -----------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | Path, family: str | None = None, **options: Any) -> Inpainter:
        """An inpainter for a weight file (official format or ours); the family is detected if not given."""
        if family is not None and family not in FAMILIES:
            raise UsageError(f"unknown family {family!r}", hint=f"known: {', '.join(sorted(FAMILIES))}")
        network = network_from_checkpoint(read_checkpoint(path), family)
        return cls(network, name=Path(path).name, **options)

    @classmethod
    def from_name(
        cls, name: str, *, checkpoint: str | Path | None = None, progress: Any = None, **options: Any
    ) -> Inpainter:
        """The model `name` (a manifest entry, a family or a classical method), from `checkpoint` if given."""
        if name in classical.MODELS:
            if checkpoint is not None:
                raise UsageError(f"--model {name} is a classical method and takes no --checkpoint")
            return cls(classical.FAMILY.build(classical.MODELS[name]), name=name, **options)
        if checkpoint is not None:
            return cls.from_checkpoint(checkpoint, family_of(name), **options)
        from inpaint_cli import weights

        path = weights.ensure_model(name, progress=progress)
        return cls(network_from_checkpoint(read_checkpoint(path)), name=name, **options)

    # --- inference ---------------------------------------------------------------------------------

    def inpaint(self, pixels: np.ndarray, hole: np.ndarray, *, capture: bool = False) -> InpaintResult:
        """Fill the hole of an H×W×C uint8/uint16 image (C = 1 or 3); `hole` is H×W bool, True = hole.

        Pixels outside the hole are returned unchanged; with `capture`, the family's intermediates
        of a single-pass plan are returned too.
        """
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or pixels.dtype not in (np.uint8, np.uint16):
            raise ValueError(
                f"expected H×W×1 or H×W×3 uint8/uint16 pixels, not {pixels.shape} {pixels.dtype}"
            )
        if hole.shape != pixels.shape[:2]:
            raise ValueError(f"hole {hole.shape} does not match image {pixels.shape[:2]}")
        output = pixels.copy()
        if not hole.any():
            return InpaintResult(output, [])
        boxes = self.plan(hole)
        result = InpaintResult(output, boxes)
        for box in boxes:
            captured: dict[str, torch.Tensor] | None = {} if capture and len(boxes) == 1 else None
            filled, network_hole = self._fill_box(pixels, hole, box, captured)
            inside = hole[box.slices]
            output[box.slices][inside] = to_integer(filled, pixels.dtype, pixels.shape[2])[inside]
            if captured is not None:
                result.intermediates_hole = network_hole.cpu()
                self._keep_intermediates(result, captured, pixels, box)
        return result

    def plan(self, hole: np.ndarray) -> list[Box]:
        """The boxes (and scales) one image is processed in."""
        height, width = hole.shape
        if self.strategy in (Strategy.FULL, Strategy.AUTO, Strategy.RESIZE):
            scale = strategies.scale_to_fit(height, width, self.max_side)
            if self.strategy is Strategy.FULL:
                self._check_budget(round(height * scale), round(width * scale))
            elif self.strategy is Strategy.AUTO:
                fitted = (round(height * scale), round(width * scale))
                try:
                    scale *= strategies.shrink_until(self.fits_budget, *fitted)
                except ValueError:
                    self._check_budget(*fitted)  # nothing fits: raises the budget error
            return strategies.whole_image(hole, scale)
        raise UsageError(f"strategy {self.strategy.value!r} is not available yet", hint="use --strategy full")

    def pass_memory(self, height: int, width: int) -> int:
        """Estimated peak bytes of one network pass on an image of this size (before padding)."""
        net = self.network
        bytes_per_value = 4 if self.dtype == torch.float32 else 2
        padded_h = padded_size(height, net.pad_multiple, net.min_size)
        padded_w = padded_size(width, net.pad_multiple, net.min_size)
        return net.memory_estimate(padded_h, padded_w) * bytes_per_value // 4

    def fits_budget(self, height: int, width: int) -> bool:
        return self.pass_memory(height, width) <= self.memory_budget

    def _check_budget(self, height: int, width: int) -> None:
        if not self.fits_budget(height, width):
            need, budget = self.pass_memory(height, width), self.memory_budget
            raise InpaintError(
                f"a {width}x{height} pass of {self.name} needs about {need / 1e9:.1f} GB, "
                f"over the memory budget of {budget / 1e9:.1f} GB",
                hint="use --strategy auto or resize, --max-side, or raise --memory-budget",
            )

    def _fill_box(
        self, pixels: np.ndarray, hole: np.ndarray, box: Box, captured: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Network prediction for one box, as 1×3×h×w float in [0, 1] at the box's native size,
        and the padded hole the network saw (for intermediates)."""
        image = to_float(pixels[box.slices]).to(self.device)
        mask = torch.from_numpy(hole[box.slices]).to(self.device)[None, None].float()
        if box.scale < 1:
            size = box.scaled_size()
            image = F.interpolate(image, size=size, mode="area")
            mask = (F.interpolate(mask, size=size, mode="area") > 0).float()
        prediction = self.predict(image, mask, captured)
        if box.scale < 1:
            prediction = upscale_to_box(prediction, box)
        return prediction.clamp(0, 1), self._pad(mask)

    def _pad(self, tensor: torch.Tensor) -> torch.Tensor:
        """Pad an N×C×H×W tensor at the bottom and right to the network's multiple, its way."""
        net = self.network
        height = padded_size(tensor.shape[-2], net.pad_multiple, net.min_size)
        width = padded_size(tensor.shape[-1], net.pad_multiple, net.min_size)
        return pad_bottom_right(tensor, height, width, net.pad_mode)

    def predict(
        self, image: torch.Tensor, hole: torch.Tensor, captured: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One network pass: N×3×H×W [0, 1] image and N×1×H×W {0,1} hole -> N×3×H×W prediction in [0, 1]."""
        net = self.network
        height, width = image.shape[-2:]
        hole = self._pad(hole)
        mask = hole if net.hole_value == 1 else 1 - hole
        with torch.inference_mode(), self._autocast():
            output = net(net.normalization.to_network(self._pad(image)), mask, captured)
        prediction = net.normalization.from_network(output.float())
        return prediction[..., :height, :width].clamp(0, 1)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.dtype == torch.float32:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def _keep_intermediates(
        self,
        result: InpaintResult,
        captured: dict[str, torch.Tensor],
        pixels: np.ndarray,
        box: Box,
    ) -> None:
        coarse = captured.get("coarse")
        if coarse is not None:
            values = self.network.normalization.from_network(coarse.float())
            values = values[..., : box.scaled_size()[0], : box.scaled_size()[1]]
            if box.scale < 1:
                values = upscale_to_box(values, box)
            result.coarse = to_integer(values.clamp(0, 1), pixels.dtype, pixels.shape[2])
        result.intermediates = {name: value.detach().float().cpu() for name, value in captured.items()}
