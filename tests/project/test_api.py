"""The public Python API: the example of its page (docs/api.md) runs as written, numpy in and numpy out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import inpaint_cli

ROOT = Path(__file__).resolve().parents[2]


def api_page_example() -> str:
    """The Python block of the documentation's "Python API" page."""
    page = ROOT.joinpath("docs", "api.md").read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", page, re.DOTALL).group(1)


def test_the_api_page_example_runs_offline_as_written(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        "INPAINT_HOME": str(tmp_path / "cache"),
        "INPAINT_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        [sys.executable, "-c", api_page_example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    models, plan, seconds = run.stdout.strip().splitlines()
    assert "'pconv-tiny'" in models and "'telea'" in models
    assert re.fullmatch(r"auto: .+; \d+ pass(es)?", plan)
    assert re.fullmatch(r"\{'plan': .*'network': .*'composite': .*\}", seconds)
    before = np.asarray(Image.open(ROOT / "examples/portrait_damaged.png"))
    hole = np.asarray(Image.open(ROOT / "examples/portrait_mask.png").convert("L")) > 127
    after = np.asarray(Image.open(tmp_path / "portrait_restored.png"))
    np.testing.assert_array_equal(after[~hole], before[~hole])
    assert np.abs(after[hole].astype(int) - before[hole]).mean() > 10  # the white damage is filled


def test_import_is_light_and_lists_what_it_exports():
    code = "import sys, inpaint_cli; print(sorted(m for m in ('torch', 'cv2') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
    assert {"available_models", "load_model", "read_image", "read_mask", "write_image"} <= set(
        dir(inpaint_cli)
    )
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        inpaint_cli.nothing  # noqa: B018


@pytest.fixture(scope="module")
def telea():
    return inpaint_cli.load_model("telea", device="cpu")


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((40, 60), np.uint8), ((40, 60, 1), np.uint16), ((40, 60, 3), np.uint8), ((40, 60, 4), np.uint16)],
)
def test_inpaint_keeps_shape_type_alpha_and_every_known_pixel(telea, shape, dtype):
    image = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 20:35] = 255
    filled = telea.inpaint(image, mask)
    assert filled.shape == image.shape and filled.dtype == image.dtype
    hole = mask > 127
    np.testing.assert_array_equal(filled[~hole], image[~hole])
    if shape[-1:] == (4,):
        np.testing.assert_array_equal(filled[..., 3], image[..., 3])  # alpha is never touched
    assert telea.last_result.plan.passes == 1 and telea.last_result.seconds["network"] > 0


def test_masks_bool_uint8_uint16_and_colour_mean_the_same_hole(telea):
    image = np.random.default_rng(1).integers(0, 255, (30, 30, 3), dtype=np.uint8)
    hole = np.zeros((30, 30), bool)
    hole[5:12, 8:20] = True
    expected = telea.inpaint(image, hole)
    for mask in (
        hole.astype(np.uint8) * 200,
        hole.astype(np.uint16) * 40000,
        np.repeat(hole[..., None], 3, -1) * np.uint8(255),
    ):
        np.testing.assert_array_equal(telea.inpaint(image, mask), expected)


def test_the_api_and_the_cli_fill_the_same_hole_from_the_same_mask(tmp_path, telea):
    """One mask rule: the (128, 127, 127) stroke has grey 127, not a hole, through the API as through
    `inpaint run` (the API once read it as grey 127.3, a hole); (128, 128, 127) is a hole in both."""
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    image = np.random.default_rng(2).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    mask = np.zeros((32, 40, 3), np.uint8)
    mask[4:10, 5:30] = (128, 127, 127)
    mask[18:26, 10:20] = (128, 128, 127)
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    done = CliRunner().invoke(
        app, ["run", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"), "--model", "telea"]
    )
    assert done.exit_code == 0, done.output
    by_cli = np.asarray(Image.open(tmp_path / "photo_inpainted.png"))
    by_array = telea.inpaint(image, mask)
    by_file = telea.inpaint(image, inpaint_cli.read_mask(tmp_path / "mask.png", size=(32, 40)))
    np.testing.assert_array_equal(by_array, by_cli)
    np.testing.assert_array_equal(by_file, by_cli)
    np.testing.assert_array_equal(by_cli[4:10, 5:30], image[4:10, 5:30])  # grey 127: not a hole
    assert (by_cli[18:26, 10:20] != image[18:26, 10:20]).any()


def test_options_progress_and_errors(telea):
    image = np.zeros((300, 300, 3), np.uint8)
    hole = np.zeros((300, 300), bool)
    hole[::50, :] = True
    seen = []
    telea.inpaint(
        image, hole, strategy="tile", tile_size=128, progress=lambda done, total: seen.append((done, total))
    )
    assert seen and seen[-1][0] == seen[-1][1] == telea.last_result.plan.passes > 1
    assert telea.plan(hole, strategy="crop").strategy.value == "crop"
    with pytest.raises(TypeError, match="unknown option 'tile'"):
        telea.inpaint(image, hole, tile=3)
    with pytest.raises(ValueError, match="mask is 20x10 but image is 300x300"):
        telea.inpaint(image, np.zeros((10, 20), bool))
    with pytest.raises(ValueError, match="uint8 or uint16 pixels"):
        telea.inpaint(image.astype(np.float32), hole)
    with pytest.raises(inpaint_cli.InpaintError, match="unknown model 'nosuch'"):
        inpaint_cli.load_model("nosuch")


def test_a_huge_dilation_is_bounded_and_a_large_one_is_a_disc(tmp_path):
    mask = np.zeros((200, 300), np.uint8)
    mask[100, 150] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    everything = inpaint_cli.read_mask(tmp_path / "m.png", size=(200, 300), dilate=100_000)  # no 40 GB kernel
    assert everything.all()
    disc = inpaint_cli.read_mask(tmp_path / "m.png", size=(200, 300), dilate=40)
    rows, cols = np.mgrid[0:200, 0:300]
    distance = np.hypot(rows - 100, cols - 150)
    assert disc[distance <= 39.5].all() and not disc[distance >= 40.5].any()


def test_a_weight_file_loads_by_path_and_its_family_is_recognised():
    model = inpaint_cli.load_model(ROOT / "tests/data/lama/small.ckpt", device="cpu", precision="fp32")
    assert model.inpainter.network.family == "lama" and model.name == "small.ckpt"
    assert repr(model) == "Model('small.ckpt', family='lama', device='cpu', precision='float32')"
    image = np.full((48, 64, 3), 128, np.uint8)
    hole = np.zeros((48, 64), bool)
    hole[10:30, 20:40] = True
    filled = model.inpaint(image, hole, strategy="full")
    np.testing.assert_array_equal(filled[~hole], image[~hole])
    assert model.last_result.plan.describe() == "full: whole image; 1 pass"
    with pytest.raises(inpaint_cli.InpaintError, match="family= is only for weight files"):
        inpaint_cli.load_model("telea", family="lama")
