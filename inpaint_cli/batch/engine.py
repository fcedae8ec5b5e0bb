"""Running jobs without losing anything: decode ahead, fill, encode behind, resume, report.

Planning (pairing images with masks and outputs, and checking every read and write before anything
runs) is in `jobs.py`; its names are re-exported here. Every per-input problem becomes a failed
`JobOutcome` (the batch goes on). Outputs are written atomically, each with a provenance record
(`provenance.py`), so a run killed at any moment leaves only complete outputs, and a rerun skips
those made with the same settings, redoes those missing an artefact asked for (a panel,
intermediates) and refuses to mix in outputs made otherwise.

`workers` threads decode the next images and as many encode finished ones while the model works in
the calling thread, so it never waits for a file; at most `2 * workers + 1` decoded images are held.

Types other features plug into: `jobs.Plan` (the jobs and unused masks), `jobs.Job` (one image,
its masks, its output), `JobOutcome` (what happened to one job; `as_record()` is its report entry),
`Outcomes` (all of them, with `not_run` and `interrupted`), `write_report`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from inpaint_cli.batch import provenance
from inpaint_cli.batch.jobs import (  # noqa: F401 - re-exported: the batch's planning types and functions
    MASK_NAME,
    OUTPUT_FOLDER_SUFFIX,
    PANEL_SUFFIX,
    Existing,
    Job,
    MaskIndex,
    Plan,
    RunSettings,
    artefacts,
    check_plan,
    default_output_folder,
    intermediates_folder,
    panel_path,
    plan_folder,
    plan_run,
    plan_single,
    saved_mask_path,
    walk_images,
)
from inpaint_cli.batch.outcomes import JobOutcome, Outcomes, Status, status_counts, write_report  # noqa: F401
from inpaint_cli.batch.provenance import Provenance
from inpaint_cli.batch.resume import (  # noqa: F401 - re-exported
    dry_run_action,
    header_problem,
    output_complete,
    precheck,
    remove_stale_parts,
)
from inpaint_cli.engine.strategies import Box
from inpaint_cli.errors import InpaintError
from inpaint_cli.files import storage
from inpaint_cli.imaging import imageio
from inpaint_cli.imaging.masks import read_mask, write_mask

if TYPE_CHECKING:  # torch: imported by the model's own module when one is loaded, not to plan a run
    from inpaint_cli.engine.inpainter import Inpainter, InpaintResult

logger = logging.getLogger(__name__)

T = TypeVar("T")


# --- one job in three steps: read, fill, write ------------------------------------------------------


@dataclass
class Loaded:
    """A decoded input, ready for the model."""

    picture: imageio.Picture
    hole: np.ndarray
    notes: list[str] = field(default_factory=list)
    """Warnings about the files (only the first frame of an APNG or multi-page TIFF is used)."""
    probability: np.ndarray | None = None
    """--mask auto with --save-intermediates: the detector's probability map, written with them."""


def load(job: Job, settings: RunSettings) -> Loaded:
    """Decode the image and its mask(s) into a hole of the image's size."""
    if not job.masks:  # --mask auto: the detector finds the hole
        from inpaint_cli.detect.jobs import detect_for_run

        with storage.local_copies([job.image]) as (image,):
            picture = imageio.read_image(image, max_pixels=settings.max_pixels)
        hole, probability = detect_for_run(picture.pixels, settings.detector, settings.dilate)
        keep = probability if settings.intermediates_dir is not None else None
        return Loaded(picture, hole, list(picture.notes), probability=keep)
    # Files behind URLs are read from local copies (the codecs need files); local ones in place.
    notes: list[str] = []
    with storage.local_copies([job.image, *job.masks]) as (image, *masks):
        picture = imageio.read_image(image, max_pixels=settings.max_pixels)
        hole = read_mask(
            masks,
            size=picture.pixels.shape[:2],
            threshold=settings.mask_threshold,
            invert=settings.invert_mask,
            dilate=settings.dilate,
            max_pixels=settings.max_pixels,
            image=job.image,
            notes=notes,
        )
    return Loaded(picture, hole, [*picture.notes, *notes])


def save(
    outcome: JobOutcome,
    loaded: Loaded,
    result: InpaintResult,
    settings: RunSettings,
    made_with: Provenance | None = None,
) -> None:
    """Write the output (and panel, intermediates) of a filled image, each atomically, between two
    provenance records: `complete: false` first (the files that follow are ours even if cut short),
    `complete: true` last (everything it lists is there)."""
    job = outcome.job
    folder = intermediates_folder(job, settings)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    if made_with is not None:
        _write_record(job, made_with, [], folder, complete=False)
    # A URL output is written locally, then put as one object (storage.staged_write).
    with storage.staged_write(job.output) as output:
        imageio.write_image(
            output,
            loaded.picture.with_pixels(result.pixels),
            format=settings.output_format,
            quality=settings.quality,
            # Reaching here with SKIP means the existing output is ours and to be redone.
            overwrite=settings.existing is not Existing.ERROR,
        )
    outcome.written.append(job.output)
    outcome.warnings += _depth_lost(loaded.picture, job.output, settings.output_format)
    if settings.save_mask:
        with storage.staged_write(saved_mask_path(job.output)) as staged:
            write_mask(staged, loaded.hole)
        outcome.written.append(saved_mask_path(job.output))
    capture = folder is not None
    if settings.panel or capture:
        from inpaint_cli.review import visualize  # torch: only for the pictures asked for

        panel = visualize.make_panel(loaded.picture.pixels, loaded.hole, result.pixels, result.coarse)
    if settings.panel:
        with storage.staged_write(panel_path(job.output)) as staged:
            visualize.save_png(staged, panel)
        outcome.written.append(panel_path(job.output))
    if capture and loaded.probability is not None:
        from inpaint_cli.detect.jobs import write_probability

        outcome.written += write_probability(folder, loaded.probability)
    if capture and result.intermediates_hole is not None:
        outcome.written += visualize.save_intermediates(
            folder,
            result.intermediates,
            result.intermediates_hole,
            panel,
            tensors=settings.intermediate_tensors,
            box=result.intermediates_box,
        )
    elif capture:
        outcome.warnings.append(result.intermediates_missing or "no intermediates: the mask has no hole")
    if made_with is not None:
        _write_record(job, made_with, outcome.written, folder, complete=True)
        outcome.provenance = made_with.as_dict()


def _write_record(
    job: Job, made_with: Provenance, written: list[Path], folder: Path | None, *, complete: bool
) -> None:
    record = provenance.record_path(job.output)
    with storage.staged_write(record) as staged:
        provenance.write_record(
            staged, made_with, image=job.image, written=written, intermediates=folder, complete=complete
        )


def _depth_lost(picture: imageio.Picture, output: Path, output_format: str | None) -> list[str]:
    """A warning when 16-bit samples go into a format that holds only 8 (JPEG, WebP)."""
    written_as = imageio.output_format(output, output_format)
    if picture.pixels.dtype != np.uint16 or written_as not in ("JPEG", "WEBP"):
        return []
    keep = "use --format png or tiff to keep 16 bits"
    return [f"{output}: the 16-bit image was written as 8-bit {written_as} ({keep})"]


def _attempt(outcome: JobOutcome, step: Callable[[], T], stage: str) -> T | None:
    """Run one step of a job, adding its time (in total and to its stage); a problem with this
    input fails the outcome."""
    started = time.perf_counter()
    try:
        return step()
    except InpaintError as exc:
        outcome.error = exc.one_line()
    except OSError as exc:  # unreadable file, full disk: this input fails, the batch goes on
        outcome.error = f"{exc.filename or outcome.job.image}: {exc.strerror or exc}"
    finally:
        seconds = time.perf_counter() - started
        outcome.seconds += seconds
        outcome.stages[stage] = outcome.stages.get(stage, 0.0) + seconds
    outcome.status = Status.FAILED
    return None


def _load_step(outcome: JobOutcome, settings: RunSettings) -> Loaded | None:
    loaded = _attempt(outcome, lambda: load(outcome.job, settings), "read")
    if loaded is not None:
        outcome.warnings += loaded.notes
    if loaded is not None and not loaded.hole.any():
        if outcome.job.masks:
            outcome.warnings.append(f"{outcome.job.masks[0]}: mask has no hole pixels; image copied through")
        else:
            outcome.warnings.append(f"{outcome.job.image}: no damage found; image copied through")
    return loaded


def _fill_step(
    outcome: JobOutcome, inpainter: Inpainter, loaded: Loaded, capture: bool, watch: Watch
) -> InpaintResult | None:
    job = outcome.job

    def fill() -> InpaintResult:
        plan = inpainter.plan(loaded.hole)
        if watch.on_plan is not None:
            watch.on_plan(job, plan.describe(), inpainter.estimate_seconds(plan))
        on_progress = watch.on_progress
        progress = None if on_progress is None else lambda done, total: on_progress(job, done, total)
        pixels = loaded.picture.pixels
        return inpainter.inpaint(pixels, loaded.hole, capture=capture, plan=plan, progress=progress)

    result = _attempt(outcome, fill, "fill")
    if result is not None:
        plan = result.plan
        outcome.strategy = plan.describe() if plan is not None else None
        outcome.warnings += [f"{job.image}: {warning}" for warning in (plan.warnings if plan else ())]
        outcome.stages.update({f"fill: {stage}": seconds for stage, seconds in result.seconds.items()})
    return result


@dataclass(frozen=True)
class Watch:
    """Who hears about a job while the model fills it (all in the calling thread)."""

    on_plan: Callable[[Job, str, float | None], None] | None = None
    """Before filling: the plan in words and its estimated seconds (None when too quick to estimate)."""
    on_progress: Callable[[Job, int, int], None] | None = None
    """After each network call: passes done of the plan's total."""


def describe_plan(strategy: str, boxes: Sequence[Box], size: tuple[int, int]) -> str:
    """What a strategy did with one image, for the report: `auto: 2 crop boxes, downscaled to 0.50`."""
    if not boxes:
        return f"{strategy}: nothing to fill"
    whole = len(boxes) == 1 and (boxes[0].height, boxes[0].width) == tuple(size)
    parts = ["whole image" if whole else f"{len(boxes)} crop box{'es' if len(boxes) > 1 else ''}"]
    smallest = min(box.scale for box in boxes)
    if smallest < 1:
        parts.append(f"downscaled to {smallest:.2f}")
    tiles = sorted({box.tile for box in boxes if box.tile is not None})
    if tiles:
        parts.append(f"in {'/'.join(map(str, tiles))} px tiles")
    return f"{strategy}: {', '.join(parts)}"


def _save_step(
    outcome: JobOutcome,
    loaded: Loaded,
    result: InpaintResult,
    settings: RunSettings,
    made_with: Provenance | None,
) -> JobOutcome:
    _attempt(outcome, lambda: save(outcome, loaded, result, settings, made_with), "write")
    return outcome


# --- many jobs: decode ahead and encode behind in threads, the model in the calling thread ------------


def restore(inpainter: Inpainter, job: Job, settings: RunSettings) -> JobOutcome:
    """Process one job; problems with this input become a failed outcome, never an exception."""
    return run_jobs(inpainter, [job], settings)[0]


def run_jobs(
    inpainter: Inpainter,
    jobs: Iterable[Job],
    settings: RunSettings,
    on_outcome: Callable[[JobOutcome], None] | None = None,
    fail_fast: bool = False,
    *,
    workers: int = 1,
    on_start: Callable[[Job], None] | None = None,
    watch: Watch | None = None,
    made_with: Provenance | None = None,
) -> Outcomes:
    """Run jobs, returning their outcomes in job order (with the jobs never started, if any).

    `workers` threads decode the next images and `workers` more encode finished ones while the
    model fills the current one. `on_start` sees each job as the model takes it, `watch` its plan
    and progress, and `on_outcome` each result as it comes (all in the calling thread). With
    `fail_fast`, nothing new starts after a failure; outputs being written are finished. Ctrl-C
    cancels the reads that have not started, lets every queued write finish and returns with
    `interrupted` set.

    `made_with` is recorded beside each output and compared on resume (`precheck`); by default it is
    built from `inpainter` (`provenance_of`), which knows a named model's checksum but not that of a
    `--checkpoint` file: pass `provenance_of(inpainter, settings, checkpoint=...)` then.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    jobs = list(jobs)
    made_with = made_with or provenance_of(inpainter, settings)
    remove_stale_parts(
        (output for job in jobs for output in artefacts(job, settings)),
        folders=[folder for job in jobs if (folder := intermediates_folder(job, settings)) is not None],
    )
    queues = _Queues(jobs, inpainter, settings, made_with, workers, fail_fast, on_outcome)
    capture = settings.intermediates_dir is not None
    interrupted = False
    try:
        queues.read_ahead()
        while queues.loading:
            index, outcome, future = queues.loading.popleft()
            queues.read_ahead()
            loaded = future.result()
            result = None
            if loaded is not None:
                if on_start is not None:
                    on_start(outcome.job)
                result = _fill_step(outcome, inpainter, loaded, capture, watch or Watch())
            if result is None:
                queues.finish(index, outcome)
            else:
                queues.save(index, outcome, loaded, result)
            queues.collect_saved(block_above=workers)
            if queues.stop:
                queues.drop_reads()
        queues.collect_saved(block_above=0)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        queues.close()
    not_run = [job for index, job in enumerate(jobs) if index not in queues.outcomes]
    outcomes = queues.outcomes
    return Outcomes((outcomes[index] for index in sorted(outcomes)), not_run, interrupted)


class _Queues:
    """What `run_jobs` has under way: jobs not read yet, reads and writes in their thread pools, and
    the outcomes reported so far (each exactly once, in the calling thread)."""

    def __init__(
        self,
        jobs: list[Job],
        inpainter: Inpainter,
        settings: RunSettings,
        made_with: Provenance,
        workers: int,
        fail_fast: bool,
        on_outcome: Callable[[JobOutcome], None] | None,
    ) -> None:
        self.pending = iter(enumerate(jobs))
        self.inpainter, self.settings, self.made_with = inpainter, settings, made_with
        self.workers, self.fail_fast, self.on_outcome = workers, fail_fast, on_outcome
        self.outcomes: dict[int, JobOutcome] = {}
        self.loading: deque[tuple[int, JobOutcome, Future[Loaded | None]]] = deque()
        self.saving: deque[tuple[int, Future[JobOutcome]]] = deque()
        # Separate pools: a slow encode never delays the decode the model is about to wait for.
        self.readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaint-read")
        self.writers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaint-write")
        self.written: dict[int, JobOutcome] = {}
        """Every write that finished, as its writer thread saw it."""
        self.stop = False
        """Set after a failure with `fail_fast`: nothing new starts."""

    def finish(self, index: int, outcome: JobOutcome) -> None:
        if index in self.outcomes:  # already reported before a Ctrl-C landed: once only
            return
        self.outcomes[index] = outcome
        self.stop = self.stop or (self.fail_fast and outcome.status is Status.FAILED)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def read_ahead(self) -> None:
        """Start decoding the next jobs, up to `workers` ahead; jobs decided from their files
        alone (skipped, refused) are reported at once."""
        while not self.stop and len(self.loading) < self.workers:
            index, job = next(self.pending, (None, None))
            if job is None:
                return
            decided = precheck(job, self.settings, self.made_with)
            if decided is not None:
                self.finish(index, decided)
                continue
            outcome = JobOutcome(job, Status.DONE, strategy=self.inpainter.strategy.value)
            self.loading.append((index, outcome, self.readers.submit(_load_step, outcome, self.settings)))

    def save(self, index: int, outcome: JobOutcome, loaded: Loaded, result: InpaintResult) -> None:
        """Queue the writing of a filled job, once fewer than `workers` writes are queued."""

        def write() -> JobOutcome:
            saved = _save_step(outcome, loaded, result, self.settings, self.made_with)
            # Noted by the writer thread, which no Ctrl-C interrupts: a write that a Ctrl-C in the
            # calling thread kept out of `saving` (between `submit` and `append`) is still reported.
            self.written[index] = saved
            return saved

        self.collect_saved(block_above=self.workers - 1)
        self.saving.append((index, self.writers.submit(write)))

    def collect_saved(self, block_above: int) -> None:
        """Report finished writes in order; wait while more than `block_above` are queued."""
        while self.saving and (len(self.saving) > block_above or self.saving[0][1].done()):
            index, future = self.saving[0]
            self.finish(index, future.result())
            self.saving.popleft()  # only now: a Ctrl-C landing in between finds it still listed

    def drop_reads(self) -> None:
        for _, _, dropped in self.loading:
            dropped.cancel()
        self.loading.clear()

    def close(self) -> None:
        """Stop both pools and report the writes let finish: reads not started are cancelled, but
        every queued write runs (its image is filled already; at most `workers` are queued)."""
        self.readers.shutdown(wait=True, cancel_futures=True)
        # Not cancelled: under load a write just submitted may not have started when Ctrl-C lands,
        # and cancelling it threw a finished fill away.
        self.writers.shutdown(wait=True)
        # Left only when interrupted (Ctrl-C): report the writes that were let finish.
        for index in sorted(self.written):
            self.finish(index, self.written[index])


def provenance_of(
    inpainter: Inpainter,
    settings: RunSettings,
    *,
    checkpoint: Path | None = None,
    detector: str | None = None,
) -> Provenance:
    """The provenance of outputs this inpainter makes with these settings (`detector`: the one
    that finds the holes of a `--mask auto` run)."""
    return provenance.for_run(
        model=inpainter.name,
        weights_sha256=provenance.weights_checksum(inpainter.name, checkpoint),
        strategy=inpainter.strategy.value,
        precision=inpainter.dtype_label,
        settings=settings,
        plan_options={
            "max_side": inpainter.max_side,
            "tile_size": inpainter.tile_size,
            "tile_overlap": inpainter.tile_overlap,
            "crop_margin": inpainter.crop_margin,
        },
        device=str(inpainter.device),
        detector=detector,
    )
