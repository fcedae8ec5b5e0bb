"""Batch library: mask pairing, mirrored outputs, the decode/fill/encode pipeline, resume, reports."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint_cli import batch, imageio
from inpaint_cli.engine import Inpainter, InpaintResult
from inpaint_cli.errors import UsageError
from inpaint_cli.strategies import Box, Strategy

HEIGHT, WIDTH = 24, 32


def touch(root: Path, *names: str) -> None:
    """Empty files: pairing looks at names only."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def paired(plan: batch.Plan, folder: Path, masks: Path) -> dict[str, list[str]]:
    return {
        job.relative.as_posix(): [mask.relative_to(masks).as_posix() for mask in job.masks]
        for job in plan.jobs
        if job.problem is None
    }


def save_photo(path: Path, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def save_mask(path: Path) -> np.ndarray:
    hole = np.zeros((HEIGHT, WIDTH), dtype=bool)
    hole[8:14, 10:20] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(hole.astype(np.uint8) * 255).save(path)
    return hole


@pytest.fixture(scope="module")
def telea() -> Inpainter:
    return Inpainter.from_name("telea", device="cpu")


# --- pairing ---------------------------------------------------------------------------------------


def test_masks_pair_by_relative_path_stem_and_mask_suffixes(tmp_path: Path) -> None:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    touch(photos, "a.jpg", "b.png", "sub/c.tif", "sub/deep/d.webp", "nomask.png", ".hidden.png", "notes.txt")
    touch(photos, ".git/e.png")
    touch(masks, "a.png", "b_mask.png", "b_mask2.png", "b_mask10.jpg", "sub/c_mask.png", "sub/deep/d.PNG")
    touch(masks, "orphan.png", "sub/a.png", "b_maskx.png")
    plan = batch.plan_folder(photos, masks, recursive=True)

    assert paired(plan, photos, masks) == {
        "a.jpg": ["a.png"],
        "b.png": ["b_mask.png", "b_mask10.jpg", "b_mask2.png"],
        "sub/c.tif": ["sub/c_mask.png"],
        "sub/deep/d.webp": ["sub/deep/d.PNG"],
    }
    (missing,) = [job for job in plan.jobs if job.problem is not None]
    assert missing.image == photos / "nomask.png" and missing.masks == ()
    assert missing.problem.one_line() == (
        f"{photos / 'nomask.png'}: no mask found "
        f"(looked for {masks / 'nomask'}.* and {masks / 'nomask'}_mask*.*)"
    )
    assert plan.unused_masks == [masks / "b_maskx.png", masks / "orphan.png", masks / "sub/a.png"]
    out = (tmp_path / "photos_inpainted").resolve()
    assert [job.output for job in plan.jobs] == [
        out / "a.jpg",
        out / "b.png",
        out / "nomask.png",
        out / "sub/c.tif",
        out / "sub/deep/d.webp",
    ]


def test_without_recursive_only_the_top_folder_is_walked(tmp_path: Path) -> None:
    touch(tmp_path / "photos", "a.png", "sub/b.png")
    touch(tmp_path / "masks", "a.png", "sub/b.png")
    plan = batch.plan_folder(tmp_path / "photos", tmp_path / "masks", tmp_path / "out")
    assert [job.relative for job in plan.jobs] == [Path("a.png")]
    assert plan.unused_masks == []


def test_masks_beside_the_images_are_only_the_mask_named_files(tmp_path: Path) -> None:
    # Official LaMa layout: x.png next to x_mask001.png; y.png and y.jpg are two images, not a pair.
    touch(tmp_path, "x.png", "x_mask001.png", "x_mask002.png", "y.png", "y.jpg")
    plan = batch.plan_folder(tmp_path, tmp_path, tmp_path / "out")
    assert {job.relative.name: [m.name for m in job.masks] for job in plan.jobs} == {
        "x.png": ["x_mask001.png", "x_mask002.png"],
        "y.jpg": [],
        "y.png": [],
    }
    assert "looked for" in plan.jobs[1].problem.hint and ".* and" not in plan.jobs[1].problem.hint


def test_mask_output_and_intermediates_folders_inside_the_input_tree_are_not_inputs(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    touch(photos, "a.png", "masks/a.png", "masks/sub/b.png", "sub/b.png", "out/a.png", "debug/a/panel.png")
    plan = batch.plan_folder(
        photos, photos / "masks", photos / "out", recursive=True, written_elsewhere=[photos / "debug"]
    )
    assert paired(plan, photos, photos / "masks") == {"a.png": ["a.png"], "sub/b.png": ["sub/b.png"]}
    assert plan.jobs[0].output == photos / "out/a.png"


def test_one_mask_file_serves_every_image_and_is_not_an_image_itself(tmp_path: Path) -> None:
    touch(tmp_path, "a.png", "sub/b.jpg", "scanner_defect.png")
    defect = tmp_path / "scanner_defect.png"
    plan = batch.plan_folder(tmp_path, defect, tmp_path / "out", recursive=True)
    assert [(job.relative.as_posix(), job.masks) for job in plan.jobs] == [
        ("a.png", (defect,)),
        ("sub/b.jpg", (defect,)),
    ]


def test_format_changes_extensions_and_clashing_outputs_are_refused(tmp_path: Path) -> None:
    touch(tmp_path / "in", "p.jpg", "p.png", "q.jpg")
    touch(tmp_path / "masks", "p.png", "q.png")
    plan = batch.plan_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out", output_format="tiff")
    assert [job.output.name for job in plan.jobs] == ["p.tif", "p.tif", "q.tif"]
    assert plan.jobs[0].problem is None
    assert plan.jobs[1].problem.one_line() == (
        f"{tmp_path / 'out/p.tif'}: same output as {tmp_path / 'in/p.jpg'} (rename one of them)"
    )


def test_the_output_folder_cannot_be_the_input_folder(tmp_path: Path) -> None:
    touch(tmp_path, "a.png", "a_mask.png")
    with pytest.raises(UsageError, match="the output folder is the input folder"):
        batch.plan_folder(tmp_path, tmp_path, tmp_path)


def test_single_image_finds_its_mask_in_a_folder(tmp_path: Path) -> None:
    touch(tmp_path, "photo.jpg", "masks/photo_mask.png", "masks/other.png")
    plan = batch.plan_single(tmp_path / "photo.jpg", tmp_path / "masks")
    assert plan.jobs[0].masks == (tmp_path / "masks/photo_mask.png",)
    assert plan.jobs[0].output == tmp_path / "photo_inpainted.jpg"
    lonely = batch.plan_single(tmp_path / "photo.jpg", tmp_path / "masks" / "..")
    assert "no mask found" in lonely.jobs[0].problem.one_line()


def test_plan_description_names_boxes_scale_and_tiles() -> None:
    assert batch.describe_plan("auto", [], (10, 20)) == "auto: nothing to fill"
    assert batch.describe_plan("full", [Box(0, 0, 10, 20)], (10, 20)) == "full: whole image"
    crops = [Box(0, 0, 4, 4, scale=0.5), Box(5, 5, 9, 9, tile=256)]
    assert (
        batch.describe_plan("auto", crops, (10, 20))
        == "auto: 2 crop boxes, downscaled to 0.50, in 256 px tiles"
    )


# --- running -----------------------------------------------------------------------------------------


def test_run_jobs_fills_only_the_hole_and_reports_in_job_order(tmp_path: Path, telea: Inpainter) -> None:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    originals = {
        name: save_photo(photos / name, seed) for seed, name in enumerate(["a.png", "b.png", "c.png"])
    }
    hole = save_mask(masks / "a.png")
    save_mask(masks / "c_mask1.png")
    plan = batch.plan_folder(photos, masks, tmp_path / "out")
    settings = batch.RunSettings(existing=batch.Existing.SKIP)
    outcomes = batch.run_jobs(telea, plan.jobs, settings, workers=3)

    assert [(o.job.relative.name, o.status) for o in outcomes] == [
        ("a.png", batch.Status.DONE),
        ("b.png", batch.Status.FAILED),
        ("c.png", batch.Status.DONE),
    ]
    for outcome in outcomes[::2]:
        result = np.asarray(Image.open(outcome.job.output))
        original = originals[outcome.job.relative.name]
        np.testing.assert_array_equal(result[~hole], original[~hole])
        assert (result[hole] != original[hole]).any()
        assert outcome.written == [outcome.job.output] and outcome.seconds > 0
        assert outcome.strategy.startswith("auto: ")

    again = batch.run_jobs(telea, plan.jobs, settings, workers=1)
    assert [o.status for o in again] == [batch.Status.SKIPPED, batch.Status.FAILED, batch.Status.SKIPPED]


class RecordingInpainter:
    """Stands in for the model: copies the image through slowly and records when it ran."""

    strategy = Strategy.FULL

    def __init__(self, events: list[tuple[str, str]]) -> None:
        self.events = events

    def inpaint(self, pixels: np.ndarray, hole: np.ndarray, *, capture: bool = False) -> InpaintResult:
        time.sleep(0.03)
        self.events.append(("filled", str(pixels[0, 0, 0])))
        return InpaintResult(pixels.copy(), [])


@pytest.mark.parametrize("workers", [1, 3])
def test_pipeline_reads_ahead_and_holds_at_most_2_workers_plus_1_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    count = 8
    (tmp_path / "in").mkdir()
    for index in range(count):
        Image.fromarray(np.full((8, 8, 3), index, dtype=np.uint8)).save(tmp_path / f"in/{index}.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "mask.png")
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    held, most_held = 0, 0
    real_load, real_save = batch.load, batch.save

    def counting_load(job: batch.Job, settings: batch.RunSettings) -> batch.Loaded:
        nonlocal held, most_held
        with lock:
            held += 1
            most_held = max(most_held, held)
            events.append(("read", job.image.stem))
        return real_load(job, settings)

    def slow_save(outcome: batch.JobOutcome, *args: object) -> None:
        nonlocal held
        time.sleep(0.05)
        real_save(outcome, *args)
        with lock:
            held -= 1

    monkeypatch.setattr(batch, "load", counting_load)
    monkeypatch.setattr(batch, "save", slow_save)
    plan = batch.plan_folder(tmp_path / "in", tmp_path / "mask.png", tmp_path / "out")
    outcomes = batch.run_jobs(RecordingInpainter(events), plan.jobs, batch.RunSettings(), workers=workers)

    assert [o.status for o in outcomes] == [batch.Status.DONE] * count
    assert most_held <= 2 * workers + 1
    filled = [value for kind, value in events if kind == "filled"]
    assert filled == [str(index) for index in range(count)]
    # While the model fills image i, image i+1 is already being read.
    for index in range(count - 1):
        assert events.index(("read", str(index + 1))) < events.index(("filled", str(index)))


def test_fail_fast_starts_nothing_after_a_failure(tmp_path: Path, telea: Inpainter) -> None:
    for name in ["a.png", "c.png", "d.png"]:
        save_photo(tmp_path / "in" / name, 0)
        save_mask(tmp_path / "masks" / name)
    save_photo(tmp_path / "in/b.png", 0)
    plan = batch.plan_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out")
    outcomes = batch.run_jobs(telea, plan.jobs, batch.RunSettings(), fail_fast=True, workers=1)
    assert [(o.job.relative.name, o.status.value) for o in outcomes] == [
        ("a.png", "done"),
        ("b.png", "failed"),
    ]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png"]


def test_existing_outputs_are_skipped_refused_or_redone_when_empty(tmp_path: Path, telea: Inpainter) -> None:
    save_photo(tmp_path / "a.png", 1)
    save_mask(tmp_path / "m.png")
    complete = tmp_path / "done.png"
    complete.write_bytes(b"kept as is")
    job = batch.Job(tmp_path / "a.png", (tmp_path / "m.png",), complete)

    skipped = batch.restore(telea, job, batch.RunSettings(existing=batch.Existing.SKIP))
    assert skipped.status is batch.Status.SKIPPED and complete.read_bytes() == b"kept as is"
    refused = batch.restore(telea, job, batch.RunSettings(existing=batch.Existing.ERROR))
    assert refused.error == f"{complete}: output exists (use --overwrite to replace it)"

    complete.write_bytes(b"")  # an empty file is not a finished output
    redone = batch.restore(telea, job, batch.RunSettings(existing=batch.Existing.SKIP))
    assert redone.status is batch.Status.DONE
    assert Image.open(complete).size == (WIDTH, HEIGHT)


def test_stale_temporary_files_of_our_outputs_are_removed_and_no_others(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    killed_write = imageio.atomic_path(out / "x.png")  # entered and never left: a SIGKILL mid-write
    stale = killed_write.__enter__()
    stale.write_bytes(b"half a PNG")
    other_write = imageio.atomic_path(out / "x.y.png")
    not_ours = other_write.__enter__()
    (out / ".keep").touch()

    assert batch.remove_stale_parts([out / "x.png", tmp_path / "missing/z.png"]) == [stale]
    assert sorted(path.name for path in out.iterdir()) == sorted([".keep", not_ours.name])


def test_report_lists_every_input_unstarted_jobs_and_unused_masks(tmp_path: Path, telea: Inpainter) -> None:
    save_photo(tmp_path / "in/a.png", 2)
    save_mask(tmp_path / "masks/a_mask.png")
    save_photo(tmp_path / "in/b.png", 3)
    save_mask(tmp_path / "masks/zz.png")
    plan = batch.plan_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out")
    outcomes = batch.run_jobs(telea, plan.jobs[:1], batch.RunSettings())
    path = batch.write_report(
        tmp_path / "r/report.json", outcomes, not_run=plan.jobs[1:], unused_masks=plan.unused_masks
    )
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["summary"] == {"done": 1, "skipped": 0, "failed": 0, "not_run": 1, "unused_masks": 1}
    (record,) = report["inputs"]
    assert record["image"] == str(tmp_path / "in/a.png")
    assert record["masks"] == [str(tmp_path / "masks/a_mask.png")]
    assert record["output"] == str(tmp_path / "out/a.png") and record["written"] == [record["output"]]
    assert (record["status"], record["strategy"], record["error"]) == ("done", outcomes[0].strategy, None)
    assert record["seconds"] > 0
    assert report["not_run"] == [str(tmp_path / "in/b.png")]
    assert report["unused_masks"] == [str(tmp_path / "masks/zz.png")]
