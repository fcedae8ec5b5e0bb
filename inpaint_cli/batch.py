"""Jobs: one image, its mask(s) and its output, and running many of them without losing anything.

A single `inpaint run photo.jpg --mask m.png` is a batch of one. Every per-input problem becomes a
failed `JobOutcome` (the batch goes on); outputs are written atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from inpaint_cli import imageio, visualize
from inpaint_cli.engine import Inpainter
from inpaint_cli.errors import InpaintError, OutputError

PANEL_SUFFIX = "_panel"


class Existing(str, Enum):
    """What to do when an output file already exists."""

    ERROR = "error"
    SKIP = "skip"
    OVERWRITE = "overwrite"


class Status(str, Enum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class RunSettings:
    """Per-input options of `inpaint run` (everything but the model)."""

    mask_threshold: int = 127
    invert_mask: bool = False
    dilate: int = 0
    output_format: str | None = None
    quality: int = 95
    existing: Existing = Existing.ERROR
    panel: bool = False
    intermediates_dir: Path | None = None
    max_pixels: int = imageio.DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Job:
    image: Path
    masks: tuple[Path, ...]
    output: Path


@dataclass
class JobOutcome:
    job: Job
    status: Status
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    strategy: str | None = None
    written: list[Path] = field(default_factory=list)

    def as_record(self) -> dict:
        """The JSON report entry of this input."""
        return {
            "image": str(self.job.image),
            "masks": [str(m) for m in self.job.masks],
            "output": str(self.job.output),
            "status": self.status.value,
            "strategy": self.strategy,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "warnings": self.warnings,
            "written": [str(p) for p in self.written],
        }


def panel_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}{PANEL_SUFFIX}.png")


def restore(inpainter: Inpainter, job: Job, settings: RunSettings) -> JobOutcome:
    """Process one job; problems with this input become a failed outcome, never an exception."""
    started = time.perf_counter()
    if job.output.exists() and settings.existing is Existing.SKIP:
        return JobOutcome(job, Status.SKIPPED)
    outcome = JobOutcome(job, Status.DONE, strategy=inpainter.strategy.value)
    try:
        _restore_into(outcome, inpainter, settings)
    except InpaintError as exc:
        outcome.status = Status.FAILED
        outcome.error = exc.one_line()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _restore_into(outcome: JobOutcome, inpainter: Inpainter, settings: RunSettings) -> None:
    job = outcome.job
    if job.output.resolve() == job.image.resolve():
        raise OutputError("output would overwrite the input", path=job.output, hint="choose another -o")
    if job.output.exists() and settings.existing is Existing.ERROR:
        raise OutputError("output exists", path=job.output, hint="use --overwrite to replace it")
    picture = imageio.read_image(job.image, max_pixels=settings.max_pixels)
    hole = imageio.read_mask(
        job.masks,
        size=picture.pixels.shape[:2],
        threshold=settings.mask_threshold,
        invert=settings.invert_mask,
        dilate=settings.dilate,
    )
    if not hole.any():
        outcome.warnings.append(f"{job.masks[0]}: mask has no hole pixels; image copied through")
    capture = settings.intermediates_dir is not None
    result = inpainter.inpaint(picture.pixels, hole, capture=capture)
    overwrite = settings.existing is Existing.OVERWRITE
    outcome.written.append(
        imageio.write_image(
            job.output,
            picture.with_pixels(result.pixels),
            format=settings.output_format,
            quality=settings.quality,
            overwrite=overwrite,
        )
    )
    if settings.panel or capture:
        panel = visualize.make_panel(picture.pixels, hole, result.pixels, result.coarse)
    if settings.panel:
        outcome.written.append(visualize.save_png(panel_path(job.output), panel))
    if capture and result.intermediates_hole is not None:
        folder = settings.intermediates_dir / job.image.stem
        outcome.written += visualize.save_intermediates(
            folder, result.intermediates, result.intermediates_hole, panel
        )
    elif capture:
        outcome.warnings.append("no intermediates: the image needed several passes or had no hole")


def run_jobs(
    inpainter: Inpainter,
    jobs: Iterable[Job],
    settings: RunSettings,
    on_outcome: Callable[[JobOutcome], None] | None = None,
    fail_fast: bool = False,
) -> list[JobOutcome]:
    """Run jobs in order; `on_outcome` sees each result as it comes (progress, logging)."""
    outcomes = []
    for job in jobs:
        outcome = restore(inpainter, job, settings)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        if fail_fast and outcome.status is Status.FAILED:
            break
    return outcomes


def write_report(path: Path, outcomes: list[JobOutcome]) -> Path:
    """The JSON report: a summary and one record per input."""
    counts = {status.value: sum(o.status is status for o in outcomes) for status in Status}
    report = {"summary": counts, "inputs": [o.as_record() for o in outcomes]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return path
