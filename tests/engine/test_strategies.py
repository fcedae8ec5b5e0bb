"""The planner on numbers alone: hole regions, boxes, scales, tiles, costs, out-of-memory retries.

No torch here: the planner is pure (a subprocess test checks that importing it loads no torch).
Runner behaviour (blending, pasting, what the network sees) is in tests/test_engine.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
from mask_helpers import scratches

from inpaint_cli.engine.regions import (
    MAX_CROP_MARGIN,
    MIN_CROP_MARGIN,
    Box,
    deep_core,
    default_crop_margin,
    fitted_tile,
    hole_boxes,
    hole_reach,
    hole_regions,
    largest_scale,
    scaled_tile_rows,
    tile_rows,
    tile_starts,
)
from inpaint_cli.engine.strategies import (
    PASS_COST_LIMIT,
    InpaintOptions,
    Limits,
    NetworkGeometry,
    after_out_of_memory,
    format_bytes,
    plan,
)
from inpaint_cli.errors import InpaintError, UsageError

GB = 10**9


def linear(
    native: int = 256, multiple: int = 8, bytes_per_pixel: int = 4096, name: str = "net"
) -> NetworkGeometry:
    """A network whose memory and cost grow with its pixels (LaMa, PConv, the test networks)."""
    return NetworkGeometry(
        name=name,
        pad_multiple=multiple,
        min_size=multiple,
        native_side=native,
        memory=lambda h, w: bytes_per_pixel * h * w,
        cost=lambda h, w: float(h * w),
    )


LAMA = linear(native=2048, bytes_per_pixel=832, name="big-lama")


def deepfill(cnum: int = 48) -> NetworkGeometry:
    """DeepFill v2's shape: convolutions linear in the pixels, attention quadratic (L = h/8 · w/8)."""
    return NetworkGeometry(
        name="gatedconv",
        pad_multiple=8,
        min_size=8,
        native_side=1024,
        memory=lambda h, w: 800 * h * w,
        cost=lambda h, w: 100.0 * cnum * h * w + 2 * 25 * 4 * cnum * ((h // 8) * (w // 8)) ** 2,
    )


def plan_boxes(hole: np.ndarray, geometry: NetworkGeometry, budget: int = 64 * GB, **options) -> list[Box]:
    return list(plan(hole, geometry, InpaintOptions(**options), budget).boxes)


def test_the_planner_imports_no_torch():
    code = (
        "import sys, inpaint_cli.engine.strategies, inpaint_cli.engine.regions; print('torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


# --- hole regions and crop boxes ---------------------------------------------------------------------


def test_hole_boxes_grow_merge_and_clip():
    hole = np.zeros((400, 600), bool)
    hole[50:60, 100:130] = True  # A
    hole[70:75, 165:180] = True  # B: 35 px right of A; merges with A at margin 20 (40 px of context)
    hole[300:310, 400:420] = True  # C: far away
    hole[395:400, 590:600] = True  # D: touches the bottom-right corner, merges with nothing
    assert hole_boxes(hole, 20) == [Box(30, 80, 95, 200), Box(280, 380, 330, 440), Box(375, 570, 400, 600)]
    assert hole_boxes(hole, 10) == [
        Box(40, 90, 70, 140),
        Box(60, 155, 85, 190),
        Box(290, 390, 320, 430),
        Box(385, 580, 400, 600),
    ]


def reference_boxes(hole: np.ndarray, margin: int) -> set[Box]:
    """Pixel-exact grouping by brute force: merge grown component boxes until none overlap."""
    height, width = hole.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    boxes = [(y, x, y + h, x + w) for x, y, w, h, _ in stats[1:count].tolist()]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                rows_near = a[0] - b[2] < 2 * margin and b[0] - a[2] < 2 * margin
                if rows_near and a[1] - b[3] < 2 * margin and b[1] - a[3] < 2 * margin:
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return {
        Box(
            max(0, top - margin),
            max(0, left - margin),
            min(height, bottom + margin),
            min(width, right + margin),
        )
        for top, left, bottom, right in boxes
    }


@pytest.mark.parametrize("margin", [0, 5, 24])
def test_hole_boxes_cover_every_hole_pixel_once_and_match_exact_grouping(margin):
    rng = np.random.default_rng(margin)
    hole = np.zeros((300, 500), bool)
    for _ in range(25):
        top, left = rng.integers(0, 290), rng.integers(0, 490)
        hole[top : top + rng.integers(1, 10), left : left + rng.integers(1, 10)] = True
    boxes = hole_boxes(hole, margin)
    coverage = np.zeros(hole.shape, int)
    for box in boxes:
        coverage[box.slices] += 1
    assert coverage.max() == 1 and np.all(coverage[hole] == 1)
    assert set(boxes) == reference_boxes(hole, margin)


def test_hole_reach_is_the_largest_distance_to_known_pixels():
    hole = np.zeros((200, 300), bool)
    hole[50:90, 20:280] = True  # a 40 px band: its middle is 20 px from the known rows
    assert abs(hole_reach(hole) - 20) <= 1
    assert hole_reach(np.ones((10, 10), bool)) == math.inf
    big = np.zeros((3000, 3000), bool)  # coarse grid path (9 MP > 4 MP)
    big[1000:1300, :] = True
    assert abs(hole_reach(big) - 150) <= 2


def test_each_region_has_its_own_extent_and_reach():
    hole = np.zeros((3000, 3000), bool)
    hole[100:104, 100:2900] = True  # a 4 px scratch: 2 px to the known rows, + 1 px of rounding
    hole[1000:1400, 500:900] = True  # a 400 px blob: reach 200 (+1), measured exactly
    hole[1800:2900, 1000:2900] = True  # 2 MP: measured on the 8 px grid, to within a cell
    scratch, blob, tear = hole_regions(hole)
    assert (scratch.top, scratch.left, scratch.bottom, scratch.right) == (100, 100, 104, 2900)
    assert scratch.reach == 3
    assert (blob.top, blob.bottom, blob.reach) == (1000, 1400, 201)
    assert 551 <= tear.reach <= 551 + 8 + 1


def test_default_crop_margin_follows_the_hole_width():
    scratch = np.zeros((400, 600), bool)
    scratch[100:108, 50:550] = True  # 8 px wide: reach about 4-5 px
    assert MIN_CROP_MARGIN <= default_crop_margin(scratch) <= 3 * 6
    blob = np.zeros((400, 600), bool)
    blob[100:140, 100:140] = True  # 40 px wide: reach about 20 px
    assert 50 <= default_crop_margin(blob) <= 70
    tear = np.zeros((400, 600), bool)
    tear[:, 200:400] = True
    assert default_crop_margin(tear) == MAX_CROP_MARGIN
    assert default_crop_margin(np.ones((50, 50), bool)) == MAX_CROP_MARGIN


def test_crop_margins_are_per_region():
    hole = np.zeros((1000, 1000), bool)
    hole[100:103, 100:400] = True  # a scratch: 16 px of context
    hole[600:700, 600:700] = True  # a blob of reach 50: the full 128 px
    assert plan_boxes(hole, linear(), strategy="crop") == [Box(84, 84, 119, 416), Box(472, 472, 828, 828)]


def test_largest_scale_bisects_to_the_budget():
    scale = largest_scale(lambda height, width: height * width <= 2500, 100, 100)
    assert round(100 * scale) == 50 and round(100 * scale * 1.002) == 51
    assert largest_scale(lambda height, width: True, 100, 100) == 1
    with pytest.raises(ValueError, match="no scale fits"):
        largest_scale(lambda height, width: False, 100, 100)


# --- tiles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "tile", "overlap"), [(1000, 256, 64), (257, 256, 64), (512, 128, 0)])
def test_tile_starts_cover_with_full_tiles_and_enough_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    gaps = np.diff(starts)
    assert np.all(gaps <= tile - overlap) and np.all(gaps > 0)
    assert tile_starts(100, 256, 64) == [0]


@pytest.mark.parametrize(
    ("length", "tile", "expected"), [(2048, 1024, 768), (2048, 1100, 1056), (300, 256, 184), (200, 256, 200)]
)
def test_fitted_tiles_are_as_few_and_as_small_as_possible(length, tile, expected):
    fitted = fitted_tile(length, tile, 64, multiple=8 if expected != 768 else 128)
    assert fitted == expected
    assert len(tile_starts(length, fitted, 64)) == len(tile_starts(length, tile, 64))


def test_tile_rows_list_only_tiles_with_holes():
    hole = np.zeros((300, 300), bool)
    hole[10, 10] = True
    hole[250, 280] = True
    rows = tile_rows(hole, 128, 128, 32)
    assert [top for top, _ in rows] == [0, 86, 172]
    assert rows == [(0, [0]), (86, []), (172, [172])]


def test_tiles_of_a_downscaled_box_include_every_tile_the_reduced_hole_needs():
    rng = np.random.default_rng(3)
    hole = np.zeros((900, 1300), bool)
    for _ in range(12):
        top, left = rng.integers(0, 880), rng.integers(0, 1280)
        hole[top : top + 15, left : left + 15] = True
    box = Box(50, 70, 890, 1270, scale=0.37)
    height, width = box.scaled_size()
    reduced = (
        cv2.resize(hole[box.slices].astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0
    )
    needed = tile_rows(reduced, 128, 128, 32)
    planned = scaled_tile_rows(hole, box, 128, 128, 32)
    assert [top for top, _ in planned] == [top for top, _ in needed]
    for (_, lefts), (_, kept) in zip(needed, planned, strict=True):
        assert set(lefts) <= set(kept) and len(kept) <= len(lefts) + 2


# --- the strategies ----------------------------------------------------------------------------------


def test_auto_crops_small_damage_at_native_resolution():
    hole = scratches(1000, 1500)
    boxes = plan_boxes(hole, linear(), crop_margin=100)  # native side 256
    # The long thin scratches are beyond the native side but have context in every tile.
    assert boxes == [
        Box(0, 100, 500, 303, tile=256),
        Box(600, 800, 804, 1400, tile=256),
        Box(750, 50, 960, 260),
    ]
    assert boxes == [box.in_tiles(256) for box in hole_boxes(hole, 100)]


def test_auto_takes_the_whole_image_when_boxes_would_cover_most_of_it():
    hole = np.zeros((200, 240), bool)
    hole[20:30, 20:30] = hole[170:180, 210:220] = True
    assert plan_boxes(hole, linear(), crop_margin=80) == [Box(0, 0, 200, 240)]
    assert len(plan_boxes(hole, linear(), crop_margin=78)) == 2  # 2 * 108² < 200 * 240 / 2


def test_auto_tiles_thin_holes_and_downscales_large_ones_beyond_the_native_side():
    thin = np.zeros((600, 1200), bool)
    thin[300:304, 100:1100] = True
    (box,) = plan_boxes(thin, linear())
    assert box.scale == 1 and box.tile == 256
    # A blob 150 px from its edge to its middle: scaled to the native side, one pass keeps more
    # pixels than tiles could (they need the reach within a quarter tile: scale 64 / 151).
    blob = np.zeros((400, 500), bool)
    blob[50:350, 50:450] = True
    (box,) = plan_boxes(blob, linear())
    assert box.tile is None and box.scale == 256 / 500 and box.scaled_size() == (205, 256)
    # Wider, with 200 px of reach: 256-px tiles at scale 64 / 201 keep more than one pass at 256 / 1200.
    blob = np.zeros((600, 1200), bool)
    blob[100:500, 200:1000] = True
    (box,) = plan_boxes(blob, linear())
    assert box.tile == 256 and box.scale == pytest.approx(64 / 201) and box.scaled_size() == (191, 382)


def torn_scan() -> np.ndarray:
    """A 6000×4000 scan: eight thin scratches (3-4 px wide, 100 px or more apart) and the bottom-right
    corner torn off (798 px legs)."""
    hole = np.zeros((4000, 6000), bool)
    for index in range(5):
        left = 400 + 1000 * index
        hole[300 + 500 * index : 1800 + 500 * index, left : left + 3] = True  # 1500 px, vertical
    for index in range(3):
        left = 500 + 1000 * index
        hole[500 + 1000 * index : 504 + 1000 * index, left : left + 800] = True  # 800 px, horizontal
    rows, cols = np.mgrid[0:4000, 0:6000]
    hole |= rows + cols > 9200
    return hole


def corner_box(boxes: list[Box]) -> Box:
    (corner,) = [box for box in boxes if box.bottom == 4000 and box.right == 6000]
    return corner


def test_auto_fills_thin_scratches_at_native_resolution_and_gives_a_torn_corner_its_own_box():
    hole = torn_scan()
    budget = 8 * GB
    boxes = plan_boxes(hole, LAMA, budget)
    # Every scratch has its own box at full resolution; the tear's box has as much context as its
    # reach (566 px: the corner is that far from the torn edge), and fits LaMa's 2048 px at scale 1.
    assert len(boxes) == 9 and all(box.scale == 1 for box in boxes)
    corner = corner_box(boxes)
    assert (corner.top, corner.left) == (3202 - 566, 5202 - 566)
    assert corner.tile is None and corner.area < 0.1 * hole.size
    assert sum(box.area for box in boxes) < 0.12 * hole.size
    # DeepFill v2 (native 1024): scratches still at full resolution (tiled where longer than a
    # tile), the corner downscaled only as far as its own box needs.
    boxes = plan_boxes(hole, deepfill(), budget)
    corner = corner_box(boxes)
    assert corner.scale == pytest.approx(1024 / 1364, rel=1e-3) and corner.tile is None
    scratch_boxes = [box for box in boxes if box != corner]
    assert len(scratch_boxes) == 8 and all(box.scale == 1 for box in scratch_boxes)
    assert {box.tile for box in scratch_boxes} == {None, 1024}  # 1532 px long boxes in tiles, 832 px whole


def test_no_pass_runs_quadratic_attention_on_a_huge_grid():
    geometry = deepfill()
    hole = np.zeros((2048, 2048), bool)
    hole[100:1950, 100:1950] = True  # grown by 128 px of context, the crop box is the whole image
    with pytest.raises(
        InpaintError, match=r"2048x2048 pass of gatedconv costs \d\.\d times as much per pixel"
    ):
        plan(hole, geometry, InpaintOptions(strategy="full"), 64 * GB)
    for strategy in ("crop", "auto", "resize", "tile"):
        result = plan(hole, geometry, InpaintOptions(strategy=strategy), 64 * GB)
        sizes = [
            box.scaled_size() if tiling is None else (tiling.height, tiling.width)
            for box, tiling in zip(result.boxes, result.tilings, strict=True)
        ]
        assert all(geometry.cost_growth(*size) <= PASS_COST_LIMIT for size in sizes), strategy
    crop = plan(hole, geometry, InpaintOptions(strategy="crop"), 64 * GB)
    assert crop.boxes == (Box(0, 0, 2048, 2048, tile=1024),) and crop.passes == 9
    # The same box with a linear model is one pass: only the cost model tells them apart.
    assert plan(hole, linear(native=1024), InpaintOptions(strategy="crop"), 64 * GB).passes == 1


def test_plan_cost_counts_the_tiles_that_run():
    hole = np.zeros((1000, 1000), bool)
    hole[100:110, :] = True  # one row of tiles
    result = plan(hole, linear(), InpaintOptions(strategy="tile", tile_size=256, tile_overlap=0), GB)
    (tiling,) = result.tilings
    assert (tiling.height, tiling.width) == (256, 256) and tiling.tiles == 4 and result.passes == 4
    assert result.cost == 4 * 256 * 256
    assert result.describe() == "tile: whole image, in 256 px tiles; 4 passes"


def test_descriptions_name_boxes_scales_and_tiles():
    hole = torn_scan()
    result = plan(hole, deepfill(), InpaintOptions(), 8 * GB)
    assert result.describe() == (
        "auto: 9 crop boxes (9% of the image), 8 at native scale, 1 downscaled to 0.75, "
        "in 1024 px tiles; 14 passes"
    )
    nothing = plan(np.zeros((10, 10), bool), linear(), InpaintOptions(), GB)
    assert nothing.describe() == "auto: nothing to fill" and nothing.passes == 0 and nothing.cost == 0


def test_memory_budget_full_refuses_with_readable_units_and_auto_downscales():
    hole = np.zeros((64, 64), bool)
    hole[16:32, 20:40] = True
    geometry = linear()
    with pytest.raises(InpaintError, match=r"needs about 17 MB, over the memory budget of 4\.2 MB"):
        plan(hole, geometry, InpaintOptions(strategy="full"), geometry.memory(32, 32))
    with pytest.raises(InpaintError, match=r"over the memory budget of 1 B"):
        plan(hole, geometry, InpaintOptions(strategy="full"), 1)
    (box,) = plan(hole, geometry, InpaintOptions(), geometry.memory(32, 32)).boxes
    assert box.scale < 1 and geometry.pass_memory(*box.scaled_size()) <= geometry.memory(32, 32)


def test_resize_and_max_side():
    hole = np.zeros((600, 900), bool)
    hole[200:260, 300:420] = True
    assert plan_boxes(hole, linear(), strategy="resize", max_side=300) == [Box(0, 0, 600, 900, 1 / 3)]
    assert plan_boxes(hole, linear(), strategy="full", max_side=450) == [Box(0, 0, 600, 900, 0.5)]


def test_tiles_within_the_memory_budget_and_a_learned_cap():
    thin = np.zeros((600, 1200), bool)
    thin[300:304, 100:1100] = True
    geometry = linear()
    assert plan_boxes(thin, geometry, geometry.memory(203, 203))[0].tile == 200
    capped = plan(thin, geometry, InpaintOptions(), GB, limits=Limits(tile_cap=160))
    assert capped.boxes[0].tile == 160


def test_out_of_memory_halves_the_tile_down_to_the_floor():
    geometry = linear()
    box = Box(0, 0, 320, 320)
    retry, limits = after_out_of_memory(box, None, geometry, Limits(), "cuda")
    assert retry == Box(0, 0, 320, 320, tile=160) and limits == Limits(tile_cap=160, batch_cap=1)
    with pytest.raises(InpaintError, match=r"ran out of cuda memory on 152x152 pixels.*smaller than 128 px"):
        after_out_of_memory(Box(0, 0, 320, 320, tile=160), _tiling(152), geometry, limits, "cuda")


def _tiling(side: int):
    from inpaint_cli.engine.strategies import Tiling

    return Tiling(side, side, 32, ((0, (0,)),))


def test_batches_on_accelerators_follow_the_budget():
    hole = np.zeros((1000, 1000), bool)
    hole[100:900:50, :] = True
    geometry = NetworkGeometry("net", 8, 8, 256, lambda h, w: h * w, lambda h, w: float(h * w), batches=True)
    result = plan(hole, geometry, InpaintOptions(strategy="tile", tile_size=256), 3 * 256 * 256)
    assert result.tilings[0].batch == 3
    assert plan(hole, linear(), InpaintOptions(strategy="tile", tile_size=256), GB).tilings[0].batch == 1


# --- options ------------------------------------------------------------------------------------------


def test_options_are_validated_once():
    assert InpaintOptions(strategy="crop").strategy.value == "crop"
    with pytest.raises(UsageError, match="unknown strategy 'sideways'"):
        InpaintOptions(strategy="sideways")
    with pytest.raises(UsageError, match="max-side must be a positive whole number"):
        InpaintOptions(max_side=0)
    with pytest.raises(UsageError, match="tile overlap 128 must be smaller than the tile size"):
        InpaintOptions(tile_size=128, tile_overlap=128)


@pytest.mark.parametrize(
    ("count", "text"),
    [(1, "1 B"), (999, "999 B"), (52_000_000, "52 MB"), (4.2e6, "4.2 MB"), (3.4e9, "3.4 GB")],
)
def test_format_bytes(count, text):
    assert format_bytes(count) == text


def test_a_2048_scan_with_scratches_and_a_hole_is_not_downscaled():
    hole = np.zeros((2048, 2048), bool)
    for index in range(10):
        hole[100:1900, 150 + 190 * index : 153 + 190 * index] = True
    hole[700:1300, 800:1300] = True  # reach 250 px
    assert plan(hole, LAMA, InpaintOptions(), 8 * GB).describe() == "auto: whole image; 1 pass"
    tight = plan(hole, LAMA, InpaintOptions(), 2 * GB)  # a pass of 2048² needs 3.5 GB: tiles, still native
    assert tight.describe() == "auto: whole image, in 1544 px tiles; 4 passes"
    assert all(LAMA.pass_memory(t.height, t.width) <= 2 * GB for t in tight.tilings if t is not None)


def torn_corner(height: int = 750, width: int = 1200, depth: int = 190) -> np.ndarray:
    """A hole over the top-right corner, `depth` px from its diagonal edge to the corner."""
    rows, cols = np.mgrid[:height, :width]
    return (width - 1 - cols) + rows < depth * math.sqrt(2)


def test_auto_fills_the_core_of_a_hole_deeper_than_the_network_reaches_first_downscaled():
    """Issue 30: a partial-convolution U-Net leaves a hole deeper than its mask updates reach as a
    flat patch. auto fills that hole's core first, at the scale that brings the hole within reach;
    the rest of the hole (and anything else) then at its own scale, the core seen as known."""
    hole = torn_corner()
    hole[600:603, 100:900] = True  # a thin scratch far from it
    reach = hole_reach(hole[:400, 700:])
    shallow = NetworkGeometry("pconv-tiny", 32, 32, 1024, lambda h, w: h * w, lambda h, w: float(h * w))
    assert [box.scale for box in plan_boxes(hole, shallow)] == [1.0, 1.0]  # no limit: native scale
    assert plan(hole, shallow, InpaintOptions(), GB).core is None
    limited = replace(shallow, fill_reach=39.0)
    planned = plan(hole, limited, InpaintOptions(), GB)
    (first,) = planned.core.boxes
    assert first.scale == pytest.approx(39 / reach) and first.right == 1200 and first.top == 0
    assert [box.scale for box in planned.boxes] == [1.0, 1.0] and planned.warnings == ()
    core = deep_core(hole, 39.0)
    assert core.sum() > 0.5 * torn_corner().sum() and not (core & ~hole).any()
    assert hole_reach(hole & ~core) <= 39 + 1  # the rest is within reach once the core is known
    assert planned.passes == 3 and planned.core.cost == limited.pass_cost(*first.scaled_size())
    assert planned.describe().startswith("auto: 2 crop boxes (")
    assert ", deep core first: 1 crop box (" in planned.describe()
    (warning,) = plan(torn_corner(), limited, InpaintOptions(strategy="full"), GB).warnings
    reach = hole_reach(torn_corner())
    assert warning == (
        f"pconv-tiny fills holes up to 39 px deep, and one is {reach:.0f} px deep at the scale it is "
        "filled at: expect a flat patch in it; --strategy auto downscales such holes"
    )
    # A thin scratch is within reach at any scale: nothing changes, nothing is said.
    assert plan_boxes(scratches(1000, 1500), limited) == plan_boxes(scratches(1000, 1500), shallow)
    assert plan(scratches(1000, 1500), limited, InpaintOptions(strategy="full"), GB).warnings == ()
