"""Damage detection: BOPBtL's scratch detector (keys, containers, parity in both official modes),
the tiled high-res mode, the classical detector, and the `detect` / `run --mask auto` commands."""

from __future__ import annotations

import csv
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from inpaint_cli import imageio
from inpaint_cli.checkpoints import read_checkpoint
from inpaint_cli.detect import (
    Mode,
    NetworkDetector,
    load_network,
    logits_of,
    network_size,
    official_run,
    tiled_probability,
    to_rgb8,
    transform_size,
)
from inpaint_cli.errors import CheckpointError
from inpaint_cli.models.scratch import ScratchUNet, config_from_state_dict

DATA = Path(__file__).resolve().parent / "data" / "scratch"
SMALL = DATA / "small_detection.pt"
SMALL_LEGACY = DATA / "small_detection_legacy.pt"
LOGIT_TOLERANCE = 1e-4
PROBABILITY_TOLERANCE = 1e-5
THRESHOLD = 0.4
OFFICIAL_CASES = [
    (Mode.FULL_SIZE, "case_b_full", "case_b_mask_full.png", "case_b_input_full.png"),
    (Mode.SCALE_256, "case_b_scale256", "case_b_mask_scale256.png", "case_b_input_scale256.png"),
]


def _key_table(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize(("table", "wf"), [("keys_detection.tsv", 6), ("keys_small.tsv", 2)])
def test_network_has_exactly_the_official_keys_shapes_and_dtypes(table: str, wf: int) -> None:
    rows = _key_table(table)
    with torch.device("meta"):
        network = ScratchUNet({"wf": wf})
    state = network.state_dict()
    assert list(state) == [row["key"] for row in rows]
    for row in rows:
        assert list(state[row["key"]].shape) == json.loads(row["shape"]), row["key"]
        assert str(state[row["key"]].dtype) == f"torch.{row['dtype']}", row["key"]
    if wf == 6:
        assert sum(p.numel() for p in network.parameters()) == 37_626_177


def test_official_architecture_is_inferred_from_the_key_table_and_loads_strictly() -> None:
    rows = _key_table("keys_detection.tsv")
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    with torch.device("meta"):
        state = {r["key"]: torch.empty(json.loads(r["shape"]), dtype=dtypes[r["dtype"]]) for r in rows}
        config = config_from_state_dict(state)
        network = ScratchUNet(config)
    assert (config.in_channels, config.out_channels, config.depth, config.wf) == (1, 1, 4, 6)
    network.load_state_dict(state, strict=True, assign=True)


@pytest.mark.parametrize("path", [SMALL, SMALL_LEGACY], ids=["zip", "legacy"])
def test_both_torch_containers_load_model_state_only(path: Path) -> None:
    network, config = load_network(path)
    official = json.loads((DATA / "small_config.json").read_text())
    assert {key: official[key] for key in ("in_channels", "out_channels", "depth", "wf")} == {
        key: getattr(config, key) for key in ("in_channels", "out_channels", "depth", "wf")
    }
    assert len(network.state_dict()) == 156
    case = load_file(DATA / "case_a.safetensors")
    logits = logits_of(network, case["input"])
    assert torch.allclose(logits, case["logits"], rtol=1e-4, atol=LOGIT_TOLERANCE)
    assert (torch.sigmoid(logits) - case["prob"]).abs().max() < PROBABILITY_TOLERANCE


def test_training_state_beside_model_state_is_ignored(tmp_path: Path) -> None:
    state = read_checkpoint(SMALL).state_dict
    path = tmp_path / "FT_Epoch_latest.pt"
    optimizer = {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 1e-4}]}
    torch.save({"epoch": 7, "model_state": state, "optimizer_state": optimizer}, path)
    network, _ = load_network(path)
    assert torch.equal(network.state_dict()["last.1.bias"], state["last.1.bias"])


def test_missing_or_extra_keys_are_one_error_naming_them(tmp_path: Path) -> None:
    state = dict(read_checkpoint(SMALL).state_dict)
    del state["up_path.1.conv_block.block.5.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save({"model_state": state}, path)
    with pytest.raises(CheckpointError) as caught:
        load_network(path)
    message = caught.value.one_line()
    assert message.startswith(str(path))
    assert "missing up_path.1.conv_block.block.5.weight" in message and "unexpected extra.weight" in message


def test_a_checkpoint_that_runs_code_is_refused(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model_state": {"x": Exploit()}}))
    with pytest.raises(CheckpointError, match="refus"):
        load_network(path)


def test_a_wrong_blur_filter_is_refused(tmp_path: Path) -> None:
    state = dict(read_checkpoint(SMALL).state_dict)
    state["down_sample.2.4.filt"] = state["down_sample.2.4.filt"] * 2
    path = tmp_path / "blur.pt"
    torch.save({"model_state": state}, path)
    with pytest.raises(CheckpointError, match=r"down_sample\.2\.4\.filt is not the fixed"):
        load_network(path)


def test_sizes_match_the_original_functions() -> None:
    for case in json.loads((DATA / "tables.json").read_text())["sizes"]:
        width, height = case["W"], case["H"]
        for mode in (Mode.FULL_SIZE, Mode.SCALE_256):
            expected = case[mode.value]
            transform = transform_size(width, height, mode)
            assert list(transform) == expected["transform_WxH"], (width, height, mode)
            assert list(network_size(transform[1], transform[0])) == expected["net_input_HxW"]


def test_normalisation_matches_the_lookup_table() -> None:
    from inpaint_cli.detect import normalise_u8

    table = json.loads((DATA / "tables.json").read_text())["norm_lut_float32"]
    values = normalise_u8(np.arange(256, dtype=np.uint8)[None])
    assert values.flatten().tolist() == table


@pytest.mark.parametrize(("mode", "fixture", "mask_file", "input_file"), OFFICIAL_CASES)
@pytest.mark.parametrize("checkpoint", [SMALL, SMALL_LEGACY], ids=["zip", "legacy"])
def test_official_modes_match_the_original_from_the_png(
    mode: Mode, fixture: str, mask_file: str, input_file: str, checkpoint: Path
) -> None:
    network, _ = load_network(checkpoint)
    reference = load_file(DATA / f"{fixture}.safetensors")
    pixels = imageio.read_image(DATA / "case_b_image.png").pixels
    run = official_run(network, to_rgb8(pixels), mode)
    expected_input = np.asarray(Image.open(DATA / input_file).convert("RGB"))
    assert np.array_equal(run.resized_rgb, expected_input)
    assert np.array_equal(run.gray_u8, reference["gray_u8"][0, 0].numpy())
    assert (run.net_input - reference["net_input"]).abs().max() <= 2e-6
    assert torch.allclose(run.logits, reference["logits"], rtol=1e-4, atol=LOGIT_TOLERANCE)
    assert (run.prob_up - reference["prob_up"]).abs().max() < PROBABILITY_TOLERANCE
    written = np.asarray(Image.open(DATA / mask_file).convert("L")) == 255
    ours = (run.prob_up[0, 0] >= THRESHOLD).numpy()
    borderline = (reference["prob_up"][0, 0] - THRESHOLD).abs().numpy() < PROBABILITY_TOLERANCE
    assert written.shape == ours.shape
    assert not np.any((written != ours) & ~borderline)
    assert 0.15 < ours.mean() < 0.25  # the fixture's 20.3 %


def test_detector_masks_come_back_at_the_image_size() -> None:
    detector = NetworkDetector.from_file(SMALL)
    pixels = imageio.read_image(DATA / "case_b_image.png").pixels
    full = detector.detect(pixels, Mode.FULL_SIZE)
    assert full.mask.shape == full.probability.shape == (300, 420)
    run = official_run(detector.network, to_rgb8(pixels), Mode.FULL_SIZE)
    # 304 rows of the transform nearest-resized onto 300: row o takes floor(o * 304/300).
    rows = (np.arange(300) * 304 / 300).astype(int)
    cols = (np.arange(420) * 416 / 420).astype(int)
    assert np.array_equal(full.probability, run.prob_up[0, 0].numpy()[rows][:, cols])


def test_tiles_reproduce_one_pass_given_enough_context() -> None:
    network, _ = load_network(SMALL)
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (160, 232, 3), dtype=np.uint8)  # 232: padded to 240 at the right
    whole = tiled_probability(network, rgb, tile=1024, margin=0)
    errors = {}
    for margin in (16, 96):
        tiled = tiled_probability(network, rgb, tile=64, margin=margin)
        assert tiled.shape == (160, 232)
        errors[margin] = np.abs(whole - tiled)
    # Tiles start on the downsampling grid; with 96 px of context the seams vanish.
    assert errors[96].mean() < 1e-3 and np.quantile(errors[96], 0.99) < 1e-2
    assert errors[16].mean() > 10 * errors[96].mean()


def test_checkpoint_zip_root_name_is_not_hard_coded(tmp_path: Path) -> None:
    renamed = tmp_path / "renamed.pt"
    with zipfile.ZipFile(SMALL) as source, zipfile.ZipFile(renamed, "w") as target:
        for item in source.infolist():
            target.writestr(item.filename.replace("small_detection/", "anything/", 1), source.read(item))
    network, _ = load_network(renamed)
    assert network.depth == 4
