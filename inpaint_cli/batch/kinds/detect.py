"""The detect job kind (`inpaint detect`): find each image's damage, write its mask and an overlay.

Each image gets `<stem>_mask.png` (8-bit grey, 255 = damage, the image's size once turned upright by
EXIF), the name the batch pairing of `inpaint run --mask` looks for, and `<stem>_overlay.jpg` (the
damage tinted red) for review, with a provenance record like every output of the engine, so a
killed batch resumes to the same masks and a rerun with another detector is refused. A folder's masks
mirror its tree under the output folder (default `<folder>_masks/` beside it). `plan_detection` pairs
and checks every read and write (`jobs.check_plan`) before anything is loaded; `run_detection` loads
the detector once (`detect_kind`) and runs the jobs through `engine.run_jobs`, or with `--ray` through
`distributed.run_on_ray`, where each worker loads its own and this process loads none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from inpaint_cli.batch import provenance
from inpaint_cli.batch.jobs import (
    MASK_SUFFIX,
    Artefact,
    Existing,
    Job,
    JobPlan,
    check_found,
    check_plan,
    overlay_path,
    pair_masks,
)
from inpaint_cli.batch.outcomes import JobOutcome, Outcomes, Status
from inpaint_cli.batch.provenance import Provenance
from inpaint_cli.detect.detection import Mode
from inpaint_cli.errors import OutputError, UsageError
from inpaint_cli.files.targets import Access
from inpaint_cli.imaging import imageio
from inpaint_cli.options import DEFAULT_DETECTOR, DEFAULT_MAX_PIXELS, DistributedOptions

if TYPE_CHECKING:
    from inpaint_cli.detect.detection import Detection
    from inpaint_cli.detect.detectors import Detector
    from inpaint_cli.review.page import PageSummary

MASKS_FOLDER_SUFFIX = "_masks"
OUR_OUTPUTS = re.compile(r"_(mask\d*|overlay)$")
"""Stems of files `detect` writes (and `run` pairs): never taken for photos when walking."""


@dataclass(frozen=True)
class DetectRequest(DistributedOptions):
    """What `inpaint detect` was asked to do: one field per option (`--ray` and the other options of a
    distributed run: `DistributedOptions`, keyword-only)."""

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
    """None: skip images whose mask was made with the same settings in a folder, refuse for a single image."""
    recursive: bool = False
    report: Path | None = None
    html: Path | None = None
    fail_fast: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "cpu"
    """Where the detector's network runs: cpu, cuda, cuda:N, mps, or auto (CUDA if available)."""
    jobs: int = 1
    """Reader and writer threads (decode ahead, encode behind); not used on Ray."""


@dataclass(frozen=True)
class DetectSettings:
    """What each detect job writes and reads (torch-free: known when planning)."""

    kind: ClassVar[str] = "detect"
    recorded: ClassVar[bool] = True
    overlay: bool = True
    intermediates_dir: Path | None = None
    existing: Existing = Existing.SKIP
    max_pixels: int = DEFAULT_MAX_PIXELS

    def artefacts(self, job: Job) -> list[Artefact]:
        """The mask, its overlay, and the job's intermediates folder (the probability map)."""
        found = [Artefact("mask", job.output)]
        if self.overlay:
            found.append(Artefact("overlay", overlay_path(job.output)))
        if self.intermediates_dir is not None:
            folder = self.intermediates_dir / job.name.with_suffix("")
            found.append(Artefact("intermediates folder", folder, folder=True, option="--save-intermediates"))
        return found


def mask_path(folder: Path, relative: Path) -> Path:
    return folder / relative.parent / f"{relative.stem}{MASK_SUFFIX}.png"


def default_masks_folder(folder: Path) -> Path:
    resolved = folder.resolve()
    return resolved.parent / f"{resolved.name}{MASKS_FOLDER_SUFFIX}"


# --- planning --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectPlan:
    plan: JobPlan
    settings: DetectSettings

    @property
    def jobs(self) -> list[Job]:
        return self.plan.jobs

    @property
    def unreadable(self) -> list[str]:
        """One line per folder that could not be listed."""
        return self.plan.unreadable


def plan_detection(request: DetectRequest) -> DetectPlan:
    """The images, their masks and overlays, and what to do with existing masks; every read and
    write checked (UsageError) before anything is loaded or written.

    One image: its mask goes to `output` (default: beside the image). A folder: masks mirror its tree
    under `output` (default `<folder>_masks/`); `output` may be the folder itself (masks beside the
    photos). The review page's thumbnails and the intermediates are never walked for photos."""
    from inpaint_cli.review import page as review

    input, output = request.input, request.output
    if not input.exists():
        raise UsageError("no such file or folder", path=input)
    if output is not None and output.exists() and not output.is_dir():
        raise UsageError("-o must be a folder (masks are named after the images)", path=output)
    settings = DetectSettings(
        overlay=request.overlay,
        intermediates_dir=request.intermediates_dir,
        existing=_existing(request.overwrite, batch=input.is_dir()),
        max_pixels=request.max_pixels,
    )
    writes = [] if request.report is None else [Access(request.report, "the report", option="--report")]
    if request.html is not None:
        writes += review.page_writes(request.html)
    if input.is_dir():
        plan = _plan_folder(input, output or default_masks_folder(input), request, writes)
    else:
        plan = JobPlan([Job(input, (), mask_path(output or input.parent, Path(input.name)))])
    check_plan(plan, settings, writes=writes)
    if request.html is not None:  # after the target check: a page that is an input is a usage error
        review.check_page(request.html, overwrite=request.overwrite is True)
    return DetectPlan(plan, settings)


def _existing(overwrite: bool | None, *, batch: bool) -> Existing:
    if overwrite is None:
        return Existing.SKIP if batch else Existing.ERROR
    return Existing.OVERWRITE if overwrite else Existing.SKIP


def _plan_folder(input: Path, folder: Path, request: DetectRequest, writes: list[Access]) -> JobPlan:
    ours = [folder, *(write.path for write in writes if write.folder)]
    if request.intermediates_dir is not None:
        ours.append(request.intermediates_dir)
    pairs = pair_masks(input, None, recursive=request.recursive, exclude=ours)
    jobs = [
        Job(image, (), mask_path(folder, relative), relative=relative)
        for image, relative, _, _ in pairs.images
        if not OUR_OUTPUTS.search(image.stem)
    ]
    plan = JobPlan(jobs, unreadable=pairs.unreadable, batch=True)
    check_found(plan, input, recursive=request.recursive)
    return plan


def dry_run_lines(plan: DetectPlan) -> list[tuple[str, str, str]]:
    """What a run would do, per image: (image, mask, action), from names and records alone."""
    from inpaint_cli.batch.resume import precheck

    lines = []
    for job in plan.jobs:
        decided = precheck(job, plan.settings)  # no detector is loaded: its settings are not compared
        action = "detect" if decided is None else decided.error or "skip: mask exists"
        lines.append((str(job.image), str(job.output), action))
    return lines


# --- one job: read, detect, write --------------------------------------------------------------------


@dataclass
class DetectKind:
    """Finding damage with one loaded detector: the detect job kind of `engine.run_jobs`."""

    detector: Detector
    mode: Mode
    settings: DetectSettings
    threshold: float | None = None
    made_with: Provenance | None = None
    stage: str = "detect"

    def load(self, outcome: JobOutcome) -> imageio.Picture:
        picture = imageio.read_image(outcome.job.image, max_pixels=self.settings.max_pixels)
        outcome.warnings += picture.notes
        return picture

    def process(self, outcome: JobOutcome, picture: imageio.Picture) -> Detection:
        detection = self.detector.detect(picture.pixels, self.mode, self.threshold)
        outcome.strategy = self.mode.value
        outcome.details = {
            "damage_fraction": round(detection.fraction, 6),
            "no_damage": detection.no_damage,
            "overlay": None
            if not self.settings.overlay
            else provenance.absolute(overlay_path(outcome.job.output)),
        }
        return detection

    def save(self, outcome: JobOutcome, picture: imageio.Picture, detection: Detection) -> None:
        """The mask, the overlay and the probability map, each written atomically."""
        from inpaint_cli.detect.detectors import write_overlay, write_probability
        from inpaint_cli.imaging.masks import write_mask

        outcome.written.append(write_mask(outcome.job.output, detection.mask))
        if self.settings.overlay:
            outcome.written.append(
                write_overlay(overlay_path(outcome.job.output), picture.pixels, detection.mask)
            )
        folder = next((a.path for a in self.settings.artefacts(outcome.job) if a.folder), None)
        if folder is not None:
            outcome.written += write_probability(folder, detection.probability)


def detector_provenance(
    detector: Detector, mode: Mode, threshold: float | None, *, checkpoint: Path | None, device: str
) -> Provenance:
    """What made a mask: the detector and its weights, its mode and threshold (compared on resume)."""
    return Provenance(
        model=detector.name,
        weights_sha256=provenance.weights_checksum(detector.name, checkpoint),
        strategy={"name": mode.value},
        precision=None,
        mask={"threshold": detector.threshold if threshold is None else threshold},
        output={},
        version=provenance.tool_version(),
        device=device,
    )


def detect_kind(request: DetectRequest, settings: DetectSettings, progress: Any = None) -> DetectKind:
    """The detect job kind with its detector loaded on the request's device: what a local run builds
    once, and each worker of a distributed run (`progress`: a first download's)."""
    from inpaint_cli.detect.detectors import chosen_mode, load_detector
    from inpaint_cli.engine.device import select_device

    device = select_device(request.device)
    found = load_detector(request.detector, request.checkpoint, device=device, progress=progress)
    mode = chosen_mode(found, request.high_res)
    made_with = detector_provenance(
        found, mode, request.threshold, checkpoint=request.checkpoint, device=str(device)
    )
    return DetectKind(found, mode, settings, request.threshold, made_with)


# --- the whole command -------------------------------------------------------------------------------


@dataclass
class DetectRun:
    plan: DetectPlan
    detector: str
    mode: Mode | None
    """None after a `--ray` run in which no image reached a worker (the workers choose the mode)."""
    outcomes: Outcomes = field(default_factory=lambda: Outcomes([], [], interrupted=False))
    page: PageSummary | None = None

    @property
    def not_run(self) -> int:
        """Images left when `fail_fast` or Ctrl-C stopped the run."""
        return len(self.outcomes.not_run)


def run_detection(
    request: DetectRequest,
    plan: DetectPlan,
    on_outcome: Callable[[JobOutcome], None] | None = None,
    progress: Any = None,
    on_workers: Callable[[int], None] | None = None,
) -> DetectRun:
    """Load the detector, detect every planned image, write the report and the review page.

    `progress` receives a download's progress (a first use of `scratch-bopbtl`); with `request.ray`,
    the jobs run on Ray workers that each load the detector once, and `on_workers` hears the number of
    live workers. A report or review page that cannot be written raises `OutputError` after every
    mask is written."""
    from inpaint_cli.batch.pipeline import write_results

    if request.ray is None:
        run = _detect_here(request, plan, on_outcome, progress)
    else:
        run = _detect_on_ray(request, plan, on_outcome, on_workers)
    no_damage = sum(o.status is Status.DONE and bool(o.details.get("no_damage")) for o in run.outcomes)
    page = None if request.html is None else (request.html, "inpaint detect review", request.max_pixels)
    run.page, problem = write_results(
        "detect",
        plan.plan,
        run.outcomes,
        report=request.report,
        page=page,
        model=run.detector,
        about={"detector": run.detector, "mode": None if run.mode is None else run.mode.value},
        counts={"no_damage": no_damage},
    )
    if problem is not None:
        raise OutputError(problem)
    return run


def _detect_here(
    request: DetectRequest,
    plan: DetectPlan,
    on_outcome: Callable[[JobOutcome], None] | None,
    progress: Any,
) -> DetectRun:
    """The jobs in this process, with the detector loaded here once."""
    from inpaint_cli.batch.engine import run_jobs

    kind = detect_kind(request, plan.settings, progress)
    outcomes = run_jobs(
        kind, plan.jobs, workers=request.jobs, fail_fast=request.fail_fast, on_outcome=on_outcome
    )
    return DetectRun(plan, kind.detector.name, kind.mode, outcomes)


def _detect_on_ray(
    request: DetectRequest,
    plan: DetectPlan,
    on_outcome: Callable[[JobOutcome], None] | None,
    on_workers: Callable[[int], None] | None,
) -> DetectRun:
    """The jobs on Ray workers, each building the detect kind once (`detect_kind`). The detector and
    mode the report names are those the workers recorded (a skipped mask's record matched them)."""
    from inpaint_cli.batch import distributed
    from inpaint_cli.detect.detectors import detector_name

    outcomes = distributed.run_on_ray(
        functools.partial(detect_kind, request, plan.settings),
        plan.jobs,
        distributed.cluster_of(request),
        on_outcome=on_outcome,
        on_workers=on_workers,
        fail_fast=request.fail_fast,
    )
    made_with = next((o.provenance for o in outcomes if o.provenance is not None), None)
    if made_with is None:
        return DetectRun(plan, detector_name(request.detector, request.checkpoint), None, outcomes)
    return DetectRun(plan, made_with["model"], Mode(made_with["strategy"]["name"]), outcomes)
