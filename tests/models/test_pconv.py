"""PConv family: layer rules, checkpoint conversion, U-Net parity with the fixtures, engine and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pconv_reference
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from inpaint_cli.checkpoints.containers import read_checkpoint
from inpaint_cli.checkpoints.loading import convert_checkpoint, load_strict, network_from_checkpoint
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.strategies import InpaintOptions
from inpaint_cli.errors import CheckpointError
from inpaint_cli.models import FAMILIES, pconv
from inpaint_cli.models.base import IMAGENET
from inpaint_cli.models.pconv import PConvConfig, PConvUNet
from inpaint_cli.review import visualize

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "pconv"
"""The compact fixtures (FIXTURES.md there): the reference U-Net with every width scaled by 8/64."""
FIXTURE_BASE_CHANNELS = 8
"""`enc_1`'s width in the compact fixtures (FIXTURES.md: WIDTH_BASE = 8)."""
FIXTURE_CONFIG = PConvConfig(layer_size=4, base_channels=FIXTURE_BASE_CHANNELS)
SMALL_CHECKPOINT = REFERENCE / "small.pth"
NETWORK_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}
LAYER_TOLERANCE = 1e-5
PIXEL_TOLERANCE = 1


def _settings(fixture: str) -> dict[str, dict]:
    with safe_open(str(REFERENCE / fixture), "pt") as handle:
        return json.loads(handle.metadata()["settings"])


def _read_png(name: str) -> np.ndarray:
    with Image.open(REFERENCE / name) as picture:
        return np.asarray(picture.convert("RGB") if picture.mode != "L" else picture)


@pytest.fixture(scope="module")
def official_state_dict() -> dict[str, torch.Tensor]:
    return read_checkpoint(SMALL_CHECKPOINT).state_dict


@pytest.fixture(scope="module")
def network() -> pconv.PConvUNet:
    return network_from_checkpoint(read_checkpoint(SMALL_CHECKPOINT), "pconv")


@pytest.fixture(scope="module")
def case_b() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image H×W×3 uint8, hole H×W bool, reference result H×W×3 uint8)."""
    return _read_png("case_b_image.png"), _read_png("case_b_mask.png") > 127, _read_png("case_b_result.png")


def _run_network(network: pconv.PConvUNet, image: torch.Tensor, hole: torch.Tensor, capture: bool = False):
    intermediates = {} if capture else None
    with torch.inference_mode():
        raw = network(IMAGENET.to_network(image), 1 - hole, intermediates)
    return raw, intermediates


# --- the partial convolution ---------------------------------------------------------------------


def _layer_from_fixture(tensors: dict, setting: str, config: dict, rule: pconv.Renormalization):
    layer = pconv.PartialConv2d(
        config["in_channels"],
        config["out_channels"],
        config["kernel_size"],
        config["stride"],
        config["padding"],
        bias=config["bias"],
        renormalization=rule,
        multi_channel=config.get("multi_channel", True),
    )
    with torch.no_grad():
        layer.weight.copy_(tensors[f"{setting}.weight"])
        if config["bias"]:
            layer.bias.copy_(tensors[f"{setting}.bias"])
    return layer


@pytest.mark.parametrize(
    ("fixture", "rule"),
    [("naoto_layer.safetensors", "mask_sum"), ("nvidia_layer.safetensors", "window_ratio")],
)
def test_partial_conv_matches_reference_layers(fixture: str, rule: pconv.Renormalization) -> None:
    tensors = load_file(REFERENCE / fixture)
    for setting, config in _settings(fixture).items():
        layer = _layer_from_fixture(tensors, setting, config, rule)
        with torch.no_grad():
            output, new_mask = layer(tensors[f"{setting}.input"], tensors[f"{setting}.mask"])
        expected_mask = tensors[f"{setting}.updated_mask"]
        assert new_mask.shape[1] == 1, setting
        assert torch.equal(new_mask.expand_as(expected_mask), expected_mask), setting
        torch.testing.assert_close(
            output, tensors[f"{setting}.output"], rtol=0, atol=LAYER_TOLERANCE, msg=setting
        )


def test_partial_conv_empty_windows_are_zero_and_invalid() -> None:
    tensors = load_file(REFERENCE / "naoto_layer.safetensors")
    config = _settings("naoto_layer.safetensors")["k7s2p3_nobias"]
    layer = _layer_from_fixture(tensors, "k7s2p3_nobias", config, "mask_sum")
    with torch.no_grad():
        output, new_mask = layer(tensors["k7s2p3_nobias.input"], tensors["k7s2p3_nobias.mask"])
    empty = new_mask.expand_as(output) == 0
    assert empty.any()
    assert torch.equal(output[empty], torch.zeros(int(empty.sum())))


def test_shared_mask_channel_and_folded_window_give_the_same_output() -> None:
    """The U-Net's shortcuts: one mask channel standing for equal channels, and the folded window size."""
    tensors = load_file(REFERENCE / "naoto_layer.safetensors")
    config = _settings("naoto_layer.safetensors")["k5s2p2"]
    layer = _layer_from_fixture(tensors, "k5s2p2", config, "mask_sum")
    x, per_channel = tensors["k5s2p2.input"], tensors["k5s2p2.mask"]
    shared = per_channel[:, :1]
    with torch.no_grad():
        expected, expected_mask = layer(x, shared.expand_as(per_channel))
        output, new_mask = layer(x, shared)
        layer.fold_window_size()
        layer.fold_window_size()  # idempotent
        folded, folded_mask = layer(x, shared)
    assert layer.folded_window_size == 4 * 5 * 5
    assert torch.equal(output, expected) and torch.equal(new_mask, expected_mask)
    torch.testing.assert_close(folded, expected, rtol=1e-6, atol=LAYER_TOLERANCE)
    assert torch.equal(folded_mask, expected_mask)


def test_folded_window_keeps_float16_sums_in_range() -> None:
    """Unfolded, a full 64×3×3 window of 150s sums to 86400 before the division: beyond float16's 65504."""
    layer = pconv.PartialConv2d(64, 2, 3, padding=1, bias=False)
    torch.nn.init.ones_(layer.weight)
    x, mask = torch.full((1, 64, 6, 6), 150.0), torch.ones(1, 1, 6, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        unfolded = layer(x, mask)[0]
    layer.fold_window_size()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        folded = layer(x, mask)[0]
    assert torch.isinf(unfolded).any()
    torch.testing.assert_close(folded.float(), torch.full_like(x[:, :2], 150.0), rtol=2e-3, atol=0)


def test_network_in_float16_stays_close(network: pconv.PConvUNet) -> None:
    expected = load_file(REFERENCE / "case_a.safetensors")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
        raw = network(IMAGENET.to_network(expected["image"]), 1 - expected["hole_mask"])
    assert raw.dtype == torch.float16
    scale = expected["raw_output"].abs().max()
    assert (raw.float() - expected["raw_output"]).abs().max() <= 5e-3 * scale


def test_partial_conv_rejects_inconsistent_masks() -> None:
    with pytest.raises(ValueError, match="mask_sum rule always counts"):
        pconv.PartialConv2d(4, 6, 3, padding=1, multi_channel=False)
    layer = pconv.PartialConv2d(4, 6, 3, padding=1, renormalization="window_ratio", multi_channel=False)
    with pytest.raises(ValueError, match=r"mask has 4 channels; expected 1$"):
        layer(torch.zeros(1, 4, 8, 8), torch.ones(1, 4, 8, 8))
    with pytest.raises(ValueError, match="mask has 2 channels; expected 1 or 4"):
        pconv.PartialConv2d(4, 6, 3, padding=1)(torch.zeros(1, 4, 8, 8), torch.ones(1, 2, 8, 8))


# --- checkpoints -----------------------------------------------------------------------------------


def _key_table() -> list[tuple[str, list[int], str]]:
    lines = (REFERENCE / "keys_pconv_unet.tsv").read_text().splitlines()
    return [(key, json.loads(shape), dtype) for key, shape, dtype in (line.split("\t") for line in lines)]


def _our_key(official: str) -> str:
    return official.replace(".conv.input_conv.", ".conv.")


def test_small_checkpoint_has_the_reference_keys(official_state_dict: dict) -> None:
    """The fixture is the key table (SPEC §4) without the blocks deeper than its layer_size."""
    layer_size = json.loads((REFERENCE / "small_config.json").read_text())["layer_size"]
    deeper = tuple(f"{side}_{level}." for side in ("enc", "dec") for level in range(layer_size + 1, 8))
    expected = [(key, shape) for key, shape, _ in _key_table() if not key.startswith(deeper)]
    # Same keys in the same order; the widths are scaled (FIXTURES.md), the kernels are the table's.
    assert list(official_state_dict) == [key for key, _ in expected]
    kernels = [(key, shape[2:]) for key, shape in expected]
    assert [(key, list(value.shape[2:])) for key, value in official_state_dict.items()] == kernels
    assert official_state_dict["enc_1.conv.input_conv.weight"].shape == (FIXTURE_BASE_CHANNELS, 3, 7, 7)
    converted = PConvUNet.convert_state_dict(official_state_dict)
    assert PConvUNet.config_from_state_dict(converted) == PConvConfig(layer_size, FIXTURE_BASE_CHANNELS)
    assert FAMILIES["pconv"].recognizes(official_state_dict) and FAMILIES["pconv"].recognizes(converted)
    assert not FAMILIES["pconv"].recognizes({"generator.model.1.weight": torch.zeros(1)})


def test_full_size_key_table_maps_onto_our_network() -> None:
    """Depth 7 from the 89-key table: every key but the mask kernels and counters, same shapes."""
    table = _key_table()
    # All-ones mask kernels without allocating the 25.8 M elements.
    official = {
        key: torch.ones(1, dtype=getattr(torch, dtype)).expand(shape) if shape else torch.tensor(0)
        for key, shape, dtype in table
    }
    converted = PConvUNet.convert_state_dict(official)
    assert PConvUNet.config_from_state_dict(converted) == PConvConfig(7)
    with torch.device("meta"):
        model = pconv.PConvUNet({"layer_size": 7})
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    kept = {
        _our_key(key): shape
        for key, shape, _ in table
        if not key.endswith(("mask_conv.weight", "num_batches_tracked"))
    }
    assert ours == kept
    assert model.pad_multiple == 128
    learnable = sum(
        v.numel() for k, v in model.state_dict().items() if not k.endswith(("running_mean", "running_var"))
    )
    assert learnable == 25_779_796  # SPEC §0: input-conv weights + dec_1 bias + BN affine


def test_convert_drops_constant_tensors_and_is_idempotent(official_state_dict: dict) -> None:
    converted = PConvUNet.convert_state_dict(official_state_dict)
    assert not [k for k in converted if "mask_conv" in k or "num_batches_tracked" in k or "input_conv" in k]
    assert len(converted) == len(official_state_dict) - 8 - 6  # 8 mask kernels, 6 BN counters
    assert PConvUNet.convert_state_dict(converted).keys() == converted.keys()


def test_checkpoint_without_batch_counters_loads(official_state_dict: dict, network: pconv.PConvUNet) -> None:
    """Files saved by torch < 0.4.1 lack `num_batches_tracked` (SPEC §4)."""
    old = {k: v for k, v in official_state_dict.items() if not k.endswith("num_batches_tracked")}
    model = PConvUNet(FIXTURE_CONFIG)
    load_strict(model, PConvUNet.convert_state_dict(old))
    model.eval()
    model.prepare_for_inference()
    image, hole = (
        torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0)),
        torch.zeros(1, 1, 32, 48),
    )
    hole[..., 8:20, 10:30] = 1
    assert torch.equal(_run_network(model, image, hole)[0], _run_network(network, image, hole)[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda sd: sd.pop("enc_3.conv.mask_conv.weight"),
            "enc_3.conv.input_conv.weight has no mask_conv.weight",
        ),
        (
            lambda sd: sd["dec_2.conv.mask_conv.weight"].mul_(0.5),
            "dec_2.conv.mask_conv.weight is not all ones",
        ),
        (
            lambda sd: sd.__setitem__("dec_1.conv.mask_conv.weight", torch.ones(3, 11, 1, 1)),
            r"dec_1.conv.mask_conv.weight \(3, 11, 1, 1\) != input_conv \(3, 11, 3, 3\)",
        ),
    ],
)
def test_bad_mask_kernels_are_refused(official_state_dict: dict, change, message: str) -> None:
    state_dict = {k: v.clone() for k, v in official_state_dict.items()}
    change(state_dict)
    with pytest.raises(CheckpointError, match=message) as error:
        PConvUNet.convert_state_dict(state_dict)
    assert "all-ones mask_conv kernels" in error.value.hint


def test_converted_file_loads_into_the_same_network(tmp_path: Path, network: pconv.PConvUNet) -> None:
    converted = convert_checkpoint(
        SMALL_CHECKPOINT,
        tmp_path / "pconv.safetensors",
        family="pconv",
        variant="small",
        source_url="",
        source_sha256="",
        license="MIT",
    )
    checkpoint = read_checkpoint(converted)
    assert checkpoint.config == FIXTURE_CONFIG.to_json()
    assert not [key for key in checkpoint.state_dict if "mask_conv" in key]
    reloaded = network_from_checkpoint(checkpoint)
    expected = load_file(REFERENCE / "case_a.safetensors")
    raw = _run_network(reloaded, expected["image"], expected["hole_mask"])[0]
    assert torch.equal(raw, _run_network(network, expected["image"], expected["hole_mask"])[0])


def test_strict_loading_reports_missing_and_unexpected_keys(official_state_dict: dict) -> None:
    state_dict = dict(official_state_dict)
    del state_dict["dec_2.bn.running_var"]
    state_dict["dec_2.bn.extra"] = torch.zeros(64)
    converted = PConvUNet.convert_state_dict(state_dict)
    with pytest.raises(CheckpointError, match=r"missing dec_2\.bn\.running_var; unexpected dec_2\.bn\.extra"):
        load_strict(pconv.PConvUNet(PConvUNet.config_from_state_dict(converted)), converted)


def test_non_rgb_checkpoint_is_refused(official_state_dict: dict) -> None:
    converted = PConvUNet.convert_state_dict(official_state_dict)
    converted["enc_1.conv.weight"] = torch.zeros(64, 4, 7, 7)
    with pytest.raises(CheckpointError, match="reads 4-channel images; only RGB"):
        PConvUNet.config_from_state_dict(converted)


# --- the U-Net ---------------------------------------------------------------------------------------


def test_family_attributes(network: pconv.PConvUNet) -> None:
    assert network.family == "pconv"
    assert network.normalization == IMAGENET
    assert network.hole_value == 0.0
    assert network.pad_mode == "symmetric"
    assert network.training_size == 256
    assert network.pad_multiple == network.min_size == 16


@pytest.mark.parametrize("case", ["case_a", "case_a_rect"])
def test_unet_matches_reference_fixture(network: pconv.PConvUNet, case: str) -> None:
    expected = load_file(REFERENCE / f"{case}.safetensors")
    raw, trace = _run_network(network, expected["image"], expected["hole_mask"], capture=True)
    torch.testing.assert_close(raw, expected["raw_output"], **NETWORK_TOLERANCE)
    fixture_masks = [name for name in expected if name.startswith("mask.")]
    assert sorted(trace) == sorted(fixture_masks)
    assert list(trace) == [f"mask.enc_{i}" for i in range(1, 5)] + [f"mask.dec_{i}" for i in range(4, 0, -1)]
    for name, mask in trace.items():
        assert mask.shape[1] == 1
        assert torch.equal(mask.expand_as(expected[name]), expected[name]), name
    assert torch.equal(trace["mask.dec_1"].expand(-1, 3, -1, -1), expected["output_mask"])
    # The reference composites in normalised space (the engine on pixels: the same for binary holes).
    net_mask = 1 - expected["hole_mask"]
    composited = net_mask * expected["net_image"] + (1 - net_mask) * raw
    torch.testing.assert_close(composited, expected["composited_normalized"], **NETWORK_TOLERANCE)
    inpainted = IMAGENET.from_network(composited).clamp(0, 1)
    torch.testing.assert_close(inpainted, expected["inpainted"], rtol=0, atol=1e-4)


def test_prepared_network_equals_the_trained_form(
    official_state_dict: dict, network: pconv.PConvUNet
) -> None:
    expected = load_file(REFERENCE / "case_a_rect.safetensors")
    unprepared = PConvUNet(FIXTURE_CONFIG)
    load_strict(unprepared, PConvUNet.convert_state_dict(official_state_dict))
    unprepared.eval()
    as_trained = _run_network(unprepared, expected["image"], expected["hole_mask"])[0]
    prepared = _run_network(network, expected["image"], expected["hole_mask"])[0]
    torch.testing.assert_close(prepared, as_trained, **NETWORK_TOLERANCE)


def test_case_b_raw_output_within_relative_tolerance(network: pconv.PConvUNet, case_b) -> None:
    """Near hole borders the random weights reach |2e3|, so the bound is relative to the output's range."""
    pixels, _, _ = case_b
    expected = load_file(REFERENCE / "case_b.safetensors")
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
    raw = _run_network(network, image, expected["hole_mask"])[0]
    scale = expected["raw_output"].abs().max()
    assert (raw - expected["raw_output"]).abs().max() <= 1e-4 * scale


def test_captured_intermediates_do_not_change_the_output(network: pconv.PConvUNet) -> None:
    expected = load_file(REFERENCE / "case_a.safetensors")
    plain, none = _run_network(network, expected["image"], expected["hole_mask"])
    captured, trace = _run_network(network, expected["image"], expected["hole_mask"], capture=True)
    assert none is None and torch.equal(plain, captured) and len(trace) == 8


def test_reference_formula_oracle_matches_fixture(official_state_dict: dict) -> None:
    """The benchmark's straightforward reference implementation reproduces the official outputs."""
    reference = pconv_reference.ReferencePConvUNet(4, FIXTURE_BASE_CHANNELS)
    reference.load_state_dict(official_state_dict, strict=True)
    reference.eval()
    expected = load_file(REFERENCE / "case_a.safetensors")
    with torch.inference_mode():
        raw = reference(expected["net_image"], expected["net_mask"])
    torch.testing.assert_close(raw, expected["raw_output"], **NETWORK_TOLERANCE)


def test_depth_five_network_from_synthetic_keys() -> None:
    """Depth comes from the keys; enc_5/dec_5 (512→512, 1024→512) checked against the reference formula."""
    torch.manual_seed(0)
    reference = pconv_reference.randomize_(pconv_reference.ReferencePConvUNet(5), seed=5).eval()
    official = reference.state_dict()
    assert "enc_5.conv.mask_conv.weight" in official and "enc_6.conv.input_conv.weight" not in official
    converted = PConvUNet.convert_state_dict(official)
    config = PConvUNet.config_from_state_dict(converted)
    assert config == PConvConfig(5)
    model = FAMILIES["pconv"].build(config)
    load_strict(model, converted)
    model.eval()
    model.prepare_for_inference()
    assert model.pad_multiple == 32
    image = IMAGENET.to_network(torch.rand(1, 3, 64, 96))
    hole = pconv_reference.random_hole(64, 96, seed=5)
    valid = 1 - hole
    trace_ours: dict[str, torch.Tensor] = {}
    trace_reference: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        ours = model(image, valid, trace_ours)
        expected = reference(image * valid, valid.expand(-1, 3, -1, -1), trace_reference)
    torch.testing.assert_close(ours, expected, **NETWORK_TOLERANCE)
    assert list(trace_ours) == list(trace_reference)
    for name, mask in trace_ours.items():
        assert torch.equal(mask.expand_as(trace_reference[name]), trace_reference[name]), name


def test_all_hole_input_gives_the_mean_colour(network: pconv.PConvUNet) -> None:
    """SPEC §6: every mask stays 0 and the raw output is exactly 0 (ImageNet mean after un-normalising)."""
    raw, trace = _run_network(network, torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32), capture=True)
    assert torch.equal(raw, torch.zeros_like(raw))
    assert all(not mask.any() for mask in trace.values())


# --- through the engine and the CLI ----------------------------------------------------------------


def _assert_matches_case_b(
    result: np.ndarray, image: np.ndarray, hole: np.ndarray, expected: np.ndarray
) -> None:
    assert result.shape == expected.shape and result.dtype == np.uint8
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= PIXEL_TOLERANCE
    assert np.array_equal(result[~hole], image[~hole])


def test_engine_reproduces_case_b_png(case_b) -> None:
    image, hole, expected = case_b
    inpainter = Inpainter.from_checkpoint(
        SMALL_CHECKPOINT, device="cpu", precision="fp32", options=InpaintOptions(strategy="full")
    )
    result = inpainter.inpaint(image, hole, capture=True)
    _assert_matches_case_b(result.pixels, image, hole, expected)
    assert sorted(result.intermediates) == sorted(
        [f"mask.enc_{i}" for i in range(1, 5)] + [f"mask.dec_{i}" for i in range(1, 5)]
    )


def test_engine_pads_odd_sizes_symmetrically_and_crops_back(network: pconv.PConvUNet, case_b) -> None:
    image, hole, _ = case_b
    image, hole = image[:75, 3:56], hole[:75, 3:56]
    assert hole.any() and not hole.all()
    inpainter = Inpainter(network, device="cpu", precision="fp32", options=InpaintOptions(strategy="full"))
    result = inpainter.inpaint(image, hole, capture=True)
    assert result.pixels.shape == image.shape
    assert np.array_equal(result.pixels[~hole], image[~hole])
    assert result.intermediates["mask.dec_1"].shape[-2:] == (80, 64)
    # The same pass by hand: numpy-symmetric padding to the multiple of 16, then crop.
    padded = np.pad(image, ((0, 5), (0, 11), (0, 0)), mode="symmetric")
    padded_hole = np.pad(hole, ((0, 5), (0, 11)), mode="symmetric")
    tensor = torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255
    raw = _run_network(network, tensor, torch.from_numpy(padded_hole)[None, None].float())[0]
    by_hand = (IMAGENET.from_network(raw).clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy()[:75, :53]
    assert np.abs(result.pixels[hole].astype(int) - by_hand[hole].astype(int)).max() <= PIXEL_TOLERANCE


def test_cli_run_with_official_checkpoint(tmp_path: Path, case_b) -> None:
    from inpaint_cli.cli.app import app

    image, hole, expected = case_b
    output, folder = tmp_path / "out.png", tmp_path / "inter"
    arguments = [
        "run",
        str(REFERENCE / "case_b_image.png"),
        "--mask",
        str(REFERENCE / "case_b_mask.png"),
        "--model",
        "pconv",
        "--checkpoint",
        str(SMALL_CHECKPOINT),
        "--device",
        "cpu",
        "--strategy",
        "full",  # the official code's one pass of the whole image (auto may crop or downscale)
        "-o",
        str(output),
        "--save-intermediates",
        str(folder),
        "--save-tensors",
        "fp32",
    ]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    _assert_matches_case_b(np.asarray(Image.open(output).convert("RGB")), image, hole, expected)

    written = folder / "case_b_image"
    masks = load_file(written / "intermediates.safetensors")
    assert sorted(masks) == sorted(
        [f"mask.enc_{i}" for i in range(1, 5)] + [f"mask.dec_{i}" for i in range(1, 5)]
    )
    remaining = json.loads((written / "mask_stats.json").read_text())
    assert remaining["input_hole_fraction"] == pytest.approx(hole.mean())
    for name, mask in masks.items():
        layer = remaining["layers"][name.removeprefix("mask.")]
        assert layer["remaining_hole_fraction"] == pytest.approx(float((mask == 0).float().mean()))
        assert (layer["height"], layer["width"]) == tuple(mask.shape[-2:])
    stats = json.loads((written / "stats.json").read_text())
    assert set(masks) <= set(stats["layers"])
    with Image.open(written / "mask_updates.png") as strip:
        assert strip.width == 9 * visualize.MASK_TILE_SIDE + 8 * 4


def test_mask_updates_strip_shows_the_shrinking_hole(tmp_path: Path) -> None:
    hole = torch.zeros(1, 1, 8, 8)
    hole[..., 2:6, 0:4] = 1
    level_1 = torch.ones(1, 5, 4, 4)
    level_1[..., 1:3, 0:1] = 0  # the left half of the hole survives
    level_2 = torch.ones(1, 5, 2, 2)
    written = visualize.render_mask_updates({"mask.enc_1": level_1, "mask.enc_2": level_2}, hole, tmp_path)
    assert [p.name for p in written] == ["mask_updates.png", "mask_stats.json"]
    stats = json.loads((tmp_path / "mask_stats.json").read_text())
    assert stats == {
        "input_hole_fraction": 0.25,
        "layers": {
            "enc_1": {"height": 4, "width": 4, "remaining_hole_fraction": 0.125},
            "enc_2": {"height": 2, "width": 2, "remaining_hole_fraction": 0.0},
        },
    }
    side, cell = visualize.MASK_TILE_SIDE, visualize.MASK_TILE_SIDE // 8
    with Image.open(tmp_path / "mask_updates.png") as strip:
        pixels = np.asarray(strip)
    assert strip.size[0] == 3 * side + 2 * 4
    top = strip.size[1] - side  # below the caption bar

    def colour(tile: int, row: int, col: int) -> tuple[int, ...]:
        return tuple(pixels[top + row * cell + cell // 2, tile * (side + 4) + col * cell + cell // 2])

    assert colour(0, 3, 1) == visualize.STILL_HOLE_COLOUR and colour(0, 0, 0) == visualize.KNOWN_COLOUR
    assert colour(1, 3, 1) == visualize.STILL_HOLE_COLOUR  # enc_1 cell (1, 0) covers input rows 2-3, cols 0-1
    assert colour(1, 3, 3) == visualize.FILLED_COLOUR
    assert colour(2, 3, 1) == visualize.FILLED_COLOUR and colour(2, 7, 7) == visualize.KNOWN_COLOUR


def test_declared_cost_counts_what_torch_counts_and_the_native_side(network: PConvUNet) -> None:
    height, width = 64, 96
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(torch.rand(1, 3, height, width), torch.ones(1, 1, height, width))
    assert network.cost_estimate(height, width) == pytest.approx(counter.get_total_flops() / 1e9, rel=0.01)
    assert network.native_side == 4 * network.training_size == 1024


# --- the full-size fixtures, where present --------------------------------------------------------------

FULL_SIZE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "pconv"
"""The reference widths (base 64) and larger images; not part of a clone of this repository."""


@pytest.mark.skipif(not (FULL_SIZE / "small.pth").is_file(), reason="full-size PConv fixtures not present")
def test_full_size_fixture_matches_the_reference() -> None:
    network = network_from_checkpoint(read_checkpoint(FULL_SIZE / "small.pth"), "pconv")
    assert network.config == PConvConfig(layer_size=4)
    expected = load_file(FULL_SIZE / "case_a.safetensors")
    raw, _ = _run_network(network, expected["image"], expected["hole_mask"])
    torch.testing.assert_close(raw, expected["raw_output"], **NETWORK_TOLERANCE)


def _bottleneck_holes(network: PConvUNet, hole: np.ndarray) -> int:
    """Positions of the innermost encoder's output still marked hole for this H×W hole."""
    valid = torch.from_numpy(~hole).float()[None, None]
    captured: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        network(torch.zeros(1, 3, *hole.shape), valid, captured)
    return int((captured[f"mask.enc_{network.layer_size}"] == 0).sum())


def test_fill_reach_is_how_deep_the_mask_updates_carry_known_pixels() -> None:
    """A hole as deep as `fill_reach` reaches the bottleneck filled; one twice as deep does not (there
    the network has no input and fills with its biases: issue 30's flat block)."""
    network = PConvUNet(PConvConfig(layer_size=5, base_channels=4)).eval()  # pconv-tiny's depth
    assert network.fill_reach == 3 + 2 * 2 + 2 * 4 + 1 * 8 + 1 * 16
    rows, cols = np.mgrid[:256, :256]
    for depth, holes_left in ((network.fill_reach, False), (2 * network.fill_reach, True)):
        disc = (rows - 128) ** 2 + (cols - 128) ** 2 <= depth**2
        assert (_bottleneck_holes(network, disc) > 0) is holes_left, depth
    with torch.device("meta"):
        assert PConvUNet(PConvConfig(layer_size=7)).fill_reach == 135  # the released U-Net


def test_auto_fills_a_torn_corner_within_reach_and_other_plans_are_warned() -> None:
    """Issue 30: under auto, pconv-tiny left the torn corner of a 1200×750 sepia print (about 190 px
    deep) a flat block with coloured blots, without a word, and the review page saw nothing."""
    from mask_helpers import torn_photo

    from inpaint_cli.review.thumbnails import pixel_findings

    damaged, hole, _ = torn_photo()
    auto = Inpainter.from_name("pconv-tiny", device="cpu", precision="fp32")
    filled = auto.inpaint(damaged, hole, capture=True)
    assert filled.plan.warnings == () and filled.intermediates_box.right == 1200  # the corner's box
    assert int((filled.intermediates[f"mask.enc_{auto.network.layer_size}"] == 0).sum()) == 0
    assert pixel_findings(damaged, hole, filled.pixels) == []
    whole = auto.inpaint(damaged, hole, options=InpaintOptions(strategy="full"))
    (warning,) = whole.plan.warnings
    assert warning.startswith("pconv-tiny fills holes up to 39 px deep, and one is 19")
    assert warning.endswith("expect a flat patch in it; --strategy auto downscales such holes")
    (finding,) = pixel_findings(damaged, hole, whole.pixels)
    assert finding.endswith("of the fill has colours found nowhere around the hole (unfilled?)")
