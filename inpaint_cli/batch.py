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

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from inpaint_cli import headers, imageio, provenance, storage, visualize
from inpaint_cli.atomic import TEMPORARY_NAME, remove_if_abandoned
from inpaint_cli.engine import Inpainter, InpaintResult
from inpaint_cli.errors import InpaintError, InputError, OutputError
from inpaint_cli.jobs import (  # noqa: F401 - re-exported: the batch's planning types and functions
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
    walk_images,
)
from inpaint_cli.provenance import Provenance
from inpaint_cli.strategies import Box

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Status(str, Enum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class JobOutcome:
    """What happened to one job. `as_record()` is its entry in the JSON report (README, "Batches")."""

    job: Job
    status: Status
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    strategy: str | None = None
    written: list[Path] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per step (`read`, `fill`, `write`), for `-v`."""
    placement: dict[str, str] = field(default_factory=dict)
    """Where a distributed batch ran this input (`node`, `worker`); empty for a local run."""
    provenance: dict[str, Any] | None = None
    """What made the output: this run's settings when done, the recorded ones when skipped."""

    def as_record(self) -> dict:
        """The JSON report entry of this input; every path absolute."""
        shown = provenance.absolute
        return {
            "image": shown(self.job.image),
            "masks": [shown(m) for m in self.job.masks],
            "output": shown(self.job.output),
            "status": self.status.value,
            "strategy": self.strategy,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "warnings": self.warnings,
            "written": [shown(p) for p in self.written],
            "provenance": self.provenance,
            **self.placement,
        }


# --- one job in three steps: read, fill, write ------------------------------------------------------


@dataclass
class Loaded:
    """A decoded input, ready for the model."""

    picture: imageio.Picture
    hole: np.ndarray
    notes: list[str] = field(default_factory=list)
    """Warnings about the files (only the first frame of an APNG or multi-page TIFF is used)."""


def output_complete(path: Path) -> bool:
    """Whether an existing output file is whole: outputs are renamed into place only once fully
    written, so any non-empty file under the final name is complete."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def remove_stale_parts(outputs: Iterable[Path]) -> list[Path]:
    """Delete the temporary files that killed runs left beside these outputs, listing each folder once.

    `atomic.atomic_path` names them `.<stem>.<random>.part<suffix>`; the random part has no dot,
    so the temporary file of `x.y.png` is never taken for one of `x.png`. A temporary file that a
    live process holds (a second batch on the same folder) is left alone.
    """
    names_by_folder: dict[Path, set[str]] = {}
    for output in outputs:
        names_by_folder.setdefault(output.parent, set()).add(output.name)
    removed = []
    for folder, names in names_by_folder.items():
        if storage.is_remote(folder):  # object stores get whole objects in one put: no temporary files
            continue
        try:
            entries = os.listdir(folder)
        except OSError:  # not created yet, or not ours to list: nothing of ours to clean
            continue
        for entry in entries:
            match = TEMPORARY_NAME.fullmatch(entry)
            if match and match["stem"] + match["suffix"] in names and remove_if_abandoned(folder / entry):
                removed.append(folder / entry)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run", len(removed))
    return sorted(removed)


def precheck(job: Job, settings: RunSettings, made_with: Provenance | None = None) -> JobOutcome | None:
    """The outcome of a job decided without reading its image: a known problem or an existing output.

    With `Existing.SKIP` (a resume) an existing output is skipped only if its provenance record says
    it was made with the same settings as `made_with` and has every artefact asked for now; it is
    redone if its record shows it was cut short or lacks an artefact (a panel), and refused if it
    was made otherwise or by something else: `--overwrite` redoes it.
    """
    problem = job.problem
    if problem is None and job.output.resolve() == job.image.resolve():
        problem = OutputError("output would overwrite the input", path=job.output, hint="choose another -o")
    if problem is None and job.output.exists():
        if settings.existing is Existing.ERROR:
            problem = OutputError("output exists", path=job.output, hint="use --overwrite to replace it")
        elif settings.existing is Existing.SKIP:
            return _resume(job, settings, made_with)
    if problem is not None:
        return JobOutcome(job, Status.FAILED, error=problem.one_line())
    return None


def _resume(job: Job, settings: RunSettings, made_with: Provenance | None) -> JobOutcome | None:
    """The outcome of a job whose output exists, in a resumed batch; None: (re)do it."""
    if not output_complete(job.output):
        return None
    record = provenance.read_record(job.output)
    redo = "use --overwrite to redo it, or choose another -o"
    if record is None:
        problem = OutputError(
            "output exists and has no provenance record (made by another program or an older inpaint)",
            path=job.output,
            hint=redo,
        )
        return JobOutcome(job, Status.FAILED, error=problem.one_line())
    if not record["complete"]:
        return None  # ours, cut short before its panel or intermediates: redo with these settings
    differences = made_with.differences(record["provenance"]) if made_with is not None else []
    if differences:
        problem = OutputError(
            f"output made with other settings: {', '.join(differences)}", path=job.output, hint=redo
        )
        return JobOutcome(job, Status.FAILED, error=problem.one_line())
    panel = panel_path(job.output) if settings.panel else None
    if provenance.missing_artefacts(record, panel, intermediates_folder(job, settings)):
        return None  # same settings, so the redone output is the same; the missing artefacts appear
    return JobOutcome(job, Status.SKIPPED, provenance=record["provenance"])


def dry_run_action(job: Job, settings: RunSettings, made_with: Provenance | None = None) -> tuple[str, bool]:
    """What a run would do with a job, judged from names and file headers only (milliseconds per
    file): `("run", False)`, `("skip: ...", False)`, or the one-line error and True if it would fail."""
    decided = precheck(job, settings, made_with)
    if decided is not None:
        failed = decided.status is Status.FAILED
        return (decided.error if failed else "skip: output exists, made with the same settings"), failed
    problem = header_problem(job, settings)
    return ("run", False) if problem is None else (problem, True)


def header_problem(job: Job, settings: RunSettings) -> str | None:
    """Why a job's files would fail, seen in their headers: not an image, too large, truncated, a
    mask of another size. None if the headers look fine (decoding may still find damage)."""
    if storage.is_remote(job.image) or any(map(storage.is_remote, job.masks)):
        return None  # headers of objects in a store are not fetched for a dry run
    try:
        image = headers.read_header(job.image, max_pixels=settings.max_pixels)
        for path, header in [(job.image, image)] + [
            (mask, headers.read_header(mask, max_pixels=settings.max_pixels)) for mask in job.masks
        ]:
            if header.truncated:
                raise InputError("file is truncated", path=path, hint="re-export or re-scan it")
            if header.size != image.size:
                raise imageio.size_mismatch(path, header.size, image.size, job.image)
    except InpaintError as error:
        return error.one_line()
    return None


def load(job: Job, settings: RunSettings) -> Loaded:
    """Decode the image and its mask(s) into a hole of the image's size."""
    # Files behind URLs are read from local copies (the codecs need files); local ones in place.
    notes: list[str] = []
    with storage.local_copies([job.image, *job.masks]) as (image, *masks):
        picture = imageio.read_image(image, max_pixels=settings.max_pixels)
        hole = imageio.read_mask(
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
    capture = folder is not None
    if settings.panel or capture:
        panel = visualize.make_panel(loaded.picture.pixels, loaded.hole, result.pixels, result.coarse)
    if settings.panel:
        with storage.staged_write(panel_path(job.output)) as staged:
            visualize.save_png(staged, panel)
        outcome.written.append(panel_path(job.output))
    if capture and result.intermediates_hole is not None:
        outcome.written += visualize.save_intermediates(
            folder,
            result.intermediates,
            result.intermediates_hole,
            panel,
            tensors=settings.intermediate_tensors,
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
        outcome.warnings.append(f"{outcome.job.masks[0]}: mask has no hole pixels; image copied through")
    return loaded


def _fill_step(
    outcome: JobOutcome, inpainter: Inpainter, loaded: Loaded, capture: bool, watch: Watch
) -> InpaintResult | None:
    job = outcome.job

    def fill() -> InpaintResult:
        plan = inpainter.plan(loaded.hole, capture=capture)
        if watch.on_plan is not None:
            watch.on_plan(job, plan.describe(), inpainter.estimate_seconds(plan))
        on_progress = watch.on_progress
        progress = None if on_progress is None else lambda done, total: on_progress(job, done, total)
        pixels = loaded.picture.pixels
        return inpainter.inpaint(pixels, loaded.hole, capture=capture, plan=plan, progress=progress)

    result = _attempt(outcome, fill, "fill")
    if result is not None:
        outcome.strategy = result.plan.describe() if result.plan is not None else None
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


class Outcomes(list[JobOutcome]):
    """The outcomes of `run_jobs` in job order, and what did not run."""

    def __init__(self, outcomes: Iterable[JobOutcome], not_run: list[Job], interrupted: bool) -> None:
        super().__init__(outcomes)
        self.not_run = not_run
        """Jobs never started (`fail_fast`, Ctrl-C), in job order."""
        self.interrupted = interrupted


def status_counts(outcomes: Iterable[JobOutcome]) -> dict[Status, int]:
    """How many outcomes have each status: the one count behind the report and the summary."""
    counts = dict.fromkeys(Status, 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


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
    and progress, and `on_outcome`
    each result as it comes (both in the calling thread). With `fail_fast`, nothing new starts
    after a failure; outputs being written are finished. Ctrl-C cancels what has not started,
    lets the writes under way finish and returns with `interrupted` set.

    `made_with` is recorded beside each output and compared on resume (`precheck`); by default it is
    built from `inpainter` (`provenance_of`), which knows a named model's checksum but not that of a
    `--checkpoint` file: pass `provenance_of(inpainter, settings, checkpoint=...)` then.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    jobs = list(jobs)
    made_with = made_with or provenance_of(inpainter, settings)
    remove_stale_parts(output for job in jobs for output in artefacts(job, settings))
    pending = iter(enumerate(jobs))
    outcomes: dict[int, JobOutcome] = {}
    loading: deque[tuple[int, JobOutcome, Future[Loaded | None]]] = deque()
    saving: deque[tuple[int, Future[JobOutcome]]] = deque()
    # Separate pools: a slow encode never delays the decode the model is about to wait for.
    readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaint-read")
    writers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaint-write")
    stop = False

    def finish(index: int, outcome: JobOutcome) -> None:
        nonlocal stop
        outcomes[index] = outcome
        stop = stop or (fail_fast and outcome.status is Status.FAILED)
        if on_outcome is not None:
            on_outcome(outcome)

    def read_ahead() -> None:
        while not stop and len(loading) < workers:
            index, job = next(pending, (None, None))
            if job is None:
                return
            decided = precheck(job, settings, made_with)
            if decided is not None:
                finish(index, decided)
                continue
            outcome = JobOutcome(job, Status.DONE, strategy=inpainter.strategy.value)
            loading.append((index, outcome, readers.submit(_load_step, outcome, settings)))

    def collect_saved(block_above: int) -> None:
        """Report finished writes in order; wait while more than `block_above` are queued."""
        while saving and (len(saving) > block_above or saving[0][1].done()):
            index, future = saving.popleft()
            finish(index, future.result())

    capture = settings.intermediates_dir is not None
    interrupted = False
    try:
        read_ahead()
        while loading:
            index, outcome, future = loading.popleft()
            read_ahead()
            loaded = future.result()
            result = None
            if loaded is not None:
                if on_start is not None:
                    on_start(outcome.job)
                result = _fill_step(outcome, inpainter, loaded, capture, watch or Watch())
            if result is None:
                finish(index, outcome)
            else:
                collect_saved(block_above=workers - 1)
                saving.append(
                    (index, writers.submit(_save_step, outcome, loaded, result, settings, made_with))
                )
            collect_saved(block_above=workers)
            if stop:
                for _, _, dropped in loading:
                    dropped.cancel()
                loading.clear()
        collect_saved(block_above=0)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True, cancel_futures=True)
        # Left only when interrupted (Ctrl-C): report the writes that were let finish.
        for index, future in saving:
            if not future.cancelled():
                finish(index, future.result())
    not_run = [job for index, job in enumerate(jobs) if index not in outcomes]
    return Outcomes((outcomes[index] for index in sorted(outcomes)), not_run, interrupted)


def write_report(
    path: Path,
    outcomes: Sequence[JobOutcome],
    *,
    not_run: Sequence[Job] = (),
    unused_masks: Sequence[Path] = (),
) -> Path:
    """The JSON report: a summary and one record per input, plus inputs never started
    (`--fail-fast`, Ctrl-C) and masks that matched no image. Every path in it is absolute."""
    counts = {status.value: count for status, count in status_counts(outcomes).items()}
    report = {
        "summary": {**counts, "not_run": len(not_run), "unused_masks": len(unused_masks)},
        "inputs": [o.as_record() for o in outcomes],
        "not_run": [provenance.absolute(job.image) for job in not_run],
        "unused_masks": [provenance.absolute(mask) for mask in unused_masks],
    }
    with imageio.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def provenance_of(
    inpainter: Inpainter, settings: RunSettings, *, checkpoint: Path | None = None
) -> Provenance:
    """The provenance of outputs this inpainter makes with these settings."""
    return provenance.for_run(
        model=inpainter.name,
        weights_sha256=provenance.weights_checksum(inpainter.name, checkpoint),
        strategy=inpainter.strategy.value,
        precision=str(inpainter.dtype).removeprefix("torch."),
        settings=settings,
        plan_options={
            "max_side": inpainter.max_side,
            "tile_size": inpainter.tile_size,
            "tile_overlap": inpainter.tile_overlap,
            "crop_margin": inpainter.crop_margin,
        },
        device=str(inpainter.device),
    )
