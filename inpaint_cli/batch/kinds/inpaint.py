"""The inpaint job kind (`inpaint run`): each image's hole, from its mask files or found by a detector
(`--mask auto`), filled by one loaded model; the output, panel, saved mask and intermediates written.

Planning (`plan_run`): a single `inpaint run photo.jpg --mask m.png` is a plan of one job; a folder is
walked, each image paired with its mask(s) by name (`jobs.pair_masks`) and its output mirrors the
input tree. Output path rules (README, "Batches"): `-o` ending in `/` or naming an existing folder is a
folder; a folder input needs a folder `-o` (an image file name is refused); only the last component of
`-o`, `--report` and `--save-intermediates` may be missing (it is created), so a typo in a parent
never creates a tree of folders. Every planned read and write then goes through `jobs.check_plan`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from inpaint_cli.batch import provenance
from inpaint_cli.batch.jobs import (
    MASK_SUFFIX,
    Artefact,
    Existing,
    Job,
    JobPlan,
    check_found,
    check_plan,
    masks_of_single,
    names_a_folder,
    pair_masks,
)
from inpaint_cli.batch.outcomes import JobOutcome
from inpaint_cli.batch.provenance import Provenance
from inpaint_cli.errors import UsageError
from inpaint_cli.files import storage
from inpaint_cli.files.targets import Access, check_writable
from inpaint_cli.imaging import imageio
from inpaint_cli.options import DEFAULT_MASK_THRESHOLD, DEFAULT_MAX_PIXELS, DEFAULT_QUALITY

if TYPE_CHECKING:
    from inpaint_cli.detect.detectors import Detector
    from inpaint_cli.engine.inpainter import Inpainter, InpaintResult

PANEL_SUFFIX = "_panel"
OUTPUT_FOLDER_SUFFIX = "_inpainted"
"""Default batch output folder: `<input folder>_inpainted/` beside the input folder."""
AUTO_MASK = "auto"
"""`--mask auto`: no mask files; the detector (`RunSettings.detector`) finds each image's damage."""


def is_auto(mask: Path | str) -> bool:
    return not storage.is_remote(mask) and os.fspath(mask) == AUTO_MASK  # s3://... is a mask folder


def saved_mask_path(output: Path) -> Path:
    """`--save-mask`: `<output stem>_mask.png` beside the output (the hole that was filled)."""
    return output.with_name(f"{output.stem}{MASK_SUFFIX}.png")


def panel_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}{PANEL_SUFFIX}.png")


@dataclass(frozen=True)
class RunSettings:
    """Per-input options of `inpaint run` (everything but the model); what each job writes."""

    kind: ClassVar[str] = "inpaint"
    recorded: ClassVar[bool] = True
    mask_threshold: int = DEFAULT_MASK_THRESHOLD
    invert_mask: bool = False
    dilate: int = 0
    detector: str | None = None
    """The detector of `--mask auto` jobs (jobs without mask files); recorded in their provenance."""
    save_mask: bool = False
    output_format: str | None = None
    quality: int = DEFAULT_QUALITY
    existing: Existing = Existing.ERROR
    panel: bool = False
    intermediates_dir: Path | None = None
    intermediate_tensors: str = "none"
    """`none`, `fp16` or `fp32`: whether and how raw tensors join the intermediates."""
    max_pixels: int = DEFAULT_MAX_PIXELS

    def artefacts(self, job: Job) -> list[Artefact]:
        """The output, its panel and saved mask, and the job's intermediates folder
        (`<--save-intermediates>/<image path without extension>/`)."""
        output = job.output
        found = [Artefact("output", output)]
        if self.panel:
            found.append(Artefact("panel", panel_path(output)))
        if self.save_mask:
            found.append(Artefact("saved mask", saved_mask_path(output)))
        if self.intermediates_dir is not None:
            folder = self.intermediates_dir / job.name.with_suffix("")
            found.append(Artefact("intermediates folder", folder, folder=True, option="--save-intermediates"))
        return found


def intermediates_folder(job: Job, settings: RunSettings) -> Path | None:
    return next((a.path for a in settings.artefacts(job) if a.folder), None)


def default_output_folder(folder: Path) -> Path:
    """`<folder>_inpainted` beside the input folder: never inside the tree it mirrors."""
    resolved = folder.resolve()
    return resolved.parent / f"{resolved.name}{OUTPUT_FOLDER_SUFFIX}"


# --- planning --------------------------------------------------------------------------------------


def plan_folder(
    folder: Path,
    mask: Path,
    output_folder: Path | None = None,
    *,
    recursive: bool = False,
    output_format: str | None = None,
    written_elsewhere: Iterable[Path] = (),
) -> JobPlan:
    """Pair every image under `folder` with its mask(s) and give it an output in the mirrored tree.

    `mask` is a folder of masks paired by name, one file used for every image, or `auto`. The output
    folder and `written_elsewhere` (intermediates) are never walked, so a rerun does not take results
    for photos. Clashing targets are left to `check_plan`.
    """
    output_folder = output_folder or default_output_folder(folder)
    if output_folder.resolve() == folder.resolve():
        raise UsageError(
            "the output folder is the input folder",
            path=output_folder,
            hint="give another -o: outputs would overwrite the inputs",
        )
    pairs = pair_masks(
        folder,
        None if is_auto(mask) else mask,
        recursive=recursive,
        exclude=[output_folder, *written_elsewhere],
    )
    jobs = []
    for image, relative, masks, problem in pairs.images:
        output = output_folder / relative
        if output_format is not None:
            # The extension a single image's output gets for this format (`.tif` for tiff, ...).
            output = output.with_suffix(imageio.extension_for_format(output_format))
        jobs.append(Job(image, masks, output, relative=relative, problem=problem))
    return JobPlan(jobs, unused_masks=pairs.unused_masks, unreadable=pairs.unreadable, batch=True)


def plan_single(
    image: Path, mask: Path, output: Path | None = None, output_format: str | None = None
) -> JobPlan:
    """The plan of one image; `mask` is its mask file, a folder holding it by name, or `auto`.

    An `output` that is the image itself is left to `check_plan` (a usage error naming both roles)."""
    if output is None or output.is_dir():
        output = imageio.default_output_path(image, output, output_format)
    masks, problem = ((), None) if is_auto(mask) else masks_of_single(image, mask)
    return JobPlan([Job(image, masks, output, problem=problem)])


def plan_run(
    input: Path,
    mask: Path,
    output: str | os.PathLike[str] | None,
    settings: RunSettings,
    *,
    recursive: bool = False,
    report: Path | None = None,
    reads: Iterable[Access] = (),
    writes: Iterable[Access] = (),
) -> JobPlan:
    """Pair the input(s) with masks and outputs and check every planned read and write.

    `output` keeps the text the user typed, so `out/` is a folder even before it exists. `reads`
    are further files the run reads (a checkpoint: it must exist), `writes` further files it writes
    (a review page; a folder write is never walked for inputs). Raises UsageError for a missing
    input, an `-o` that does not fit the input, a write that cannot happen or that hits a file the
    run reads.
    """
    if not input.exists():  # one request for a store's URL
        raise UsageError("no such file or folder", path=input)
    if not is_auto(mask) and not storage.is_remote(mask) and not mask.exists():
        raise UsageError("no such mask file or folder", path=mask)
    reads, writes = list(reads), list(writes)
    for read in reads:
        if not storage.is_remote(read.path) and not read.path.is_file():
            raise UsageError("no such file", path=read.path, hint=f"check {read.option or read.role}")
    intermediates = settings.intermediates_dir
    if intermediates is not None:
        check_writable(
            intermediates, role="the intermediates folder", option="--save-intermediates", folder=True
        )
    if report is not None:
        check_writable(report, role="the report", option="--report")
        writes.append(Access(report, "the report", option="--report"))
    for write in writes:
        check_writable(write.path, role=write.role, option=write.option or "-o", folder=write.folder)
    if input.is_dir():
        elsewhere = [write.path for write in writes if write.folder]
        plan = plan_folder(
            input,
            mask,
            _batch_output_folder(input, output),
            recursive=recursive,
            output_format=settings.output_format,
            written_elsewhere=[intermediates, *elsewhere] if intermediates else elsewhere,
        )
        check_found(plan, input, recursive=recursive)
    else:
        plan = _plan_one(input, mask, output, settings)
    check_plan(plan, settings, reads=reads, writes=writes)
    return plan


def _plan_one(
    input: Path, mask: Path, output: str | os.PathLike[str] | None, settings: RunSettings
) -> JobPlan:
    into_folder = output is not None and names_a_folder(output)
    if into_folder:
        folder = storage.location(os.fspath(output).rstrip("/" + os.sep) or os.sep)
        check_writable(folder, role="the output folder", option="-o", folder=True)
        output = folder / imageio.default_output_path(input, None, settings.output_format).name
    target = None if output is None else storage.location(output)
    plan = plan_single(input, mask, target, settings.output_format)
    if not into_folder:
        check_writable(plan.jobs[0].output, role="the output", option="-o")
    return plan


def _batch_output_folder(input: Path, output: str | os.PathLike[str] | None) -> Path:
    if output is None:
        folder = default_output_folder(input)
    else:
        text = os.fspath(output)
        folder = storage.location(text.rstrip("/" + os.sep) or os.sep)
        if folder.exists() and not folder.is_dir():
            raise UsageError("-o must be a folder when the input is a folder", path=folder)
        check_writable(folder, role="the output folder", option="-o", folder=True)
        if not names_a_folder(text) and folder.suffix.lower() in imageio.IMAGE_EXTENSIONS:
            raise UsageError(
                "-o names an image file, but the input is a folder",
                path=folder,
                hint="give a folder for the outputs (it is created); end it with / if it has a dot",
            )
        return folder
    check_writable(folder, role="the output folder", option="-o", folder=True)
    return folder


# --- one job: read, fill, write ----------------------------------------------------------------------


@dataclass
class Loaded:
    """A decoded input, ready for the model."""

    picture: imageio.Picture
    hole: np.ndarray
    notes: list[str] = field(default_factory=list)
    """Warnings about the files (only the first frame of an APNG or multi-page TIFF is used)."""
    probability: np.ndarray | None = None
    """--mask auto with --save-intermediates: the detector's probability map, written with them."""


@dataclass(frozen=True)
class Watch:
    """Who hears about a job while the model fills it (all in the calling thread)."""

    on_plan: Callable[[Job, str, float | None], None] | None = None
    """Before filling: the plan in words and its estimated seconds (None before passes of its sizes
    have run here: `on_estimate` then follows the first one)."""
    on_progress: Callable[[Job, int, int], None] | None = None
    """After each network call: passes done of the plan's total."""
    on_estimate: Callable[[Job, float], None] | None = None
    """After the first network call of a plan not estimated before: the seconds the rest should take."""


@dataclass
class InpaintKind:
    """Filling holes with one loaded model: the inpaint job kind of `engine.run_jobs`.

    `made_with` is recorded beside each output and compared on resume; by default it is built from
    the inpainter (`provenance_of`), which knows a named model's checksum but not that of a
    `--checkpoint` file: pass `provenance_of(inpainter, settings, checkpoint=...)` then. The detector
    of `--mask auto` jobs is loaded on the model's device when the first such job is read."""

    inpainter: Inpainter
    settings: RunSettings
    made_with: Provenance | None = None
    watch: Watch = field(default_factory=Watch)
    stage: str = "fill"
    _detector: Detector | None = field(default=None, init=False, repr=False)
    _loading: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.made_with is None:
            self.made_with = provenance_of(self.inpainter, self.settings)

    def detector(self) -> Detector:
        """The `--mask auto` detector, loaded once (reader threads share it) on the model's device."""
        with self._loading:
            if self._detector is None:
                from inpaint_cli.detect.detectors import load_detector

                name = self.settings.detector
                if name is None:
                    raise UsageError("an image without a mask needs a detector", path=None)
                self._detector = load_detector(name, device=self.inpainter.device)
            return self._detector

    def load(self, outcome: JobOutcome) -> Loaded:
        """Decode the image and its mask(s) (or find its damage) into a hole of the image's size."""
        job, settings = outcome.job, self.settings
        outcome.strategy = self.inpainter.options.strategy.value
        if job.masks:
            loaded = _read(job, settings)
        else:
            started = time.perf_counter()
            loaded = self._detect(job)
            # Finding the damage is its own stage (`-v`), not reading: the engine adds this whole
            # call to "read" when it returns, so the detection is taken off there beforehand.
            detect = time.perf_counter() - started
            outcome.stages["read"] = outcome.stages.get("read", 0.0) - detect
            outcome.stages["detect"] = detect
        outcome.warnings += loaded.notes
        if not loaded.hole.any():
            if not job.masks:  # the case to look at: counted, and flagged on the review page
                outcome.details["no_damage"] = True
            what = (
                f"{job.masks[0]}: mask has no hole pixels" if job.masks else f"{job.image}: no damage found"
            )
            outcome.warnings.append(f"{what}; image copied through")
        return loaded

    def _detect(self, job: Job) -> Loaded:
        from inpaint_cli.detect.detectors import chosen_mode
        from inpaint_cli.imaging.masks import grow_hole

        with storage.local_copies([job.image]) as (image,):
            picture = imageio.read_image(image, max_pixels=self.settings.max_pixels)
        detector = self.detector()
        detection = detector.detect(picture.pixels, chosen_mode(detector, None))
        dilate = self.settings.dilate
        hole = grow_hole(detection.mask, dilate) if dilate else detection.mask
        keep = detection.probability if self.settings.intermediates_dir is not None else None
        return Loaded(picture, hole, list(picture.notes), probability=keep)

    def process(self, outcome: JobOutcome, loaded: Loaded) -> InpaintResult:
        job, watch, inpainter = outcome.job, self.watch, self.inpainter
        capture = self.settings.intermediates_dir is not None
        plan = inpainter.plan(loaded.hole)
        if watch.on_plan is not None:
            watch.on_plan(job, plan.describe(), inpainter.estimate_seconds(plan))
        on_progress, on_estimate = watch.on_progress, watch.on_estimate
        progress = None if on_progress is None else lambda done, total: on_progress(job, done, total)
        estimate = None if on_estimate is None else lambda seconds: on_estimate(job, seconds)
        result = inpainter.inpaint(
            loaded.picture.pixels,
            loaded.hole,
            capture=capture,
            plan=plan,
            progress=progress,
            on_estimate=estimate,
        )
        plan = result.plan
        outcome.strategy = plan.describe() if plan is not None else None
        outcome.warnings += [f"{job.image}: {warning}" for warning in (plan.warnings if plan else ())]
        outcome.stages.update({f"fill: {stage}": seconds for stage, seconds in result.seconds.items()})
        return result

    def save(self, outcome: JobOutcome, loaded: Loaded, result: InpaintResult) -> None:
        """Write the output, then the saved mask, panel and intermediates, each atomically."""
        from inpaint_cli.imaging.masks import write_mask
        from inpaint_cli.review import visualize

        job, settings = outcome.job, self.settings
        # A URL output is written locally, then put as one object (storage.staged_write).
        with storage.staged_write(job.output) as output:
            imageio.write_image(
                output,
                loaded.picture.with_pixels(result.pixels),
                format=settings.output_format,
                quality=settings.quality,
                # Reaching here with an existing output means it is ours and to be redone (precheck);
                # without --overwrite or a resume, one that appeared since is refused all the same.
                overwrite=settings.existing is not Existing.ERROR,
            )
        outcome.written.append(job.output)
        outcome.warnings += _depth_lost(loaded.picture, job.output, settings.output_format)
        if settings.save_mask:
            with storage.staged_write(saved_mask_path(job.output)) as staged:
                write_mask(staged, loaded.hole)
            outcome.written.append(saved_mask_path(job.output))
        folder = intermediates_folder(job, settings)
        if settings.panel or folder is not None:
            panel = visualize.make_panel(loaded.picture.pixels, loaded.hole, result.pixels, result.coarse)
        if settings.panel:
            with storage.staged_write(panel_path(job.output)) as staged:
                visualize.save_png(staged, panel)
            outcome.written.append(panel_path(job.output))
        if folder is not None:
            outcome.written += _save_intermediates(folder, loaded, result, panel, settings)
            if result.intermediates_hole is None:
                outcome.warnings.append(
                    result.intermediates_missing or "no intermediates: the mask has no hole"
                )


def _read(job: Job, settings: RunSettings) -> Loaded:
    from inpaint_cli.imaging.masks import read_mask

    notes: list[str] = []
    # Files behind URLs are read from local copies (the codecs need files); local ones in place.
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


def _save_intermediates(
    folder: Path, loaded: Loaded, result: InpaintResult, panel: Any, settings: RunSettings
) -> list[Path]:
    from inpaint_cli.detect.detectors import write_probability
    from inpaint_cli.review import visualize

    written = [] if loaded.probability is None else write_probability(folder, loaded.probability)
    if result.intermediates_hole is not None:
        written += visualize.save_intermediates(
            folder,
            result.intermediates,
            result.intermediates_hole,
            panel,
            tensors=settings.intermediate_tensors,
            box=result.intermediates_box,
        )
    return written


def _depth_lost(picture: imageio.Picture, output: Path, output_format: str | None) -> list[str]:
    """A warning when 16-bit samples go into a format that holds only 8 (JPEG, WebP)."""
    written_as = imageio.output_format(output, output_format)
    if picture.pixels.dtype != np.uint16 or written_as not in ("JPEG", "WEBP"):
        return []
    keep = "use --format png or tiff to keep 16 bits"
    return [f"{output}: the 16-bit image was written as 8-bit {written_as} ({keep})"]


def provenance_of(
    inpainter: Inpainter, settings: RunSettings, *, checkpoint: Path | None = None
) -> Provenance:
    """The provenance of outputs this inpainter makes with these settings (with `--mask auto`, the
    detector that finds the holes is part of it)."""
    return provenance.for_run(
        model=inpainter.name,
        weights_sha256=provenance.weights_checksum(inpainter.name, checkpoint),
        strategy=inpainter.options.strategy.value,
        precision=inpainter.dtype_label,
        settings=settings,
        plan_options=provenance.plan_options(inpainter.options),
        device=str(inpainter.device),
        detector=settings.detector,
    )
