"""The inference engine: one loaded network, and the way from pixels to filled pixels.

`Inpainter` owns the device, the precision and the family-independent steps around a network
pass: cutting boxes out of the image, padding to the family's multiple with its padding mode,
normalising, converting the mask to the family's convention, un-padding, and compositing only
hole pixels back in the input's own integer precision, so pixels outside the hole stay bit-exact.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
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

MIN_TILE_SIDE = 128
"""Smallest tile side planned, or retried after running out of memory: smaller tiles hold too little
context around their holes."""
MAX_BATCH = 16
"""Most tiles one network call takes on an accelerator."""
CROP_AREA_SHARE = 0.5
"""`auto` fills the whole image rather than crop boxes covering this share of it or more: about
the same cost, more context."""
TILE_CONTEXT_SHARE = 0.25
"""`auto` tiles a box only if every hole pixel lies within this share of a tile side of a known
pixel, so that each tile sees context around its holes; otherwise it downscales."""
PASTE_CHUNK_PIXELS = 1 << 22
"""Upscaled fills are pasted this many box pixels at a time, so `resize` needs no full-size float copy."""


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
    # A copy: the box is small next to its float tensor, and read-only arrays (PIL views) are fine.
    tensor = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1)[None].float() / scale
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
    passes: int = 0
    """Network calls made (a call may take a batch of tiles)."""
    intermediates_missing: str | None = None
    """Why no intermediates were captured although they were asked for."""

    @property
    def changed(self) -> bool:
        return bool(self.boxes)


def family_of(name: str) -> str:
    """The family of a family name or a manifest entry name."""
    if name in FAMILIES and name != "classical":
        return name
    from inpaint_cli import weights

    # The one resolver of model names: unknown names are usage errors listing every known name.
    entry = weights.resolve_model(name)
    if entry is None:
        return "classical"
    if entry.is_detector:
        raise UsageError(
            f"'{name}' is a damage detector, not an inpainting model",
            hint="see `inpaint models`",
        )
    return entry.family


def _largest(fits: Callable[[int], bool], upper: int) -> int:
    """Largest n in [1, upper] with fits(n), for a predicate that holds up to some n; 0 if none."""
    low, high = 0, upper
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


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
        crop_margin: int | None = None,
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
        # Learned from running out of device memory; later boxes and images start from them.
        self._tile_cap: int | None = None
        self._batch_cap: int | None = None

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
        family = family_of(name)  # unknown names are usage errors, before any download
        if checkpoint is not None:
            return cls.from_checkpoint(checkpoint, family, **options)
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
        boxes = self.plan(hole, single_pass=capture)
        result = InpaintResult(output, boxes)
        one_pass = len(boxes) == 1 and boxes[0].tile is None
        for index, box in enumerate(boxes):
            captured: dict[str, torch.Tensor] | None = {} if capture and one_pass else None
            while (passes := self._try_fill(pixels, hole, box, result, captured)) is None:
                box = self._after_out_of_memory(box)
                captured = None  # the retry runs in tiles
            result.boxes[index] = box
            result.passes += passes
        if capture and result.intermediates_hole is None:
            result.intermediates_missing = (
                f"the {self.strategy.value} plan made {result.passes} network passes; "
                "intermediates come from a single pass (use --strategy auto or full)"
            )
        return result

    # --- planning ------------------------------------------------------------------------------------

    def plan(self, hole: np.ndarray, *, single_pass: bool = False) -> list[Box]:
        """The boxes, with their scale and tiling, one image is processed in.

        `single_pass` (for intermediates) makes `auto` fill the whole image in one pass, downscaled
        as far as the family's native side and the memory budget require.
        """
        height, width = hole.shape
        whole = Box(0, 0, height, width)
        if self.strategy is Strategy.FULL:
            box = whole.at_scale(strategies.scale_to_fit(height, width, self.max_side))
            self._check_budget(*box.scaled_size())
            return [box]
        if self.strategy is Strategy.AUTO and single_pass:
            return [self._one_pass(whole)]
        if self.strategy is Strategy.RESIZE:
            return [self._within_budget(whole, self.max_side or self.native_side)]
        if self.strategy is Strategy.TILE:
            scale = strategies.scale_to_fit(height, width, self.max_side)
            return [whole.at_scale(scale).in_tiles(self._tile_side())]
        margin = self.crop_margin if self.crop_margin is not None else strategies.default_crop_margin(hole)
        boxes = strategies.hole_boxes(hole, margin)
        if self.strategy is Strategy.CROP:
            return [self._within_budget(box, self.max_side) for box in boxes]
        if sum(box.area for box in boxes) >= CROP_AREA_SHARE * hole.size:
            boxes = [whole]
        return [self._auto_box(box, hole[box.slices]) for box in boxes]

    @property
    def native_side(self) -> int:
        """Longest side the family fills at native resolution under `auto` and `resize`."""
        return strategies.native_side(self.network.family, self.network.training_size)

    def _one_pass(self, box: Box) -> Box:
        """`box` downscaled to the family's native side, and further until one pass fits the budget."""
        limit = min(self.max_side or self.native_side, self.native_side)
        box = box.at_scale(strategies.scale_to_fit(box.height, box.width, limit))
        try:
            return box.at_scale(box.scale * strategies.largest_scale(self.fits_budget, *box.scaled_size()))
        except ValueError:
            self._check_budget(*box.scaled_size())  # nothing fits: raises the budget error
            raise

    def _within_budget(self, box: Box, max_side: int | None) -> Box:
        """`box` downscaled to `max_side`, in one pass if that fits the memory budget, else in tiles."""
        box = box.at_scale(strategies.scale_to_fit(box.height, box.width, max_side))
        return box if self.fits_budget(*box.scaled_size()) else box.in_tiles(self._tile_side())

    def _auto_box(self, box: Box, hole: np.ndarray) -> Box:
        """`auto` for one box: the larger of two scales. One pass needs the box within the family's
        native side and the memory budget; tiles need every hole pixel to have context inside a
        tile. Native scale when one pass is possible there."""
        one_pass = self._one_pass(box)
        tile = self._tile_side()
        if not self.fits_budget(tile, tile):
            return one_pass
        scale = strategies.scale_to_fit(box.height, box.width, self.max_side)
        tiled_scale = min(scale, TILE_CONTEXT_SHARE * tile / strategies.hole_reach(hole))
        return box.at_scale(tiled_scale).in_tiles(tile) if tiled_scale > one_pass.scale else one_pass

    def _tile_side(self) -> int:
        """Side of square tiles: --tile-size, else the largest that fits the memory budget and the
        family's native side; never below the floor, nor above a side that ran out of memory."""
        multiple = self.network.pad_multiple
        if self.tile_size:
            side = self.tile_size
        else:
            steps = max(1, self.native_side // multiple)
            side = multiple * _largest(lambda k: self.fits_budget(k * multiple, k * multiple), steps)
        if self._tile_cap:
            side = min(side, self._tile_cap)
        return max(self._tile_floor(), side // multiple * multiple)

    def _tile_floor(self) -> int:
        return padded_size(MIN_TILE_SIDE, self.network.pad_multiple, self.network.min_size)

    def _batch_size(self, height: int, width: int) -> int:
        """Tiles per network call."""
        if self.device.type == "cpu":
            return 1  # one tile already keeps every core busy; a batch would only raise peak memory
        fitting = self.memory_budget // max(1, self.pass_memory(height, width))
        return max(1, min(MAX_BATCH, fitting, self._batch_cap or MAX_BATCH))

    def pass_memory(self, height: int, width: int) -> int:
        """Estimated peak bytes of one network pass on an image of this size (before padding).

        The fp32 estimate is used for every precision: half-precision autocast keeps FFTs, some
        layers and the cast weights in fp32, and measured no smaller peak (LaMa: bf16 960 B/px
        against fp32 826 B/px at 512²).
        """
        net = self.network
        padded_h = padded_size(height, net.pad_multiple, net.min_size)
        padded_w = padded_size(width, net.pad_multiple, net.min_size)
        return net.memory_estimate(padded_h, padded_w)

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

    # --- filling one box -----------------------------------------------------------------------------

    def _try_fill(
        self,
        pixels: np.ndarray,
        hole: np.ndarray,
        box: Box,
        result: InpaintResult,
        captured: dict[str, torch.Tensor] | None,
    ) -> int | None:
        """`_fill_box`, or None if the device ran out of memory (its tensors are released on return)."""
        try:
            return self._fill_box(pixels, hole, box, result, captured)
        except torch.cuda.OutOfMemoryError:
            return None

    def _after_out_of_memory(self, box: Box) -> Box:
        """The box again in tiles of half the side that ran out of memory; an error below the floor."""
        (height, width), _ = self._tile_shape(box)
        multiple = self.network.pad_multiple
        side = max(height, width) // 2 // multiple * multiple
        if side < self._tile_floor():
            raise InpaintError(
                f"{self.name} ran out of {self.device} memory on {width}x{height} pixels, "
                f"and tiles smaller than {self._tile_floor()} px are not tried",
                hint="free memory used by other programs, use --precision fp16 or bf16, or --device cpu",
            )
        log.warning("out of %s memory: retrying in tiles of at most %dx%d", self.device, side, side)
        self._batch_cap = self._batch_size(height, width)
        self._tile_cap = side
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return box.in_tiles(side)

    def _tile_shape(self, box: Box) -> tuple[tuple[int, int], int]:
        """(height, width) of the passes a box is run in, and the overlap of its tiles.

        Tiles are shrunk to the smallest size that needs no more of them than `box.tile` would.
        """
        height, width = box.scaled_size()
        if box.tile is None:
            return (height, width), 0
        overlap = min(self.tile_overlap, box.tile // 2)
        multiple = self.network.pad_multiple
        fitted = [strategies.fitted_tile(side, box.tile, overlap, multiple) for side in (height, width)]
        return (fitted[0], fitted[1]), overlap

    def _fill_box(
        self,
        pixels: np.ndarray,
        hole: np.ndarray,
        box: Box,
        result: InpaintResult,
        captured: dict[str, torch.Tensor] | None,
    ) -> int:
        """Fill the hole pixels of one box in `result.pixels`; returns the number of network calls.

        The box is run whole, or in tiles (those holding a hole pixel, in batches) whose feathered
        average comes in finished bands of rows. Values are pasted straight away at native scale,
        or kept at the reduced scale and upscaled at the hole pixels at the end.
        """
        image, box_hole = self._cut(pixels, hole, box)
        height, width = box_hole.shape
        bands: Iterable[tuple[int, torch.Tensor]]
        if box.tile is None:
            bands = [(0, self._predict_tiles(image, box_hole, 0, [0], (height, width), captured)[0])]
            passes = 1
        else:
            tile, overlap = self._tile_shape(box)
            rows = strategies.tile_rows(box_hole, *tile, overlap)
            batch = self._batch_size(*tile)
            bands = self._blended_bands(image, box_hole, rows, tile, overlap, batch)
            passes = sum(-(-len(lefts) // batch) for _, lefts in rows)
        reduced = to_float(image).contiguous() if box.scale < 1 else None
        for start, values in bands:
            if reduced is None:
                self._paste_rows(result.pixels, hole, box, start, values)
            else:
                rows_done = slice(start, start + values.shape[1])
                inside = torch.from_numpy(box_hole[rows_done])
                reduced[0, :, rows_done] = torch.where(inside, values, reduced[0, :, rows_done])
        if reduced is not None:
            self._paste_upscaled(result.pixels, hole, box, reduced)
        if captured is not None:
            result.intermediates_hole = self._pad(
                torch.tensor(box_hole, dtype=torch.float32)[None, None]
            ).cpu()
            self._keep_intermediates(result, captured, pixels, box)
        return passes

    def _blended_bands(
        self,
        image: np.ndarray,
        box_hole: np.ndarray,
        rows: list[tuple[int, list[int]]],
        tile: tuple[int, int],
        overlap: int,
        batch: int,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """The feathered average of the tiles' predictions, as (first row, 3×n×w values) bands
        of finished rows, top to bottom."""
        blender = strategies.TileBlender(box_hole.shape[1], *tile, overlap)
        for top, lefts in [*rows, (box_hole.shape[0], [])]:
            start = blender.top
            yield start, blender.finish(top)  # no tile from this row on reaches above `top`
            for first in range(0, len(lefts), batch):
                chunk = lefts[first : first + batch]
                predictions = self._predict_tiles(image, box_hole, top, chunk, tile, None)
                for left, prediction in zip(chunk, predictions, strict=True):
                    blender.add(top, left, prediction)

    @staticmethod
    def _cut(pixels: np.ndarray, hole: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """The box's pixels (still integers) and hole, at the scale the network sees them."""
        image, inside = pixels[box.slices], hole[box.slices]
        if box.scale == 1:
            return image, inside
        height, width = box.scaled_size()
        small = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)
        # A reduced pixel is a hole if any of its pixels is one, so that no hole pixel goes unfilled.
        covered = cv2.resize(inside.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0
        return small.reshape(height, width, -1), covered

    def _predict_tiles(
        self,
        image: np.ndarray,
        box_hole: np.ndarray,
        top: int,
        lefts: list[int],
        size: tuple[int, int],
        captured: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """One network call on the tiles of one row: the only place pixels become float tensors."""
        rows = slice(top, top + size[0])
        tiles = torch.cat([to_float(image[rows, left : left + size[1]]) for left in lefts])
        holes = torch.from_numpy(np.stack([box_hole[rows, left : left + size[1]] for left in lefts]))[:, None]
        return self.predict(tiles.to(self.device), holes.to(self.device, torch.float32), captured).cpu()

    @staticmethod
    def _paste_rows(output: np.ndarray, hole: np.ndarray, box: Box, start: int, values: torch.Tensor) -> None:
        """Composite finished 3×n×w rows of a native-scale box: hole pixels only, in the image's precision."""
        rows = slice(box.top + start, box.top + start + values.shape[1])
        inside = hole[rows, box.left : box.right]
        if inside.any():
            target = output[rows, box.left : box.right]
            target[inside] = to_integer(values[None], output.dtype, output.shape[2])[inside]

    @staticmethod
    def _paste_upscaled(output: np.ndarray, hole: np.ndarray, box: Box, reduced: torch.Tensor) -> None:
        """Bicubic upscaling of a box's reduced-scale fill, at its hole pixels only, band by band."""
        band = max(1, PASTE_CHUNK_PIXELS // box.width)
        for start in range(box.top, box.bottom, band):
            rows, cols = np.nonzero(hole[start : min(start + band, box.bottom), box.left : box.right])
            if rows.size == 0:
                continue
            # Pixel centres in grid_sample's [-1, 1] coordinates: where F.interpolate would sample.
            y = torch.from_numpy((rows + start - box.top) * 2 + 1).float() / box.height - 1
            x = torch.from_numpy(cols * 2 + 1).float() / box.width - 1
            grid = torch.stack([x, y], dim=-1)[None, None]
            values = F.grid_sample(reduced, grid, mode="bicubic", padding_mode="border", align_corners=False)
            output[rows + start, cols + box.left] = to_integer(values, output.dtype, output.shape[2])[0]

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
