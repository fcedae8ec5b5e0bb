"""What a batch is made of, for every kind of job: jobs, plans, pairing, and the one planning check.

A `Job` is one image, the files it reads (masks, an original) and its main output; a `JobPlan` is the
jobs of one command and what pairing found but could not use. Each kind of job says what a job
writes through its settings (`Outputs.artefacts`); `check_plan` hands every planned read and write to
`targets.check_targets` before anything runs (nothing read is written, no two writes share a target),
so `run`, `detect`, `compare` and `report` are held to one rule. Torch-free.

Pairing (DESIGN.md, "Batch pairing"): a folder is walked (`walk_images`) and each image finds its
mask(s) by name in a mask folder (`MaskIndex`), or one mask file serves every image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

from inpaint_cli.batch.provenance import record_path
from inpaint_cli.errors import InpaintError, InputError
from inpaint_cli.files import storage
from inpaint_cli.files.targets import Access, check_targets
from inpaint_cli.imaging import imageio

MASK_NAME = re.compile(r"_mask\d*$")
"""Official LaMa mask naming: `<stem>_mask.<ext>` or `<stem>_mask<N>.<ext>`."""
MASK_SUFFIX = "_mask"
OVERLAY_SUFFIX = "_overlay"
"""`inpaint detect` writes `<stem>_mask.png` and, for people, `<stem>_overlay.jpg` beside it."""


def overlay_path(mask: Path) -> Path:
    """The overlay `detect` writes beside the mask `<stem>_mask.png`."""
    return mask.with_name(mask.name.replace(f"{MASK_SUFFIX}.png", f"{OVERLAY_SUFFIX}.jpg"))


def is_detect_overlay(path: Path) -> bool:
    """`<stem>_overlay.jpg` with `<stem>_mask.png` beside it: a picture `detect` made, not a mask."""
    if not path.name.endswith(f"{OVERLAY_SUFFIX}.jpg"):
        return False
    stem = path.name[: -len(f"{OVERLAY_SUFFIX}.jpg")]
    return path.with_name(f"{stem}{MASK_SUFFIX}.png").is_file()


class Existing(str, Enum):
    """What to do when a file a job writes already exists."""

    ERROR = "error"
    SKIP = "skip"
    """Resume: skip a job whose outputs were made with the same settings (its provenance record)."""
    OVERWRITE = "overwrite"


@dataclass(frozen=True)
class Job:
    """One image, the files it reads beside it and its main output."""

    image: Path
    masks: tuple[Path, ...]
    output: Path | None
    """The main output (filled image, detected mask, comparison grid); None when the job writes none."""
    relative: Path | None = None
    """The image's path inside the input folder (a batch mirrors it); None for a single image."""
    problem: InpaintError | None = None
    """Why this input cannot be processed, found while pairing (no mask)."""
    original: Path | None = None
    """The clean version of the image (`compare --original`): read, and scored against."""

    @property
    def name(self) -> Path:
        """The image's name as shown to users and mirrored in intermediates folders."""
        return self.relative or Path(self.image.name)


@dataclass
class JobPlan:
    """The jobs of one command, and what pairing found but could not use."""

    jobs: list[Job]
    unused_masks: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Folders that could not be listed, as one-line messages."""
    batch: bool = False
    """A folder input: roles in messages name their image (`the output of in/a.png`)."""


@dataclass(frozen=True)
class Artefact:
    """A file (or folder) one job writes: `name` in messages (`output`, `panel`, `overlay`)."""

    name: str
    path: Path
    folder: bool = False
    option: str = "-o"
    """The option that chose this path, named in the hint of a clash."""


class Outputs(Protocol):
    """What the jobs of one kind write, known before any model is loaded (a kind's settings)."""

    @property
    def kind(self) -> str:
        """`inpaint`, `detect`, `compare`: the report's and the provenance records' `kind`."""

    @property
    def existing(self) -> Existing: ...

    @property
    def recorded(self) -> bool:
        """Whether each job's main output gets a provenance record (and so can be resumed)."""

    def artefacts(self, job: Job) -> list[Artefact]:
        """Everything `job` writes, its main output first (empty: nothing)."""


def primary(outputs: Outputs, job: Job) -> Artefact | None:
    """The file whose provenance record describes the job's other artefacts too."""
    return next((artefact for artefact in outputs.artefacts(job) if not artefact.folder), None)


# --- the one planning check ------------------------------------------------------------------------


def check_plan(
    plan: JobPlan, outputs: Outputs, *, reads: Iterable[Access] = (), writes: Iterable[Access] = ()
) -> None:
    """Raise a UsageError if a planned write hits a file the command reads or another planned write.

    `reads` are further files read (a checkpoint, a report), `writes` further files written (the
    report, the review page); the plan's own come from its jobs and `outputs.artefacts`."""
    check_targets([*planned_reads(plan), *reads], [*planned_writes(plan, outputs), *writes])


def planned_reads(plan: JobPlan) -> Iterator[Access]:
    """Every image, mask and original of the plan, masks that matched no image included."""
    for job in plan.jobs:
        yield Access(job.image, "an input image" if plan.batch else "the image")
        for mask in job.masks:
            yield Access(mask, f"the mask of {job.image}")
        if job.original is not None:
            yield Access(job.original, f"the original of {job.image}")
    for mask in plan.unused_masks:
        yield Access(mask, "a mask file")


def planned_writes(plan: JobPlan, outputs: Outputs) -> Iterator[Access]:
    """Every file (and folder) the plan's jobs write, with their provenance records, in job order."""
    for job in plan.jobs:
        of = f" of {job.image}" if plan.batch else ""
        artefacts = outputs.artefacts(job)
        for artefact in artefacts:
            role = f"the {artefact.name}{of}"
            yield Access(artefact.path, role, folder=artefact.folder, option=artefact.option)
        main = primary(outputs, job)
        if outputs.recorded and main is not None:
            yield Access(record_path(main.path), f"the provenance record{of}", option=main.option)


def check_found(plan: JobPlan, input: Path, *, recursive: bool) -> None:
    """A folder with no image to process is a usage error (a typo in the folder, a forgotten -r)."""
    if not plan.jobs:
        from inpaint_cli.errors import UsageError

        hint = None if recursive else "use --recursive to look in subfolders"
        raise UsageError("no images found", path=input, hint=hint)


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
    The overlays `detect` writes beside its masks are pictures for people, neither masks nor unused.
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
            if (shared and base == relative.stem) or is_detect_overlay(path):
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


@dataclass
class Pairs:
    """The images of a folder with their masks (`pair_masks`)."""

    images: list[tuple[Path, Path, tuple[Path, ...], InpaintError | None]]
    """(image, its path in the folder, its masks, why it has none) per image, sorted."""
    unused_masks: list[Path]
    unreadable: list[str]


def pair_masks(
    folder: Path, mask: Path | None, *, recursive: bool = False, exclude: Iterable[Path] = ()
) -> Pairs:
    """Every image under `folder` with its mask(s): `mask` is a folder of masks paired by name (it may
    be `folder` itself or inside it), one file used for every image, or None (no masks: `--mask
    auto`, detection). An image without a mask gets a problem, not a guess. The `exclude` folders
    (outputs, intermediates, originals) are never walked, so a rerun does not take results for photos.
    """
    unreadable: list[str] = []
    exclude = list(exclude)
    index = None
    if mask is not None and mask.is_dir():
        shared = mask.resolve() == folder.resolve()
        index = MaskIndex(
            mask, recursive=recursive, shared=shared, exclude=[folder, *exclude], errors=unreadable
        )
    if index is not None:
        mask_files = {path.resolve() for path in index.files}
    else:
        mask_files = set() if mask is None else {mask.resolve()}
    walked = exclude if mask is None else [mask, *exclude]
    images = []
    for image in walk_images(folder, recursive=recursive, exclude=walked, errors=unreadable):
        if image.resolve() in mask_files:
            continue
        relative = image.relative_to(folder)
        masks = index.lookup(relative) if index else () if mask is None else (mask,)
        problem = None
        if index is not None and not masks:
            problem = InputError("no mask found", path=image, hint=index.describe_search(relative))
        images.append((image, relative, masks, problem))
    return Pairs(images, index.unused() if index else [], unreadable)


def masks_of_single(image: Path, mask: Path) -> tuple[tuple[Path, ...], InpaintError | None]:
    """The mask(s) of one image: `mask` itself, or the files named after the image in the folder `mask`."""
    if not mask.is_dir():
        return (mask,), None
    index = MaskIndex(mask, recursive=False, shared=mask.resolve() == image.parent.resolve())
    relative = Path(image.name)
    masks = index.lookup(relative)
    problem = None if masks else InputError("no mask found", path=image, hint=index.describe_search(relative))
    return masks, problem


def names_a_folder(output: str | os.PathLike[str]) -> bool:
    """`-o out/` (a trailing separator: the CLI passes -o's text as typed), an existing folder, or a
    name without an extension (an output file needs one to tell its format)."""
    text = os.fspath(output)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix
