"""Where the damage is: boxes, hole regions and their reach, and the tile grid over a box.

Pure geometry on numpy arrays (no torch), used by the planner in `strategies.py`. A `Box` is a
rectangle of the image processed at some scale, whole or in tiles; a `Region` is one connected
group of hole pixels with its extent and its reach (how far its pixels are from known ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np


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


def scale_to_area(height: int, width: int, pixels: int) -> float:
    """The largest scale <= 1 that brings the area down to at most `pixels`."""
    if height * width <= pixels:
        return 1.0
    return math.sqrt(pixels / (height * width))


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


def padded_size(size: int, multiple: int, minimum: int) -> int:
    """`size` rounded up to a multiple of `multiple`, and to at least `minimum` (rounded up too)."""
    return max(-(-size // multiple) * multiple, -(-minimum // multiple) * multiple)


# --- hole regions -----------------------------------------------------------------------------------

PLANNING_CELL = 8
"""Hole components are found on a grid of cells this many pixels wide (at most the margin), so
the label image of a 10000-px scan is 64 times smaller than the scan."""
REACH_EXACT_PIXELS = 1 << 20
"""A region whose extent has at most this many pixels gets its reach measured exactly on that
extent; larger ones (a tear, a scratch across the scan) on the planning grid, to within a cell."""


@dataclass(frozen=True)
class Region:
    """One connected group of hole pixels: its exact extent [top, bottom) × [left, right) and its
    reach, the largest distance (pixels) from one of its pixels to a known pixel (inf: none known)."""

    top: int
    left: int
    bottom: int
    right: int
    reach: float


def hole_regions(hole: np.ndarray, cell: int = PLANNING_CELL) -> list[Region]:
    """The hole's connected groups of `cell`-sided cells, with exact extents and reaches.

    Two hole pixels less than `cell` apart are in one region. No full-size distance transform:
    small regions are measured on their own extent, large ones on the cell grid.
    """
    labels, components = _components(hole, cell)
    coarse: np.ndarray | None = None
    regions = []
    for label, ((x, y, w, h), (top, left, bottom, right)) in enumerate(components, start=1):
        if (bottom - top) * (right - left) <= REACH_EXACT_PIXELS:
            # One pixel of surroundings, so that the known pixels around the region are seen.
            reach = hole_reach(hole[max(0, top - 1) : bottom + 1, max(0, left - 1) : right + 1])
        else:
            if coarse is None:
                coarse = _cell_distances(hole, cell)
            inside = coarse[y : y + h, x : x + w][labels[y : y + h, x : x + w] == label]
            reach = math.inf if math.isinf(inside.max()) else (float(inside.max()) + 1) * cell
        regions.append(Region(top, left, bottom, right, reach))
    return regions


def _components(
    hole: np.ndarray, cell: int
) -> tuple[np.ndarray, list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]]:
    """Labels of the connected groups of occupied cells, and for each its cell box (x, y, w, h)
    and the exact pixel extent (top, left, bottom, right) of its hole pixels."""
    occupied = _block_reduce(hole, cell, np.logical_or).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(occupied, connectivity=8, ltype=cv2.CV_32S)
    components = []
    for x, y, w, h in stats[1:count, : cv2.CC_STAT_HEIGHT + 1].tolist():
        top, left = y * cell, x * cell
        part = hole[top : (y + h) * cell, left : (x + w) * cell]
        rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
        extent = (top + int(rows[0]), left + int(cols[0]), top + int(rows[-1]) + 1, left + int(cols[-1]) + 1)
        components.append(((x, y, w, h), extent))
    return labels, components


def _cell_distances(hole: np.ndarray, cell: int) -> np.ndarray:
    """Distance (in cells) from each cell entirely in the hole to the nearest cell that is not; 0
    elsewhere; inf everywhere if every cell is entirely hole."""
    solid = _block_reduce(hole, cell, np.logical_and)
    if solid.all():
        return np.full(solid.shape, math.inf)
    return cv2.distanceTransform(solid.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _block_reduce(mask: np.ndarray, cell: int, reduce: np.ufunc) -> np.ndarray:
    """`reduce` (logical or/and) over `cell`×`cell` blocks; partial blocks at the edges included."""
    if cell == 1:
        return mask
    rows = reduce.reduceat(mask, np.arange(0, mask.shape[0], cell), axis=0)
    return reduce.reduceat(rows, np.arange(0, mask.shape[1], cell), axis=1)


REACH_GRID_PIXELS = 1 << 22
"""`hole_reach` measures on a grid of at most this many cells."""


def hole_reach(hole: np.ndarray) -> float:
    """Largest distance (pixels) from a hole pixel to the nearest known pixel; inf if none is known.

    Measured on a coarse grid for big areas; exact to within one grid cell.
    """
    if hole.all():
        return math.inf
    if not hole.any():
        return 0.0
    cell = max(1, math.ceil(math.sqrt(hole.size / REACH_GRID_PIXELS)))
    solid = _block_reduce(hole, cell, np.logical_and)  # cells entirely in the hole
    if not solid.any():
        return float(cell)
    distance = cv2.distanceTransform(solid.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return (float(distance.max()) + 1) * cell


def deep_core(hole: np.ndarray, depth: float) -> np.ndarray | None:
    """The hole pixels farther than `depth` from every known pixel (H×W bool), or None if there are
    none (or nothing is known). Measured on the grid `hole_reach` uses: whole cells, so a little less
    than the exact core on a large scan, never more."""
    if math.isinf(depth) or hole.all() or not hole.any():
        return None
    cell = max(1, math.ceil(math.sqrt(hole.size / REACH_GRID_PIXELS)))
    solid = _block_reduce(hole, cell, np.logical_and)
    distance = cv2.distanceTransform(solid.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # A cell's known pixel may lie anywhere in it: one cell less, so that the core is never too big.
    deep = distance * cell - (cell if cell > 1 else 0) > depth
    if not deep.any():
        return None
    core = np.repeat(np.repeat(deep, cell, axis=0), cell, axis=1)[: hole.shape[0], : hole.shape[1]]
    return core & hole


# --- boxes around regions -----------------------------------------------------------------------------

MIN_CROP_MARGIN = 16
MAX_CROP_MARGIN = 128
CONTEXT_PER_REACH = 3
"""The default crop margin is three times the hole's reach (1.5 hole widths), within the bounds above:
thin scratches get a little context and cost little, a tear gets the full margin."""


def crop_margin(reach: float) -> int:
    """Context (pixels) around a region of this reach when `--crop-margin` is not given."""
    if math.isinf(reach):
        return MAX_CROP_MARGIN
    return int(min(MAX_CROP_MARGIN, max(MIN_CROP_MARGIN, round(CONTEXT_PER_REACH * reach))))


def default_crop_margin(hole: np.ndarray) -> int:
    """The crop margin for the widest region of a hole."""
    return crop_margin(hole_reach(hole))


def group_regions(
    regions: Sequence[Region], margins: Sequence[int], shape: tuple[int, int]
) -> list[tuple[Box, float]]:
    """Boxes around regions grown by their margins (clipped to the image), merged where they
    overlap, each with the largest reach of its regions; no two boxes overlap."""
    height, width = shape
    grown = np.array(
        [
            (max(0, r.top - m), max(0, r.left - m), min(height, r.bottom + m), min(width, r.right + m))
            for r, m in zip(regions, margins, strict=True)
        ],
        dtype=np.int64,
    ).reshape(-1, 4)
    reaches = np.array([r.reach for r in regions], dtype=np.float64)
    return _merged(grown, reaches)


def widen_boxes(
    boxes: Sequence[tuple[Box, float]], side: int, shape: tuple[int, int]
) -> list[tuple[Box, float]]:
    """(box, reach) pairs with each box grown to at least `side` on both sides (centred on the box,
    shifted to stay inside the image, the whole image side where it is shorter), merged where they
    then overlap; no two boxes overlap."""
    height, width = shape
    grown = np.array(
        [
            (*_widened(box.top, box.bottom, side, height), *_widened(box.left, box.right, side, width))
            for box, _ in boxes
        ],
        dtype=np.int64,
    ).reshape(-1, 4)[:, [0, 2, 1, 3]]
    return _merged(grown, np.array([reach for _, reach in boxes], dtype=np.float64))


def _widened(start: int, stop: int, side: int, limit: int) -> tuple[int, int]:
    """[start, stop) grown to `side` (at most `limit`) around its centre, kept within [0, limit)."""
    if stop - start >= side:
        return start, stop
    if side >= limit:
        return 0, limit
    first = min(max(0, start - (side - (stop - start)) // 2), limit - side)
    return first, first + side


def _merged(extents: np.ndarray, reaches: np.ndarray) -> list[tuple[Box, float]]:
    """(top, left, bottom, right) extents merged transitively where they overlap, as boxes with the
    largest reach of their members, top to bottom."""
    boxes = []
    for members in _merge_overlapping(extents):
        box = extents[members]
        extent = (*box[:, :2].min(axis=0).tolist(), *box[:, 2:].max(axis=0).tolist())
        boxes.append((Box(*extent), float(reaches[members].max())))
    return sorted(boxes, key=lambda pair: (pair[0].top, pair[0].left))


def _merge_overlapping(boxes: np.ndarray) -> list[np.ndarray]:
    """Indices of boxes merged transitively while their union boxes overlap."""
    groups = [np.array([index]) for index in range(len(boxes))]
    extents = boxes.copy()
    while True:
        merged_groups, merged_extents = [], []
        pending = list(range(len(extents)))
        while pending:
            current, members = extents[pending[0]], groups[pending[0]]
            rest = np.array(pending[1:], dtype=np.int64)
            while len(rest):
                others = extents[rest]
                near = (
                    (others[:, 0] < current[2])
                    & (current[0] < others[:, 2])
                    & (others[:, 1] < current[3])
                    & (current[1] < others[:, 3])
                )
                if not near.any():
                    break
                joined = np.vstack([current, others[near]])
                current = np.concatenate([joined[:, :2].min(axis=0), joined[:, 2:].max(axis=0)])
                members = np.concatenate([members, *(groups[i] for i in rest[near])])
                rest = rest[~near]
            merged_groups.append(members)
            merged_extents.append(current)
            pending = rest.tolist()
        # A union may reach a box that was already set aside: repeat until nothing merges.
        if len(merged_extents) == len(extents):
            return merged_groups
        groups, extents = merged_groups, np.array(merged_extents).reshape(-1, 4)


def hole_boxes(hole: np.ndarray, margin: int) -> list[Box]:
    """Boxes around the hole's connected components, grown by `margin` and merged where they overlap.

    Each box is the exact bounding box of the holes it groups plus `margin` pixels of context on
    every side (clipped to the image); no two boxes overlap, so every hole pixel is in one box.
    """
    # Hole pixels in neighbouring cells are less than two cells, so at most 2 * margin, apart:
    # their grown boxes overlap, so grouping by cells only merges what would be merged anyway.
    _, components = _components(hole, max(1, min(PLANNING_CELL, margin)))
    regions = [Region(*extent, reach=math.nan) for _, extent in components]
    return [box for box, _ in group_regions(regions, [margin] * len(regions), hole.shape)]


# --- tiles --------------------------------------------------------------------------------------------


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
    less than a tile apart (what the tile blender relies on).
    """
    height, width = hole.shape
    lefts = tile_starts(width, tile_width, overlap)
    return [
        (top, [left for left in lefts if hole[top : top + tile_height, left : left + tile_width].any()])
        for top in tile_starts(height, tile_height, overlap)
    ]


def scaled_tile_rows(
    hole: np.ndarray, box: Box, tile_height: int, tile_width: int, overlap: int
) -> list[tuple[int, list[int]]]:
    """`tile_rows` of a box at its scale, read from the full-resolution hole: a tile is kept if the
    image pixels under it (rounded outwards) hold a hole pixel, so no tile that the reduced hole
    needs is missed, and no reduced copy of the hole is made to plan."""
    height, width = box.scaled_size()
    if box.scale == 1:
        return tile_rows(hole[box.slices], tile_height, tile_width, overlap)
    lefts = tile_starts(width, tile_width, overlap)
    rows = []
    for top in tile_starts(height, tile_height, overlap):
        first, last = _source_span(top, tile_height, box.height / height, box.top, box.bottom)
        band = hole[first:last, box.left : box.right]
        kept = []
        for left in lefts:
            start, stop = _source_span(left, tile_width, box.width / width, 0, box.width)
            if band[:, start:stop].any():
                kept.append(left)
        rows.append((top, kept))
    return rows


def _source_span(start: int, length: int, ratio: float, offset: int, limit: int) -> tuple[int, int]:
    """Image rows (or columns) under reduced positions [start, start + length), rounded outwards."""
    return offset + math.floor(start * ratio), min(limit, offset + math.ceil((start + length) * ratio))
