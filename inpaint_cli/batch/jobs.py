"""Planning a run: pair each image with its mask(s) and output, then check every planned read and
write before anything runs.

A single `inpaint run photo.jpg --mask m.png` is a plan of one job. A folder is walked, each image is
paired with its mask(s) by name (DESIGN.md, "Batch pairing") and its output mirrors the input tree.
`plan_run` is the whole step: pairing, the output path rules, writability, and `targets.check_targets`
(nothing read is written, no two writes share a target) — all usage errors, found before any model
is loaded. Torch-free.

Output path rules (README, "Batches"): `-o` ending in `/` or naming an existing folder is a folder;
a folder input needs a folder `-o` (an image file name is refused); only the last component of
`-o`, `--report` and `--save-intermediates` may be missing (it is created), so a typo in a parent
never creates a tree of folders.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from inpaint_cli.batch.provenance import record_path
from inpaint_cli.errors import InpaintError, InputError, UsageError
from inpaint_cli.files import storage
from inpaint_cli.files.targets import Access, check_targets, check_writable
from inpaint_cli.imaging import imageio
from inpaint_cli.options import DEFAULT_DETECTOR, DEFAULT_MASK_THRESHOLD, DEFAULT_MAX_PIXELS, DEFAULT_QUALITY

PANEL_SUFFIX = "_panel"
OUTPUT_FOLDER_SUFFIX = "_inpainted"
"""Default batch output folder: `<input folder>_inpainted/` beside the input folder."""
MASK_NAME = re.compile(r"_mask\d*$")
"""Official LaMa mask naming: `<stem>_mask.<ext>` or `<stem>_mask<N>.<ext>`."""
AUTO_MASK = "auto"
"""`--mask auto`: no mask files; the detector (`RunSettings.detector`) finds each image's damage."""
SAVED_MASK_SUFFIX = "_mask"


def is_auto(mask: Path | str) -> bool:
    return not storage.is_remote(mask) and os.fspath(mask) == AUTO_MASK  # s3://... is a mask folder


def saved_mask_path(output: Path) -> Path:
    """`--save-mask`: `<output stem>_mask.png` beside the output (the hole that was filled)."""
    return output.with_name(f"{output.stem}{SAVED_MASK_SUFFIX}.png")


class Existing(str, Enum):
    """What to do when an output file already exists."""

    ERROR = "error"
    SKIP = "skip"
    OVERWRITE = "overwrite"


@dataclass(frozen=True)
class RunSettings:
    """Per-input options of `inpaint run` (everything but the model)."""

    mask_threshold: int = DEFAULT_MASK_THRESHOLD
    invert_mask: bool = False
    dilate: int = 0
    detector: str = DEFAULT_DETECTOR.value
    """The detector of `--mask auto` jobs (jobs without mask files)."""
    save_mask: bool = False
    output_format: str | None = None
    quality: int = DEFAULT_QUALITY
    existing: Existing = Existing.ERROR
    panel: bool = False
    intermediates_dir: Path | None = None
    intermediate_tensors: str = "none"
    """`none`, `fp16` or `fp32`: whether and how raw tensors join the intermediates."""
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Job:
    """One image, its mask(s) and where its output goes."""

    image: Path
    masks: tuple[Path, ...]
    output: Path
    relative: Path | None = None
    """The image's path inside the input folder (a batch mirrors it); None for a single image."""
    problem: InpaintError | None = None
    """Why this input cannot be processed, found while pairing (no mask)."""

    @property
    def name(self) -> Path:
        """The image's name as shown to users and mirrored in intermediates folders."""
        return self.relative or Path(self.image.name)


@dataclass
class Plan:
    """The jobs of one `inpaint run`, and what pairing found but could not use."""

    jobs: list[Job]
    unused_masks: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Folders that could not be listed, as one-line messages."""
    batch: bool = False
    """A folder input: roles in messages name their image (`the output of in/a.png`)."""


def panel_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}{PANEL_SUFFIX}.png")


def intermediates_folder(job: Job, settings: RunSettings) -> Path | None:
    """Where a job's intermediates go: `<--save-intermediates>/<image path without extension>/`."""
    if settings.intermediates_dir is None:
        return None
    return settings.intermediates_dir / job.name.with_suffix("")


def artefacts(job: Job, settings: RunSettings) -> list[Path]:
    """The files a job writes beside its output: the output, its panel, its provenance record.
    Intermediates go to their own folder (`intermediates_folder`)."""
    files = [job.output, panel_path(job.output)] if settings.panel else [job.output]
    if settings.save_mask:
        files.append(saved_mask_path(job.output))
    return [*files, record_path(job.output)]


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
    # `storage.walk` is `os.walk` for local folders and lists fsspec URLs (s3://...) the same way.
    for folder, subfolders, files in storage.walk(root, onerror=listing_failed):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if recursive
            and not name.startswith(".")  # version control, editors, caches
            and not any(_is_inside((folder / name).resolve(), skip) for skip in excluded)
        )
        found += (path for path in map(folder.joinpath, files) if imageio.is_image_file(path))
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
    Clashing targets are left to `check_plan`.
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
    auto = is_auto(mask)
    if auto:
        mask = output_folder  # nothing to exclude beyond our own outputs
    elif mask.is_dir():
        shared = mask.resolve() == folder.resolve()
        index = MaskIndex(
            mask, recursive=recursive, shared=shared, exclude=(folder, *ours), errors=unreadable
        )
    mask_files = {path.resolve() for path in index.files} if index else set() if auto else {mask.resolve()}
    images = [
        path
        for path in walk_images(folder, recursive=recursive, exclude=(mask, *ours), errors=unreadable)
        if path.resolve() not in mask_files
    ]
    jobs = []
    for image in images:
        relative = image.relative_to(folder)
        output = output_folder / relative
        if output_format is not None:
            # The extension a single image's output gets for this format (`.tif` for tiff, ...).
            output = output.with_suffix(imageio.extension_for_format(output_format))
        masks = index.lookup(relative) if index else () if auto else (mask,)
        problem = None
        if not masks and not auto:
            problem = InputError("no mask found", path=image, hint=index.describe_search(relative))
        jobs.append(Job(image, masks, output, relative=relative, problem=problem))
    return Plan(jobs, unused_masks=index.unused() if index else [], unreadable=unreadable, batch=True)


def plan_single(
    image: Path, mask: Path, output: Path | None = None, output_format: str | None = None
) -> Plan:
    """The plan of one image; `mask` is its mask file or a folder holding it by name.

    An `output` that is the image itself is left to `check_plan` (a usage error naming both roles)."""
    if output is None or output.is_dir():
        output = imageio.default_output_path(image, output, output_format)
    if is_auto(mask):
        return Plan([Job(image, (), output)])
    if not mask.is_dir():
        return Plan([Job(image, (mask,), output)])
    index = MaskIndex(mask, recursive=False, shared=mask.resolve() == image.parent.resolve())
    relative = Path(image.name)
    masks = index.lookup(relative)
    problem = None if masks else InputError("no mask found", path=image, hint=index.describe_search(relative))
    return Plan([Job(image, masks, output, problem=problem)])


# --- the whole planning step -------------------------------------------------------------------------


def _names_a_folder(output: str | os.PathLike[str]) -> bool:
    """`-o out/` (a trailing separator: the CLI passes -o's text as typed), an existing folder, or a
    name without an extension (an output file needs one to tell its format)."""
    text = os.fspath(output)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


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
) -> Plan:
    """Pair the input(s) with masks and outputs and check every planned read and write.

    `output` keeps the text the user typed, so `out/` is a folder even before it exists. `reads`
    are further files the run reads (a checkpoint: it must exist), `writes` further files it writes
    (a review page; a folder write is never walked for inputs). Raises UsageError for a missing
    input, an `-o` that does not fit the input, a write that cannot happen or that hits a file the
    run reads.
    """
    if not storage.is_remote(input) and not input.exists():
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
        if not plan.jobs:
            hint = None if recursive else "use --recursive to look in subfolders"
            raise UsageError("no images found", path=input, hint=hint)
    else:
        into_folder = output is not None and _names_a_folder(output)
        if into_folder:
            folder = storage.location(os.fspath(output).rstrip("/" + os.sep) or os.sep)
            check_writable(folder, role="the output folder", option="-o", folder=True)
            output = folder / imageio.default_output_path(input, None, settings.output_format).name
        target = None if output is None else storage.location(output)
        plan = plan_single(input, mask, target, settings.output_format)
        if not into_folder:
            check_writable(plan.jobs[0].output, role="the output", option="-o")
    check_plan(plan, settings, report=report, reads=reads, writes=writes)
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
        if not _names_a_folder(text) and folder.suffix.lower() in imageio.IMAGE_EXTENSIONS:
            raise UsageError(
                "-o names an image file, but the input is a folder",
                path=folder,
                hint="give a folder for the outputs (it is created); end it with / if it has a dot",
            )
        return folder
    check_writable(folder, role="the output folder", option="-o", folder=True)
    return folder


def check_plan(
    plan: Plan,
    settings: RunSettings,
    *,
    report: Path | None = None,
    reads: Iterable[Access] = (),
    writes: Iterable[Access] = (),
) -> None:
    """Raise a UsageError if a planned write hits a file the run reads or another planned write."""
    check_targets([*planned_reads(plan), *reads], [*planned_writes(plan, settings, report=report), *writes])


def planned_reads(plan: Plan) -> Iterator[Access]:
    """Every image and mask of the plan, masks that matched no image included (the user's files)."""
    for job in plan.jobs:
        yield Access(job.image, "an input image" if plan.batch else "the image")
        for mask in job.masks:
            yield Access(mask, f"the mask of {job.image}")
    for mask in plan.unused_masks:
        yield Access(mask, "a mask file")


def planned_writes(plan: Plan, settings: RunSettings, *, report: Path | None = None) -> Iterator[Access]:
    """Every file (and intermediates folder) the plan writes, in job order, the report last."""
    for job in plan.jobs:
        of = f" of {job.image}" if plan.batch else ""
        yield Access(job.output, f"the output{of}", option="-o")
        if settings.panel:
            yield Access(panel_path(job.output), f"the panel{of}", option="-o")
        yield Access(record_path(job.output), f"the provenance record{of}", option="-o")
        if settings.save_mask:
            yield Access(saved_mask_path(job.output), f"the saved mask{of}", option="-o")
        folder = intermediates_folder(job, settings)
        if folder is not None:
            yield Access(folder, f"the intermediates folder{of}", folder=True, option="--save-intermediates")
    if report is not None:
        yield Access(report, "the report", option="--report")
