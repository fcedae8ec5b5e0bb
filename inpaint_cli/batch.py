"""Jobs: one image, its mask(s) and its output, and running many of them without losing anything.

A single `inpaint run photo.jpg --mask m.png` is a batch of one. A folder is walked, each image is
paired with its mask(s) by name (DESIGN.md, "Batch pairing") and its output mirrors the input tree.
Every per-input problem becomes a failed `JobOutcome` (the batch goes on). Outputs are written
atomically, so a run killed at any moment leaves only complete outputs, and a rerun skips them.

`workers` threads decode the next images and as many encode finished ones while the model works in
the calling thread, so it never waits for a file; at most `2 * workers + 1` decoded images are held.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TypeVar

import numpy as np

from inpaint_cli import imageio, visualize
from inpaint_cli.atomic import TEMPORARY_NAME
from inpaint_cli.engine import Inpainter, InpaintResult
from inpaint_cli.errors import InpaintError, InputError, OutputError, UsageError
from inpaint_cli.strategies import Box

PANEL_SUFFIX = "_panel"
OUTPUT_FOLDER_SUFFIX = "_inpainted"
"""Default batch output folder: `<input folder>_inpainted/` beside the input folder."""
MASK_NAME = re.compile(r"_mask\d*$")
"""Official LaMa mask naming: `<stem>_mask.<ext>` or `<stem>_mask<N>.<ext>`."""
"""Temporary files of `atomic.atomic_path`: `.<stem>.<random>.part<suffix>`."""

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
    relative: Path | None = None
    """The image's path inside the input folder (a batch mirrors it); None for a single image."""
    problem: InpaintError | None = None
    """Why this input cannot be processed, found while pairing (no mask, clashing output)."""

    @property
    def name(self) -> Path:
        """The image's name as shown to users and mirrored in intermediates folders."""
        return self.relative or Path(self.image.name)


@dataclass
class JobOutcome:
    job: Job
    status: Status
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    strategy: str | None = None
    written: list[Path] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per step (`read`, `fill`, `write`), for `-v`."""

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


@dataclass
class Plan:
    """The jobs of one `inpaint run`, and what pairing found but could not use."""

    jobs: list[Job]
    unused_masks: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Folders that could not be listed, as one-line messages."""


def panel_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}{PANEL_SUFFIX}.png")


def default_output_folder(folder: Path) -> Path:
    """`<folder>_inpainted` beside the input folder: never inside the tree it mirrors."""
    resolved = folder.resolve()
    return resolved.parent / f"{resolved.name}{OUTPUT_FOLDER_SUFFIX}"


# --- pairing ---------------------------------------------------------------------------------------


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def walk_images(
    root: Path, *, recursive: bool, exclude: Iterable[Path] = (), errors: list[str] | None = None
) -> list[Path]:
    """Image files (by extension) under `root`, sorted; hidden names and the `exclude` folders that
    lie inside `root` are left out. Folders that cannot be listed are appended to `errors`.
    """
    top = root.resolve()
    excluded = [path.resolve() for path in exclude if top in path.resolve().parents]

    def listing_failed(error: OSError) -> None:
        if errors is not None:
            errors.append(f"{error.filename}: cannot list folder ({error.strerror})")

    found: list[Path] = []
    for folder, subfolders, files in os.walk(root, onerror=listing_failed):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if recursive
            and not name.startswith(".")  # version control, editors, caches
            and not any(_is_inside((Path(folder) / name).resolve(), skip) for skip in excluded)
        )
        found += (path for path in map(Path(folder).joinpath, files) if imageio.is_image_file(path))
    return sorted(found)


class MaskIndex:
    """The mask files of a mask folder, found by the relative path of the image they belong to.

    For `a/b.jpg` the masks are `a/b.<ext>`, `a/b_mask.<ext>` and `a/b_mask<N>.<ext>`. When masks
    sit beside the images (`shared`), only the `_mask` names are masks: `a/b.png` is another image.
    """

    def __init__(
        self,
        root: Path,
        *,
        recursive: bool,
        shared: bool = False,
        exclude: Iterable[Path] = (),
        errors: list[str] | None = None,
    ) -> None:
        self.root = root
        self.shared = shared
        self.files: list[Path] = []
        self._by_key: dict[tuple[Path, str], list[Path]] = {}
        self._used: set[Path] = set()
        for path in walk_images(root, recursive=recursive, exclude=exclude, errors=errors):
            relative = path.relative_to(root)
            base = MASK_NAME.sub("", relative.stem)
            if shared and base == relative.stem:
                continue
            self.files.append(path)
            for stem in {relative.stem, base}:
                self._by_key.setdefault((relative.parent, stem), []).append(path)

    def lookup(self, relative: Path) -> tuple[Path, ...]:
        """The masks of the image at `relative` (OR-ed by the reader), sorted; marks them used."""
        masks = tuple(sorted(self._by_key.get((relative.parent, relative.stem), [])))
        self._used.update(masks)
        return masks

    def unused(self) -> list[Path]:
        return [path for path in self.files if path not in self._used]

    def describe_search(self, relative: Path) -> str:
        """Where `lookup` looked, for the 'no mask' message."""
        stem = self.root / relative.parent / relative.stem
        if self.shared:
            return f"looked for {stem}_mask*.*"
        return f"looked for {stem}.* and {stem}_mask*.*"


def plan_folder(
    folder: Path,
    mask: Path,
    output_folder: Path | None = None,
    *,
    recursive: bool = False,
    output_format: str | None = None,
    written_elsewhere: Iterable[Path] = (),
) -> Plan:
    """Pair every image under `folder` with its mask(s) and give it an output in the mirrored tree.

    `mask` is a folder of masks paired by name (it may be `folder` itself or inside it) or one file
    used for every image. Images without a mask get a `problem`, not a guess. The output folder and
    `written_elsewhere` (intermediates) are never walked, so a rerun does not take results for photos.
    """
    output_folder = output_folder or default_output_folder(folder)
    if output_folder.resolve() == folder.resolve():
        raise UsageError(
            "the output folder is the input folder",
            path=output_folder,
            hint="give another -o: outputs would overwrite the inputs",
        )
    ours = (output_folder, *written_elsewhere)
    unreadable: list[str] = []
    index = None
    if mask.is_dir():
        shared = mask.resolve() == folder.resolve()
        index = MaskIndex(
            mask, recursive=recursive, shared=shared, exclude=(folder, *ours), errors=unreadable
        )
    mask_files = {path.resolve() for path in index.files} if index else {mask.resolve()}
    images = [
        path
        for path in walk_images(folder, recursive=recursive, exclude=(mask, *ours), errors=unreadable)
        if path.resolve() not in mask_files
    ]
    inputs = {path.resolve() for path in images} | mask_files
    claimed: dict[Path, Path] = {}
    jobs = []
    for image in images:
        relative = image.relative_to(folder)
        output = output_folder / relative
        if output_format is not None:
            # The extension a single image's output gets for this format (`.tif` for tiff, ...).
            output = output.with_suffix(imageio.extension_for_format(output_format))
        masks = index.lookup(relative) if index else (mask,)
        target = output.resolve()
        problem = None
        if not masks:
            problem = InputError("no mask found", path=image, hint=index.describe_search(relative))
        elif target in inputs:
            problem = OutputError("output would overwrite an input", path=output, hint="give another -o")
        elif target in claimed:
            problem = OutputError(f"same output as {claimed[target]}", path=output, hint="rename one of them")
        claimed.setdefault(target, image)
        jobs.append(Job(image, masks, output, relative=relative, problem=problem))
    return Plan(jobs, unused_masks=index.unused() if index else [], unreadable=unreadable)


def plan_single(
    image: Path, mask: Path, output: Path | None = None, output_format: str | None = None
) -> Plan:
    """The plan of one image; `mask` is its mask file or a folder holding it by name."""
    output = imageio.default_output_path(image, output, output_format)
    if not mask.is_dir():
        return Plan([Job(image, (mask,), output)])
    index = MaskIndex(mask, recursive=False, shared=mask.resolve() == image.parent.resolve())
    relative = Path(image.name)
    masks = index.lookup(relative)
    problem = None if masks else InputError("no mask found", path=image, hint=index.describe_search(relative))
    return Plan([Job(image, masks, output, problem=problem)])


# --- one job in three steps: read, fill, write ------------------------------------------------------


@dataclass
class Loaded:
    """A decoded input, ready for the model."""

    picture: imageio.Picture
    hole: np.ndarray


def _outputs(job: Job, settings: RunSettings) -> list[Path]:
    """The files a job writes beside its output (intermediates go to their own folder)."""
    return [job.output, panel_path(job.output)] if settings.panel else [job.output]


def output_complete(path: Path) -> bool:
    """Whether an existing output can be kept: outputs are renamed into place only once fully
    written, so any non-empty file under the final name is complete."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def remove_stale_parts(outputs: Iterable[Path]) -> list[Path]:
    """Delete the temporary files that a killed run left beside these outputs, listing each folder once.

    `atomic.atomic_path` names them `.<stem>.<random>.part<suffix>`; the random part has no dot,
    so the temporary file of `x.y.png` is never taken for one of `x.png`.
    """
    names_by_folder: dict[Path, set[str]] = {}
    for output in outputs:
        names_by_folder.setdefault(output.parent, set()).add(output.name)
    removed = []
    for folder, names in names_by_folder.items():
        try:
            entries = os.listdir(folder)
        except OSError:  # not created yet, or not ours to list: nothing of ours to clean
            continue
        for entry in entries:
            match = TEMPORARY_NAME.fullmatch(entry)
            if match and match["stem"] + match["suffix"] in names:
                (folder / entry).unlink(missing_ok=True)
                removed.append(folder / entry)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run", len(removed))
    return sorted(removed)


def precheck(job: Job, settings: RunSettings) -> JobOutcome | None:
    """The outcome of a job decided without reading its image: a known problem or an existing output."""
    problem = job.problem
    if problem is None and job.output.resolve() == job.image.resolve():
        problem = OutputError("output would overwrite the input", path=job.output, hint="choose another -o")
    if problem is None and job.output.exists():
        if settings.existing is Existing.SKIP and output_complete(job.output):
            return JobOutcome(job, Status.SKIPPED)
        if settings.existing is Existing.ERROR:
            problem = OutputError("output exists", path=job.output, hint="use --overwrite to replace it")
    if problem is not None:
        return JobOutcome(job, Status.FAILED, error=problem.one_line())
    return None


def load(job: Job, settings: RunSettings) -> Loaded:
    """Decode the image and its mask(s) into a hole of the image's size."""
    picture = imageio.read_image(job.image, max_pixels=settings.max_pixels)
    hole = imageio.read_mask(
        job.masks,
        size=picture.pixels.shape[:2],
        threshold=settings.mask_threshold,
        invert=settings.invert_mask,
        dilate=settings.dilate,
    )
    return Loaded(picture, hole)


def save(outcome: JobOutcome, loaded: Loaded, result: InpaintResult, settings: RunSettings) -> None:
    """Write the output (and panel, intermediates) of a filled image, each atomically."""
    job = outcome.job
    job.output.parent.mkdir(parents=True, exist_ok=True)
    outcome.written.append(
        imageio.write_image(
            job.output,
            loaded.picture.with_pixels(result.pixels),
            format=settings.output_format,
            quality=settings.quality,
            # Reaching here with SKIP means the existing file was found incomplete.
            overwrite=settings.existing is not Existing.ERROR,
        )
    )
    capture = settings.intermediates_dir is not None
    if settings.panel or capture:
        panel = visualize.make_panel(loaded.picture.pixels, loaded.hole, result.pixels, result.coarse)
    if settings.panel:
        outcome.written.append(visualize.save_png(panel_path(job.output), panel))
    if capture and result.intermediates_hole is not None:
        folder = settings.intermediates_dir / job.name.with_suffix("")
        outcome.written += visualize.save_intermediates(
            folder, result.intermediates, result.intermediates_hole, panel
        )
    elif capture:
        outcome.warnings.append(result.intermediates_missing or "no intermediates: the mask has no hole")


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
    outcome: JobOutcome, loaded: Loaded, result: InpaintResult, settings: RunSettings
) -> JobOutcome:
    _attempt(outcome, lambda: save(outcome, loaded, result, settings), "write")
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
) -> Outcomes:
    """Run jobs, returning their outcomes in job order (with the jobs never started, if any).

    `workers` threads decode the next images and `workers` more encode finished ones while the
    model fills the current one. `on_start` sees each job as the model takes it, `watch` its plan
    and progress, and `on_outcome`
    each result as it comes (both in the calling thread). With `fail_fast`, nothing new starts
    after a failure; outputs being written are finished. Ctrl-C cancels what has not started,
    lets the writes under way finish and returns with `interrupted` set.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    jobs = list(jobs)
    remove_stale_parts(output for job in jobs for output in _outputs(job, settings))
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
            decided = precheck(job, settings)
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
                saving.append((index, writers.submit(_save_step, outcome, loaded, result, settings)))
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
    (`--fail-fast`, Ctrl-C) and masks that matched no image."""
    counts = {status.value: count for status, count in status_counts(outcomes).items()}
    report = {
        "summary": {**counts, "not_run": len(not_run), "unused_masks": len(unused_masks)},
        "inputs": [o.as_record() for o in outcomes],
        "not_run": [str(job.image) for job in not_run],
        "unused_masks": [str(mask) for mask in unused_masks],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
