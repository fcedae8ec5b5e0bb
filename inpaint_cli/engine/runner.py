"""Runs one box of a plan: the only place pixels become tensors and tensors become pixels.

`Runner` owns a network on a device at a precision and the family-independent steps around a
pass: cutting the box out (still uint8/uint16), resizing it when its scale is below 1, padding to
the family's multiple with its padding mode, normalising, the family's mask convention, blending
overlapping tiles, and compositing only hole pixels back in the image's own integer precision,
so pixels outside the hole stay bit-exact. What to run comes from the planner (`strategies.py`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from inpaint_cli.engine.strategies import Box, Tiling, padded_size
from inpaint_cli.errors import InpaintError
from inpaint_cli.models.base import InpaintModel, PadMode

PASTE_CHUNK_PIXELS = 1 << 22
"""Upscaled fills are pasted this many box pixels at a time, so `resize` needs no full-size float copy."""

STAGES = ("preprocess", "network", "composite")


@dataclass
class Stopwatch:
    """Seconds spent per stage, summed over calls."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


# --- padding and conversions -------------------------------------------------------------------------


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
    """Pad an N×C×H×W tensor at the bottom and right to height × width.

    No copy when no padding is needed; otherwise only the added rows and columns are gathered.
    """
    rows, cols = height - tensor.shape[-2], width - tensor.shape[-1]
    if rows == 0 and cols == 0:
        return tensor
    if mode == "constant":
        return F.pad(tensor, (0, cols, 0, rows))
    if rows:
        extra = pad_indices(tensor.shape[-2], height, mode)[tensor.shape[-2] :].to(tensor.device)
        tensor = torch.cat([tensor, tensor.index_select(-2, extra)], dim=-2)
    if cols:
        extra = pad_indices(tensor.shape[-1], width, mode)[tensor.shape[-1] :].to(tensor.device)
        tensor = torch.cat([tensor, tensor.index_select(-1, extra)], dim=-1)
    return tensor


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


# --- blending ------------------------------------------------------------------------------------------


def feather(length: int, overlap: int) -> torch.Tensor:
    """Blending weights along one side of a tile: rising linearly over `overlap` pixels from each end.

    Predictions near a tile's edge had the least context, so they count least where tiles overlap.
    """
    if overlap <= 0:
        return torch.ones(length)
    position = torch.arange(length, dtype=torch.float32)
    from_edge = torch.minimum(position, length - 1 - position) + 1
    return (from_edge / (overlap + 1)).clamp(max=1)


class TileBlender:
    """Feathered average of overlapping tile predictions over a region `width` wide.

    Tiles arrive row by row, from top to bottom, all `tile_height`×`tile_width`. Rows above the
    next tile row can no longer change; `finish` hands them out, so only one tile row of sums is
    held however tall the region is.
    """

    def __init__(self, width: int, tile_height: int, tile_width: int, overlap: int) -> None:
        self.weights = feather(tile_height, overlap)[:, None] * feather(tile_width, overlap)[None, :]
        self.top = 0
        """First row not yet finished; the sums cover rows [top, top + tile_height)."""
        self.total = torch.zeros(3, tile_height, width)
        self.weight = torch.zeros(tile_height, width)

    def add(self, top: int, left: int, prediction: torch.Tensor) -> None:
        """Add a 3×tile_height×tile_width prediction whose top row is the first unfinished row."""
        if top != self.top:
            raise ValueError(f"tile row at {top}, but rows from {self.top} are the ones open")
        columns = slice(left, left + self.weights.shape[1])
        self.total[:, :, columns] += prediction * self.weights
        self.weight[:, columns] += self.weights

    def finish(self, until: int) -> torch.Tensor:
        """Blended 3×n×width values of rows [top, until), n <= tile_height; 0 where no tile ran."""
        count = until - self.top
        if not 0 <= count <= self.weight.shape[0]:
            raise ValueError(f"cannot finish rows {self.top}..{until} of a {self.weight.shape[0]}-row band")
        values = self.total[:, :count] / self.weight[:count].clamp(min=torch.finfo(torch.float32).tiny)
        self.total = torch.cat([self.total[:, count:], torch.zeros_like(self.total[:, :count])], dim=1)
        self.weight = torch.cat([self.weight[count:], torch.zeros_like(self.weight[:count])])
        self.top = until
        return values


# --- the runner ----------------------------------------------------------------------------------------


class Runner:
    """A network on a device at a precision: one pass, one box, compositing."""

    def __init__(self, network: InpaintModel, device: torch.device, dtype: torch.dtype, name: str) -> None:
        self.network, self.device, self.dtype, self.name = network, device, dtype, name
        self.clock = Stopwatch()
        self.on_steps: Callable[[int], None] | None = None
        """Progress: called with the number of tiles after each network call, or with 1 after each
        forward pass of a refinement (`Plan.steps` counts the same)."""
        self.refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        """Set to refine every network input instead of one pass: N×3×H×W images and N×1×H×W holes on
        the device -> N×3×H×W values on the CPU (`refine.refine_each`, which reports its progress)."""

    def fill_box(
        self,
        pixels: np.ndarray,
        hole: np.ndarray,
        box: Box,
        tiling: Tiling | None,
        output: np.ndarray,
        captured: dict[str, torch.Tensor] | None,
    ) -> int:
        """Fill the hole pixels of one box in `output`; returns the number of network calls.

        The box is run whole, or in tiles (those holding a hole pixel, in batches) whose feathered
        average comes in finished bands of rows. Values are pasted straight away at native scale,
        or kept at the reduced scale and upscaled at the hole pixels at the end.
        """
        with self.clock.stage("preprocess"):
            image, box_hole = self.cut(pixels, hole, box)
        height, width = box_hole.shape
        bands: Iterable[tuple[int, torch.Tensor]]
        if tiling is None:
            bands = [(0, self.predict_tiles(image, box_hole, 0, [0], (height, width), captured)[0])]
            calls = 1
        else:
            bands = self.blended_bands(image, box_hole, tiling)
            calls = tiling.calls
        reduced = None
        if box.scale < 1:
            with self.clock.stage("preprocess"):
                reduced = to_float(image).contiguous()
        for start, values in bands:
            with self.clock.stage("composite"):
                if reduced is None:
                    paste_rows(output, hole, box, start, values)
                else:
                    rows_done = slice(start, start + values.shape[1])
                    inside = torch.from_numpy(box_hole[rows_done])
                    reduced[0, :, rows_done] = torch.where(inside, values, reduced[0, :, rows_done])
        if reduced is not None:
            with self.clock.stage("composite"):
                paste_upscaled(output, hole, box, reduced)
        return calls

    def blended_bands(
        self, image: np.ndarray, box_hole: np.ndarray, tiling: Tiling
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """The feathered average of the tiles' predictions, as (first row, 3×n×w values) bands
        of finished rows, top to bottom."""
        size = (tiling.height, tiling.width)
        blender = TileBlender(box_hole.shape[1], *size, tiling.overlap)
        for top, lefts in [*tiling.rows, (box_hole.shape[0], ())]:
            start = blender.top
            with self.clock.stage("composite"):
                finished = blender.finish(top)  # no tile from this row on reaches above `top`
            yield start, finished
            for first in range(0, len(lefts), tiling.batch):
                chunk = list(lefts[first : first + tiling.batch])
                predictions = self.predict_tiles(image, box_hole, top, chunk, size, None)
                with self.clock.stage("composite"):
                    for left, prediction in zip(chunk, predictions, strict=True):
                        blender.add(top, left, prediction)

    @staticmethod
    def cut(pixels: np.ndarray, hole: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """The box's pixels (still integers) and hole, at the scale the network sees them."""
        image, inside = pixels[box.slices], hole[box.slices]
        if box.scale == 1:
            return image, inside
        height, width = box.scaled_size()
        small = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)
        # A reduced pixel is a hole if any of its pixels is one, so that no hole pixel goes unfilled.
        covered = cv2.resize(inside.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0
        return small.reshape(height, width, -1), covered

    def predict_tiles(
        self,
        image: np.ndarray,
        box_hole: np.ndarray,
        top: int,
        lefts: list[int],
        size: tuple[int, int],
        captured: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """One network call on the tiles of one row."""
        with self.clock.stage("preprocess"):
            rows = slice(top, top + size[0])
            tiles = torch.cat([to_float(image[rows, left : left + size[1]]) for left in lefts])
            holes = np.stack([box_hole[rows, left : left + size[1]] for left in lefts])[:, None]
            tiles = tiles.to(self.device)
            holes = torch.from_numpy(holes).to(self.device, torch.float32)
        if self.refine is not None:
            with self.clock.stage("network"):
                refined = self.refine(tiles, holes)
            self._check_finite(refined)
            return refined
        prediction = self.predict(tiles, holes, captured).cpu()
        if self.on_steps is not None:
            self.on_steps(len(lefts))
        return prediction

    def pad(self, tensor: torch.Tensor) -> torch.Tensor:
        """Pad an N×C×H×W tensor at the bottom and right to the network's multiple, its way."""
        net = self.network
        height = padded_size(tensor.shape[-2], net.pad_multiple, net.min_size)
        width = padded_size(tensor.shape[-1], net.pad_multiple, net.min_size)
        return pad_bottom_right(tensor, height, width, net.pad_mode)

    def predict(
        self, image: torch.Tensor, hole: torch.Tensor, captured: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One network pass: N×3×H×W [0, 1] image and N×1×H×W {0,1} hole -> N×3×H×W prediction in
        [0, 1]. An InpaintError if the network's output is not finite (nothing is written then)."""
        net = self.network
        height, width = image.shape[-2:]
        with self.clock.stage("preprocess"):
            hole = self.pad(hole)
            mask = hole if net.hole_value == 1 else 1 - hole
            image = net.normalization.to_network(self.pad(image))
        with self.clock.stage("network"), torch.inference_mode():
            with self.autocast():
                output = net(image, mask, captured)
            output = output[..., :height, :width].float()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        with self.clock.stage("composite"):
            self._check_finite(output)
            return net.normalization.from_network(output).clamp(0, 1)

    def _check_finite(self, output: torch.Tensor) -> None:
        if not bool(torch.isfinite(output).all()):
            raise InpaintError(
                f"{self.name} produced values that are not finite (NaN or infinity)",
                hint="its weights may be damaged; try --precision fp32 or another model",
            )

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype == torch.float32:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield


def paste_rows(output: np.ndarray, hole: np.ndarray, box: Box, start: int, values: torch.Tensor) -> None:
    """Composite finished 3×n×w rows of a native-scale box: hole pixels only, in the image's precision."""
    rows = slice(box.top + start, box.top + start + values.shape[1])
    inside = hole[rows, box.left : box.right]
    if inside.any():
        target = output[rows, box.left : box.right]
        target[inside] = to_integer(values[None], output.dtype, output.shape[2])[inside]


def paste_upscaled(output: np.ndarray, hole: np.ndarray, box: Box, reduced: torch.Tensor) -> None:
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
