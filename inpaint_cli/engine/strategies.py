"""The resolution planner: which boxes of an image are filled, at which scale, in which tiles.

Pure and torch-free: it reads the hole (numpy), the network's geometry as plain numbers and
functions (`NetworkGeometry`), a memory budget and the user's `InpaintOptions`, and returns a
`Plan`. After an out-of-memory error, `after_out_of_memory` gives the next try. The runner
(`engine.py`, `runner.py`) executes plans: devices, precision, padding, blending, compositing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from inpaint_cli.engine.refine_plan import Refinement
from inpaint_cli.engine.regions import (
    MAX_CROP_MARGIN,
    MIN_CROP_MARGIN,
    PLANNING_CELL,
    Box,
    crop_margin,
    deep_core,
    default_crop_margin,
    fitted_tile,
    group_regions,
    hole_boxes,
    hole_reach,
    hole_regions,
    largest_scale,
    padded_size,
    scale_to_area,
    scale_to_fit,
    scaled_tile_rows,
    widen_boxes,
)
from inpaint_cli.errors import InpaintError, UsageError
from inpaint_cli.options import (
    DEFAULT_REFINE_ITERS,
    DEFAULT_REFINE_LR,
    DEFAULT_REFINE_MAX_SCALES,
    DEFAULT_REFINE_MIN_SIDE,
    DEFAULT_REFINE_PX_BUDGET,
    DEFAULT_TILE_OVERLAP,
    StrategyName,
)

Strategy = StrategyName
"""The strategies (`auto`, `full`, `crop`, `tile`, `resize`), shared with the command line."""

__all__ = [
    "MAX_CROP_MARGIN",
    "MIN_CROP_MARGIN",
    "Box",
    "InpaintOptions",
    "Limits",
    "NetworkGeometry",
    "Plan",
    "Strategy",
    "Tiling",
    "default_crop_margin",
    "format_bytes",
    "padded_size",
    "plan",
]

MIN_TILE_SIDE = 128
"""Smallest tile side planned, or retried after running out of memory: smaller tiles hold too little
context around their holes."""
MAX_BATCH = 16
"""Most tiles one network call takes on an accelerator."""
CROP_AREA_SHARE = 0.5
"""`auto` fills the whole image rather than boxes covering this share of it or more, when that
loses no resolution: about the same cost, more context."""
TILE_CONTEXT_SHARE = 0.25
"""`auto` tiles a box only if every hole pixel lies within this share of a tile side of a known
pixel, so that each tile sees context around its holes; otherwise it downscales."""
PASS_COST_LIMIT = 2.0
"""No pass may cost more per pixel than this many times a pass at the family's native side (the
family's own cost model). A model linear in its pixels is never limited by it (its memory is);
DeepFill v2's contextual attention, quadratic in the pixels, is: at 2048² it costs 3.4 times as much
per pixel as at its native 1024² (cnum 48), and one such pass ran 479 s on a CPU."""
REACH_SLACK = 1.25
"""A hole up to this many times the network's reach draws no warning: the reach is a lower bound
(pconv-tiny's 39 px measured closing holes up to about 50 px deep)."""
NO_NATIVE_LIMIT = 1 << 24
"""A native side this large means no limit (classical methods): no cost bound either."""


@dataclass(frozen=True)
class InpaintOptions:
    """How an image is cut into network passes. The defaults are the command line's."""

    strategy: StrategyName = StrategyName.AUTO
    max_side: int | None = None
    """Longest side of any pass (boxes are downscaled to it); None = the planner decides."""
    tile_size: int | None = None
    """Side of square tiles; None = the largest within the memory budget and the native side."""
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    crop_margin: int | None = None
    """Context around each hole region; None = 1.5 hole widths within 16..128 px (auto: more for
    large holes)."""
    memory_budget: int | None = None
    """Bytes one pass may use; None = a share of the device's free memory."""
    refine: bool = False
    """LaMa feature refinement of every network input (a whole box, or a tile): `Refinement`."""
    refine_iters: int = DEFAULT_REFINE_ITERS
    refine_lr: float = DEFAULT_REFINE_LR
    refine_min_side: int = DEFAULT_REFINE_MIN_SIDE
    refine_max_scales: int = DEFAULT_REFINE_MAX_SCALES
    refine_px_budget: int = DEFAULT_REFINE_PX_BUDGET

    @property
    def refinement(self) -> Refinement | None:
        """The refinement settings when `refine` is on (checked in any case)."""
        settings = Refinement(
            self.refine_iters,
            self.refine_lr,
            self.refine_min_side,
            self.refine_max_scales,
            self.refine_px_budget,
        )
        return settings if self.refine else None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "strategy", StrategyName(self.strategy))
        except ValueError:
            known = ", ".join(s.value for s in StrategyName)
            raise UsageError(f"unknown strategy {self.strategy!r}", hint=f"use {known}") from None
        for name in ("max_side", "tile_size", "memory_budget"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UsageError(f"{name.replace('_', '-')} must be a positive whole number, not {value!r}")
        for name in ("tile_overlap", "crop_margin"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise UsageError(f"{name.replace('_', '-')} must be a whole number >= 0, not {value!r}")
        if self.tile_size is not None and self.tile_overlap >= self.tile_size:
            raise UsageError(f"tile overlap {self.tile_overlap} must be smaller than the tile size")
        _ = self.refinement  # checks the refine settings even while refine is off


@dataclass(frozen=True)
class NetworkGeometry:
    """What the planner knows of a network: plain numbers and two functions of the padded size."""

    name: str
    pad_multiple: int
    min_size: int
    native_side: int
    """Longest side filled well without downscaling."""
    memory: Callable[[int, int], int]
    """Peak bytes of one fp32 pass at a padded (height, width), batch 1."""
    cost: Callable[[int, int], float]
    """Relative work of one pass at a padded (height, width)."""
    batches: bool = False
    """Whether tiles run in batches (accelerators; on a CPU one tile already keeps every core busy)."""
    fill_reach: float = math.inf
    """Deepest hole (pixels from a known one) one pass fills (`InpaintModel.fill_reach`)."""
    refine_step: Callable[[int, int], float] | None = None
    """Cost of one refinement step at a padded size: backward through the rear of the network, its
    recomputed blocks, and the next forward of the rear. None: the network cannot be refined."""
    refine_memory: Callable[[int, int], int] | None = None
    """Peak bytes of optimising one scale at a padded size."""

    def padded(self, height: int, width: int) -> tuple[int, int]:
        return (
            padded_size(height, self.pad_multiple, self.min_size),
            padded_size(width, self.pad_multiple, self.min_size),
        )

    def pass_memory(self, height: int, width: int) -> int:
        return self.memory(*self.padded(height, width))

    def pass_cost(self, height: int, width: int) -> float:
        return self.cost(*self.padded(height, width))

    def input_memory(self, height: int, width: int, refinement: Refinement | None) -> int:
        """Peak bytes of one network input: a pass, or refining it (its finest scales dominate)."""
        if refinement is None:
            return self.pass_memory(height, width)
        assert self.refine_memory is not None, f"{self.name} cannot be refined"
        coarsest, *refined = refinement.pyramid(height, width)
        peaks = [self.refine_memory(*self.padded(*size)) for size in refined]
        return max([self.pass_memory(*coarsest), *peaks])

    def input_cost(self, height: int, width: int, refinement: Refinement | None) -> float:
        """Cost of one network input: a pass, or a pass per scale and the Adam steps of all but the
        coarsest."""
        if refinement is None:
            return self.pass_cost(height, width)
        assert self.refine_step is not None, f"{self.name} cannot be refined"
        sizes = refinement.pyramid(height, width)
        steps = sum(self.refine_step(*self.padded(*size)) for size in sizes[1:])
        return sum(self.pass_cost(*size) for size in sizes) + (refinement.iters - 1) * steps

    def cost_growth(self, height: int, width: int) -> float:
        """Cost per pixel of a pass of this size over that of a pass at the native side."""
        if self.native_side >= NO_NATIVE_LIMIT:
            return 1.0
        padded, native = self.padded(height, width), self.padded(self.native_side, self.native_side)
        per_pixel = self.cost(*padded) / (padded[0] * padded[1])
        return per_pixel / (self.cost(*native) / (native[0] * native[1]))

    @property
    def tile_floor(self) -> int:
        return padded_size(MIN_TILE_SIDE, self.pad_multiple, self.min_size)


@dataclass(frozen=True)
class Limits:
    """What running out of device memory taught: later boxes and images start from it."""

    tile_cap: int | None = None
    batch_cap: int | None = None


@dataclass(frozen=True)
class Tiling:
    """How a tiled box is run: tiles of `height`×`width` at the box's scale, overlapping by at least
    `overlap`, row by row (row start, column starts of the tiles that hold a hole pixel)."""

    height: int
    width: int
    overlap: int
    rows: tuple[tuple[int, tuple[int, ...]], ...]
    batch: int = 1

    @property
    def tiles(self) -> int:
        return sum(len(lefts) for _, lefts in self.rows)

    @property
    def calls(self) -> int:
        return sum(-(-len(lefts) // self.batch) for _, lefts in self.rows)


@dataclass(frozen=True)
class Plan:
    """The boxes one image is filled in, how each is run, and what that will cost."""

    strategy: StrategyName
    size: tuple[int, int]
    boxes: tuple[Box, ...] = ()
    tilings: tuple[Tiling | None, ...] = ()
    cost: float = 0.0
    """Sum of the passes' costs (`NetworkGeometry.cost` units)."""
    warnings: tuple[str, ...] = ()
    """What the plan cannot do well (a hole deeper than the network reaches at the scale chosen)."""
    core: Plan | None = None
    """`auto` with a hole deeper than the network reaches (`NetworkGeometry.fill_reach`): the plan
    that fills first, downscaled, the hole's core (`regions.deep_core`); this plan then fills the rest
    of the hole at its own scales, with the core filled as context. `passes` counts the core's too;
    `cost` is this plan's own boxes (the core's is `core.cost`)."""

    @property
    def passes(self) -> int:
        """Network inputs (tiles and whole boxes): what progress counts."""
        own = sum(1 if t is None else t.tiles for t in self.tilings)
        return own + (self.core.passes if self.core is not None else 0)

    refinement: Refinement | None = None
    """Every network input is refined with these settings."""
    peak_memory: int = 0
    """Estimated peak bytes of the largest network input (its pass, or its refinement)."""

    def inputs(self) -> list[tuple[int, tuple[int, int]]]:
        """(count, (height, width)) of the network inputs of each box: the box at its scale, or its tiles."""
        return [
            (1, box.scaled_size()) if tiling is None else (tiling.tiles, (tiling.height, tiling.width))
            for box, tiling in zip(self.boxes, self.tilings, strict=True)
        ]

    @property
    def steps(self) -> int:
        """What progress counts: network inputs, or with refinement the forward passes of all scales
        (the core's included)."""
        if self.refinement is None:
            return self.passes
        core = self.core.steps if self.core is not None else 0
        return core + sum(count * self.refinement.forwards(*size) for count, size in self.inputs())

    def describe(self) -> str:
        """One line: `auto: 3 crop boxes (4 % of the image), 2 at native scale, 1 downscaled to 0.62,
        in 512 px tiles; 9 passes`."""
        name = self.strategy.value
        if not self.boxes:
            return f"{name}: nothing to fill"
        height, width = self.size
        count = len(self.boxes)
        if count == 1 and (self.boxes[0].height, self.boxes[0].width) == (height, width):
            parts = ["whole image"]
        else:
            share = sum(box.area for box in self.boxes) / (height * width)
            parts = [f"{count} crop box{'es' if count > 1 else ''} ({share:.0%} of the image)"]
        reduced = sorted({box.scale for box in self.boxes if box.scale < 1})
        native = count - sum(box.scale < 1 for box in self.boxes)
        scales = "downscaled to " + "/".join(f"{scale:.2f}" for scale in reduced)
        if reduced and native:
            parts.append(f"{native} at native scale, {count - native} {scales}")
        elif reduced:
            parts.append(scales)
        tiles = sorted({box.tile for box in self.boxes if box.tile is not None})
        if tiles:
            parts.append(f"in {'/'.join(map(str, tiles))} px tiles")
        if self.core is not None:
            first = self.core.describe().partition(": ")[2].rpartition(";")[0]
            parts.append(f"deep core first: {first}")
        passes = f"{self.passes} pass{'es' if self.passes != 1 else ''}"
        refined = f"; {self.describe_refinement()}" if self.refinement is not None else ""
        return f"{name}: {', '.join(parts)}; {passes}{refined}"

    def describe_refinement(self) -> str:
        """`refined at 3 scales x 15 iterations, shrunk to the 1800000 px budget`; inputs too small for
        two scales are said to get one plain pass."""
        refinement = self.refinement
        assert refinement is not None
        scales: dict[int, int] = {}
        shrunk = 0
        for count, (height, width) in self.inputs():
            levels = len(refinement.pyramid(height, width))
            scales[levels] = scales.get(levels, 0) + count
            shrunk += count * (refinement.shrunk(height, width) != (height, width))
        groups = [
            f"{'' if len(scales) == 1 else f'{count} at '}{levels} scale{'s' if levels > 1 else ''}"
            for levels, count in sorted(scales.items(), reverse=True)
        ]
        text = f"refined at {', '.join(groups)} x {refinement.iters} iterations"
        if 1 in scales:
            text += f" (1 scale: one plain pass; two from a {refinement.two_scale_side or '-'} px short side)"
        if shrunk:
            text += f", shrunk to the {refinement.px_budget} px budget"
        return f"{text}; about {format_bytes(self.peak_memory)} at the peak"


# --- planning -------------------------------------------------------------------------------------


def plan(
    hole: np.ndarray,
    geometry: NetworkGeometry,
    options: InpaintOptions,
    budget: int,
    *,
    limits: Limits = Limits(),
) -> Plan:
    """The plan for filling `hole` (H×W bool, True = hole). Nothing else decides it: saving
    intermediates, for one, looks at the plan that runs anyway."""
    planner = _Planner(geometry, options, budget, limits)
    core = deep_core(hole, geometry.fill_reach) if options.strategy is Strategy.AUTO else None
    if core is not None:
        # The core first, downscaled (its boxes only); the rest then sees it as known, so it is within
        # reach and keeps its own scales: thin scratches beside a torn corner stay at native scale.
        first = [box for box in planner.boxes(hole) if core[box.slices].any()]
        rest = hole & ~core  # within reach by construction: no reach limit for it
        after = _Planner(replace(geometry, fill_reach=math.inf), options, budget, limits)
        boxes = after.boxes(rest) if rest.any() else []
        return replace(after.finish(rest, boxes), core=planner.finish(hole, first))
    boxes = planner.boxes(hole) if hole.any() else []
    return replace(planner.finish(hole, boxes), warnings=planner.out_of_reach(hole, boxes))


def replace_box(
    previous: Plan,
    index: int,
    box: Box,
    hole: np.ndarray,
    geometry: NetworkGeometry,
    options: InpaintOptions,
    budget: int,
    limits: Limits,
) -> Plan:
    """`previous` with box `index` replaced by `box` (after an out-of-memory error), re-tiled and
    re-costed."""
    boxes = list(previous.boxes)
    boxes[index] = box
    return _Planner(geometry, options, budget, limits).finish(hole, boxes)


def after_out_of_memory(
    box: Box, tiling: Tiling | None, geometry: NetworkGeometry, limits: Limits, device: str
) -> tuple[Box, Limits]:
    """The box again in tiles of half the side that ran out of memory, and what to remember;
    an InpaintError below the smallest tile."""
    height, width = (tiling.height, tiling.width) if tiling else box.scaled_size()
    multiple = geometry.pad_multiple
    side = max(height, width) // 2 // multiple * multiple
    if side < geometry.tile_floor:
        raise InpaintError(
            f"{geometry.name} ran out of {device} memory on {width}x{height} pixels, "
            f"and tiles smaller than {geometry.tile_floor} px are not tried",
            hint="free memory used by other programs, use --precision fp16 or bf16, or --device cpu",
        )
    batch = tiling.batch if tiling else 1
    return box.in_tiles(side), Limits(tile_cap=side, batch_cap=batch)


class _Planner:
    """One planning call's inputs and the policies that read them."""

    def __init__(
        self, geometry: NetworkGeometry, options: InpaintOptions, budget: int, limits: Limits
    ) -> None:
        self.geometry, self.options, self.budget, self.limits = geometry, options, budget, limits
        self.refinement = options.refinement
        if self.refinement is not None and geometry.refine_step is None:
            raise UsageError(f"{geometry.name} cannot be refined", hint="--refine is for LaMa-family models")
        self._tile_side: int | None = None

    def fits(self, height: int, width: int) -> bool:
        """One pass (or refinement) of this size is within the memory budget and the cost bound."""
        geometry = self.geometry
        return geometry.input_memory(height, width, self.refinement) <= self.budget and (
            geometry.cost_growth(height, width) <= PASS_COST_LIMIT
        )

    def boxes(self, hole: np.ndarray) -> list[Box]:
        height, width = hole.shape
        whole = Box(0, 0, height, width)
        strategy, options = self.options.strategy, self.options
        if strategy is Strategy.FULL:
            box = whole.at_scale(scale_to_fit(height, width, options.max_side))
            self.check(*box.scaled_size())
            return [box]
        if strategy is Strategy.RESIZE:
            return [self.within_budget(whole, options.max_side or self.geometry.native_side)]
        if strategy is Strategy.TILE:
            return [whole.at_scale(scale_to_fit(height, width, options.max_side)).in_tiles(self.tile_side())]
        if strategy is Strategy.CROP:
            return [self.within_budget(box, options.max_side) for box, _ in self.crop_boxes(hole, auto=False)]
        return self.auto(hole)

    def crop_boxes(self, hole: np.ndarray, *, auto: bool) -> list[tuple[Box, float]]:
        """Boxes around the hole regions with their reaches: margins from `--crop-margin`, else from
        each region's reach (for `auto`, a large hole gets at least its reach as context)."""
        margin = self.options.crop_margin
        if margin is not None and not auto:
            return [(box, math.nan) for box in hole_boxes(hole, margin)]
        cell = PLANNING_CELL if margin is None else max(1, min(PLANNING_CELL, margin))
        regions = hole_regions(hole, cell)
        if margin is not None:
            margins = [margin] * len(regions)
        elif auto:
            margins = [auto_margin(region.reach, hole.shape) for region in regions]
        else:
            margins = [crop_margin(region.reach) for region in regions]
        grouped = group_regions(regions, margins, hole.shape)
        side = self.refinement.two_scale_side if self.refinement is not None else None
        if side is None or margin is not None:
            return grouped
        # Refinement needs context: a box is grown until it is refined at two scales at least.
        return widen_boxes(grouped, side, hole.shape)

    def auto(self, hole: np.ndarray) -> list[Box]:
        """Each region box at the scale it needs; the whole image instead when the boxes cover
        most of it and one plan for it loses no resolution."""
        height, width = hole.shape
        grouped = self.crop_boxes(hole, auto=True)
        boxes = [self.auto_box(box, reach) for box, reach in grouped]
        if sum(box.area for box in boxes) >= CROP_AREA_SHARE * hole.size:
            whole = self.auto_box(Box(0, 0, height, width), max(reach for _, reach in grouped))
            if whole.scale >= max(box.scale for box in boxes):
                return [whole]
        return boxes

    def auto_box(self, box: Box, reach: float) -> Box:
        """`auto` for one box: the larger of two scales. One pass needs the box within the family's
        native side, the budget and the cost bound; tiles need every hole pixel to have context
        inside a tile. Native scale when one pass is possible there. Either way no deeper than the
        network reaches (`NetworkGeometry.fill_reach`)."""
        within_reach = self.reach_scale(reach)
        one_pass = self.one_pass(box)
        one_pass = one_pass.at_scale(min(one_pass.scale, within_reach))
        if self.refinement is not None:  # refined in one piece: its coarse scales see the whole box
            return one_pass
        tile = self.tile_side()
        if not self.fits(tile, tile):
            return one_pass
        scale = min(scale_to_fit(box.height, box.width, self.options.max_side), within_reach)
        tiled_scale = min(scale, TILE_CONTEXT_SHARE * tile / reach) if reach > 0 else scale
        return box.at_scale(tiled_scale).in_tiles(tile) if tiled_scale > one_pass.scale else one_pass

    def reach_scale(self, reach: float) -> float:
        """The largest scale <= 1 at which a hole `reach` pixels deep is within the network's reach (1
        for a hole with no known pixel: no scale gives it one)."""
        limit = self.geometry.fill_reach
        return 1.0 if math.isinf(reach) or reach <= limit else limit / reach

    def out_of_reach(self, hole: np.ndarray, boxes: Sequence[Box]) -> tuple[str, ...]:
        """A warning when a box's hole, at the box's scale, is deeper than the network reaches."""
        limit = self.geometry.fill_reach
        if math.isinf(limit):
            return ()
        depths = [hole_reach(hole[box.slices]) * box.scale for box in boxes]
        deepest = max((depth for depth in depths if math.isfinite(depth)), default=0.0)
        if deepest <= limit * REACH_SLACK:
            return ()
        hint = "" if self.options.strategy is Strategy.AUTO else "; --strategy auto downscales such holes"
        return (
            f"{self.geometry.name} fills holes up to {limit:.0f} px deep, and one is {deepest:.0f} px deep "
            f"at the scale it is filled at: expect a flat patch in it{hint}",
        )

    def one_pass(self, box: Box) -> Box:
        """`box` downscaled to the native side, and further until one pass fits budget and cost."""
        native = self.geometry.native_side
        limit = min(self.options.max_side or native, native)
        box = box.at_scale(scale_to_fit(box.height, box.width, limit))
        if self.refinement is not None:  # shrunk here, antialiased, rather than by the refinement
            box = box.at_scale(box.scale * scale_to_area(*box.scaled_size(), self.refinement.px_budget))
        try:
            return box.at_scale(box.scale * largest_scale(self.fits, *box.scaled_size()))
        except ValueError:
            self.check(*box.scaled_size())  # nothing fits: raises the budget error
            raise

    def within_budget(self, box: Box, max_side: int | None) -> Box:
        """`box` downscaled to `max_side`, in one pass if that fits budget and cost, else in tiles."""
        box = box.at_scale(scale_to_fit(box.height, box.width, max_side))
        return box if self.fits(*box.scaled_size()) else box.in_tiles(self.tile_side())

    def tile_side(self) -> int:
        """Side of square tiles: --tile-size, else the largest within budget, cost bound and native
        side; never below the floor, nor above a side that ran out of memory."""
        if self._tile_side is None:
            self._tile_side = self._find_tile_side()
        return self._tile_side

    def _find_tile_side(self) -> int:
        multiple = self.geometry.pad_multiple
        if self.options.tile_size:
            side = self.options.tile_size
        else:
            longest = min(self.geometry.native_side, NO_NATIVE_LIMIT)
            if self.refinement is not None:  # a refined tile is not shrunk
                longest = min(longest, math.isqrt(self.refinement.px_budget))
            steps = max(1, longest // multiple)
            side = multiple * _largest(lambda k: self.fits(k * multiple, k * multiple), steps)
        if self.limits.tile_cap:
            side = min(side, self.limits.tile_cap)
        return max(self.geometry.tile_floor, side // multiple * multiple)

    def check(self, height: int, width: int) -> None:
        """An error if one pass of this size exceeds the memory budget or the cost bound."""
        geometry = self.geometry
        need = geometry.input_memory(height, width, self.refinement)
        if need > self.budget:
            what = "refinement" if self.refinement is not None else "pass"
            raise InpaintError(
                f"a {width}x{height} {what} of {geometry.name} needs about {format_bytes(need)}, "
                f"over the memory budget of {format_bytes(self.budget)}",
                hint="use --strategy auto or resize, --max-side, or raise --memory-budget",
            )
        growth = geometry.cost_growth(height, width)
        if growth > PASS_COST_LIMIT:
            raise InpaintError(
                f"a {width}x{height} pass of {geometry.name} costs {growth:.1f} times as much per pixel "
                f"as one at its native {geometry.native_side} px (at most {PASS_COST_LIMIT:g} times "
                "in one pass)",
                hint="use --strategy auto, tile or resize, or --max-side",
            )

    def batch_size(self, height: int, width: int) -> int:
        """Tiles per network call."""
        if not self.geometry.batches or self.refinement is not None:  # refinement takes one at a time
            return 1
        fitting = self.budget // max(1, self.geometry.pass_memory(height, width))
        return max(1, min(MAX_BATCH, fitting, self.limits.batch_cap or MAX_BATCH))

    def tiling(self, hole: np.ndarray, box: Box) -> Tiling | None:
        """The tiles of a box: shrunk to the smallest size that needs no more of them than `box.tile`."""
        if box.tile is None:
            return None
        height, width = box.scaled_size()
        overlap = min(self.options.tile_overlap, box.tile // 2)
        multiple = self.geometry.pad_multiple
        tile_h, tile_w = (fitted_tile(side, box.tile, overlap, multiple) for side in (height, width))
        rows = scaled_tile_rows(hole, box, tile_h, tile_w, overlap)
        frozen = tuple((top, tuple(lefts)) for top, lefts in rows)
        return Tiling(tile_h, tile_w, overlap, frozen, self.batch_size(tile_h, tile_w))

    def finish(self, hole: np.ndarray, boxes: Sequence[Box]) -> Plan:
        if not hole.any():
            boxes = []
        tilings = tuple(self.tiling(hole, box) for box in boxes)
        cost = sum(
            box_cost(self.geometry, box, tiling, self.refinement)
            for box, tiling in zip(boxes, tilings, strict=True)
        )
        size = (hole.shape[0], hole.shape[1])
        made = Plan(self.options.strategy, size, tuple(boxes), tilings, cost, refinement=self.refinement)
        inputs = [size for _, size in made.inputs()]
        peak = max((self.geometry.input_memory(*size, self.refinement) for size in inputs), default=0)
        return replace(made, peak_memory=peak)


def box_cost(
    geometry: NetworkGeometry, box: Box, tiling: Tiling | None, refinement: Refinement | None
) -> float:
    """Cost of filling one box: its pass (or refinement), or those of its tiles."""
    if tiling is None:
        return geometry.input_cost(*box.scaled_size(), refinement)
    return tiling.tiles * geometry.input_cost(tiling.height, tiling.width, refinement)


def auto_margin(reach: float, shape: tuple[int, int]) -> int:
    """`auto`'s context around a region: the crop margin, and for a large hole at least its reach
    (the box is then about twice the hole's width), so the network sees what surrounds it."""
    if math.isinf(reach):
        return max(shape)
    return max(crop_margin(reach), min(math.ceil(reach), max(shape)))


def _largest(fits: Callable[[int], bool], upper: int) -> int:
    """Largest n in [1, upper] with fits(n), for a predicate that holds up to some n; 0 if none."""
    low, high = 0, upper
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def format_bytes(count: float) -> str:
    """`1 B`, `52 MB`, `3.4 GB`: a byte count in the unit that shows it best (decimal units)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}" if count < 10 * size else f"{count / size:.0f} {unit}"
    return f"{count:.0f} B"
