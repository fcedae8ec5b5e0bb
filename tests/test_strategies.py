"""Resolution strategies: crop boxes, tiles and their blending, resize, auto, memory budget, OOM retries."""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import psutil
import pytest
import torch
import torch.nn.functional as F

from inpaint_cli import engine
from inpaint_cli.engine import Inpainter
from inpaint_cli.errors import InpaintError
from inpaint_cli.models.base import InpaintModel
from inpaint_cli.strategies import (
    Box,
    TileBlender,
    feather,
    fitted_tile,
    hole_boxes,
    hole_reach,
    largest_scale,
    native_side,
    tile_rows,
    tile_starts,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test networks are too small to gain from threads, and lose much to them on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ContextFill(InpaintModel):
    """Fills the hole with a normalised Gaussian average of the known pixels (its receptive field
    is `radius` pixels) and records the shape of every input it gets."""

    family = "context-fill"
    training_size = 64

    def __init__(self, sigma: float = 4.0, multiple: int = 8) -> None:
        super().__init__({})
        self.radius = math.ceil(3 * sigma)
        offsets = torch.arange(-self.radius, self.radius + 1, dtype=torch.float32)
        self.kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        self.multiple = multiple
        self.shapes: list[tuple[int, ...]] = []

    @property
    def pad_multiple(self) -> int:
        return self.multiple

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        rows = self.kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
        x = F.conv2d(x, rows, padding=(self.radius, 0), groups=channels)
        return F.conv2d(x, rows.transpose(2, 3), padding=(0, self.radius), groups=channels)

    def forward(self, image, mask, intermediates=None):
        self.shapes.append(tuple(image.shape))
        known = 1 - mask
        fill = self.blur(image * known) / self.blur(known).clamp(min=1e-6)
        if intermediates is not None:
            intermediates["feature.fill"] = fill
        return image * known + fill * mask


class OutOfMemoryAbove(ContextFill):
    """Raises CUDA's out-of-memory error for inputs of more than `limit` pixels."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, image, mask, intermediates=None):
        if image.shape[-2] * image.shape[-1] > self.limit:
            self.shapes.append(tuple(image.shape))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return super().forward(image, mask, intermediates)


def inpainter(network: InpaintModel, **options) -> Inpainter:
    return Inpainter(network, device="cpu", precision="fp32", **options)


def smooth_image(height: int, width: int, dtype=np.uint16) -> np.ndarray:
    """A smooth colour image: a diagonal ramp plus slow waves, different in each channel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        0.2 + 0.5 * (x + y) / (height + width) + 0.1 * np.sin(2 * np.pi * x / 170 + phase) * np.cos(y / 60)
        for phase in (0.0, 1.0, 2.0)
    ]
    return np.round(np.stack(channels, axis=-1) * np.iinfo(dtype).max).astype(dtype)


def as_float(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64) / np.iinfo(pixels.dtype).max


# --- crop boxes ------------------------------------------------------------------------------------


def test_hole_boxes_grow_merge_and_clip():
    hole = np.zeros((400, 600), bool)
    hole[50:60, 100:130] = True  # A
    hole[70:75, 165:180] = True  # B: 35 px right of A; merges with A at margin 20 (40 px of context)
    hole[300:310, 400:420] = True  # C: far away
    hole[395:400, 590:600] = True  # D: touches the bottom-right corner, merges with nothing
    assert hole_boxes(hole, 20) == [
        Box(30, 80, 95, 200),
        Box(280, 380, 330, 440),
        Box(375, 570, 400, 600),
    ]
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


def test_largest_scale_bisects_to_the_budget():
    scale = largest_scale(lambda height, width: height * width <= 2500, 100, 100)
    assert round(100 * scale) == 50 and round(100 * scale * 1.002) == 51
    assert largest_scale(lambda height, width: True, 100, 100) == 1
    with pytest.raises(ValueError, match="no scale fits"):
        largest_scale(lambda height, width: False, 100, 100)


def test_native_side_follows_training_size_and_family():
    assert native_side("gatedconv", 256) == 1024
    assert native_side("pconv", 256) == 1024
    assert native_side("lama", 256) == 2048


# --- tiles and blending ----------------------------------------------------------------------------


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


def test_feather_ramps_over_the_overlap():
    weights = feather(10, 3)
    torch.testing.assert_close(weights, torch.tensor([1, 2, 3, 4, 4, 4, 4, 3, 2, 1]) / 4)
    assert torch.equal(feather(5, 0), torch.ones(5))


def test_blender_is_a_partition_of_unity_and_ramps_between_tiles():
    width, tile, overlap = 200, 64, 16
    lefts = tile_starts(width, tile, overlap)
    blender = TileBlender(width, tile, tile, overlap)
    for index, left in enumerate(lefts):
        blender.add(0, left, torch.full((3, tile, tile), float(index)))
    values = blender.finish(tile)
    assert values.shape == (3, tile, width)
    row = values[0, tile // 2]
    # Alone, a tile's value comes back; where two overlap, it moves monotonically between them.
    torch.testing.assert_close(row[: lefts[1]], torch.zeros(lefts[1]))
    torch.testing.assert_close(row[lefts[-2] + tile :], torch.full((width - lefts[-2] - tile,), 3.0))
    assert torch.all(torch.diff(row) >= -1e-6)
    with pytest.raises(ValueError, match="rows from 64"):
        blender.add(0, 0, torch.zeros(3, tile, tile))


def border_and_inner_gradients(
    values: np.ndarray, hole: np.ndarray, borders: list[int]
) -> tuple[float, float]:
    """Largest horizontal step inside the hole across tile borders, and everywhere else in the hole."""
    step = np.abs(np.diff(values, axis=1)).max(axis=-1)
    inside = hole[:, 1:] & hole[:, :-1]
    at_border = np.zeros_like(inside)
    at_border[:, [column - 1 for column in borders]] = True
    return float(step[inside & at_border].max()), float(step[inside & ~at_border].max())


@pytest.mark.parametrize("overlap", [0, 32])
def test_tiles_leave_no_seam_in_the_hole(overlap):
    pixels = smooth_image(128, 640)
    hole = np.zeros((128, 640), bool)
    hole[50:70, 20:620] = True  # crosses every tile border; every hole pixel is near known ones
    result = inpainter(ContextFill(), strategy="tile", tile_size=128, tile_overlap=overlap).inpaint(
        pixels, hole
    )
    assert result.boxes == [Box(0, 0, 128, 640, 1.0, 128)]
    width = fitted_tile(640, 128, overlap, ContextFill().pad_multiple)
    lefts = tile_starts(640, width, overlap)
    borders = sorted({left for left in lefts[1:]} | {left + width for left in lefts[:-1]})
    at_border, elsewhere = border_and_inner_gradients(as_float(result.pixels), hole, borders)
    if overlap:
        assert at_border <= elsewhere
    else:  # the test can see seams: abutting tiles without blending make one
        assert at_border > 1.5 * elsewhere


def test_batched_tiles_give_the_same_result(monkeypatch):
    pixels, hole = smooth_image(200, 300), np.zeros((200, 300), bool)
    hole[40:160:7, 30:270] = True
    one = inpainter(ContextFill(), strategy="tile", tile_size=128).inpaint(pixels, hole)
    network = ContextFill()
    batched = inpainter(network, strategy="tile", tile_size=128)
    monkeypatch.setattr(batched, "_batch_size", lambda height, width: 2)
    result = batched.inpaint(pixels, hole)
    assert np.abs(result.pixels.astype(int) - one.pixels).max() <= 1  # float rounding only
    assert {shape[0] for shape in network.shapes} == {2} and 2 * result.passes == one.passes == 12


# --- crop ------------------------------------------------------------------------------------------


def scratches(height: int, width: int) -> np.ndarray:
    hole = np.zeros((height, width), bool)
    hole[100:400, 200:203] = True
    hole[700:704, 900:1300] = True
    hole[850:860, 150:160] = True
    return hole


def test_crop_equals_full_inside_the_hole_when_the_margin_covers_the_receptive_field(monkeypatch):
    pixels, hole = smooth_image(1000, 1500), scratches(1000, 1500)
    converted: list[tuple[int, ...]] = []
    to_float = engine.to_float
    monkeypatch.setattr(engine, "to_float", lambda array: converted.append(array.shape) or to_float(array))
    network = ContextFill()
    crop = inpainter(network, strategy="crop", crop_margin=network.radius + 4).inpaint(pixels, hole)
    # Only the three boxes became float tensors, and the network saw nothing bigger (after padding).
    assert [(box.height, box.width) for box in crop.boxes] == [(332, 35), (36, 432), (42, 42)]
    assert [shape[:2] for shape in converted] == [(332, 35), (36, 432), (42, 42)]
    assert [shape[-2:] for shape in network.shapes] == [(336, 40), (40, 432), (48, 48)]
    full = inpainter(ContextFill(), strategy="full").inpaint(pixels, hole)
    np.testing.assert_array_equal(crop.pixels[~hole], pixels[~hole])
    difference = np.abs(crop.pixels[hole].astype(int) - full.pixels[hole].astype(int))
    assert difference.max() <= 1  # float rounding only


# --- resize ----------------------------------------------------------------------------------------


def test_resize_fills_at_low_resolution_and_pastes_only_hole_pixels():
    pixels, hole = smooth_image(600, 900), np.zeros((600, 900), bool)
    hole[200:260, 300:420] = True
    network = ContextFill()
    result = inpainter(network, strategy="resize", max_side=300).inpaint(pixels, hole)
    assert result.boxes == [Box(0, 0, 600, 900, 1 / 3)]
    assert network.shapes == [(1, 3, 200, 304)]
    np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
    # Reference: area downscale (a reduced pixel is a hole if any of its pixels is), fill, keep the
    # known reduced pixels, bicubic upscale.
    small = torch.from_numpy(as_float(cv2.resize(pixels, (300, 200), interpolation=cv2.INTER_AREA)))
    small = small.permute(2, 0, 1)[None].float()
    small_hole = cv2.resize(hole.astype(np.float32), (300, 200), interpolation=cv2.INTER_AREA) > 0
    mask = torch.from_numpy(small_hole)[None, None].float()
    reduced = ContextFill()(small, mask)
    upscaled = F.interpolate(reduced, size=(600, 900), mode="bicubic", align_corners=False)
    expected = np.round(upscaled[0].permute(1, 2, 0).clamp(0, 1).numpy() * 65535)
    assert np.abs(result.pixels[hole] - expected[hole]).max() <= 1


def test_upscaled_fill_matches_bicubic_interpolation_at_hole_pixels():
    torch.manual_seed(0)
    reduced = torch.rand(1, 3, 40, 60)
    box = Box(10, 20, 130, 200, scale=1 / 3)
    hole = np.zeros((150, 220), bool)
    hole[30:110, 40:180] = True
    output = np.zeros((150, 220, 3), np.uint16)
    Inpainter._paste_upscaled(output, hole, box, reduced)
    expected = F.interpolate(reduced, size=(box.height, box.width), mode="bicubic", align_corners=False)
    expected = np.round(expected[0].clamp(0, 1).permute(1, 2, 0).numpy() * 65535)
    inside = hole[box.slices]
    assert np.abs(output[box.slices][inside] - expected[inside]).max() <= 1
    assert not output[~hole].any()


# --- auto ------------------------------------------------------------------------------------------


def test_auto_crops_small_damage_at_native_resolution():
    hole = scratches(1000, 1500)
    boxes = inpainter(ContextFill(), crop_margin=100).plan(hole)  # training size 64: native side 256
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
    assert inpainter(ContextFill(), crop_margin=80).plan(hole) == [Box(0, 0, 200, 240)]
    assert len(inpainter(ContextFill(), crop_margin=78).plan(hole)) == 2  # 2 * 108² < 200 * 240 / 2


def test_auto_tiles_thin_holes_and_downscales_large_ones_beyond_the_native_side():
    network = ContextFill()  # training size 64: native side 256
    auto = inpainter(network)
    thin = np.zeros((600, 1200), bool)
    thin[300:304, 100:1100] = True
    (box,) = auto.plan(thin)
    assert box.scale == 1 and box.tile == 256
    # A blob 150 px from its edge to its middle: scaled to the native side, one pass keeps more
    # pixels than tiles could (they need the reach within a quarter tile: scale 64 / 151).
    blob = np.zeros((400, 500), bool)
    blob[50:350, 50:450] = True
    (box,) = auto.plan(blob)
    assert box.tile is None and box.scale == 256 / 500 and box.scaled_size() == (205, 256)
    # Wider, with 200 px of reach: 256-px tiles at scale 64 / 201 keep more than one pass at 256 / 1200.
    blob = np.zeros((600, 1200), bool)
    blob[100:500, 200:1000] = True
    (box,) = auto.plan(blob)
    assert box.tile == 256 and box.scale == pytest.approx(64 / 201) and box.scaled_size() == (191, 382)


def test_auto_tiles_within_the_memory_budget():
    network = ContextFill()
    auto = inpainter(network, memory_budget=network.memory_estimate(200, 200))
    thin = np.zeros((600, 1200), bool)
    thin[300:304, 100:1100] = True
    (box,) = auto.plan(thin)
    assert box.tile == 200
    auto.inpaint(smooth_image(600, 1200), thin)
    assert max(shape[-2] * shape[-1] for shape in network.shapes) <= 200 * 200


def test_cpu_budget_comes_from_available_ram_and_sets_the_tile_side(monkeypatch):
    network = ContextFill()
    available = network.memory_estimate(203, 203) / engine.CPU_BUDGET_FRACTION
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=available))
    planner = inpainter(network, strategy="tile")
    assert planner.memory_budget == network.memory_estimate(203, 203)
    (box,) = planner.plan(np.ones((1000, 1000), bool))
    assert box.tile == 200  # the largest multiple of 8 within the budget (and the native side, 256)


def test_capture_makes_auto_plan_a_single_pass_and_explains_otherwise():
    pixels, hole = smooth_image(1000, 1500), scratches(1000, 1500)
    result = inpainter(ContextFill()).inpaint(pixels, hole, capture=True)
    assert result.passes == 1 and result.intermediates_missing is None
    assert result.intermediates["feature.fill"].shape == (1, 3, 176, 256)
    crop = inpainter(ContextFill(), strategy="crop").inpaint(pixels, hole, capture=True)
    assert crop.intermediates == {} and crop.passes == 3
    assert crop.intermediates_missing.startswith("the crop plan made 3 network passes")


# --- out of memory ---------------------------------------------------------------------------------


def test_out_of_memory_halves_the_tile_until_it_fits():
    pixels, hole = smooth_image(320, 320), np.zeros((320, 320), bool)
    hole[60:260, 150:160] = True
    network = OutOfMemoryAbove(limit=200 * 200)
    tiler = inpainter(network, strategy="full")
    result = tiler.inpaint(pixels, hole)
    assert network.shapes[0] == (1, 3, 320, 320)  # the one pass that failed
    assert result.boxes == [Box(0, 0, 320, 320, 1.0, 160)]
    # Three tiles a side: 160 px tiles shrunk to the 152 px (a multiple of 8) that three need; the
    # hole (columns 150-160) is in the first two columns of tiles.
    assert {shape[-2:] for shape in network.shapes[1:]} == {(152, 152)} and result.passes == 3 * 2
    np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
    reference = inpainter(ContextFill(), strategy="tile", tile_size=160).inpaint(pixels, hole)
    np.testing.assert_array_equal(result.pixels, reference.pixels)
    assert tiler._tile_side() == 160  # later images start from what fitted


def test_out_of_memory_below_the_floor_is_a_clear_error():
    pixels, hole = smooth_image(320, 320), np.zeros((320, 320), bool)
    hole[60:260, 150:160] = True
    network = OutOfMemoryAbove(limit=100 * 100)
    with pytest.raises(InpaintError, match=r"ran out of cpu memory on 152x152 pixels.*smaller than 128 px"):
        inpainter(network, strategy="full").inpaint(pixels, hole)
    assert [shape[-1] for shape in network.shapes] == [320, 152]


def test_default_crop_margin_follows_the_hole_width():
    from inpaint_cli.strategies import MAX_CROP_MARGIN, MIN_CROP_MARGIN, default_crop_margin

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
