"""LaMa family: checkpoint containers, architecture inference, parity with the official fixtures,
folding and mixed precision, any input size through the engine, intermediates and the CLI."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from inpaint_cli.checkpoints.containers import read_checkpoint, save_converted
from inpaint_cli.checkpoints.loading import load_strict, network_from_checkpoint
from inpaint_cli.cli.app import app
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.runner import pad_bottom_right
from inpaint_cli.engine.strategies import InpaintOptions, padded_size
from inpaint_cli.errors import CheckpointError
from inpaint_cli.models import FAMILIES, detect_family
from inpaint_cli.models.base import UNIT_RANGE
from inpaint_cli.models.ffc import FourierUnit
from inpaint_cli.models.lama import Lama, LamaConfig, convert_lama_state_dict
from inpaint_cli.review import visualize

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "lama"
"""The compact fixtures (FIXTURES.md there): big-lama's layout at ngf 8, smaller images."""
SMALL_CHECKPOINT = REFERENCE / "small.ckpt"
SPEC_TOLERANCE = 1e-4
"""SPEC §7: float outputs within 1e-4 of the official ones."""
PIXEL_TOLERANCE = 1
"""SPEC §7: uint8 results within ±1 per channel value."""
HALF_PRECISION_HOLE_ERROR = 1 / 255
SMALL_CONFIG = {
    "input_nc": 4,
    "output_nc": 3,
    "ngf": 8,
    "n_downsampling": 3,
    "n_blocks": 2,
    "max_features": 64,
    "global_channels": 48,
    "enable_lfu": False,
}
"""The compact fixture's generator (FIXTURES.md: ngf 8, bottleneck 64 = local 16 + global 48)."""


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.array(picture)


def _generator_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    """The Lightning checkpoint's state dict: 157 generator entries plus discriminator and loss ones."""
    return read_checkpoint(SMALL_CHECKPOINT).state_dict


@pytest.fixture(scope="module")
def case_a() -> dict[str, torch.Tensor]:
    return load_file(REFERENCE / "case_a.safetensors")


@pytest.fixture(scope="module")
def case_b() -> dict[str, torch.Tensor]:
    return load_file(REFERENCE / "case_b.safetensors")


@pytest.fixture(scope="module")
def unprepared(official) -> Lama:
    state_dict = convert_lama_state_dict(official)
    model = Lama(Lama.config_from_state_dict(state_dict))
    load_strict(model, state_dict)
    return model.eval()


@pytest.fixture(scope="module")
def prepared(unprepared) -> Lama:
    model = copy.deepcopy(unprepared)
    model.prepare_for_inference()
    return model


@pytest.fixture(scope="module")
def inpainter() -> Inpainter:
    return Inpainter.from_checkpoint(
        SMALL_CHECKPOINT, device="cpu", precision="fp32", options=InpaintOptions(strategy="full")
    )


def _run(model: Lama, image: torch.Tensor, mask: torch.Tensor, **intermediates) -> torch.Tensor:
    with torch.inference_mode():
        return model(image, mask, **intermediates)


# --- checkpoints ------------------------------------------------------------------------------------


def test_lightning_checkpoint_is_read_without_running_pickled_code(official):
    # The container pickles Lightning and omegaconf objects; a weights-only torch.load refuses it.
    with pytest.raises(pickle.UnpicklingError, match="ModelCheckpoint"):
        torch.load(SMALL_CHECKPOINT, weights_only=True)
    assert len(official) == 169
    assert sum(key.startswith("generator.") for key in official) == 157


def test_conversion_keeps_exactly_the_generator_entries(official):
    converted = convert_lama_state_dict(official)
    reference = _generator_tensors(REFERENCE / "small_generator_state.safetensors")
    assert set(converted) == {key.removeprefix("generator.") for key in reference}
    for key, value in converted.items():
        assert torch.equal(value, reference["generator." + key]), key
    assert convert_lama_state_dict(converted).keys() == converted.keys()  # idempotent on ours
    averaged = {"generator_average.model.1.ffc.convl2l.weight": torch.zeros(1), **official}
    assert convert_lama_state_dict(averaged).keys() == converted.keys()


def test_family_is_recognised_with_or_without_prefix(official):
    converted = convert_lama_state_dict(official)
    assert Lama.recognizes(official) and Lama.recognizes(converted)
    assert detect_family(official) is Lama and FAMILIES["lama"] is Lama
    assert not Lama.recognizes({"enc_1.conv.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"not a LaMa generator: no model\.1\.ffc\.convl2l\.weight"):
        Lama.config_from_state_dict({"enc_1.conv.weight": torch.zeros(1)})


def test_config_is_inferred_from_the_small_checkpoint(official):
    assert Lama.config_from_state_dict(convert_lama_state_dict(official)) == LamaConfig(**SMALL_CONFIG)
    official_config = json.loads((REFERENCE / "small_config.json").read_text())
    assert SMALL_CONFIG["ngf"] == official_config["ngf"]
    assert SMALL_CONFIG["n_blocks"] == official_config["n_blocks"]
    bottleneck = SMALL_CONFIG["ngf"] * 2 ** official_config["n_downsampling"]
    assert SMALL_CONFIG["global_channels"] == int(
        bottleneck * official_config["resnet_conv_kwargs"]["ratio_gin"]
    )


@pytest.mark.parametrize(
    ("table", "n_blocks"), [("keys_big_lama.tsv", 18), ("keys_lama_fourier.tsv", 9)], ids=["big", "fourier"]
)
def test_official_key_tables_build_and_load_strictly(table, n_blocks):
    """Shapes only: tensors and network live on the `meta` device, so nothing is allocated or initialised."""
    rows = [line.split("\t") for line in (REFERENCE / table).read_text().splitlines()]
    official = {
        key: torch.empty(json.loads(shape), dtype=getattr(torch, dtype), device="meta")
        for key, shape, dtype in rows
    }
    state_dict = convert_lama_state_dict(official)
    config = Lama.config_from_state_dict(state_dict)
    assert config == LamaConfig(
        **{**SMALL_CONFIG, "ngf": 64, "n_blocks": n_blocks, "max_features": 512, "global_channels": 384}
    )
    with torch.device("meta"):
        model = Lama(config)
    ours = model.state_dict()
    assert list(ours) == [key.removeprefix("generator.") for key, _, _ in rows]  # same keys, same order
    assert all(ours[key].shape == value.shape for key, value in state_dict.items())
    load_strict(model, state_dict)


def test_mismatched_weights_are_refused_with_the_offending_keys(official):
    state_dict = convert_lama_state_dict(official)
    model = Lama({**SMALL_CONFIG, "n_blocks": 3})
    with pytest.raises(CheckpointError, match=r"missing model\.7\.conv1\.ffc\.convl2l\.weight"):
        load_strict(model, state_dict)


@pytest.mark.parametrize("layout", ["lightning", "prefixed", "bare", "ours"])
def test_every_container_loads_the_same_network(layout, official, case_a, tmp_path):
    generator = convert_lama_state_dict(official)
    if layout == "lightning":
        path = SMALL_CHECKPOINT
    elif layout == "prefixed":
        path = REFERENCE / "small_generator_state.safetensors"
    elif layout == "bare":
        path = tmp_path / "generator.pth"
        torch.save(generator, path)
    else:
        path = save_converted(
            tmp_path / "lama.safetensors",
            generator,
            family="lama",
            variant="small",
            config=Lama.config_from_state_dict(generator),
        )
    model = network_from_checkpoint(read_checkpoint(path), None if layout == "ours" else "lama")
    output = _run(model, case_a["image"], case_a["mask"])
    assert (output - case_a["raw_output"]).abs().max() <= SPEC_TOLERANCE


# --- network parity ---------------------------------------------------------------------------------


def test_family_geometry():
    model = Lama(SMALL_CONFIG)
    assert (model.normalization, model.hole_value, model.pad_mode) == (UNIT_RANGE, 1.0, "symmetric")
    assert (model.pad_multiple, model.min_size, model.training_size) == (8, 16, 256)


@pytest.mark.parametrize("variant", ["unprepared", "prepared"])
def test_case_a_matches_the_official_generator(variant, request, case_a):
    model = request.getfixturevalue(variant)
    raw = _run(model, case_a["image"], case_a["mask"])
    assert (raw - case_a["raw_output"]).abs().max() <= SPEC_TOLERANCE
    inpainted = case_a["mask"] * raw + (1 - case_a["mask"]) * case_a["image"]
    assert (inpainted - case_a["inpainted"]).abs().max() <= SPEC_TOLERANCE


def test_folding_removes_every_batch_norm_and_keeps_the_output(unprepared, prepared, case_b):
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in unprepared.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    torch.manual_seed(0)
    image, mask = torch.rand(1, 3, 40, 56), (torch.rand(1, 1, 40, 56) > 0.7).float()  # 5×7 bottleneck
    folded = _run(prepared, image, mask)
    assert (folded - _run(unprepared, image, mask)).abs().max() <= SPEC_TOLERANCE
    twice = copy.deepcopy(prepared)
    twice.prepare_for_inference()
    assert torch.equal(_run(twice, image, mask), folded)
    padded = _run(prepared, case_b["image_padded"], case_b["mask_padded"])
    assert (padded - case_b["raw_output_padded"]).abs().max() <= SPEC_TOLERANCE


def test_engine_pads_the_official_way(prepared, case_b):
    height, width = case_b["image"].shape[-2:]
    size = [padded_size(side, prepared.pad_multiple, prepared.min_size) for side in (height, width)]
    padded = pad_bottom_right(case_b["image"], *size, prepared.pad_mode)
    assert torch.equal(padded, case_b["image_padded"])
    assert torch.equal(pad_bottom_right(case_b["mask"], *size, prepared.pad_mode), case_b["mask_padded"])


# --- through the engine and the CLI -----------------------------------------------------------------


def _assert_matches_official_png(result: np.ndarray) -> None:
    expected = _read_png(REFERENCE / "case_b_result.png").astype(int)
    image = _read_png(REFERENCE / "case_b_image.png")
    known = _read_png(REFERENCE / "case_b_mask.png") == 0
    assert result.shape == expected.shape
    assert np.abs(result.astype(int) - expected).max() <= PIXEL_TOLERANCE
    np.testing.assert_array_equal(result[known], image[known])


def test_inpainter_reproduces_the_official_result(inpainter):
    image = _read_png(REFERENCE / "case_b_image.png")
    hole = _read_png(REFERENCE / "case_b_mask.png") > 0  # official threshold: any non-black pixel
    _assert_matches_official_png(inpainter.inpaint(image, hole).pixels)


def test_cli_reproduces_the_official_png_and_saves_intermediates(tmp_path):
    output, folder = tmp_path / "result.png", tmp_path / "intermediates"
    arguments = [
        "run",
        REFERENCE / "case_b_image.png",
        "--mask",
        REFERENCE / "case_b_mask.png",
        "--model",
        "lama",
        "--checkpoint",
        SMALL_CHECKPOINT,
        "--mask-threshold",
        "0",
        "-o",
        output,
        "--save-intermediates",
        folder,
        "--save-tensors",
        "fp32",
    ]
    result = CliRunner().invoke(app, [str(a) for a in arguments])
    assert result.exit_code == 0, result.output
    _assert_matches_official_png(_read_png(output))
    saved = folder / "case_b_image"
    tensors = load_file(saved / "intermediates.safetensors")
    height, width = _read_png(REFERENCE / "case_b_image.png").shape[:2]
    bottleneck = (-(-height // 8), -(-width // 8))  # padded to multiples of 2^3, then 3 halvings
    local = SMALL_CONFIG["max_features"] - SMALL_CONFIG["global_channels"]
    assert tensors["feature.model.5.local"].shape == (1, local, *bottleneck)
    assert tensors["feature.model.5.global"].shape == (1, SMALL_CONFIG["global_channels"], *bottleneck)
    stages = ["1", "2", "3", "4", "5", "6", "8", "11", "14"]
    assert sorted(p.name for p in saved.glob("feature_*.png")) == sorted(
        f"feature_model.{s}.png" for s in stages
    )


@pytest.mark.parametrize(
    ("height", "width", "channels", "dtype"),
    [
        (1, 1, 3, np.uint8),
        (5, 7, 3, np.uint8),
        (8, 8, 3, np.uint8),
        (17, 33, 1, np.uint16),
        (9, 301, 3, np.uint8),
    ],
    ids=["1x1", "5x7", "8x8", "17x33-grey16", "9x301-wide"],
)
def test_any_size_comes_back_at_its_own_size(inpainter, height, width, channels, dtype):
    rng = np.random.default_rng(height * width)
    pixels = rng.integers(0, np.iinfo(dtype).max, (height, width, channels), dtype=dtype, endpoint=True)
    hole = rng.random((height, width)) < 0.3
    hole[height // 2, width // 2] = True
    filled = inpainter.inpaint(pixels, hole).pixels
    assert filled.shape == pixels.shape and filled.dtype == pixels.dtype
    np.testing.assert_array_equal(filled[~hole], pixels[~hole])


def test_bf16_inpainter_stays_close_to_fp32(inpainter):
    image = _read_png(REFERENCE / "case_b_image.png")
    hole = _read_png(REFERENCE / "case_b_mask.png") > 0
    half = Inpainter.from_checkpoint(
        SMALL_CHECKPOINT, device="cpu", precision="bf16", options=InpaintOptions(strategy="full")
    )
    reference, filled = inpainter.inpaint(image, hole).pixels, half.inpaint(image, hole).pixels
    np.testing.assert_array_equal(filled[~hole], image[~hole])
    difference = np.abs(filled.astype(int) - reference.astype(int))[hole]
    assert difference.mean() < 1.0  # below one level of 255 on average


# --- mixed precision --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_fourier_unit_keeps_its_ffts_in_fp32_under_autocast(dtype):
    torch.manual_seed(0)
    unit = FourierUnit(6).eval()
    hidden = torch.randn(1, 6, 7, 9)  # odd sizes: half-precision FFTs only take powers of two
    with torch.inference_mode():
        reference = unit(hidden)
        with torch.autocast("cpu", dtype=dtype):
            mixed = unit(hidden.to(dtype))
    assert mixed.dtype == torch.float32
    assert (mixed - reference).abs().max() <= 0.05 * reference.abs().max()


def test_autocast_output_is_fp32_and_close(prepared, case_a):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = prepared(case_a["image"], case_a["mask"])
    assert mixed.dtype == torch.float32  # the output sigmoid runs in fp32
    hole = case_a["mask"].bool().expand_as(mixed)
    assert (mixed - case_a["raw_output"]).abs()[hole].mean() < HALF_PRECISION_HOLE_ERROR


# --- LFU ----------------------------------------------------------------------------------------------


@torch.no_grad()
def _randomise_batch_norms(model: torch.nn.Module) -> None:
    for norm in model.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
            norm.running_mean.uniform_(-0.2, 0.2)
            norm.running_var.uniform_(0.6, 1.5)


def test_lfu_variant_is_inferred_tiles_its_spectrum_and_folds():
    torch.manual_seed(0)
    config = {
        **SMALL_CONFIG,
        "ngf": 8,
        "n_blocks": 1,
        "max_features": 64,
        "global_channels": 48,
        "enable_lfu": True,
    }
    model = Lama(config).eval()
    _randomise_batch_norms(model)
    state_dict = model.state_dict()
    assert "model.5.conv1.ffc.convg2g.lfu.conv_layer.weight" in state_dict
    assert Lama.config_from_state_dict(state_dict) == LamaConfig(**config)
    spectral = model.model[5].conv1.ffc.convg2g
    local = spectral._local_fourier(torch.randn(1, spectral.fu.conv_layer.in_channels // 2, 6, 6))
    torch.testing.assert_close(local[..., :3, :3], local[..., 3:, 3:], rtol=0, atol=0)  # 2×2 tiling
    image, mask = torch.rand(1, 3, 48, 48), (torch.rand(1, 1, 48, 48) > 0.6).float()
    folded = copy.deepcopy(model)
    folded.prepare_for_inference()
    assert (_run(folded, image, mask) - _run(model, image, mask)).abs().max() <= SPEC_TOLERANCE


# --- intermediates ------------------------------------------------------------------------------------


def test_features_are_the_block_outputs_named_after_their_layers(prepared, case_b):
    features: dict[str, torch.Tensor] = {}
    raw = _run(prepared, case_b["image_padded"], case_b["mask_padded"], intermediates=features)
    stages = [f"model.{i}.local" for i in range(1, 7)] + [f"model.{i}.global" for i in range(4, 7)]
    assert set(features) == {f"feature.{s}" for s in [*stages, "model.8", "model.11", "model.14"]}
    with torch.inference_mode():
        # The last block's two branches, concatenated local-then-global, are the decoder's whole input.
        bottleneck = (features["feature.model.6.local"], features["feature.model.6.global"])
        decoded = prepared.model[7:](bottleneck)
        block = prepared.model[6]((features["feature.model.5.local"], features["feature.model.5.global"]))
    assert (decoded - raw).abs().max() <= 1e-6
    assert (block[1] - features["feature.model.6.global"]).abs().max() <= 1e-6


def test_energy_picture_shows_both_branches_on_one_scale(tmp_path):
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 8:24, 8:24] = 1
    features = {
        "feature.model.5.local": torch.full((1, 4, 4, 4), 2.0),  # energy 4 everywhere
        "feature.model.5.global": torch.zeros(1, 12, 4, 4),
        "feature.model.8": torch.ones(1, 3, 8, 8),
    }
    written = visualize.render_feature_energy(features, hole, tmp_path)
    assert [p.name for p in written] == ["feature_model.5.png", "feature_model.8.png"]
    picture = np.asarray(Image.open(written[0]))
    side, gap = visualize.ENERGY_TILE_SIDE, 4
    assert picture.shape[1] == 2 * side + gap
    bottom = picture.shape[0] - 1
    np.testing.assert_array_equal(picture[bottom, 0], visualize.ENERGY_RAMP[-1])  # the hottest colour
    np.testing.assert_array_equal(picture[bottom, side + gap], visualize.ENERGY_RAMP[0])  # no energy
    # The hole covers cells 1..2 of 4: its outline runs along the edge of those cells.
    top = picture.shape[0] - side
    np.testing.assert_array_equal(picture[top + side // 4, side // 2], visualize.HOLE_OUTLINE_COLOUR)
    np.testing.assert_array_equal(picture[top + side // 2, side // 2], visualize.ENERGY_RAMP[-1])


def test_intermediates_folder_has_raw_tensors_and_stats(prepared, case_b, tmp_path):
    features: dict[str, torch.Tensor] = {}
    _run(prepared, case_b["image_padded"], case_b["mask_padded"], intermediates=features)
    written = visualize.save_intermediates(tmp_path, features, case_b["mask_padded"], tensors="fp32")
    assert {p.name for p in written} >= {"intermediates.safetensors", "stats.json", "feature_model.5.png"}
    stats = json.loads((tmp_path / "stats.json").read_text())
    saved = load_file(tmp_path / "intermediates.safetensors")
    assert torch.equal(saved["feature.model.5.global"], features["feature.model.5.global"])
    local = features["feature.model.5.local"].mean(dim=1, keepdim=True)
    cells = visualize.hole_at(case_b["mask_padded"], tuple(local.shape[-2:]))
    inside = (local * cells).sum() / cells.sum()
    assert stats["layers"]["feature.model.5.local"]["mean_inside_hole"] == pytest.approx(
        inside.item(), rel=1e-5
    )


def test_declared_cost_counts_what_torch_counts_and_the_native_side(prepared):
    """The convolutions' count agrees with torch's FLOP counter (which skips FFTs); FFTs come on top."""
    height, width = 64, 96
    image, mask = torch.rand(1, 3, height, width), torch.ones(1, 1, height, width)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        prepared(image, mask)
    convolutions = 2 * prepared.macs_per_pixel() * height * width / 1e9
    assert convolutions == pytest.approx(counter.get_total_flops() / 1e9, rel=0.01)
    assert convolutions < prepared.cost_estimate(height, width) < 1.2 * convolutions
    assert prepared.native_side == 8 * prepared.training_size == 2048


# --- the full-size fixtures, where present --------------------------------------------------------------

FULL_SIZE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "lama"
"""ngf 16 and larger images (SPEC §7); not part of a clone of this repository."""


@pytest.mark.skipif(not (FULL_SIZE / "small.ckpt").is_file(), reason="full-size LaMa fixtures not present")
def test_full_size_fixture_matches_the_official_generator():
    model = network_from_checkpoint(read_checkpoint(FULL_SIZE / "small.ckpt"))
    assert model.config == LamaConfig(
        **{**SMALL_CONFIG, "ngf": 16, "max_features": 128, "global_channels": 96}
    )
    case = load_file(FULL_SIZE / "case_a.safetensors")
    assert (_run(model, case["image"], case["mask"]) - case["raw_output"]).abs().max() <= SPEC_TOLERANCE
