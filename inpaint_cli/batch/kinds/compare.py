"""The compare job kind (`inpaint compare`): each image's hole filled by every loaded model, scored
against its clean original, drawn as one labelled grid.

`plan_comparison` pairs one image, or every image of a folder, with its mask(s) (as a batch does) and
its original (the same path under the originals folder, or the same stem in any format), gives it a
grid (`<stem>_compare.png` beside a single image, or under `-o FOLDER` mirroring the tree), and checks
every read and write, the JSON report included, through `jobs.check_plan`. `run_comparison` loads
every model once and runs the jobs through `engine.run_jobs`: images are decoded ahead and grids
encoded behind while the models fill. Grids have no provenance record: an existing grid is replaced
only with `--overwrite`. The scores of a job are its outcome's `details` in the one report format.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inpaint_cli.batch.jobs import (
    Artefact,
    Existing,
    Job,
    JobPlan,
    check_found,
    check_plan,
    masks_of_single,
    pair_masks,
)
from inpaint_cli.batch.outcomes import JobOutcome, Outcomes, Status, report_of
from inpaint_cli.errors import InputError, UsageError
from inpaint_cli.files.targets import Access
from inpaint_cli.options import COMPARE_GRID_SUFFIX, DEFAULT_COMPARE_MODELS, DEFAULT_MAX_PIXELS
from inpaint_cli.review import comparison as comparing
from inpaint_cli.review.comparison import Comparison, Filler, FolderComparison

JSON_TO_STDOUT = Path("-")
"""`--json -`: the report goes to stdout (the caller prints it), not to a file."""


@dataclass(frozen=True)
class CompareRequest:
    """What `inpaint compare` was asked to do: one field per option."""

    input: Path
    mask: Path
    models: tuple[str, ...] = DEFAULT_COMPARE_MODELS
    original: Path | None = None
    """The clean image, or folder of them (required for a folder)."""
    output: Path | None = None
    """The grid (one image; default `<stem>_compare.png` beside it) or a folder of grids (none by default)."""
    json: Path | None = None
    """Where the report goes (`-`: stdout, written by the caller)."""
    device: str = "auto"
    precision: str = "auto"
    strategy: str = "auto"
    recursive: bool = False
    overwrite: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    jobs: int = 1


@dataclass(frozen=True)
class CompareSettings:
    """What each compare job writes: its grid, if it has one (no provenance record: no resume)."""

    kind: ClassVar[str] = "compare"
    recorded: ClassVar[bool] = False
    existing: Existing = Existing.ERROR
    max_pixels: int = DEFAULT_MAX_PIXELS

    def artefacts(self, job: Job) -> list[Artefact]:
        return [] if job.output is None else [Artefact("grid", job.output)]


@dataclass(frozen=True)
class ComparePlan:
    plan: JobPlan
    settings: CompareSettings


# --- planning --------------------------------------------------------------------------------------


def plan_comparison(request: CompareRequest) -> ComparePlan:
    """The images with their masks, originals and grids; every read and write checked (UsageError)
    before any model is loaded."""
    input, mask, original = request.input, request.mask, request.original
    if not input.exists():
        raise UsageError("no such file or folder", path=input)
    if not mask.exists():
        raise UsageError("no such mask file or folder", path=mask)
    if original is not None and not original.exists():
        raise UsageError("no such original", path=original)
    settings = CompareSettings(
        existing=Existing.OVERWRITE if request.overwrite else Existing.ERROR, max_pixels=request.max_pixels
    )
    writes = []
    if request.json is not None and request.json != JSON_TO_STDOUT:
        writes.append(Access(request.json, "the JSON report", option="--json"))
    if input.is_dir():
        plan = _plan_folder(request)
    else:
        grid = request.output or input.with_name(input.stem + COMPARE_GRID_SUFFIX)
        masks, problem = masks_of_single(input, mask)
        plan = JobPlan([Job(input, masks, grid, problem=problem, original=original)])
    check_plan(plan, settings, writes=writes)
    return ComparePlan(plan, settings)


def _plan_folder(request: CompareRequest) -> JobPlan:
    folder, originals, grids = request.input, request.original, request.output
    if originals is None:
        raise UsageError("a folder needs --original FOLDER", path=folder, hint="the clean images, by name")
    if not originals.is_dir():
        raise UsageError("must be a folder of originals when the input is a folder", path=originals)
    if grids is not None and grids.exists() and not grids.is_dir():
        raise UsageError("-o must be a folder when the input is a folder", path=grids)
    exclude = [originals] if grids is None else [originals, grids]
    pairs = pair_masks(folder, request.mask, recursive=request.recursive, exclude=exclude)
    jobs = []
    for image, relative, masks, problem in pairs.images:
        clean = _original_for(relative, originals)
        if problem is None and clean is None:
            problem = InputError("no original found", path=image, hint=f"looked in {originals}")
        grid = None if grids is None else grids / relative.parent / f"{relative.stem}{COMPARE_GRID_SUFFIX}"
        jobs.append(Job(image, masks, grid, relative=relative, problem=problem, original=clean))
    plan = JobPlan(jobs, unused_masks=pairs.unused_masks, unreadable=pairs.unreadable, batch=True)
    check_found(plan, folder, recursive=request.recursive)
    return plan


def _original_for(relative: Path, originals: Path) -> Path | None:
    """The clean version of `relative`: the same path under `originals`, or the same stem in any format."""
    from inpaint_cli.imaging import imageio

    same = originals / relative
    if imageio.is_image_file(same):
        return same
    candidates = sorted((originals / relative.parent).glob(f"{relative.stem}.*"))
    return next((path for path in candidates if imageio.is_image_file(path)), None)


# --- one job: read, fill with every model, draw --------------------------------------------------------


@dataclass
class CompareKind:
    """Every loaded model on one image: the compare job kind of `engine.run_jobs`. Each finished
    comparison (pixels dropped once its grid is drawn) is kept in `done` for the table."""

    fillers: dict[str, Filler]
    settings: CompareSettings
    made_with: None = None
    stage: str = "compare"
    done: dict[Path, Comparison] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def load(self, outcome: JobOutcome) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        from inpaint_cli.imaging import imageio
        from inpaint_cli.imaging.masks import read_mask

        job, limit = outcome.job, self.settings.max_pixels
        picture = imageio.read_image(job.image, max_pixels=limit)
        outcome.warnings += picture.notes
        hole = read_mask(job.masks, size=picture.pixels.shape[:2], max_pixels=limit, image=job.image)
        clean = None
        if job.original is not None:
            clean = imageio.read_image(job.original, max_pixels=limit).pixels
            if clean.shape != picture.pixels.shape:
                raise InputError(
                    f"original is {clean.shape} but image is {picture.pixels.shape}",
                    path=job.original,
                    hint="the original must be the clean version of the same picture",
                )
        return picture.pixels, hole, clean

    def process(
        self, outcome: JobOutcome, loaded: tuple[np.ndarray, np.ndarray, np.ndarray | None]
    ) -> Comparison:
        pixels, hole, clean = loaded
        comparison = comparing.run_comparison(str(outcome.job.image), pixels, hole, self.fillers, clean)
        outcome.details = comparison.as_dict()
        del outcome.details["image"]  # the record's own `image`
        outcome.details["best"] = _best(comparison)
        return comparison

    def save(self, outcome: JobOutcome, loaded: object, comparison: Comparison) -> None:
        """The grid (if the job has one), then the pixels are dropped."""
        from inpaint_cli.review.visualize import save_png

        if outcome.job.output is not None:
            outcome.job.output.parent.mkdir(parents=True, exist_ok=True)
            outcome.written.append(save_png(outcome.job.output, comparing.make_grid(comparison).picture))
        comparison.drop_pixels()
        with self._lock:
            self.done[outcome.job.image] = comparison


def _best(comparison: Comparison) -> str:
    """The best model by PSNR in the hole, for the review page (empty without an original)."""
    scored = [result for result in comparison.results if result.scores is not None]
    if not scored:
        return ""
    best = max(scored, key=lambda result: result.scores.psnr_hole)
    return f"best: {best.model} ({best.scores.psnr_hole:.2f} dB in the hole)"


# --- the whole command ---------------------------------------------------------------------------------


@dataclass
class CompareRun:
    """What one `inpaint compare` did: the outcomes, the comparisons in input order, the report."""

    outcomes: Outcomes
    result: FolderComparison
    report: dict[str, Any]


def run_comparison_plan(
    request: CompareRequest, plan: ComparePlan, on_outcome: Callable[[JobOutcome], None] | None = None
) -> CompareRun:
    """Load every model once, compare every planned image, write the JSON report (unless it goes to
    stdout: `report` holds it either way). Unknown models fail here, before any image is read."""
    from inpaint_cli.batch.engine import run_jobs
    from inpaint_cli.batch.outcomes import write_report

    fillers, load_seconds = comparing.load_models(
        list(request.models), device=request.device, precision=request.precision, strategy=request.strategy
    )
    kind = CompareKind(fillers, plan.settings)
    ran = run_jobs(kind, plan.plan.jobs, workers=request.jobs, on_outcome=on_outcome)
    comparisons = [kind.done[o.job.image] for o in ran if o.status is Status.DONE]
    failures = [o.error or "" for o in ran if o.status is Status.FAILED]
    for comparison in comparisons:
        comparison.load_seconds = load_seconds
    result = FolderComparison(comparisons, failures, load_seconds)
    summary = result.as_dict()
    about = {"models": list(fillers), "means": summary["means"], "load_seconds": summary["load_seconds"]}
    report = report_of("compare", ran, not_run=ran.not_run, unused_masks=plan.plan.unused_masks, about=about)
    if request.json is not None and request.json != JSON_TO_STDOUT:
        write_report(request.json, report)
    return CompareRun(ran, result, report)


def compare_folder(
    folder: str | Path,
    mask: str | Path,
    originals: str | Path,
    models: Sequence[str] = DEFAULT_COMPARE_MODELS,
    *,
    grids: str | Path | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    **options: Any,
) -> FolderComparison:
    """Compare `models` on every image of `folder` that has a mask and an original: a mean per model,
    and a grid per image under `grids` when given. Images that cannot be compared are listed in
    `failures`; the others go on. `options` go to the model loader (device, precision, strategy)."""
    request = CompareRequest(
        Path(folder),
        Path(mask),
        tuple(models),
        original=Path(originals),
        output=None if grids is None else Path(grids),
        recursive=recursive,
        overwrite=overwrite,
        **options,
    )
    return run_comparison_plan(request, plan_comparison(request)).result
