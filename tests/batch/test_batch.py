"""The batch engine with the inpaint job kind: mask pairing, mirrored outputs, the decode/fill/encode
pipeline, resume, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint_cli.batch import engine, provenance
from inpaint_cli.batch.jobs import Existing, Job, JobPlan, check_plan
from inpaint_cli.batch.kinds.inpaint import InpaintKind, RunSettings, plan_folder, plan_run, plan_single
from inpaint_cli.batch.outcomes import JobOutcome, Status, report_of, write_report
from inpaint_cli.batch.resume import remove_stale_parts
from inpaint_cli.engine.inpainter import Inpainter, InpaintResult
from inpaint_cli.engine.strategies import InpaintOptions
from inpaint_cli.errors import UsageError
from inpaint_cli.files.targets import Access, check_targets
from inpaint_cli.imaging import imageio
from inpaint_cli.options import StrategyName

HEIGHT, WIDTH = 24, 32


def touch(root: Path, *names: str) -> None:
    """Empty files: pairing looks at names only."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def paired(plan: JobPlan, folder: Path, masks: Path) -> dict[str, list[str]]:
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


def run_jobs(inpainter: Inpainter, jobs: list[Job], settings: RunSettings, **options: object):
    return engine.run_jobs(InpaintKind(inpainter, settings), jobs, **options)


def restore(inpainter: Inpainter, job: Job, settings: RunSettings) -> JobOutcome:
    return engine.run_jobs(InpaintKind(inpainter, settings), [job])[0]


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
    plan = plan_folder(photos, masks, recursive=True)

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
    plan = plan_folder(tmp_path / "photos", tmp_path / "masks", tmp_path / "out")
    assert [job.relative for job in plan.jobs] == [Path("a.png")]
    assert plan.unused_masks == []


def test_masks_beside_the_images_are_only_the_mask_named_files(tmp_path: Path) -> None:
    # Official LaMa layout: x.png next to x_mask001.png; y.png and y.jpg are two images, not a pair.
    touch(tmp_path, "x.png", "x_mask001.png", "x_mask002.png", "y.png", "y.jpg")
    plan = plan_folder(tmp_path, tmp_path, tmp_path / "out")
    assert {job.relative.name: [m.name for m in job.masks] for job in plan.jobs} == {
        "x.png": ["x_mask001.png", "x_mask002.png"],
        "y.jpg": [],
        "y.png": [],
    }
    assert "looked for" in plan.jobs[1].problem.hint and ".* and" not in plan.jobs[1].problem.hint


def test_mask_output_and_intermediates_folders_inside_the_input_tree_are_not_inputs(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    touch(photos, "a.png", "masks/a.png", "masks/sub/b.png", "sub/b.png", "out/a.png", "debug/a/panel.png")
    plan = plan_folder(
        photos, photos / "masks", photos / "out", recursive=True, written_elsewhere=[photos / "debug"]
    )
    assert paired(plan, photos, photos / "masks") == {"a.png": ["a.png"], "sub/b.png": ["sub/b.png"]}
    assert plan.jobs[0].output == photos / "out/a.png"


def test_one_mask_file_serves_every_image_and_is_not_an_image_itself(tmp_path: Path) -> None:
    touch(tmp_path, "a.png", "sub/b.jpg", "scanner_defect.png")
    defect = tmp_path / "scanner_defect.png"
    plan = plan_folder(tmp_path, defect, tmp_path / "out", recursive=True)
    assert [(job.relative.as_posix(), job.masks) for job in plan.jobs] == [
        ("a.png", (defect,)),
        ("sub/b.jpg", (defect,)),
    ]


def test_format_changes_extensions_and_clashing_outputs_are_a_usage_error(tmp_path: Path) -> None:
    touch(tmp_path / "in", "p.jpg", "p.png", "q.jpg")
    touch(tmp_path / "masks", "p.png", "q.png")
    plan = plan_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out", output_format="tiff")
    assert [job.output.name for job in plan.jobs] == ["p.tif", "p.tif", "q.tif"]
    with pytest.raises(UsageError) as caught:
        check_plan(plan, RunSettings())
    assert caught.value.one_line() == (
        f"{tmp_path / 'out/p.tif'}: is the output of {tmp_path / 'in/p.jpg'} "
        f"and cannot be the output of {tmp_path / 'in/p.png'} (choose another -o)"
    )


def test_the_output_folder_cannot_be_the_input_folder(tmp_path: Path) -> None:
    touch(tmp_path, "a.png", "a_mask.png")
    with pytest.raises(UsageError, match="the output folder is the input folder"):
        plan_folder(tmp_path, tmp_path, tmp_path)


def test_single_image_finds_its_mask_in_a_folder(tmp_path: Path) -> None:
    touch(tmp_path, "photo.jpg", "masks/photo_mask.png", "masks/other.png")
    plan = plan_single(tmp_path / "photo.jpg", tmp_path / "masks")
    assert plan.jobs[0].masks == (tmp_path / "masks/photo_mask.png",)
    assert plan.jobs[0].output == tmp_path / "photo_inpainted.jpg"
    lonely = plan_single(tmp_path / "photo.jpg", tmp_path / "masks" / "..")
    assert "no mask found" in lonely.jobs[0].problem.one_line()


# --- running -----------------------------------------------------------------------------------------


def test_run_jobs_fills_only_the_hole_and_reports_in_job_order(tmp_path: Path, telea: Inpainter) -> None:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    originals = {
        name: save_photo(photos / name, seed) for seed, name in enumerate(["a.png", "b.png", "c.png"])
    }
    hole = save_mask(masks / "a.png")
    save_mask(masks / "c_mask1.png")
    plan = plan_folder(photos, masks, tmp_path / "out")
    settings = RunSettings(existing=Existing.SKIP)
    outcomes = run_jobs(telea, plan.jobs, settings, workers=3)

    assert [(o.job.relative.name, o.status) for o in outcomes] == [
        ("a.png", Status.DONE),
        ("b.png", Status.FAILED),
        ("c.png", Status.DONE),
    ]
    for outcome in outcomes[::2]:
        result = np.asarray(Image.open(outcome.job.output))
        original = originals[outcome.job.relative.name]
        np.testing.assert_array_equal(result[~hole], original[~hole])
        assert (result[hole] != original[hole]).any()
        assert outcome.written == [outcome.job.output] and outcome.seconds > 0
        assert outcome.strategy.startswith("auto: ")

    again = run_jobs(telea, plan.jobs, settings, workers=1)
    assert [o.status for o in again] == [Status.SKIPPED, Status.FAILED, Status.SKIPPED]


class RecordingInpainter:
    """Stands in for the model: copies image i through once image i + 1 is being read (or after 10 s,
    when the pipeline does not read ahead: a condition, not a race with a sleep on a loaded machine),
    and records when it ran."""

    name, dtype, dtype_label, device = "recording", "torch.float32", "float32", "cpu"
    options = InpaintOptions(strategy=StrategyName.FULL)

    def __init__(self, events: list[tuple[str, str]], count: int) -> None:
        self.events = events
        self.count = count

    def plan(self, hole: np.ndarray, *, capture: bool = False) -> None:
        return None

    def estimate_seconds(self, plan: None) -> None:
        return None

    def inpaint(self, pixels: np.ndarray, hole: np.ndarray, **options: object) -> InpaintResult:
        index = int(pixels[0, 0, 0])
        deadline = time.monotonic() + 10
        while index + 1 < self.count and ("read", str(index + 1)) not in self.events:
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        self.events.append(("filled", str(index)))
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
    real_load, real_save = InpaintKind.load, InpaintKind.save

    def counting_load(kind: InpaintKind, outcome: JobOutcome) -> object:
        nonlocal held, most_held
        with lock:
            held += 1
            most_held = max(most_held, held)
            events.append(("read", outcome.job.image.stem))
        return real_load(kind, outcome)

    def slow_save(kind: InpaintKind, outcome: JobOutcome, *args: object) -> None:
        nonlocal held
        time.sleep(0.05)
        real_save(kind, outcome, *args)
        with lock:
            held -= 1

    monkeypatch.setattr(InpaintKind, "load", counting_load)
    monkeypatch.setattr(InpaintKind, "save", slow_save)
    plan = plan_folder(tmp_path / "in", tmp_path / "mask.png", tmp_path / "out")
    outcomes = run_jobs(RecordingInpainter(events, count), plan.jobs, RunSettings(), workers=workers)

    assert [o.status for o in outcomes] == [Status.DONE] * count
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
    plan = plan_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out")
    outcomes = run_jobs(telea, plan.jobs, RunSettings(), fail_fast=True, workers=1)
    assert [(o.job.relative.name, o.status.value) for o in outcomes] == [
        ("a.png", "done"),
        ("b.png", "failed"),
    ]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [".a.png.inpaint.json", "a.png"]


def test_existing_outputs_are_skipped_refused_or_redone(tmp_path: Path, telea: Inpainter) -> None:
    save_photo(tmp_path / "a.png", 1)
    save_mask(tmp_path / "m.png")
    output = tmp_path / "done.png"
    job = Job(tmp_path / "a.png", (tmp_path / "m.png",), output)
    skip = RunSettings(existing=Existing.SKIP)

    made = restore(telea, job, skip)
    assert made.status is Status.DONE and made.provenance["model"] == "telea"
    written = output.read_bytes()
    skipped = restore(telea, job, skip)
    assert skipped.status is Status.SKIPPED and output.read_bytes() == written
    refused = restore(telea, job, RunSettings(existing=Existing.ERROR))
    assert refused.error == (
        f"{output}: output exists, made with --model telea "
        f"(to keep both: -o {tmp_path / 'done_telea.png'}; to replace it: --overwrite)"
    )

    output.write_bytes(b"")  # an empty file is not a finished output
    redone = restore(telea, job, skip)
    assert redone.status is Status.DONE and output.read_bytes() == written

    provenance.record_path(output).unlink()  # a file of unknown origin is never replaced on resume
    foreign = restore(telea, job, skip)
    assert foreign.error == (
        f"{output}: output exists and has no provenance record (made by another program or an older "
        f"inpaint) (to keep both: -o {tmp_path / 'done_telea.png'}; to redo it: --overwrite)"
    )
    assert output.read_bytes() == written


def test_resume_refuses_outputs_made_with_other_settings(tmp_path: Path, telea: Inpainter) -> None:
    save_photo(tmp_path / "a.png", 1)
    save_mask(tmp_path / "m.png")
    job = Job(tmp_path / "a.png", (tmp_path / "m.png",), tmp_path / "out.png")
    skip = RunSettings(existing=Existing.SKIP)
    assert restore(telea, job, skip).status is Status.DONE
    written = job.output.read_bytes()

    ns = Inpainter.from_name("ns", device="cpu")
    other = restore(ns, job, RunSettings(existing=Existing.SKIP, dilate=2))
    assert other.status is Status.FAILED
    assert other.error == (
        f"{job.output}: output made with other settings: model telea (now ns), mask dilate 0 (now 2) "
        f"(to keep both: -o {tmp_path / 'out_ns.png'}; to redo it: --overwrite)"
    )
    assert job.output.read_bytes() == written
    redone = restore(ns, job, RunSettings(existing=Existing.OVERWRITE, dilate=2))
    assert redone.status is Status.DONE and job.output.read_bytes() != written
    record = json.loads(provenance.record_path(job.output).read_text())
    assert record["complete"] is True and record["written"] == [str(job.output)]
    assert record["provenance"]["model"] == "ns" and record["provenance"]["mask"]["dilate"] == 2
    assert record["provenance"]["precision"] == "float32" and record["provenance"]["weights_sha256"] is None


def test_a_resume_recreates_a_missing_panel_and_an_output_cut_short(tmp_path: Path, telea: Inpainter) -> None:
    for name in ["a.png", "b.png"]:
        save_photo(tmp_path / "in" / name, 1)
    save_mask(tmp_path / "m.png")
    plan = plan_folder(tmp_path / "in", tmp_path / "m.png", tmp_path / "out")
    settings = RunSettings(existing=Existing.SKIP, panel=True)
    assert [o.status.value for o in run_jobs(telea, plan.jobs, settings)] == ["done", "done"]
    panel_a, output_b = tmp_path / "out/a_panel.png", tmp_path / "out/b.png"
    panel_bytes = panel_a.read_bytes()
    panel_a.unlink()  # lost after the run
    record_b = provenance.record_path(output_b)  # b was killed after its output, before its panel
    record_b.write_text(record_b.read_text().replace('"complete": true', '"complete": false'))

    again = run_jobs(telea, plan.jobs, settings)

    assert [o.status.value for o in again] == ["done", "done"]
    assert panel_a.read_bytes() == panel_bytes
    assert json.loads(record_b.read_text())["complete"] is True
    assert [o.status.value for o in run_jobs(telea, plan.jobs, settings)] == ["skipped", "skipped"]
    # Asking for intermediates on a model that has none is complete once tried (nothing to write).
    with_intermediates = RunSettings(existing=Existing.SKIP, panel=True, intermediates_dir=tmp_path / "debug")
    assert [o.status.value for o in run_jobs(telea, plan.jobs, with_intermediates)] == ["done", "done"]
    assert [o.status.value for o in run_jobs(telea, plan.jobs, with_intermediates)] == [
        "skipped",
        "skipped",
    ]


HOLD_A_WRITE = """
import sys, time
from pathlib import Path
from inpaint_cli.files.atomic import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half")
    print(tmp.name, flush=True)
    if sys.argv[2] == "kill":
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
"""


def start_writer(target: Path, how: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD_A_WRITE, str(target), how], stdout=subprocess.PIPE, text=True
    )


def test_stale_temporary_files_are_removed_but_not_those_of_a_live_batch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    killed = start_writer(out / "x.png", "kill")  # a batch killed mid-write
    stale = out / killed.stdout.readline().strip()
    killed.wait()
    live = start_writer(out / "y.png", "hold")  # a second batch on the same folder, writing now
    try:
        in_flight = out / live.stdout.readline().strip()
        other_write = imageio.atomic_path(out / "x.y.png")  # of another output, held by this process
        not_ours = other_write.__enter__()
        (out / ".keep").touch()

        debug = tmp_path / "debug/x"  # an intermediates folder: any abandoned temporary file there is ours
        debug.mkdir(parents=True)
        killed_debug = start_writer(debug / "stats.json", "kill")
        stale_debug = debug / killed_debug.stdout.readline().strip()
        killed_debug.wait()

        removed = remove_stale_parts(
            [out / "x.png", out / "y.png", tmp_path / "missing/z.png"], folders=[debug, tmp_path / "none"]
        )

        assert removed == sorted([stale, stale_debug]) and list(debug.iterdir()) == []
        assert sorted(path.name for path in out.iterdir()) == sorted([".keep", in_flight.name, not_ours.name])
    finally:
        live.kill()
        live.wait()


def test_report_lists_every_input_unstarted_jobs_and_unused_masks(tmp_path: Path, telea: Inpainter) -> None:
    save_photo(tmp_path / "in/a.png", 2)
    save_mask(tmp_path / "masks/a_mask.png")
    save_photo(tmp_path / "in/b.png", 3)
    save_mask(tmp_path / "masks/zz.png")
    plan = plan_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out")
    outcomes = run_jobs(telea, plan.jobs[:1], RunSettings())
    data = report_of("inpaint", outcomes, not_run=plan.jobs[1:], unused_masks=plan.unused_masks)
    path = write_report(tmp_path / "report.json", data)
    report = json.loads(path.read_text(encoding="utf-8"))
    assert (report["format"], report["version"], report["kind"]) == ("inpaint-report", 2, "inpaint")
    assert report["summary"] == {"done": 1, "skipped": 0, "failed": 0, "not_run": 1, "unused_masks": 1}
    (record,) = report["inputs"]
    assert record["image"] == str(tmp_path / "in/a.png")
    assert record["masks"] == [str(tmp_path / "masks/a_mask.png")]
    assert record["output"] == str(tmp_path / "out/a.png") and record["written"] == [record["output"]]
    assert (record["status"], record["strategy"], record["error"]) == ("done", outcomes[0].strategy, None)
    assert record["seconds"] > 0
    assert report["not_run"] == [str(tmp_path / "in/b.png")]
    assert report["unused_masks"] == [str(tmp_path / "masks/zz.png")]
    assert record["provenance"]["model"] == "telea" and record["provenance"]["strategy"]["name"] == "auto"


def test_report_paths_are_all_absolute_when_the_run_was_given_relative_ones(
    tmp_path: Path, telea: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    save_photo(tmp_path / "in/a.png", 2)
    save_mask(tmp_path / "masks/a.png")
    plan = plan_run(Path("in"), Path("masks"), None, RunSettings())
    outcomes = run_jobs(telea, plan.jobs, RunSettings())
    (record,) = json.loads(write_report(Path("r.json"), report_of("inpaint", outcomes)).read_text())["inputs"]
    assert (record["image"], record["masks"], record["output"], record["written"]) == (
        str(tmp_path / "in/a.png"),
        [str(tmp_path / "masks/a.png")],
        str(tmp_path / "in_inpainted/a.png"),
        [str(tmp_path / "in_inpainted/a.png")],
    )


# --- nothing read is written, no two writes share a target --------------------------------------------


def test_targets_are_compared_by_file_identity(tmp_path: Path) -> None:
    touch(tmp_path, "p.png", "m.png")
    os.link(tmp_path / "m.png", tmp_path / "hard.png")
    (tmp_path / "sym.png").symlink_to(tmp_path / "m.png")
    (tmp_path / "dir").symlink_to(tmp_path)
    reads = [Access(tmp_path / "p.png", "the image"), Access(tmp_path / "m.png", "the mask of p.png")]
    for spelling in ["hard.png", "sym.png", "dir/m.png", "dir/./m.png", "m.png"]:
        with pytest.raises(UsageError) as caught:
            check_targets(reads, [Access(tmp_path / spelling, "the output", option="-o")])
        assert caught.value.what == "is the mask of p.png and cannot be the output", spelling
        assert caught.value.path == tmp_path / "m.png" and caught.value.hint == "choose another -o"
    check_targets(reads, [Access(tmp_path / "out.png", "the output")])  # a new file: fine
    # `dir/..` is the parent of the folder `dir` points to, as the system resolves it: another m.png.
    check_targets(reads, [Access(tmp_path / "dir/../m.png", "the output")])

    folder_write = Access(tmp_path / "dir", "the intermediates folder", folder=True)
    with pytest.raises(UsageError, match="is the image and cannot be the intermediates folder"):
        check_targets(reads, [folder_write])
    inside = Access(tmp_path / "debug/a/panel.png", "the panel")
    with pytest.raises(UsageError, match="is the intermediates folder and cannot be the panel"):
        check_targets([], [Access(tmp_path / "debug/a", "the intermediates folder", folder=True), inside])


def test_a_panel_and_another_images_output_clash_before_anything_runs(tmp_path: Path) -> None:
    touch(tmp_path / "in", "a.png", "a_panel.png")
    touch(tmp_path, "m.png")
    settings = RunSettings(panel=True)
    with pytest.raises(UsageError) as caught:
        plan_run(tmp_path / "in", tmp_path / "m.png", str(tmp_path / "out"), settings)
    assert caught.value.one_line() == (
        f"{tmp_path / 'out/a_panel.png'}: is the panel of {tmp_path / 'in/a.png'} "
        f"and cannot be the output of {tmp_path / 'in/a_panel.png'} (choose another -o)"
    )
    assert not (tmp_path / "out").exists()
    plan_run(tmp_path / "in", tmp_path / "m.png", str(tmp_path / "out"), RunSettings())


# --- output path rules -------------------------------------------------------------------------------


def test_output_path_rules(tmp_path: Path) -> None:
    touch(tmp_path, "in/a.png", "p.png", "m.png", "file.txt")
    single, folder, mask = tmp_path / "p.png", tmp_path / "in", tmp_path / "m.png"
    settings = RunSettings()

    plan = plan_run(single, mask, str(tmp_path / "new") + "/", settings)  # a folder, created later
    assert plan.jobs[0].output == tmp_path / "new/p_inpainted.png" and not (tmp_path / "new").exists()
    assert plan_run(folder, mask, str(tmp_path / "out.d/"), settings).jobs[0].output == (
        tmp_path / "out.d/a.png"
    )
    for output, message in [
        (tmp_path / "single.png", "-o names an image file, but the input is a folder"),
        (tmp_path / "file.txt", "-o must be a folder when the input is a folder"),
        (tmp_path / "typo/out", f"folder {tmp_path / 'typo'} does not exist"),
    ]:
        with pytest.raises(UsageError, match=message):
            plan_run(folder, mask, str(output), settings)
    with pytest.raises(UsageError, match=f"folder {tmp_path / 'typo'} does not exist"):
        plan_run(single, mask, str(tmp_path / "typo/p.png"), settings)
    with pytest.raises(UsageError, match="the report must be a file, not a folder"):
        plan_run(single, mask, None, settings, report=tmp_path)
    with pytest.raises(UsageError, match=f"{tmp_path / 'file.txt'} is a file, so --report cannot be written"):
        plan_run(single, mask, None, settings, report=tmp_path / "file.txt/r.json")
    files_for_intermediates = RunSettings(intermediates_dir=tmp_path / "file.txt")
    with pytest.raises(UsageError, match="the intermediates folder must be a folder, not a file"):
        plan_run(single, mask, None, files_for_intermediates)
    assert not (tmp_path / "typo").exists() and not (tmp_path / "single.png").exists()


def test_writes_into_an_unwritable_folder_are_refused_before_the_run(
    tmp_path: Path, unwritable: Path
) -> None:
    touch(tmp_path, "p.png", "m.png")
    for options in [
        {"report": unwritable / "r.json"},
        {"output": str(unwritable / "o.png")},
    ]:
        with pytest.raises(UsageError, match=f"cannot write into {unwritable} "):
            plan_run(
                tmp_path / "p.png",
                tmp_path / "m.png",
                options.get("output"),
                RunSettings(),
                report=options.get("report"),
            )
    settings = RunSettings(intermediates_dir=unwritable / "debug")
    with pytest.raises(UsageError, match=f"cannot write into {unwritable} "):
        plan_run(tmp_path / "p.png", tmp_path / "m.png", None, settings)


def test_provenance_differences_name_each_setting_and_ignore_version_and_device() -> None:
    def made(**changes: object) -> provenance.Provenance:
        options = {"model": "lama", "weights_sha256": "ab" * 32, "strategy": "auto", "precision": "float32"}
        settings = RunSettings(**changes.pop("settings", {}))
        return provenance.for_run(**{**options, "device": "cpu", **changes}, settings=settings)

    recorded = made().as_dict()
    assert made().differences(recorded) == []
    assert made(device="cuda:0").differences({**recorded, "version": "0.0.1"}) == []
    assert made(model="telea", weights_sha256=None).differences(recorded) == [
        "model lama (now telea)",
        "weights sha256 abababababab (now none)",
    ]
    assert made(settings={"dilate": 3, "output_format": "png"}, detector="scratch-tiny").differences(
        recorded
    ) == ["mask dilate 0 (now 3)", "mask detector none (now scratch-tiny)", "output format none (now png)"]
    assert made(precision="bfloat16").differences(recorded, unknown=["precision"]) == []


def test_a_file_beside_an_output_that_the_run_did_not_write_is_never_replaced(
    tmp_path: Path, telea: Inpainter
) -> None:
    """An existing `_panel.png` (or saved mask) was replaced by a run whose output did not exist yet:
    every file a job writes is checked, not only its output."""
    for name in ["a.png", "b.png"]:
        save_photo(tmp_path / "in" / name, 1)
    save_mask(tmp_path / "m.png")
    plan = plan_folder(tmp_path / "in", tmp_path / "m.png", tmp_path / "out")
    panel = tmp_path / "out" / "a_panel.png"
    panel.parent.mkdir()
    panel.write_bytes(b"a picture of mine")
    settings = RunSettings(existing=Existing.SKIP, panel=True)
    first, second = run_jobs(telea, plan.jobs, settings)
    assert first.error == (
        f"{panel}: panel exists and has no provenance record (made by another program or an older inpaint) "
        "(use --overwrite to redo it, or choose another -o)"
    )
    assert second.status is Status.DONE and panel.read_bytes() == b"a picture of mine"
    # A record of ours that does not list the file: the file is still not ours.
    record = provenance.record_path(tmp_path / "out" / "b.png")
    foreign = tmp_path / "out" / "b_mask.png"
    foreign.write_bytes(b"my mask")
    with_mask = RunSettings(existing=Existing.SKIP, panel=True, save_mask=True)
    (refused,) = run_jobs(telea, plan.jobs[1:], with_mask)
    assert refused.error == (
        f"{foreign}: saved mask exists and was not written with b.png (use --overwrite to replace it, "
        "or choose another -o)"
    )
    assert foreign.read_bytes() == b"my mask" and json.loads(record.read_text())["complete"] is True
    single = RunSettings(existing=Existing.ERROR, panel=True)
    (alone,) = run_jobs(
        telea, [Job(tmp_path / "in/a.png", (tmp_path / "m.png",), tmp_path / "out/a.png")], single
    )
    assert alone.error == f"{panel}: panel exists (use --overwrite to replace it)"
    (replaced,) = run_jobs(telea, plan.jobs[:1], RunSettings(existing=Existing.OVERWRITE, panel=True))
    assert replaced.status is Status.DONE and panel.read_bytes() != b"a picture of mine"


def test_a_provenance_record_cut_short_leaves_no_temporary_file_after_the_rerun(
    tmp_path: Path, telea: Inpainter
) -> None:
    """A batch killed while writing a record left `..a.png.inpaint.<hex>.part.json`; the next run of the
    same jobs removes it with the outputs' own temporary files."""
    save_photo(tmp_path / "in/a.png", 1)
    save_mask(tmp_path / "m.png")
    plan = plan_folder(tmp_path / "in", tmp_path / "m.png", tmp_path / "out")
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / "..a.png.inpaint.0badc0de.part.json"
    stale.write_text('{"format": "inpaint-prov')
    (outcome,) = run_jobs(telea, plan.jobs, RunSettings(existing=Existing.SKIP))
    assert outcome.status is Status.DONE and not stale.exists()
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [".a.png.inpaint.json", "a.png"]


def test_finding_the_damage_is_its_own_stage_not_reading(
    tmp_path: Path, telea: Inpainter, monkeypatch
) -> None:
    """Issue 30: with -v, `--mask auto`'s detection was reported as "read 12.53 s"."""
    from inpaint_cli.batch.kinds import inpaint as inpaint_kind
    from inpaint_cli.imaging import imageio

    save_photo(tmp_path / "a.png", 1)
    hole = np.zeros((HEIGHT, WIDTH), dtype=bool)
    hole[8:14, 10:20] = True

    def slow_detection(kind: object, job: Job) -> inpaint_kind.Loaded:
        time.sleep(0.5)  # a detector taking at least this long
        return inpaint_kind.Loaded(imageio.read_image(job.image), hole)

    monkeypatch.setattr(inpaint_kind.InpaintKind, "_detect", slow_detection)
    outcome = restore(telea, Job(tmp_path / "a.png", (), tmp_path / "out.png"), RunSettings())
    assert outcome.status is Status.DONE
    assert list(outcome.stages)[:2] == ["read", "detect"] and "fill" in outcome.stages
    assert outcome.stages["detect"] >= 0.5 > outcome.stages["read"]
