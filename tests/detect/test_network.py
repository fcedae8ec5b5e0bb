"""The scratch detector network (`detect/network.py`): BOPBtL's keys, containers and parity in both
official modes, the tiled high-res mode, the bundled scratch-tiny and its post-processing."""

from __future__ import annotations

import csv
import json
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from detect_helpers import BUNDLED, DATA, SMALL, SMALL_LEGACY, smooth_photo
from PIL import Image
from safetensors.torch import load_file

from inpaint_cli.checkpoints.containers import read_checkpoint
from inpaint_cli.detect.network import (
    Mode,
    NetworkDetector,
    logits_of,
    network_size,
    official_run,
    scaled_min_area,
    tiled_probability,
    transform_size,
)
from inpaint_cli.errors import CheckpointError
from inpaint_cli.imaging import imageio
from inpaint_cli.imaging.pixels import to_rgb8
from inpaint_cli.models.scratch import ScratchConfig, ScratchUNet, config_from_state_dict

LOGIT_TOLERANCE = 1e-4
PROBABILITY_TOLERANCE = 1e-5
THRESHOLD = 0.4
OFFICIAL_CASES = [
    (Mode.FULL_SIZE, "case_b_full", "case_b_mask_full.png", "case_b_input_full.png"),
    (Mode.SCALE_256, "case_b_scale256", "case_b_mask_scale256.png", "case_b_input_scale256.png"),
]


def load_network(path: Path) -> tuple[ScratchUNet, ScratchConfig]:
    """A detector network and its config, as `detect --checkpoint` loads them."""
    network = NetworkDetector.from_file(path).network
    return network, network.config


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
    from inpaint_cli.detect.network import normalise_u8

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
    rgb = rng.integers(0, 256, (112, 168, 3), dtype=np.uint8)  # 168: padded to 176 at the right
    whole = tiled_probability(network, rgb, tile=1024, margin=0)
    errors = {}
    for margin in (16, 96):
        tiled = tiled_probability(network, rgb, tile=64, margin=margin)
        assert tiled.shape == (112, 168)
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


def test_scratch_tiny_finds_a_thin_scratch_on_a_large_smooth_picture() -> None:
    import cv2

    detector = NetworkDetector.from_file(BUNDLED)
    photo = smooth_photo(1200, 1200)
    assert detector.detect(photo).no_damage
    truth = np.zeros(photo.shape[:2], np.uint8)
    cv2.line(truth, (100, 300), (1100, 900), 1, 2)  # 2 px wide, 0.2 % of the pixels
    photo[truth > 0] = 250
    found = detector.detect(photo).mask
    hits = np.count_nonzero(found & (truth > 0))
    # Measured: recall 1.00, precision 0.54 (the mask is wider than the line; --dilate widens it anyway).
    assert hits / np.count_nonzero(truth) > 0.9 and hits / found.sum() > 0.4


def test_scratch_tiny_is_bundled_with_its_thresholds() -> None:
    from inpaint_cli.checkpoints.containers import read_checkpoint as read

    bundled = BUNDLED
    checkpoint = read(bundled)
    assert checkpoint.metadata["family"] == "scratch" and checkpoint.metadata["license"] == "Apache-2.0"
    detector = NetworkDetector.from_file(bundled)
    settings = (detector.threshold, detector.strong, detector.min_area, detector.reference_side)
    assert settings == (0.3, 0.7, 1280, 640)
    assert (detector.max_step_ratio, detector.min_surround_contrast) == (0.35, 25.0)
    assert detector.with_classical == 1  # the classical detector's findings are added (issue #25)
    assert detector.network.in_channels == 3 and bundled.stat().st_size < 3_000_000


def test_keep_regions_is_hysteresis_with_a_minimum_area() -> None:
    from inpaint_cli.detect.network import keep_regions

    probability = np.zeros((20, 40), np.float32)
    probability[2, 2:30] = 0.8  # a faint line...
    probability[2, 15] = 0.995  # ...with one sure pixel: kept whole
    probability[10, 2:30] = 0.8  # a faint line alone: dropped
    probability[15, 5:8] = 0.999  # sure, but only 3 pixels: dropped
    kept = keep_regions(probability >= 0.7, probability >= 0.99, min_area=20)
    assert kept[2, 2:30].all() and kept.sum() == 28


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"wf": 9}, "unsupported detector size"),
        ({"wf": 3.0}, "expected int"),
        ({"wf": 3, "layers": 4}, "unknown config field(s) layers"),
        ({"threshold": 1.5}, "unsupported threshold"),
        ("[]", "must be a JSON object"),
    ],
)
def test_a_stored_config_is_validated(raw: object, problem: str) -> None:
    from inpaint_cli.models.scratch import ScratchConfig

    with pytest.raises(CheckpointError, match=re.escape(problem)):
        ScratchConfig.from_json(raw)


def test_the_edge_check_drops_a_rim_between_two_backgrounds_and_keeps_a_scratch_on_one() -> None:
    from inpaint_cli.detect.network import drop_edges, edge_context

    rgb = np.full((120, 200, 3), 60, np.uint8)
    rgb[:, 100:] = 190  # two backgrounds, like the inside and the outside of a cup
    rgb[:, 99:101] = 250  # a bright rim on the boundary
    rgb[30, 10:90] = 250  # a 1-px scratch on one background
    mask = np.zeros(rgb.shape[:2], bool)
    mask[10:110, 99:101] = True
    mask[30, 10:90] = True
    kept = drop_edges(mask, rgb, 0.35)
    assert kept[30, 10:90].all() and not kept[:, 99:101].any()
    # The context computed once (calibration) gives the same answer.
    assert np.array_equal(drop_edges(mask, rgb, 0.35, edge_context(rgb)), kept)


def test_the_minimum_region_shrinks_with_the_square_of_a_small_pictures_short_side() -> None:
    assert scaled_min_area(640, (384, 384), 512) == 360  # 640 * (384 / 512)²
    assert scaled_min_area(640, (256, 410, 3), 512) == 160
    assert scaled_min_area(640, (640, 1024), 512) == 640  # at or above the reference: as calibrated
    assert scaled_min_area(640, (3000, 4500), 512) == 640  # never more on large scans
    assert scaled_min_area(640, (100, 100), 0) == 640  # no reference: absolute
    assert scaled_min_area(640, (8, 8), 512) == 1


class _Painted(NetworkDetector):
    """A detector's post-processing over a probability painted by the test, not the network's."""

    painted: np.ndarray

    def probability(self, pixels: np.ndarray, mode: Mode) -> np.ndarray:
        return self.painted


def test_a_scratch_is_kept_on_a_small_print_and_the_same_area_is_noise_on_a_large_one() -> None:
    import cv2

    # The area rule alone (no shape rule, no classical): regions of 1280 px, fewer below a short side
    # of 640 px, as the bundled network's own settings.
    network = ScratchUNet({"in_channels": 3, "wf": 0, "depth": 1})
    rules = NetworkDetector(
        network, "area rule", threshold=0.3, strong=0.7, min_area=1280, reference_side=640
    )
    detector = _Painted(**{f: getattr(rules, f) for f in rules.__dataclass_fields__})

    def found(side: int, length: int) -> int:
        photo = smooth_photo(side, side)
        probability = np.zeros((side, side), np.float32)
        cv2.line(probability, (20, 40), (20 + length, 40), 0.999, 3)  # a 3-px scratch the network is sure of
        photo[probability > 0] = 250
        detector.painted = probability
        return int(detector.detect(photo).mask.sum())

    small = scaled_min_area(rules.min_area, (256, 256), rules.reference_side)
    assert rules.reference_side > 256 and small < rules.min_area
    # Just above the small print's minimum region: a scratch there, kept; the same pixels on a
    # 1024-px picture are under the calibrated minimum and dropped as noise.
    length = small // 3 + 2
    assert found(256, length) >= small
    assert found(1024, length) == 0
    # Under the small print's own minimum: a speck, dropped there too.
    assert found(256, max(1, small // 6)) == 0


def test_the_surround_check_drops_a_patch_of_cloud_and_keeps_a_spot_that_differs_all_round() -> None:
    from inpaint_cli.detect.network import drop_plain_blobs

    rng = np.random.default_rng(3)
    rgb = np.empty((160, 240, 3), np.uint8)
    rgb[:] = (60, 110, 190)  # blue sky
    rgb[:, :120] = (228, 230, 232)  # a white cloud on the left
    rgb[40:70, 170:200] = (235, 232, 225)  # a pale spot on the sky: differs from everything around
    grain = rng.normal(0, 8, rgb.shape[:2])[..., None]
    rgb = np.clip(rgb + grain, 0, 255).astype(np.uint8)  # grain is not contrast
    mask = np.zeros(rgb.shape[:2], bool)
    mask[20:50, 95:125] = True  # a patch of the cloud at its edge, as on the held-out Kite photo
    mask[40:70, 170:200] = True
    kept = drop_plain_blobs(mask, rgb, 20.0)
    assert kept[40:70, 170:200].all() and not kept[20:50, 95:125].any()
    # Thin regions are the edge check's: never judged here.
    line = np.zeros_like(mask)
    line[10, 5:100] = True
    assert drop_plain_blobs(line, rgb, 20.0)[10, 5:100].all()
