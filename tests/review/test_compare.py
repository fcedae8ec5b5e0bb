"""Model comparison: PSNR/SSIM numbers, the crop and the grid's geometry, models loaded once, folder
means, and `inpaint compare` (grid, table, JSON, errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inpaint_cli.batch.kinds import compare as compare_kind
from inpaint_cli.cli.app import app
from inpaint_cli.errors import UsageError
from inpaint_cli.options import DEFAULT_COMPARE_MODELS
from inpaint_cli.review import comparison, metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def picture(seed: int = 0, shape: tuple[int, ...] = (64, 80, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 200, shape, dtype=np.uint8)


def square_hole(shape: tuple[int, int] = (64, 80)) -> np.ndarray:
    hole = np.zeros(shape, dtype=bool)
    hole[16:32, 20:40] = True  # 320 of 5120 pixels: 1/16
    return hole


# --- metrics --------------------------------------------------------------------------------------------


def test_psnr_of_a_known_perturbation() -> None:
    clean, hole = picture(), square_hole()
    shifted = clean.copy()
    shifted[hole] += 10  # squared error 100 on every hole sample
    assert metrics.psnr(shifted, clean, hole) == pytest.approx(10 * math.log10(255**2 / 100))  # 28.1308
    assert metrics.psnr(shifted, clean) == pytest.approx(10 * math.log10(255**2 / (100 / 16)))  # 40.17
    deep = clean.astype(np.uint16) * 257
    deep_shifted = shifted.astype(np.uint16) * 257
    assert metrics.psnr(deep_shifted, deep, hole) == pytest.approx(28.1308, abs=1e-4)  # peak 65535


def test_identical_images_score_inf_and_one() -> None:
    clean, hole = picture(), square_hole()
    assert metrics.psnr(clean, clean, hole) == math.inf and metrics.psnr(clean, clean) == math.inf
    assert metrics.ssim(clean, clean) == pytest.approx(1.0) and metrics.ssim(
        clean, clean, hole
    ) == pytest.approx(1.0)
    assert math.isnan(metrics.psnr(clean, clean, np.zeros_like(hole)))


def test_ssim_of_flat_images_is_the_luminance_term() -> None:
    """Constant images have no variance: SSIM = (2xy + C1) / (x² + y² + C1) with C1 = (0.01 * 255)²."""
    first, second = np.full((32, 32), 100, np.uint8), np.full((32, 32), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert metrics.ssim(first, second) == pytest.approx(
        (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), rel=1e-9
    )


def test_ssim_falls_with_noise_and_is_symmetric() -> None:
    clean = picture(shape=(64, 64))
    rng = np.random.default_rng(1)
    scores = []
    for amplitude in (2, 10, 40):
        noisy = np.clip(clean + rng.normal(0, amplitude, clean.shape), 0, 255).astype(np.uint8)
        scores.append(metrics.ssim(noisy, clean))
        assert metrics.ssim(clean, noisy) == pytest.approx(scores[-1])
    assert 1 > scores[0] > scores[1] > scores[2] > 0


def test_scores_need_images_of_one_shape() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(picture(), picture(shape=(64, 81, 3)))


# --- the crop and the grid --------------------------------------------------------------------------------


def test_crop_box_is_the_hole_with_a_margin_kept_inside_the_image() -> None:
    hole = np.zeros((100, 200), dtype=bool)
    hole[10:20, 30:50] = True
    assert comparison.crop_box(hole) == (0, 6, 58, 68)  # rows -14..44 moved inside: 0..58
    hole[:] = False
    hole[40:60, 90:110] = True
    assert comparison.crop_box(hole, margin=5) == (35, 85, 30, 30)


def test_crop_box_of_a_large_or_scattered_hole_zooms_on_the_largest_region() -> None:
    hole = np.zeros((1000, 1000), dtype=bool)
    hole[700:900, 100:900] = True  # 800 px wide: cut to 384 around its centre (x 499.5); 248 px high
    assert comparison.crop_box(hole) == (676, 308, 248, 384)
    scattered = np.zeros((384, 384), dtype=bool)
    scattered[5, :] = scattered[:, 5] = True  # thin scratches across everything...
    scattered[300:340, 300:340] = True  # ...and one torn patch: a 192 px window on the patch
    assert comparison.crop_box(scattered) == (192, 192, 192, 192)


def fake_comparison(original: bool = True) -> comparison.Comparison:
    """A comparison of two 'models' on a 300×400 image: `copy` returns the original, `offset` adds 10."""
    clean = picture(shape=(300, 400, 3))
    hole = np.zeros((300, 400), dtype=bool)
    hole[100:140, 200:260] = True
    damaged = clean.copy()
    damaged[hole] = 255

    def offset(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
        filled = pixels.copy()
        filled[hole] = clean[hole] + 10
        return filled

    fillers = {"copy": lambda pixels, hole: clean.copy(), "offset": offset}
    return comparison.run_comparison("scan.png", damaged, hole, fillers, clean if original else None)


def test_grid_geometry_labels_and_full_size_crops() -> None:
    compared = fake_comparison()
    grid = comparison.make_grid(compared)
    top, left, height, width = grid.crop
    assert (top, left, height, width) == (76, 176, 88, 108)  # the 40×60 hole plus 24 px each side
    column = comparison.COLUMN_MIN  # the crop (108 px) is narrower than a column
    assert grid.labels == ["input", "original", "copy", "offset"]
    whole_height = round(300 * column / 400)  # 192
    expected = (
        4 * (column + comparison.GAP) - comparison.GAP,
        comparison.LABEL_HEIGHT + whole_height + comparison.GAP + height,
    )
    assert grid.picture.size == expected
    pixels = np.asarray(grid.picture)
    for index, (label, result) in enumerate(zip(grid.labels[2:], compared.results, strict=True)):
        x, y, cell_width, cell_height = grid.cells[f"{label}/crop"]
        assert (x, cell_width, cell_height) == ((index + 2) * (column + comparison.GAP), width, height)
        np.testing.assert_array_equal(pixels[y : y + height, x : x + width], result.pixels[76:164, 176:284])
        caption = pixels[: comparison.LABEL_HEIGHT, x : x + column]
        assert (caption < 100).sum() > 50  # the caption is written (dark text on white)
        assert grid.cells[f"{label}/whole"][2:] == (column, whole_height)
    input_crop = pixels[grid.cells["input/crop"][1] :, :width][:height]
    assert (input_crop[30:60, 40:70, 0] > input_crop[30:60, 40:70, 1]).all()  # the hole is marked red


def test_scores_and_json_of_a_comparison() -> None:
    compared = fake_comparison()
    copy, offset = compared.rows()
    assert copy["psnr_hole"] == math.inf and copy["ssim_whole"] == pytest.approx(1.0)
    assert offset["psnr_hole"] == pytest.approx(28.1308, abs=1e-4)
    assert offset["psnr_whole"] == pytest.approx(10 * math.log10(255**2 / (100 * 2400 / 120000)))
    assert 0 < offset["ssim_hole"] < offset["ssim_whole"] < 1
    data = compared.as_dict()
    assert data["size"] == [400, 300] and data["hole_fraction"] == 0.02
    assert [row["model"] for row in data["models"]] == ["copy", "offset"]
    assert data["models"][0]["psnr_hole"] is None  # inf has no JSON spelling
    assert data["models"][1]["psnr_hole"] == 28.131
    json.dumps(data, allow_nan=False)
    unscored = fake_comparison(original=False)
    assert unscored.results[0].scores is None
    assert comparison.make_grid(unscored).labels == ["input", "copy", "offset"]


def test_compare_loads_each_model_once_and_refuses_unknown_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from inpaint_cli import api

    loads: list[str] = []
    real = api.load_model

    def counting(name, **options):
        loads.append(name)
        return real(name, **options)

    monkeypatch.setattr(api, "load_model", counting)
    clean, hole = picture(), square_hole()
    damaged = clean.copy()
    damaged[hole] = 0
    result = comparison.compare(damaged, hole, ["telea", "ns"], original=clean, device="cpu")
    assert loads == ["telea", "ns"]
    assert [r.model for r in result.results] == ["telea", "ns"]
    for run in result.results:
        np.testing.assert_array_equal(run.pixels[~hole], damaged[~hole])  # classical fills keep the rest
        assert 10 < run.scores.psnr_hole < 40 and run.seconds > 0
    with pytest.raises(UsageError, match="unknown model 'nosuch'"):
        comparison.compare(damaged, hole, ["telea", "nosuch"])
    with pytest.raises(UsageError, match="model named twice: ns"):
        comparison.compare(damaged, hole, ["ns", "ns"])


def test_the_public_api_compares() -> None:
    import inpaint_cli

    clean, hole = picture(), square_hole()
    damaged = clean.copy()
    damaged[hole] = 0
    result = inpaint_cli.compare(damaged, hole, ["telea"], original=clean, device="cpu")
    assert [row["model"] for row in result.rows()] == ["telea"] and result.rows()[0]["psnr_hole"] > 10
    assert inpaint_cli.make_grid(result).labels == ["input", "original", "telea"]
    assert inpaint_cli.compare_folder is compare_kind.compare_folder


def write_folder(root: Path) -> None:
    """images/ with masks/ and originals/: a.png and b.png comparable, c.png without an original."""
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        clean, hole = picture(seed), square_hole()
        damaged = clean.copy()
        damaged[hole] = 0
        for folder, pixels in (
            ("images", damaged),
            ("masks", hole.astype(np.uint8) * 255),
            ("originals", clean),
        ):
            (root / folder).mkdir(exist_ok=True)
            if not (folder == "originals" and name == "c"):
                Image.fromarray(pixels).save(root / folder / f"{name}.png")


def test_folder_mode_gives_the_mean_per_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_folder(tmp_path)
    originals = {name: np.asarray(Image.open(tmp_path / "originals" / f"{name}.png")) for name in "ab"}

    def fake_models(names, **options):
        def exact(pixels, hole):  # the original itself: identical pixels
            return next(o for o in originals.values() if np.array_equal(o[~hole], pixels[~hole])).copy()

        def plus(amount):
            def fill(pixels, hole):
                filled = exact(pixels, hole)
                filled[hole] += amount
                return filled

            return fill

        return {"exact": exact, "plus5": plus(5), "plus10": plus(10)}, {
            "exact": 0.1,
            "plus5": 0.2,
            "plus10": 0.3,
        }

    monkeypatch.setattr(comparison, "load_models", fake_models)
    result = compare_kind.compare_folder(
        tmp_path / "images",
        tmp_path / "masks",
        tmp_path / "originals",
        ["exact", "plus5", "plus10"],
        grids=tmp_path / "grids",
    )
    assert [Path(c.name).name for c in result.comparisons] == ["a.png", "b.png"]
    assert result.comparisons[0].results[0].pixels is None  # dropped once the grid was drawn
    assert sorted(path.name for path in (tmp_path / "grids").iterdir()) == ["a_compare.png", "b_compare.png"]
    assert len(result.failures) == 1 and result.failures[0].endswith(
        "c.png: no original found (looked in %s)" % (tmp_path / "originals")
    )
    means = {row["model"]: row for row in result.means()}
    assert means["exact"]["psnr_hole"] == math.inf and means["exact"]["images"] == 2
    assert means["plus5"]["psnr_hole"] == pytest.approx(10 * math.log10(255**2 / 25))
    assert means["plus10"]["psnr_hole"] == pytest.approx(28.1308, abs=1e-4)
    assert means["plus10"]["load_seconds"] == 0.3
    data = result.as_dict()
    assert [row["model"] for row in data["means"]] == ["exact", "plus5", "plus10"]
    assert len(data["images"]) == 2 and data["failures"] == result.failures


# --- the command --------------------------------------------------------------------------------------------


def write_single(root: Path) -> tuple[Path, Path, Path]:
    clean, hole = picture(shape=(96, 128, 3)), np.zeros((96, 128), dtype=bool)
    hole[40:60, 50:90] = True
    damaged = clean.copy()
    damaged[hole] = 255
    paths = root / "scan.png", root / "scan_mask.png", root / "clean.png"
    for path, pixels in zip(paths, (damaged, hole.astype(np.uint8) * 255, clean), strict=True):
        Image.fromarray(pixels).save(path)
    return paths


def test_compare_command_writes_grid_table_and_json(tmp_path: Path) -> None:
    image, mask, clean = write_single(tmp_path)
    grid, table = tmp_path / "grid.png", tmp_path / "scores.json"
    args = ["compare", str(image), "--mask", str(mask), "--models", "telea,ns", "--original", str(clean)]
    result = CliRunner().invoke(app, [*args, "-o", str(grid), "--json", str(table), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "PSNR hole" in result.stdout and "telea" in result.stdout and "ns" in result.stdout
    with Image.open(grid) as drawn:  # 4 columns of 256 px; the crop is the 40×20 hole plus 24 px
        assert drawn.size == (4 * 256 + 3 * 6, comparison.LABEL_HEIGHT + 192 + 6 + 68)
    data = json.loads(table.read_text())  # the one report format, kind compare
    assert (data["format"], data["version"], data["kind"], data["models"]) == (
        "inpaint-report",
        2,
        "compare",
        ["telea", "ns"],
    )
    (record,) = data["inputs"]
    assert (
        record["image"] == str(image) and record["output"] == str(grid) and record["written"] == [str(grid)]
    )
    assert [row["model"] for row in record["models"]] == ["telea", "ns"]
    # Noise cannot be predicted: the fills score about 13 dB in the hole, far below the whole image.
    assert all(10 < row["psnr_hole"] < 20 < row["psnr_whole"] for row in record["models"])
    assert all(0 < row["ssim_hole"] < row["ssim_whole"] < 1 for row in record["models"])
    assert [row["model"] for row in data["means"]] == ["telea", "ns"] and record["best"].startswith("best: ")
    result = CliRunner().invoke(app, [*args, "--json", "-", "--device", "cpu"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["inputs"][0]["image"] == str(image)
    assert (tmp_path / "scan_compare.png").is_file()  # the default grid beside the image


def test_compare_command_errors(tmp_path: Path) -> None:
    image, mask, _ = write_single(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(image), "--mask", str(mask), "--models", "telea,nosuch"])
    assert result.exit_code == 2 and "error: unknown model 'nosuch'" in result.output
    before = image.read_bytes()
    result = runner.invoke(
        app, ["compare", str(image), "--mask", str(mask), "--models", "telea", "-o", str(image)]
    )
    assert (
        result.exit_code == 2
        and f"{image}: is the image and cannot be the grid (choose another -o)" in result.output
    )
    assert image.read_bytes() == before
    Image.new("RGB", (10, 10)).save(tmp_path / "small.png")
    result = runner.invoke(
        app,
        [
            "compare",
            str(image),
            "--mask",
            str(mask),
            "--models",
            "telea",
            "--original",
            str(tmp_path / "small.png"),
        ],
    )
    assert result.exit_code == 1 and "original is (10, 10, 3) but image is (96, 128, 3)" in result.output
    result = runner.invoke(app, ["compare", str(tmp_path), "--mask", str(tmp_path), "--models", "telea"])
    assert result.exit_code == 2 and "a folder needs --original FOLDER" in result.output


def test_compare_command_on_a_folder(tmp_path: Path) -> None:
    write_folder(tmp_path)
    grids = tmp_path / "images" / "grids"  # inside the input folder: never walked as images
    folders = ["--mask", str(tmp_path / "masks"), "--original", str(tmp_path / "originals")]
    args = ["compare", str(tmp_path / "images"), *folders, "--models", "telea,ns", "-o", str(grids), "-r"]
    for again in ([], ["--overwrite"]):
        result = CliRunner().invoke(app, [*args, "--json", "-", *again])
        assert result.exit_code == 1, result.output  # c.png failed: it has no original
        data = json.loads(result.stdout)
        assert [row["model"] for row in data["means"]] == ["telea", "ns"] and data["means"][0]["images"] == 2
        assert "c.png: no original found" in result.stderr
        assert sorted(path.name for path in grids.iterdir()) == ["a_compare.png", "b_compare.png"]


def test_grey_and_16_bit_images_compare() -> None:
    clean = picture(shape=(64, 80, 1)).astype(np.uint16) * 257
    hole = square_hole()
    damaged = clean.copy()
    damaged[hole] = 0
    result = comparison.compare(damaged, hole, ["telea"], original=clean, device="cpu")
    (row,) = result.rows()
    assert 10 < row["psnr_hole"] < 40 and 0 < row["ssim_hole"] < 1  # scored on the 16-bit scale
    grid = comparison.make_grid(result)
    assert grid.picture.mode == "RGB" and grid.labels == ["input", "original", "telea"]


@pytest.mark.slow
def test_bundled_models_on_the_example() -> None:
    """The README's comparison: every offline model on the shipped example, against its original."""
    result = comparison.compare(
        EXAMPLES / "portrait_damaged.png",
        EXAMPLES / "portrait_mask.png",
        original=EXAMPLES / "portrait_original.png",
        device="cpu",
    )
    rows = {row["model"]: row for row in result.rows()}
    assert list(rows) == list(DEFAULT_COMPARE_MODELS)
    for row in rows.values():  # all fill plausibly: far better than the damaged input, far from perfect
        assert 19 < row["psnr_hole"] < 26 and 0.7 < row["ssim_hole"] < 0.9 and row["psnr_whole"] > 30
    damaged = metrics.psnr(result.pixels, result.original, result.hole)
    assert damaged < 12


def test_compare_never_writes_over_an_input_nor_an_existing_grid(tmp_path: Path) -> None:
    """#27: `compare dmg --mask masks --original clean --models telea --json masks/a.png` wrote JSON
    over the mask; `compare` rewrote an existing `<stem>_compare.png` without `--overwrite`."""
    write_folder(tmp_path)
    mask = tmp_path / "masks" / "a.png"
    before = mask.read_bytes()
    folders = [
        str(tmp_path / "images"),
        "--mask",
        str(tmp_path / "masks"),
        "--original",
        str(tmp_path / "originals"),
    ]
    result = CliRunner().invoke(app, ["compare", *folders, "--models", "telea", "--json", str(mask)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {mask}: is the mask of {tmp_path / 'images' / 'a.png'} and cannot be the JSON report "
        "(choose another --json)"
    )
    assert mask.read_bytes() == before
    image, single_mask, _ = write_single(tmp_path)
    grid = tmp_path / "scan_compare.png"
    grid.write_bytes(b"a picture of mine")
    result = CliRunner().invoke(app, ["compare", str(image), "--mask", str(single_mask), "--models", "telea"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {grid}: grid exists (use --overwrite to replace it)"
    assert grid.read_bytes() == b"a picture of mine"
    args = ["compare", str(image), "--mask", str(single_mask), "--models", "telea", "--overwrite"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert Image.open(grid).format == "PNG"
