"""The engine around a network: padding, normalisation, mask convention, compositing, devices."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace
from typing import ClassVar

import cv2
import numpy as np
import psutil
import pytest
import torch
import torch.nn.functional as F
from mask_helpers import scratches

from inpaint_cli.engine import device, runner
from inpaint_cli.engine import inpainter as inpainter_module
from inpaint_cli.engine.device import select_device, select_precision
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.regions import fitted_tile, tile_starts
from inpaint_cli.engine.runner import TileBlender, feather, pad_bottom_right, paste_upscaled
from inpaint_cli.engine.strategies import Box, InpaintOptions, padded_size
from inpaint_cli.errors import InpaintError, UsageError
from inpaint_cli.models.base import IMAGENET, SIGNED_UNIT_RANGE, InpaintModel, Normalization


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test networks are too small to gain from threads, and lose much to them on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inpainter(network: InpaintModel, **options) -> Inpainter:
    return Inpainter(network, device="cpu", precision="fp32", options=InpaintOptions(**options))


class RecordingNetwork(InpaintModel):
    """Predicts a constant colour and records what it was given."""

    family = "recording"
    pad_mode = "symmetric"

    def __init__(self, multiple: int = 8, minimum: int = 16, colour: float = 0.25) -> None:
        super().__init__({})
        self.multiple, self.minimum, self.colour = multiple, minimum, colour
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def pad_multiple(self) -> int:
        return self.multiple

    @property
    def min_size(self) -> int:
        return self.minimum

    def forward(self, image, mask, intermediates=None):
        self.calls.append((image.clone(), mask.clone()))
        if intermediates is not None:
            intermediates["feature.body"] = image[:, :1] * 2
        constant = torch.full_like(image, self.colour)
        return self.normalization.to_network(constant)


class ImageNetNetwork(RecordingNetwork):
    normalization: ClassVar[Normalization] = IMAGENET
    hole_value = 0.0


class SignedNetwork(RecordingNetwork):
    normalization: ClassVar[Normalization] = SIGNED_UNIT_RANGE


def random_image(height: int, width: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top + 1, (height, width, channels), dtype=dtype)


def box_hole(height: int, width: int) -> np.ndarray:
    hole = np.zeros((height, width), bool)
    hole[height // 4 : height // 2, width // 3 : width // 2 + 1] = True
    return hole


@pytest.mark.parametrize("mode", ["symmetric", "reflect"])
@pytest.mark.parametrize(("size", "padded"), [(5, 8), (3, 16), (61, 64), (1, 8), (8, 8)])
def test_padding_matches_numpy(mode, size, padded):
    if mode == "reflect" and size == 1:
        pytest.skip("numpy cannot reflect a single sample")
    values = torch.arange(size * 2, dtype=torch.float32).view(1, 1, size, 2)
    ours = pad_bottom_right(values, padded, 2, mode)[0, 0].numpy()
    reference = np.pad(values[0, 0].numpy(), ((0, padded - size), (0, 0)), mode=mode)
    np.testing.assert_array_equal(ours, reference)


def test_padded_size_respects_multiple_and_minimum():
    assert padded_size(61, 8, 16) == 64
    assert padded_size(3, 8, 16) == 16
    assert padded_size(17, 128, 128) == 128
    assert padded_size(129, 128, 128) == 256


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
def test_pixels_outside_the_hole_are_bit_exact(dtype, channels):
    pixels = random_image(37, 53, channels, dtype)
    hole = box_hole(37, 53)
    inpainter = Inpainter(RecordingNetwork(), device="cpu", precision="fp32")
    result = inpainter.inpaint(pixels, hole)
    assert result.pixels.dtype == dtype and result.pixels.shape == pixels.shape
    np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
    expected = round(0.25 * np.iinfo(dtype).max)
    assert np.all(result.pixels[hole] == expected)


def test_network_sees_padded_normalised_input_and_its_mask_convention():
    network = ImageNetNetwork(multiple=8, minimum=16)
    pixels = random_image(13, 21)
    hole = box_hole(13, 21)
    Inpainter(network, device="cpu", precision="fp32").inpaint(pixels, hole)
    ((image, mask),) = network.calls
    assert image.shape == (1, 3, 16, 24) and mask.shape == (1, 1, 16, 24)
    rgb = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(IMAGENET.from_network(image)[0, :, :13, :21], rgb, atol=1e-6, rtol=0)
    # hole_value 0: the network reads 1 = valid; symmetric padding repeats the last row/column.
    expected = 1 - torch.from_numpy(hole).float()
    torch.testing.assert_close(mask[0, 0, :13, :21], expected)
    torch.testing.assert_close(mask[0, 0, 13, :21], expected[12])
    torch.testing.assert_close(
        IMAGENET.from_network(image)[0, :, 13:, :21], rgb.flip(1)[:, :3], atol=1e-6, rtol=0
    )


def test_signed_range_network_output_is_mapped_back():
    pixels = random_image(16, 16)
    hole = box_hole(16, 16)
    result = Inpainter(SignedNetwork(colour=0.75), device="cpu", precision="fp32").inpaint(pixels, hole)
    assert np.all(result.pixels[hole] == round(0.75 * 255))


def test_grey_input_is_seen_as_three_equal_channels():
    network = RecordingNetwork()
    pixels = random_image(16, 16, channels=1)
    Inpainter(network, device="cpu", precision="fp32").inpaint(pixels, box_hole(16, 16))
    image = network.calls[0][0]
    assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 1], image[:, 2])


def test_empty_hole_copies_the_image_without_running_the_network():
    network = RecordingNetwork()
    pixels = random_image(16, 16)
    result = Inpainter(network, device="cpu", precision="fp32").inpaint(pixels, np.zeros((16, 16), bool))
    assert network.calls == [] and result.boxes == []
    np.testing.assert_array_equal(result.pixels, pixels)
    assert result.pixels is not pixels


def test_all_hole_mask_fills_everything():
    pixels = random_image(16, 24)
    result = Inpainter(RecordingNetwork(), device="cpu", precision="fp32").inpaint(
        pixels, np.ones((16, 24), bool)
    )
    assert np.all(result.pixels == 64)


def test_intermediates_are_captured_only_when_asked():
    network = RecordingNetwork()
    inpainter = Inpainter(network, device="cpu", precision="fp32")
    pixels, hole = random_image(13, 21), box_hole(13, 21)
    assert inpainter.inpaint(pixels, hole).intermediates == {}
    result = inpainter.inpaint(pixels, hole, capture=True)
    assert set(result.intermediates) == {"feature.body"}
    assert result.intermediates["feature.body"].shape == (1, 1, 16, 24)
    assert result.intermediates_hole.shape == (1, 1, 16, 24)


def test_memory_budget_full_refuses_and_auto_downscales():
    network = RecordingNetwork()
    pixels, hole = random_image(64, 64), box_hole(64, 64)
    budget = network.memory_estimate(32, 32)
    with pytest.raises(InpaintError, match=r"needs about \d+ MB, over the memory budget of 4\.2 MB"):
        inpainter(network, strategy="full", memory_budget=budget).inpaint(pixels, hole)
    auto = inpainter(network, strategy="auto", memory_budget=budget)
    (box,) = auto.plan(hole).boxes
    assert box.scale < 1 and auto.geometry.pass_memory(*box.scaled_size()) <= budget
    result = auto.inpaint(pixels, hole)
    np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
    assert network.calls[-1][0].shape[-1] <= 32


def test_max_side_downscales_the_pass():
    network = RecordingNetwork()
    pixels, hole = random_image(40, 100), box_hole(40, 100)
    inpainter(network, strategy="full", max_side=50).inpaint(pixels, hole)
    assert network.calls[0][0].shape[-2:] == (24, 56)  # 20x50 padded to multiples of 8


def test_options_can_change_per_call():
    network = RecordingNetwork()
    model = inpainter(network)
    pixels, hole = random_image(40, 100), box_hole(40, 100)
    result = model.inpaint(pixels, hole, options=InpaintOptions(strategy="resize", max_side=50))
    assert network.calls[0][0].shape[-2:] == (24, 56) and result.plan.describe().startswith("resize:")
    assert model.options == InpaintOptions()


def test_non_finite_network_output_fails_the_image():
    class Broken(RecordingNetwork):
        def forward(self, image, mask, intermediates=None):
            return torch.full_like(image, math.nan)

    with pytest.raises(InpaintError, match=r"broken produced values that are not finite \(NaN or infinity\)"):
        Inpainter(Broken(), name="broken", device="cpu", precision="fp32").inpaint(
            random_image(16, 16), box_hole(16, 16)
        )


def test_padding_makes_no_copy_when_none_is_needed():
    values = torch.rand(1, 3, 16, 24)
    assert pad_bottom_right(values, 16, 24, "symmetric") is values
    padded = pad_bottom_right(values, 21, 24, "reflect")
    torch.testing.assert_close(padded[..., :16, :], values)


def test_device_and_precision_selection():
    assert select_device("cpu").type == "cpu"
    assert select_precision("auto", torch.device("cpu")) == torch.float32
    assert select_precision("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(UsageError, match="unknown precision"):
        select_precision("fp8", torch.device("cpu"))
    with pytest.raises(UsageError, match=r"unknown device|unsupported device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            select_device("cuda:1")


def test_bf16_autocast_on_cpu_runs_in_bfloat16():
    seen = {}

    class DtypeNetwork(RecordingNetwork):
        def forward(self, image, mask, intermediates=None):
            seen["dtype"] = torch.nn.functional.conv2d(image, torch.ones(3, 3, 1, 1)).dtype
            return super().forward(image, mask, intermediates)

    Inpainter(DtypeNetwork(), device="cpu", precision="bf16").inpaint(random_image(16, 16), box_hole(16, 16))
    assert seen["dtype"] == torch.bfloat16


def test_classical_models_fill_the_hole_from_its_surroundings():
    pixels = np.full((48, 64, 3), (200, 120, 40), np.uint8)
    pixels[:, 32:] = (30, 60, 90)
    hole = np.zeros((48, 64), bool)
    hole[20:28, 8:16] = True  # inside the left, uniform half
    for name in ("telea", "ns"):
        result = Inpainter.from_name(name, device="cpu").inpaint(pixels, hole, capture=True)
        np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
        assert (
            result.intermediates == {}
            and result.intermediates_missing == f"{name} has no intermediates to save"
        )
        assert np.abs(result.pixels[hole].astype(int) - (200, 120, 40)).max() <= 2


def test_classical_models_take_no_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="takes no --checkpoint"):
        Inpainter.from_name("telea", checkpoint=tmp_path / "x.pth")


# --- running plans: tiles, crop, resize, out-of-memory retries -----------------------------------------


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

    @property
    def native_side(self) -> int:
        return 4 * self.training_size

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


def test_batched_tiles_give_the_same_result():
    pixels, hole = smooth_image(200, 300), np.zeros((200, 300), bool)
    hole[40:160:7, 30:270] = True
    one = inpainter(ContextFill(), strategy="tile", tile_size=128).inpaint(pixels, hole)
    network = ContextFill()
    batched = inpainter(network, strategy="tile", tile_size=128)
    batched.budget = 2 * network.memory_estimate(128, 128)  # two tiles per call
    batched.geometry = replace(batched.geometry, batches=True)
    result = batched.inpaint(pixels, hole)
    assert np.abs(result.pixels.astype(int) - one.pixels).max() <= 1  # float rounding only
    assert {shape[0] for shape in network.shapes} == {2} and 2 * result.passes == one.passes == 12


def test_progress_is_reported_per_tile_and_stages_are_timed():
    pixels, hole = smooth_image(200, 300), np.zeros((200, 300), bool)
    hole[40:160:7, 30:270] = True
    seen: list[tuple[int, int]] = []
    result = inpainter(ContextFill(), strategy="tile", tile_size=128).inpaint(
        pixels, hole, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(done, 12) for done in range(1, 13)]
    assert set(result.seconds) == {"plan", "preprocess", "network", "composite"}
    assert all(seconds >= 0 for seconds in result.seconds.values()) and result.seconds["network"] > 0
    assert result.plan.describe() == "tile: whole image, in 128 px tiles; 12 passes"


def test_crop_equals_full_inside_the_hole_when_the_margin_covers_the_receptive_field(monkeypatch):
    pixels, hole = smooth_image(1000, 1500), scratches(1000, 1500)
    converted: list[tuple[int, ...]] = []
    to_float = runner.to_float
    monkeypatch.setattr(runner, "to_float", lambda array: converted.append(array.shape) or to_float(array))
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
    paste_upscaled(output, hole, box, reduced)
    expected = F.interpolate(reduced, size=(box.height, box.width), mode="bicubic", align_corners=False)
    expected = np.round(expected[0].clamp(0, 1).permute(1, 2, 0).numpy() * 65535)
    inside = hole[box.slices]
    assert np.abs(output[box.slices][inside] - expected[inside]).max() <= 1
    assert not output[~hole].any()


def test_auto_tiles_within_the_memory_budget():
    network = ContextFill()
    auto = inpainter(network, memory_budget=network.memory_estimate(200, 200))
    thin = np.zeros((600, 1200), bool)
    thin[300:304, 100:1100] = True
    (box,) = auto.plan(thin).boxes
    assert box.tile == 200
    auto.inpaint(smooth_image(600, 1200), thin)
    assert max(shape[-2] * shape[-1] for shape in network.shapes) <= 200 * 200


def test_cpu_budget_comes_from_available_ram_and_sets_the_tile_side(monkeypatch):
    network = ContextFill()
    available = network.memory_estimate(203, 203) / device.CPU_BUDGET_FRACTION
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=available))
    planner = inpainter(network, strategy="tile")
    assert planner.budget == network.memory_estimate(203, 203)
    (box,) = planner.plan(np.ones((1000, 1000), bool)).boxes
    assert box.tile == 200  # the largest multiple of 8 within the budget (and the native side, 256)


@pytest.mark.parametrize("strategy", ["auto", "crop", "resize"])
def test_capturing_intermediates_changes_neither_the_plan_nor_the_pixels(strategy):
    """Issue 30: looking must not change what is looked at (capture once forced a one-pass plan, and
    41,302 pixels of a photo differed). The intermediates are those of the box with the most hole."""
    pixels, hole = smooth_image(1000, 1500), scratches(1000, 1500)
    hole[:300, 1200:] = True  # a torn corner: the region with the most hole pixels
    looked_at = inpainter(ContextFill(), strategy=strategy)
    plain = inpainter(ContextFill(), strategy=strategy).inpaint(pixels, hole)
    captured = looked_at.inpaint(pixels, hole, capture=True)
    assert np.array_equal(captured.pixels, plain.pixels)
    assert captured.plan == plain.plan and captured.passes == plain.passes
    assert captured.intermediates_missing is None and set(captured.intermediates) == {"feature.fill"}
    box = captured.intermediates_box
    assert box is not None and box.bottom >= 300 and box.right == 1500
    height, width = (-(-side // 8) * 8 for side in box.scaled_size())
    assert captured.intermediates["feature.fill"].shape == (1, 3, height, width)
    assert captured.intermediates_hole.shape == (1, 1, height, width)


def test_a_plan_of_tiles_only_has_no_intermediates_and_says_why():
    pixels, hole = smooth_image(600, 1200), np.zeros((600, 1200), bool)
    hole[300:304, 100:1100] = True
    network = ContextFill()
    tiled = inpainter(network, strategy="tile", tile_size=200).inpaint(pixels, hole, capture=True)
    assert tiled.intermediates == {} and tiled.passes > 1
    assert tiled.intermediates_missing.startswith(f"the tile plan ran every box in tiles ({tiled.passes} ")


def test_out_of_memory_halves_the_tile_until_it_fits():
    pixels, hole = smooth_image(320, 320), np.zeros((320, 320), bool)
    hole[60:260, 150:160] = True
    network = OutOfMemoryAbove(limit=200 * 200)
    tiler = inpainter(network, strategy="full")
    progress: list[tuple[int, int]] = []
    result = tiler.inpaint(pixels, hole, progress=lambda done, total: progress.append((done, total)))
    assert network.shapes[0] == (1, 3, 320, 320)  # the one pass that failed
    assert result.boxes == [Box(0, 0, 320, 320, 1.0, 160)]
    # Three tiles a side: 160 px tiles shrunk to the 152 px (a multiple of 8) that three need; the
    # hole (columns 150-160) is in the first two columns of tiles.
    assert {shape[-2:] for shape in network.shapes[1:]} == {(152, 152)} and result.passes == 3 * 2
    assert progress == [(done, 6) for done in range(1, 7)]
    np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
    reference = inpainter(ContextFill(), strategy="tile", tile_size=160).inpaint(pixels, hole)
    np.testing.assert_array_equal(result.pixels, reference.pixels)
    # Later images start from what fitted.
    later = tiler.plan(np.ones((320, 320), bool), options=InpaintOptions(strategy="tile"))
    assert later.boxes[0].tile == 160


def test_out_of_memory_below_the_floor_is_a_clear_error():
    pixels, hole = smooth_image(320, 320), np.zeros((320, 320), bool)
    hole[60:260, 150:160] = True
    network = OutOfMemoryAbove(limit=100 * 100)
    with pytest.raises(InpaintError, match=r"ran out of cpu memory on 152x152 pixels.*smaller than 128 px"):
        inpainter(network, strategy="full").inpaint(pixels, hole)
    assert [shape[-1] for shape in network.shapes] == [320, 152]


class Clock:
    """A fake clock that only network calls advance, by `fixed` seconds plus `per_pixel` per input
    pixel: a machine where small passes cost relatively more (as real ones do, the more under load)."""

    def __init__(self, fixed: float, per_pixel: float) -> None:
        self.now, self.fixed, self.per_pixel = 0.0, fixed, per_pixel

    def __call__(self) -> float:
        return self.now


class TimedFill(ContextFill):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def forward(self, image, mask, intermediates=None):
        self.clock.now += self.clock.fixed + self.clock.per_pixel * image.shape[0] * image[0, 0].numel()
        return super().forward(image, mask, intermediates)


def test_the_first_pass_tells_the_speed_of_the_rest(monkeypatch):
    """Issue 30: estimates from one small timed pass, scaled by the cost model, were 1.4-10 times too
    long. Now nothing is estimated before passes of the plan's size have run; the first one tells the
    rest, and later images are estimated before they start."""
    clock = Clock(fixed=2.0, per_pixel=1e-5)
    monkeypatch.setattr(inpainter_module, "time", SimpleNamespace(perf_counter=clock))
    model = inpainter(TimedFill(clock), strategy="tile", tile_size=256)
    pixels, hole = smooth_image(1000, 1000), np.ones((1000, 1000), bool)
    plan = model.plan(hole)
    assert plan.passes == 25 and model.estimate_seconds(plan) is None  # nothing run at this size yet
    told: list[float] = []
    model.inpaint(pixels, hole, plan=plan, on_estimate=told.append)
    (tiling,) = plan.tilings
    each = clock.fixed + clock.per_pixel * tiling.height * tiling.width
    assert clock.now == pytest.approx(25 * each) and told == [pytest.approx(24 * each)]
    # The next image of these sizes is estimated before it starts, and told nothing more.
    assert model.estimate_seconds(plan) == pytest.approx(25 * each)
    model.inpaint(pixels, hole, plan=plan, on_estimate=told.append)
    assert len(told) == 1
    # A one-pass plan has no rest to estimate.
    model.inpaint(
        pixels, hole, options=InpaintOptions(strategy="resize", max_side=200), on_estimate=told.append
    )
    assert len(told) == 1


def test_a_non_finite_output_fails_that_image_in_a_run_and_writes_nothing(tmp_path):
    from PIL import Image

    from inpaint_cli.batch.engine import run_jobs
    from inpaint_cli.batch.kinds.inpaint import InpaintKind, RunSettings, plan_single
    from inpaint_cli.batch.outcomes import Status

    class Broken(RecordingNetwork):
        def forward(self, image, mask, intermediates=None):
            return torch.full_like(image, math.inf)

    Image.fromarray(random_image(32, 32)).save(tmp_path / "p.png")
    Image.fromarray(box_hole(32, 32).astype(np.uint8) * 255).save(tmp_path / "m.png")
    (job,) = plan_single(tmp_path / "p.png", tmp_path / "m.png", tmp_path / "out.png").jobs
    model = Inpainter(Broken(), name="broken", device="cpu", precision="fp32")
    (outcome,) = run_jobs(InpaintKind(model, RunSettings()), [job])
    assert outcome.status is Status.FAILED and not (tmp_path / "out.png").exists()
    assert "broken produced values that are not finite" in outcome.error and "\n" not in outcome.error


class ShallowFill(ContextFill):
    """A network that fills holes only up to 12 px deep (as a partial-convolution U-Net would)."""

    @property
    def fill_reach(self) -> float:
        return 12.0


def test_a_deep_hole_is_filled_core_first_then_the_rest_with_the_core_as_context():
    network = ShallowFill()
    model = inpainter(network)
    pixels, hole = smooth_image(200, 300), np.zeros((200, 300), bool)
    hole[40:160, 200:290] = True  # 45 px deep
    hole[20:23, 20:180] = True  # a thin scratch
    steps: list[tuple[int, int]] = []
    result = model.inpaint(pixels, hole, progress=lambda done, total: steps.append((done, total)))
    plan = result.plan
    assert plan.core is not None and plan.core.boxes[0].scale == pytest.approx(12 / 45, rel=0.05)
    assert all(box.scale == 1 for box in plan.boxes)
    assert steps == [(done, plan.passes) for done in range(1, plan.passes + 1)]
    first, *rest = network.shapes
    assert first[-1] < 100 and all(shape[-1] >= 100 for shape in rest)  # the core downscaled, first
    np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
    assert result.passes == plan.passes
