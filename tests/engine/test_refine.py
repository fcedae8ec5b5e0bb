"""LaMa feature refinement (issue 28): the official algorithm's golden fixtures reproduced within the
tolerances of tests/data/lama/refine/SPEC.md §11, its primitive operations, the planner's pyramid,
cost and memory, how it composes with the strategies, the API and the command line."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import inpaint_cli
from inpaint_cli.checkpoints.containers import read_checkpoint
from inpaint_cli.checkpoints.loading import network_from_checkpoint
from inpaint_cli.cli.app import app
from inpaint_cli.engine import refine as refinement
from inpaint_cli.engine.estimates import plan_passes
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.engine.refine import Refined, ellipse, erode, gaussian_blur, ms_mask, pad_reflect, refine
from inpaint_cli.engine.refine_plan import Refinement
from inpaint_cli.engine.strategies import InpaintOptions, NetworkGeometry, plan
from inpaint_cli.errors import InpaintError, UsageError
from inpaint_cli.models.lama import Lama

DATA = Path(__file__).resolve().parents[1] / "data" / "lama"
SMALL_CHECKPOINT = DATA / "small.ckpt"
"""The compact LaMa the refine fixtures were made with (their params.json names it and its sha256)."""
CASES = ("two_scales", "three_scales", "budget")

# SPEC §11, "Recommended acceptance tests" (values in [0, 1] units).
PYRAMID_IMAGE_TOLERANCE = 2e-5
PLAIN_PASS_TOLERANCE = 1e-4
HOLE_MEAN_TOLERANCE = 1e-3
HOLE_MAX_TOLERANCE = 2e-2
WITHIN_ONE_LEVEL = 0.99
"""Share of hole values within 1/255 of the official ones."""
PNG_MAX_LEVELS = 2
PNG_IDENTICAL = 0.95
LOSS_TOLERANCE = 1e-4
BLUR_TAPS = [0.05448868, 0.24420134, 0.40261995, 0.24420134, 0.05448868]
"""SPEC §9.1: the 1-D weights of the 5×5 Gaussian, sigma 1."""

runner = CliRunner()


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.array(picture)


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 -> 1×3×H×W float in [0, 1], as the engine and the official dataset make it."""
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def network() -> Lama:
    """Loaded as the engine loads any checkpoint: batch norms folded, channels-last."""
    return network_from_checkpoint(read_checkpoint(SMALL_CHECKPOINT))


@dataclass
class Case:
    params: dict
    image: np.ndarray
    hole: np.ndarray
    refined: Refined
    result: dict[str, torch.Tensor]
    scales: dict[str, torch.Tensor]

    @property
    def settings(self) -> Refinement:
        official = self.params["refiner"]
        return Refinement(
            official["n_iters"],
            official["lr"],
            official["min_side"],
            official["max_scales"],
            official["px_budget"],
        )


@pytest.fixture(scope="module", params=CASES)
def case(request: pytest.FixtureRequest, network: Lama) -> Case:
    folder = DATA / "refine" / request.param
    params = json.loads((folder / "params.json").read_text())
    image, mask = _png(folder / "image.png"), _png(folder / "mask.png")
    made = Case(
        params,
        image,
        mask > 0,
        None,
        load_file(folder / "result.safetensors"),
        load_file(folder / "scales.safetensors"),
    )  # type: ignore[arg-type]
    hole = torch.from_numpy(made.hole)[None, None].float()
    made.refined = refine(network, _as_tensor(image), hole, made.settings, keep=True)
    return made


def _hole_statistics(
    ours: torch.Tensor, official: torch.Tensor, hole: torch.Tensor
) -> tuple[float, float, float]:
    """Mean and max |Δ| over the hole's values, and the share within 1/255."""
    difference = (ours - official).abs()[hole.bool().expand_as(ours)]
    return float(difference.mean()), float(difference.max()), float((difference <= 1 / 255).float().mean())


# --- the golden fixtures (SPEC §11 tests 1-6) ------------------------------------------------------------


@pytest.mark.slow
def test_levels_sizes_padding_and_masks_are_exact(case: Case) -> None:
    """Test 1: levels, sizes, padded sizes, the budget's size, every pyramid mask and ms mask."""
    params, scales = case.params, case.refined.scales
    assert len(scales) == params["n_scales"]
    assert [list(scale.size) for scale in scales] == [level["size"] for level in params["scales"]]
    assert [list(scale.padded) for scale in scales] == [level["padded"] for level in params["scales"]]
    resized = params["resized_to"]
    assert case.refined.shrunk == (tuple(resized) if resized else None)
    assert tuple(case.refined.values.shape[-2:]) == case.hole.shape  # ours is returned at the input's size
    for level, scale in enumerate(scales):
        assert torch.equal(scale.tensors["hole"].to(torch.uint8), case.scales[f"pyramid_mask{level}"]), level
        if level:
            padded_hole = (pad_reflect(scale.tensors["hole"], scale.padded) >= refinement.HOLE).float()
            inside = ms_mask(padded_hole, scale.size)
            assert torch.equal(inside.to(torch.uint8), case.scales[f"ms_mask{level}"]), level
            assert int(inside.sum()) == params["scales"][level]["ms_mask_px"]


@pytest.mark.slow
def test_pyramid_images_and_the_coarsest_scale(case: Case) -> None:
    """Tests 2 and 3: the blurred and halved images, and the coarsest scale's plain pass."""
    for level, scale in enumerate(case.refined.scales):
        key = f"pyramid_image{level}"
        if key in case.scales:
            assert float((scale.tensors["image"] - case.scales[key]).abs().max()) <= PYRAMID_IMAGE_TOLERANCE
    coarsest = case.refined.scales[0].tensors["result"]
    assert float((coarsest - case.scales["inpainted_scale0"]).abs().max()) <= PLAIN_PASS_TOLERANCE


@pytest.mark.slow
def test_refined_scales_are_within_the_tolerances(case: Case) -> None:
    """Test 4: known pixels exact, hole mean ≤ 1e-3, 99 % within 1/255, max ≤ 2e-2, at every refined scale."""
    scales = case.refined.scales
    for level in range(1, len(scales)):
        scale = scales[level]
        last = level == len(scales) - 1
        official = case.result["refined"] if last else case.scales[f"inpainted_scale{level}"]
        ours, hole = scale.tensors["result"], scale.tensors["hole"]
        known = ~hole.bool().expand_as(ours)
        assert torch.equal(ours[known], scale.tensors["image"][known]), level
        mean, largest, within = _hole_statistics(ours, official, hole)
        assert mean <= HOLE_MEAN_TOLERANCE and largest <= HOLE_MAX_TOLERANCE and within >= WITHIN_ONE_LEVEL, (
            level,
            mean,
            largest,
            within,
        )
    if case.params["resized_to"] is None:  # the finest scale's known pixels are the PNG's
        finest = scales[-1].tensors["result"]
        known = ~torch.from_numpy(case.hole)[None, None].expand_as(finest)
        assert torch.equal(finest[known], _as_tensor(case.image)[known])


@pytest.mark.slow
def test_the_refined_png(case: Case) -> None:
    """Test 5: what predict.py writes (truncated uint8): known pixels as the input, ≤ 2 levels off, 95 %
    identical."""
    official = _png(DATA / "refine" / case.params["case"] / "refined.png").astype(int)
    finest = case.refined.scales[-1].tensors["result"][0].permute(1, 2, 0).numpy()
    ours = np.clip(finest * 255, 0, 255).astype(np.uint8).astype(int)
    assert ours.shape == official.shape
    assert np.abs(ours - official).max() <= PNG_MAX_LEVELS
    assert (ours == official).mean() >= PNG_IDENTICAL
    if case.params["resized_to"] is None:
        assert np.array_equal(ours[~case.hole], case.image[~case.hole])


@pytest.mark.slow
def test_losses_of_every_forward_pass(case: Case) -> None:
    """Test 6: the loss of each forward pass as the official progress bar showed it."""
    for level, scale in enumerate(case.refined.scales):
        official = case.params["scales"][level]
        assert len(scale.losses) == official["forward_passes"] - (level == 0)
        for index, (ours, theirs) in enumerate(zip(scale.losses, official["loss"], strict=True)):
            allowed = LOSS_TOLERANCE * abs(theirs) if index == 0 else LOSS_TOLERANCE
            assert abs(ours - theirs) <= allowed, (level, index, ours, theirs)
        for ours, theirs in zip(scale.known_losses, official["loss_known_term"], strict=True):
            assert abs(ours - theirs) <= LOSS_TOLERANCE


@pytest.mark.slow
def test_one_pass_and_the_engines_official_result(network: Lama) -> None:
    """Test 3's `one_pass` (the plain path), and `--strategy full --refine` writing the refined result:
    rounded where predict.py truncates, every pixel outside the hole as the input."""
    folder = DATA / "refine" / "two_scales"
    image, hole = _png(folder / "image.png"), _png(folder / "mask.png") > 0
    fixtures = load_file(folder / "result.safetensors")
    engine = Inpainter(network, device="cpu", precision="fp32", options=InpaintOptions(strategy="full"))
    plain = engine.runner.predict(_as_tensor(image), torch.from_numpy(hole)[None, None].float())
    inside = torch.from_numpy(hole)[None, None].expand_as(plain)
    official_plain = fixtures["one_pass"]
    assert float((plain[inside] - official_plain[inside]).abs().max()) <= PLAIN_PASS_TOLERANCE
    options = InpaintOptions(strategy="full", refine=True, refine_iters=4, refine_min_side=64)
    filled = engine.inpaint(image, hole, options=options).pixels
    assert np.array_equal(filled[~hole], image[~hole])
    official = np.round(fixtures["refined"][0].permute(1, 2, 0).numpy() * 255)
    assert np.abs(filled[hole].astype(int) - official[hole]).max() <= 1


# --- primitive operations ----------------------------------------------------------------------------------


def test_the_ellipse_is_opencvs_and_not_transposed() -> None:
    element = ellipse(torch.device("cpu"))[0, 0].numpy().astype(np.uint8)
    assert np.array_equal(element, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    assert element.sum() == 169 and element[0].sum() == 1 and element[:, 0].sum() == 5


def test_the_blur_is_separable_gaussian_with_a_mirrored_border() -> None:
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[..., 4, 4] = 1
    expected = torch.tensor(BLUR_TAPS)[:, None] * torch.tensor(BLUR_TAPS)[None, :]
    assert torch.allclose(gaussian_blur(impulse)[0, 0, 2:7, 2:7], expected, atol=1e-7)
    edge = torch.zeros(1, 1, 9, 9)
    edge[..., 0, 4] = 1  # mirrored without repeating the edge: row -1 is row 1
    assert float(gaussian_blur(edge)[0, 0, 1, 4]) == pytest.approx(BLUR_TAPS[1] * BLUR_TAPS[2], abs=1e-7)


def test_erosion_ignores_positions_outside_the_image() -> None:
    inside = torch.zeros(1, 1, 30, 30, dtype=torch.bool)
    inside[..., :, 20:] = True  # a band touching the right border
    eroded = erode(inside)[0, 0]
    assert eroded[:, 27:].all() and not eroded[:, :27].any()  # 7 columns gone on the left side only


def test_a_thin_hole_gives_nan_losses_but_refinement_goes_on(network: Lama) -> None:
    """The eroded ms mask of a 3-px scratch is empty: the loss shown is NaN (as the official code's),
    the gradient only has the known-pixel term, and the fill is finite."""
    image = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    hole = torch.zeros(1, 1, 96, 128)
    hole[..., 40:43, 10:120] = 1
    refined = refine(network, image, hole, Refinement(iters=3, min_side=48))
    assert len(refined.scales) == 2 and all(math.isnan(loss) for loss in refined.scales[1].losses)
    assert all(math.isfinite(loss) for loss in refined.scales[1].known_losses)
    assert torch.isfinite(refined.values).all()
    assert torch.equal(
        refined.values[hole.bool().logical_not().expand_as(image)], image[~hole.bool().expand_as(image)]
    )


def test_recomputing_the_blocks_changes_only_memory(network: Lama) -> None:
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    hole = torch.zeros(1, 1, 64, 96)
    hole[..., 16:48, 24:72] = 1
    settings = Refinement(iters=3, min_side=32)
    kept = refine(network, image, hole, settings, recompute_blocks=False)
    recomputed = refine(network, image, hole, settings)
    assert torch.equal(kept.values, recomputed.values)
    features = [f.detach().requires_grad_() for f in network.encode(image[..., :64, :96], hole)]
    saved: dict[bool, int] = {}
    for recompute in (False, True):
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor, storages: dict[int, int] = storages) -> torch.Tensor:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            network.decode(tuple(features), recompute_blocks=recompute)
        saved[recompute] = sum(storages.values())
    assert saved[True] < 0.6 * saved[False]  # the compact network's 2 blocks held half of what is kept


# --- the planner (no torch needed) ----------------------------------------------------------------------


def test_the_pyramid_follows_the_official_rules() -> None:
    defaults = Refinement()
    assert defaults.pyramid(724, 2000) == ((724, 2000),)  # under sqrt(2) * 512: one scale, no optimisation
    assert defaults.pyramid(725, 1000) == ((362, 500), (725, 1000))
    larger = Refinement(px_budget=4_000_000)
    assert len(larger.pyramid(1448, 1448)) == 2 and len(larger.pyramid(1449, 1449)) == 3
    # Within the default budget a short side is at most sqrt(1.8 MP) = 1341 px: never three scales.
    assert defaults.pyramid(1448, 1448) == ((670, 670), (1341, 1341))
    assert defaults.two_scale_side == 725 and Refinement(max_scales=1).two_scale_side is None
    assert len(Refinement(min_side=16).pyramid(4000, 4000)) == 3  # max_scales
    assert Refinement(min_side=64, px_budget=16000).pyramid(141, 187) == ((54, 72), (109, 145))  # `budget`
    assert defaults.forwards(1100, 1400) == 1 + 15 and defaults.forwards(600, 600) == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"refine_iters": 0}, "refine-iters must be a whole number between 1 and 1000, not 0"),
        ({"refine_lr": 0.0}, "refine-lr must be a number above 0 and at most 1, not 0.0"),
        ({"refine_min_side": 8}, "refine-min-side must be a whole number at least 16, not 8"),
        ({"refine_max_scales": 9}, "refine-max-scales must be a whole number between 1 and 8, not 9"),
        ({"refine_px_budget": 2.5}, "refine-px-budget must be a whole number at least 256, not 2.5"),
    ],
)
def test_refine_settings_are_checked_even_while_refine_is_off(settings: dict, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        InpaintOptions(**settings)
    assert caught.value.what == message


def lama_geometry(refine_bytes_per_pixel: int = 2600) -> NetworkGeometry:
    """big-lama's numbers as the planner sees them: a pass costs its pixels, a refinement step 2.5 passes."""
    return NetworkGeometry(
        name="big-lama",
        pad_multiple=8,
        min_size=16,
        native_side=2048,
        memory=lambda h, w: 832 * h * w,
        cost=lambda h, w: float(h * w),
        refine_step=lambda h, w: 2.5 * h * w,
        refine_memory=lambda h, w: refine_bytes_per_pixel * h * w,
    )


def test_a_full_refinement_is_planned_with_its_steps_cost_and_memory() -> None:
    hole = np.zeros((1500, 1500), bool)
    hole[500:900, 400:800] = True
    options = InpaintOptions(strategy="full", refine=True, refine_px_budget=2_500_000)
    made = plan(hole, lama_geometry(), options, 64 * 10**9)
    assert options.refinement is not None
    assert options.refinement.pyramid(1500, 1500) == ((375, 375), (750, 750), (1500, 1500))
    assert made.steps == 1 + 2 * 15
    padded = [376 * 376, 752 * 752, 1504 * 1504]  # multiples of 8
    assert made.cost == pytest.approx(sum(padded) + 14 * 2.5 * sum(padded[1:]))
    assert made.peak_memory == 2600 * 1504 * 1504
    calls = plan_passes(made, lama_geometry())  # what progress and time estimates count
    assert sum(call.count for call in calls) == made.steps
    assert sum(call.count * call.cost for call in calls) == pytest.approx(made.cost)
    assert (
        made.describe()
        == "full: whole image; 1 pass; refined at 3 scales x 15 iterations; about 5.9 GB at the peak"
    )
    with pytest.raises(InpaintError, match=r"a 1500x1500 refinement of big-lama needs about 5\.9 GB"):
        plan(hole, lama_geometry(), options, 4 * 10**9)


def test_crop_boxes_grow_until_they_get_two_scales() -> None:
    hole = np.zeros((2000, 3000), bool)
    hole[100:140, 2900:2950] = True  # a small hole near the top right corner
    (box,) = plan(hole, lama_geometry(), InpaintOptions(strategy="crop", refine=True), 64 * 10**9).boxes
    assert (box.top, box.right, box.height, box.width) == (0, 3000, 725, 725)
    (given,) = plan(
        hole, lama_geometry(), InpaintOptions(strategy="crop", crop_margin=20, refine=True), 10**11
    ).boxes
    assert (given.height, given.width) == (80, 90)  # an explicit margin is kept: one scale
    made = plan(hole, lama_geometry(), InpaintOptions(strategy="crop", crop_margin=20, refine=True), 10**11)
    assert "1 scale: one plain pass; two from a 725 px short side" in made.describe()


def test_auto_refines_each_box_in_one_piece_within_the_pixel_budget() -> None:
    hole = np.zeros((3000, 4000), bool)
    hole[500:2500, 800:3200] = True
    (box,) = plan(hole, lama_geometry(), InpaintOptions(refine=True), 64 * 10**9).boxes
    height, width = box.scaled_size()
    assert box.tile is None and height * width <= 1_800_000 and height * width > 1_700_000


def test_refined_tiles_stay_within_the_pixel_budget_and_one_at_a_time() -> None:
    hole = np.ones((4000, 4000), bool)
    made = plan(hole, lama_geometry(), InpaintOptions(strategy="tile", refine=True), 64 * 10**9)
    (tiling,) = made.tilings
    assert tiling is not None and tiling.height * tiling.width <= 1_800_000 and tiling.batch == 1
    assert made.steps == tiling.tiles * Refinement().forwards(tiling.height, tiling.width)


def test_a_network_without_refinement_cannot_plan_one() -> None:
    geometry = NetworkGeometry("pconv", 8, 8, 512, memory=lambda h, w: h * w, cost=lambda h, w: 1.0)
    with pytest.raises(UsageError, match="pconv cannot be refined"):
        plan(np.ones((64, 64), bool), geometry, InpaintOptions(refine=True), 10**9)


# --- the engine, the API and the command line --------------------------------------------------------------


def _photo(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (9, 9), 3)
    hole = np.zeros((height, width), bool)
    hole[height // 4 : height // 2, width // 3 : 2 * width // 3] = True
    return image, hole


def test_over_the_pixel_budget_the_refined_hole_is_pasted_at_full_size(network: Lama) -> None:
    image, hole = _photo(120, 160)
    options = InpaintOptions(
        strategy="full", refine=True, refine_iters=2, refine_min_side=32, refine_px_budget=8000
    )
    engine = Inpainter(network, device="cpu", precision="fp32", options=options)
    steps: list[tuple[int, int]] = []
    result = engine.inpaint(image, hole, progress=lambda done, total: steps.append((done, total)))
    assert result.pixels.shape == image.shape and np.array_equal(result.pixels[~hole], image[~hole])
    assert "shrunk to the 8000 px budget" in result.plan.describe()
    refined = refine(
        network, _as_tensor(image), torch.from_numpy(hole)[None, None].float(), options.refinement
    )
    assert refined.shrunk == (77, 103)
    expected = np.round(refined.values[0].permute(1, 2, 0).numpy() * 255)
    assert np.abs(result.pixels[hole].astype(int) - expected[hole]).max() <= 1
    assert steps == [(done, 1 + 2) for done in (1, 2, 3)] and result.plan.steps == 3


def test_tiles_are_refined_one_by_one_and_blended(network: Lama) -> None:
    image, hole = _photo(96, 160)
    options = InpaintOptions(
        strategy="tile", tile_size=96, tile_overlap=32, refine=True, refine_iters=2, refine_min_side=32
    )
    engine = Inpainter(network, device="cpu", precision="fp32", options=options)
    result = engine.inpaint(image, hole)
    (tiling,) = result.plan.tilings
    assert tiling is not None and tiling.tiles == 2 and result.passes == 2
    assert np.array_equal(result.pixels[~hole], image[~hole]) and not np.array_equal(
        result.pixels[hole], image[hole]
    )


def test_refinement_is_refused_where_it_cannot_run(network: Lama, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--refine works with LaMa models only, not telea \(classical\)"):
        inpaint_cli.load_model("telea", refine=True)
    telea = inpaint_cli.load_model("telea")
    image, hole = _photo(32, 32)
    with pytest.raises(UsageError, match="LaMa models only"):
        telea.inpaint(image, hole, refine=True)
    with pytest.raises(UsageError, match="int8 convolutions do not have"):
        Inpainter(network, device="cpu", precision="int8", options=InpaintOptions(refine=True))


def test_the_api_refines_and_keeps_no_intermediates(network: Lama) -> None:
    model = inpaint_cli.load_model(SMALL_CHECKPOINT, device="cpu", precision="fp32")
    image, hole = _photo(64, 96)
    plain = model.inpaint(image, hole, strategy="full")
    refined = model.inpaint(image, hole, strategy="full", refine=True, refine_iters=3, refine_min_side=32)
    assert np.array_equal(refined[~hole], image[~hole]) and not np.array_equal(refined[hole], plain[hole])
    assert (
        model.last_result is not None
        and "refined at 2 scales x 3 iterations" in model.last_result.plan.describe()
    )
    options = InpaintOptions(strategy="full", refine=True, refine_iters=2, refine_min_side=32)
    captured = model.inpainter.inpaint(image, hole, capture=True, options=options)
    assert (
        captured.intermediates == {}
        and "refined fill keeps no intermediates" in captured.intermediates_missing
    )


def test_the_command_line_records_refinement_and_never_reuses_it_unrefined(tmp_path: Path) -> None:
    folder, masks = tmp_path / "photos", tmp_path / "masks"
    folder.mkdir(), masks.mkdir()
    image, hole = _photo(64, 96)
    Image.fromarray(image).save(folder / "a.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(masks / "a.png")
    out = tmp_path / "out"
    common = ["run", str(folder), "--mask", str(masks), "-o", str(out), "--checkpoint", str(SMALL_CHECKPOINT)]
    refined = [*common, "--refine", "--refine-iters", "2", "--refine-min-side", "32"]
    result = runner.invoke(app, [*refined, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / ".a.png.inpaint.json").read_text())
    assert record["provenance"]["strategy"]["refine"] == {
        "iters": 2,
        "lr": 0.002,
        "min_side": 32,
        "max_scales": 3,
        "px_budget": 1_800_000,
    }
    again = runner.invoke(app, [*refined, "--dry-run"])
    assert again.exit_code == 0 and "skip: output exists, made with the same settings" in again.output
    unrefined = runner.invoke(app, [*common, "--dry-run"])
    assert unrefined.exit_code == 1 and "output made with other settings: strategy refine" in unrefined.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--refine-iters", "3"], "error: --refine-iters needs --refine"),
        (
            ["--refine", "--model", "pconv-tiny"],
            "error: --refine works with LaMa models only, not pconv-tiny (pconv)",
        ),
        (
            ["--refine", "--refine-max-scales", "0"],
            "error: --refine-max-scales 0 is out of range (between 1 and 8)",
        ),
        (
            ["--refine", "--refine-lr", "0"],
            "error: refine-lr must be a number above 0 and at most 1, not 0.0",
        ),
    ],
)
def test_refine_usage_errors_exit_2(tmp_path: Path, arguments: list[str], message: str) -> None:
    image, hole = _photo(32, 32)
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    result = runner.invoke(
        app, ["run", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"), *arguments]
    )
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "a_inpainted.png").exists()
