"""The batch an editor serves: its photos, the mask file each gets, and the mask files paired with it now.

Planned once, before the server starts, with the tools every command uses: `detect`'s plan names the
photos and their `<stem>_mask.png` (mirroring the photos' tree), `run`'s mask index finds the masks
paired with each photo today (those `run --mask MASKS` would OR together), and `targets.check_targets`
checks that no photo is ever a target. The page names photos by their path under PHOTOS; a request
for any other name is refused, so a client never names a file. Photos and masks reached through a
symbolic link that leads out of their folder are listed with a problem and never opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from inpaint_cli.batch.jobs import MaskIndex
from inpaint_cli.batch.provenance import record_path
from inpaint_cli.errors import UsageError
from inpaint_cli.files.targets import Access, check_targets, check_writable
from inpaint_cli.review.editor.records import original_path


@dataclass(frozen=True)
class Photo:
    """One photo of the batch and the files the editor reads and writes for it."""

    name: str
    """Its path under PHOTOS with `/` separators: the only way the page names it."""
    image: Path
    mask: Path
    """The file the editor writes: `MASKS/<folders>/<stem>_mask.png`."""
    sources: tuple[Path, ...] = ()
    """The mask files paired with the photo now (OR-ed into the hole the page starts from)."""
    problem: str | None = None
    """Why it cannot be edited (shown on the page); None when it can."""


@dataclass
class Catalogue:
    photos_root: Path
    masks_root: Path
    photos: tuple[Photo, ...]
    unreadable: tuple[str, ...] = ()
    """Folders that could not be listed."""
    _by_name: dict[str, Photo] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {photo.name: photo for photo in self.photos}

    def get(self, name: str) -> Photo | None:
        """The photo the page calls `name`, or None: names are looked up, never opened as paths."""
        return self._by_name.get(name)


def plan_catalogue(photos: Path, masks: Path, *, recursive: bool = False) -> Catalogue:
    """The batch of `inpaint edit PHOTOS --masks MASKS`; a UsageError if it cannot be edited at all."""
    photos, masks = Path(photos), Path(masks)
    if not photos.exists():
        raise UsageError("no such file or folder", path=photos, hint="give a photo or a folder of photos")
    check_writable(masks, role="the masks folder", option="--masks", folder=True)
    from inpaint_cli.batch.kinds.detect import DetectRequest, plan_detection

    planned_masks = plan_detection(DetectRequest(photos, masks, overlay=False, recursive=recursive))
    photos_root = photos if photos.is_dir() else photos.parent
    index = None
    if masks.is_dir():
        shared = masks.resolve() == photos_root.resolve()
        index = MaskIndex(masks, recursive=recursive, shared=shared, exclude=(photos_root,))
    planned = []
    for job in planned_masks.jobs:
        sources = index.lookup(job.name) if index is not None else ()
        problem = job.problem.one_line() if job.problem is not None else None
        photo = Photo(job.name.as_posix(), job.image, job.output, sources, problem)
        planned.append(_with_links_checked(photo, photos_root, masks))
    check_targets(_reads(planned), _writes(planned))
    return Catalogue(photos_root, masks, tuple(planned), tuple(planned_masks.unreadable))


def _with_links_checked(photo: Photo, photos_root: Path, masks_root: Path) -> Photo:
    """The photo, or the same with a problem if a link takes it or one of its masks out of its folder."""
    if photo.problem is not None:
        return photo
    if not _inside(photo.image, photos_root):
        return _refused(photo, photo.image, "PHOTOS")
    for path in (photo.mask, *photo.sources):
        if path.is_symlink() or not _inside(path, masks_root):
            return _refused(photo, path, "MASKS")
    return photo


def _refused(photo: Photo, path: Path, folder: str) -> Photo:
    problem = f"{path}: is a symbolic link, or lies behind one, out of {folder} (not opened, never written)"
    return Photo(photo.name, photo.image, photo.mask, photo.sources, problem)


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every link followed, still lies in `root` (itself followed)."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return real.startswith(real_root.rstrip(os.sep) + os.sep)


def _reads(photos: list[Photo]) -> Iterator[Access]:
    for photo in photos:
        if photo.problem is None:
            yield Access(photo.image, f"the photo {photo.name}")


def written_by(photo: Photo) -> Iterator[tuple[Path, str]]:
    """Every file the editor may write for `photo`, and its role (for messages)."""
    yield photo.mask, f"the mask of {photo.name}"
    yield record_path(photo.mask), f"the edit record of {photo.name}"
    for source in sorted({photo.mask, *photo.sources}):
        yield original_path(source), f"the original mask of {photo.name}"


def _writes(photos: list[Photo]) -> Iterator[Access]:
    for photo in photos:
        if photo.problem is None:
            for path, role in written_by(photo):
                yield Access(path, role, option="--masks")
