"""How an image is cut into network passes, and how overlapping passes are put back together.

A plan is a list of `Box`es. The engine cuts each box out of the image (still uint8/uint16),
resizes it when the box's scale is below 1, runs the network on the whole box or on those of its
tiles that contain hole pixels, blends overlapping tiles with feathered weights, and pastes back
hole pixels only. This module is the geometry of that: where the boxes and tiles are, and how
tile predictions are averaged. Devices, memory budgets and the network belong to the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

import cv2
import numpy as np
import torch


class Strategy(str, Enum):
    AUTO = "auto"
    FULL = "full"
    CROP = "crop"
    TILE = "tile"
    RESIZE = "resize"


@dataclass(frozen=True)
class Box:
    """A rectangle of the image [top, bottom) × [left, right), processed at `scale` (1 = native).

    `tile` is the side of the square tiles the box is processed in at its scale; None = one pass.
    """

    top: int
    left: int
    bottom: int
    right: int
    scale: float = 1.0
    tile: int | None = None

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def area(self) -> int:
        return self.height * self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def scaled_size(self) -> tuple[int, int]:
        """(height, width) of the box as the network sees it."""
        return max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale))

    def at_scale(self, scale: float) -> Box:
        return replace(self, scale=scale)

    def in_tiles(self, tile: int) -> Box:
        """The box processed in `tile`-sided tiles, or in one pass if it is no larger than one tile."""
        return replace(self, tile=tile if max(self.scaled_size()) > tile else None)


def scale_to_fit(height: int, width: int, max_side: int | None) -> float:
    """The largest scale <= 1 that brings the longer side down to `max_side`."""
    if not max_side or max(height, width) <= max_side:
        return 1.0
    return max_side / max(height, width)


SCALE_PRECISION = 1e-3
"""`largest_scale` is exact to this (relative) precision."""


def largest_scale(fits: Callable[[int, int], bool], height: int, width: int) -> float:
    """The largest scale <= 1 at which `fits(h, w)` holds, for a predicate that holds for smaller
    sizes once it holds; ValueError if it fails even at a 1-pixel short side."""

    def sides(scale: float) -> tuple[int, int]:
        return max(1, round(height * scale)), max(1, round(width * scale))

    if fits(*sides(1.0)):
        return 1.0
    low, high = 1 / min(height, width), 1.0
    if not fits(*sides(low)):
        raise ValueError("no scale fits")
    while high - low > SCALE_PRECISION * low:
        middle = (low + high) / 2
        low, high = (middle, high) if fits(*sides(middle)) else (low, middle)
    return low


# --- what a family copes with ---------------------------------------------------------------------

NATIVE_SIDE_FACTOR = 4
"""A box up to this many times its family's training side is filled at native resolution:
DeepFill v2 and PConv (trained on 256-px crops) degrade beyond about 1 MP."""
NATIVE_SIDE_FACTORS = {"lama": 8}
"""LaMa's Fourier convolutions see the whole input and carry over to ~2k px (Suvorov et al., 2022)."""


def native_side(family: str, training_size: int) -> int:
    """Longest side a family fills well without downscaling."""
    return NATIVE_SIDE_FACTORS.get(family, NATIVE_SIDE_FACTOR) * training_size


# --- crop: boxes around the holes -----------------------------------------------------------------

PLANNING_CELL = 8
"""Hole components are found on a grid of cells this many pixels wide (at most the margin), so
the label image of a 10000-px scan is 64 times smaller than the scan."""


def hole_boxes(hole: np.ndarray, margin: int) -> list[Box]:
    """Boxes around the hole's connected components, grown by `margin` and merged where they overlap.

    Each box is the exact bounding box of the holes it groups plus `margin` pixels of context on
    every side (clipped to the image); no two boxes overlap, so every hole pixel is in one box.
    """
    height, width = hole.shape
    # Hole pixels in neighbouring cells are less than two cells, so at most 2 * margin, apart:
    # their grown boxes overlap, so grouping by cells only merges what would be merged anyway.
    cell = max(1, min(PLANNING_CELL, margin))
    groups = _merge_near(_exact_extents(hole, cell), 2 * margin)
    boxes = [
        Box(
            max(0, top - margin),
            max(0, left - margin),
            min(height, bottom + margin),
            min(width, right + margin),
        )
        for top, left, bottom, right in groups.tolist()
    ]
    return sorted(boxes, key=lambda box: (box.top, box.left))


def _exact_extents(hole: np.ndarray, cell: int) -> np.ndarray:
    """Exact pixel extents (top, left, bottom, right) of the hole in each connected group of cells."""
    occupied = _block_reduce(hole, cell, np.logical_or).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(occupied, connectivity=8, ltype=cv2.CV_32S)
    extents = []
    for x, y, w, h in stats[1:count, : cv2.CC_STAT_HEIGHT + 1].tolist():
        top, left = y * cell, x * cell
        region = hole[top : (y + h) * cell, left : (x + w) * cell]
        rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
        extents.append((top + rows[0], left + cols[0], top + rows[-1] + 1, left + cols[-1] + 1))
    return np.array(extents, dtype=np.int64).reshape(-1, 4)


def _block_reduce(mask: np.ndarray, cell: int, reduce: np.ufunc) -> np.ndarray:
    """`reduce` (logical or/and) over `cell`×`cell` blocks; partial blocks at the edges included."""
    if cell == 1:
        return mask
    rows = reduce.reduceat(mask, np.arange(0, mask.shape[0], cell), axis=0)
    return reduce.reduceat(rows, np.arange(0, mask.shape[1], cell), axis=1)


def _merge_near(extents: np.ndarray, gap: int) -> np.ndarray:
    """Union extents transitively while two of them are less than `gap` apart on both axes."""
    while True:
        merged, pending = [], extents
        while len(pending):
            current, rest = pending[0], pending[1:]
            while True:
                near = (
                    (rest[:, 0] - current[2] < gap)
                    & (current[0] - rest[:, 2] < gap)
                    & (rest[:, 1] - current[3] < gap)
                    & (current[1] - rest[:, 3] < gap)
                )
                if not near.any():
                    break
                group = np.vstack([current, rest[near]])
                current = np.concatenate([group[:, :2].min(axis=0), group[:, 2:].max(axis=0)])
                rest = rest[~near]
            merged.append(current)
            pending = rest
        # A union may reach an extent that was already set aside: repeat until nothing merges.
        if len(merged) == len(extents):
            return extents
        extents = np.array(merged).reshape(-1, 4)


REACH_GRID_PIXELS = 1 << 22
"""`hole_reach` measures on a grid of at most this many cells."""


def hole_reach(hole: np.ndarray) -> float:
    """Largest distance (pixels) from a hole pixel to the nearest known pixel; inf if none is known.

    Measured on a coarse grid for big boxes; exact to within one grid cell.
    """
    if hole.all():
        return math.inf
    cell = max(1, math.ceil(math.sqrt(hole.size / REACH_GRID_PIXELS)))
    solid = _block_reduce(hole, cell, np.logical_and)  # cells entirely in the hole
    if not solid.any():
        return float(cell)
    distance = cv2.distanceTransform(solid.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return (float(distance.max()) + 1) * cell


# --- tile: overlapping tiles and their blending ---------------------------------------------------


MIN_CROP_MARGIN = 16
MAX_CROP_MARGIN = 128
CONTEXT_PER_REACH = 3
"""The default crop margin is three times the hole's reach (1.5 hole widths), within the bounds above:
thin scratches get a little context and cost little, a tear gets the full margin."""


def default_crop_margin(hole: np.ndarray) -> int:
    """Context (pixels) around each hole box when `--crop-margin` is not given."""
    reach = hole_reach(hole)
    if math.isinf(reach):
        return MAX_CROP_MARGIN
    return int(min(MAX_CROP_MARGIN, max(MIN_CROP_MARGIN, round(CONTEXT_PER_REACH * reach))))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced starts of `tile`-long windows covering [0, length), overlapping by >= `overlap`.

    The first window starts at 0 and the last ends at `length`, so every window has full size.
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def fitted_tile(length: int, tile: int, overlap: int, multiple: int) -> int:
    """The smallest tile side (a multiple of `multiple`, at most `tile`) that covers `length` with
    as few tiles as `tile` does: the whole length if one tile spans it."""
    if length <= tile:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length - overlap) / count) + overlap
    return min(tile, -(-side // multiple) * multiple)


def tile_rows(
    hole: np.ndarray, tile_height: int, tile_width: int, overlap: int
) -> list[tuple[int, list[int]]]:
    """The tile grid over a region, row by row: (row start, column starts of the tiles holding a hole pixel).

    Every row is listed, including rows with no tile to run, so that consecutive row starts are
    less than a tile apart (what `TileBlender` relies on).
    """
    height, width = hole.shape
    lefts = tile_starts(width, tile_width, overlap)
    return [
        (top, [left for left in lefts if hole[top : top + tile_height, left : left + tile_width].any()])
        for top in tile_starts(height, tile_height, overlap)
    ]


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
