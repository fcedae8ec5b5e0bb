"""`inpaint detect` as a library: what to look at (`DetectRequest`), its plan, and the run.

`plan_detection` pairs every image with its mask and overlay paths and checks them (usage problems
raise `UsageError` before anything is loaded or written); `run_detection` loads the detector, finds
the damage image by image (a bad image fails alone), and writes the report and the review page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint_cli.batch.engine import Existing
from inpaint_cli.detect import jobs as detect_jobs
from inpaint_cli.detect.detection import Mode
from inpaint_cli.errors import OutputError
from inpaint_cli.options import DEFAULT_DETECTOR, DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from inpaint_cli.detect.jobs import DetectJob, DetectOutcome
    from inpaint_cli.review.page import PageSummary


@dataclass(frozen=True)
class DetectRequest:
    """What `inpaint detect` was asked to do: one field per option."""

    input: Path
    output: Path | None = None
    """Folder for the masks and overlays; None: beside the image, or `<folder>_masks/` for a folder."""
    detector: str = DEFAULT_DETECTOR.value
    checkpoint: Path | None = None
    threshold: float | None = None
    """None: the detector's own."""
    high_res: bool | None = None
    """None: the detector's own mode (official scale for BOPBtL's grey network, else high-res)."""
    overlay: bool = True
    intermediates_dir: Path | None = None
    overwrite: bool | None = None
    """None: skip images that have a mask in a folder, refuse for a single image."""
    recursive: bool = False
    report: Path | None = None
    html: Path | None = None
    fail_fast: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class DetectPlan:
    jobs: list[DetectJob]
    unreadable: list[str]
    """One line per file found in the folder that cannot be an input (it is not run)."""
    existing: Existing
    is_batch: bool


@dataclass
class DetectRun:
    plan: DetectPlan
    detector: str
    mode: Mode
    outcomes: list[DetectOutcome] = field(default_factory=list)
    page: PageSummary | None = None

    @property
    def not_run(self) -> int:
        """Images left when `fail_fast` stopped the run."""
        return len(self.plan.jobs) - len(self.outcomes)


def plan_detection(request: DetectRequest) -> DetectPlan:
    """The images, their masks and overlays, and what to do with existing masks; checked."""
    from inpaint_cli.review import page as review

    thumbnails = [] if request.html is None else [review.files_folder(request.html)]
    jobs, unreadable = detect_jobs.plan_detect(
        request.input,
        request.output,
        recursive=request.recursive,
        overlay=request.overlay,
        exclude=thumbnails,
    )
    is_batch = request.input.is_dir()
    if request.overwrite is None:
        existing = Existing.SKIP if is_batch else Existing.ERROR
    else:
        existing = Existing.OVERWRITE if request.overwrite else Existing.SKIP
    detect_jobs.check_targets_of(
        jobs, report=request.report, page=request.html, intermediates=request.intermediates_dir
    )
    if request.html is not None:
        review.check_page(request.html, overwrite=request.overwrite is True)
    return DetectPlan(jobs, unreadable, existing, is_batch)


def run_detection(
    request: DetectRequest,
    plan: DetectPlan,
    on_outcome: Callable[[DetectOutcome], None] | None = None,
    progress: Any = None,
) -> DetectRun:
    """Load the detector, detect every planned image, write the report and the review page.

    `progress` receives a download's progress (a first use of `scratch-bopbtl`). A review page that
    cannot be written raises `OutputError` after every mask and the report are written."""
    found = detect_jobs.load_detector(request.detector, request.checkpoint, progress=progress)
    mode = detect_jobs.chosen_mode(found, request.high_res)
    settings = detect_jobs.DetectSettings(
        mode=mode,
        threshold=request.threshold,
        existing=plan.existing,
        intermediates_dir=request.intermediates_dir,
        max_pixels=request.max_pixels,
    )
    run = DetectRun(plan, found.name, mode)
    run.outcomes = detect_jobs.run_detect(
        found, plan.jobs, settings, on_outcome=on_outcome, fail_fast=request.fail_fast
    )
    if request.report is not None:
        detect_jobs.write_report(request.report, run.outcomes, detector=found.name, mode=mode)
    if request.html is not None:
        try:
            run.page = detect_jobs.write_page(
                request.html, plan.jobs, run.outcomes, detector=found.name, mode=mode
            )
        except OSError as exc:
            path = exc.filename or request.html
            raise OutputError(f"cannot write the review page ({exc.strerror or exc})", path=path) from exc
    return run
