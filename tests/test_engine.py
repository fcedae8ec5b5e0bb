"""The engine around a network: padding, normalisation, mask convention, compositing, devices."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from inpaint_cli.engine import (
    Inpainter,
    pad_bottom_right,
    padded_size,
    parse_size,
    select_device,
    select_precision,
)
from inpaint_cli.errors import InpaintError, UsageError
from inpaint_cli.models.base import IMAGENET, SIGNED_UNIT_RANGE, InpaintModel, Normalization


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
    assert network.calls == [] and not result.changed
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
    with pytest.raises(InpaintError, match="over the memory budget"):
        Inpainter(network, device="cpu", precision="fp32", strategy="full", memory_budget=budget).inpaint(
            pixels, hole
        )
    auto = Inpainter(network, device="cpu", precision="fp32", strategy="auto", memory_budget=budget)
    (box,) = auto.plan(hole)
    assert box.scale < 1 and auto.pass_memory(*box.scaled_size()) <= budget
    result = auto.inpaint(pixels, hole)
    np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
    assert network.calls[-1][0].shape[-1] <= 32


def test_max_side_downscales_the_pass():
    network = RecordingNetwork()
    pixels, hole = random_image(40, 100), box_hole(40, 100)
    Inpainter(network, device="cpu", precision="fp32", max_side=50).inpaint(pixels, hole)
    assert network.calls[0][0].shape[-2:] == (24, 56)  # 20x50 padded to multiples of 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GB", 4_000_000_000), ("512MiB", 512 * 2**20), ("1.5g", 1_500_000_000), ("100", 100)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1GB", "4XB"])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(UsageError):
        parse_size(text)


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
        result = Inpainter.from_name(name, device="cpu").inpaint(pixels, hole)
        np.testing.assert_array_equal(result.pixels[~hole], pixels[~hole])
        assert np.abs(result.pixels[hole].astype(int) - (200, 120, 40)).max() <= 2


def test_classical_models_take_no_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="takes no --checkpoint"):
        Inpainter.from_name("telea", checkpoint=tmp_path / "x.pth")
