"""`--save-intermediates`: pictures and stats by default, raw tensors on request, nothing for none."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from inpaint_cli.review import visualize


def gates() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 16:40, 20:44] = 1
    values = {"gate.conv1": torch.rand(1, 6, 32, 32), "gate.conv2": torch.rand(1, 4, 16, 16)}
    return values, hole


def test_pictures_and_stats_by_default_and_no_raw_tensors(tmp_path):
    values, hole = gates()
    panel = Image.new("RGB", (8, 8))
    written = visualize.save_intermediates(tmp_path / "photo", values, hole, panel)
    assert [path.name for path in written] == [
        "stats.json",
        "gates_conv1.png",
        "gates_conv2.png",
        "panel.png",
    ]
    assert all(path.is_file() for path in written)
    assert not (tmp_path / "photo" / "intermediates.safetensors").exists()
    stats = json.loads((tmp_path / "photo" / "stats.json").read_text())
    assert set(stats["layers"]) == {"gate.conv1", "gate.conv2"} and stats["hole_fraction"] == 24 * 24 / 64**2


@pytest.mark.parametrize(("tensors", "dtype"), [("fp32", torch.float32), ("fp16", torch.float16)])
def test_raw_tensors_on_request_at_full_or_half_precision(tmp_path, tensors, dtype):
    values, hole = gates()
    written = visualize.save_intermediates(tmp_path, values, hole, tensors=tensors)
    assert written[1] == tmp_path / "intermediates.safetensors"
    saved = load_file(tmp_path / "intermediates.safetensors")
    assert {name: tensor.dtype for name, tensor in saved.items()} == dict.fromkeys(values, dtype)
    tolerance = 0 if dtype == torch.float32 else 2**-11  # fp16 keeps 11 significant bits in [0, 1]
    torch.testing.assert_close(saved["gate.conv1"].float(), values["gate.conv1"], atol=tolerance, rtol=0)


def test_half_precision_halves_the_raw_file(tmp_path):
    values, hole = gates()
    visualize.save_intermediates(tmp_path / "a", values, hole, tensors="fp32")
    visualize.save_intermediates(tmp_path / "b", values, hole, tensors="fp16")
    full = (tmp_path / "a" / "intermediates.safetensors").stat().st_size
    half = (tmp_path / "b" / "intermediates.safetensors").stat().st_size
    assert half < 0.55 * full


def test_a_model_without_intermediates_writes_nothing(tmp_path):
    hole = torch.ones(1, 1, 8, 8)
    written = visualize.save_intermediates(
        tmp_path / "telea", {}, hole, Image.new("RGB", (8, 8)), tensors="fp32"
    )
    assert written == [] and not (tmp_path / "telea").exists()
    with pytest.raises(ValueError, match="tensors must be one of none, fp16, fp32"):
        visualize.save_intermediates(tmp_path, {}, hole, tensors="int8")


def test_saving_intermediates_leaves_the_output_bytes_as_they_were(tmp_path):
    """Issue 30: with --save-intermediates pconv-tiny once filled a 1200×750 photo with a torn corner by
    another plan (41,302 pixels differed). Now both runs write the same bytes (so a batch rerun that
    adds intermediates rewrites outputs unchanged), and the intermediates are of the torn corner's box."""
    from mask_helpers import torn_photo
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    damaged, hole, _ = torn_photo()
    Image.fromarray(damaged).save(tmp_path / "print.png")
    Image.fromarray(hole).save(tmp_path / "mask.png")
    common = [
        "run",
        str(tmp_path / "print.png"),
        "--mask",
        str(tmp_path / "mask.png"),
        "--model",
        "pconv-tiny",
    ]
    common += ["--device", "cpu", "--precision", "fp32"]
    plain = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "plain.png")])
    assert plain.exit_code == 0, plain.output
    folder = tmp_path / "inter"
    looked = CliRunner().invoke(
        app, [*common, "-o", str(tmp_path / "looked.png"), "--save-intermediates", folder]
    )
    assert looked.exit_code == 0, looked.output
    assert (tmp_path / "looked.png").read_bytes() == (tmp_path / "plain.png").read_bytes()
    stats = json.loads((folder / "print" / "stats.json").read_text())
    assert stats["box"]["right"] == 1200 and stats["box"]["top"] == 0  # the torn corner's box
