"""A photo's hole as the page gets it, and the save of what the page sends back.

The page receives the hole read by the one mask rule (`masks.read_mask`: every paired file OR-ed,
thresholded, turned upright) and sends back a PNG of exactly the photo's size, white = hole. The
upload is bounded before it is read (`upload_limit`, 413), decoded with the tool's decompression-bomb
check at the photo's own area (a PNG that claims more pixels is refused from its header), and must be
grey. A save, one at a time per photo:

1. refuses a page that edited something else than what is on disk now (its `If-Match` tag: another
   tab, or a program that rewrote the mask meanwhile; 409), so no edit is lost to a race;
2. keeps each paired mask file as it was, once (`records.original_path`, copied atomically);
3. writes `<stem>_mask.png` atomically (8-bit, 255 = hole, the photo's upright size);
4. retires the other paired files (`a_mask2.png`; their originals are kept), so that `run` reads
   the edited mask alone;
5. writes the record that says the mask was edited by hand.

A kill at any moment leaves every file as it was or complete: the worst is a mask saved without
its record (shown as unedited) or a retired file still in place (the next save retires it).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import threading
import zlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from inpaint_cli.errors import InpaintError
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.imaging import headers, masks
from inpaint_cli.review.editor import records
from inpaint_cli.review.editor.catalogue import Catalogue, Photo
from inpaint_cli.weights.cache import file_sha256

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UPLOAD_FACTOR = 1.25
"""Upload bound per photo pixel, in bytes: an 8-bit grey PNG stored without compression is one byte
a pixel plus a filter byte a row; the page's 1-bit PNGs of real masks are 100 to 1000 times smaller."""
UPLOAD_SLACK = 64 * 1024
"""Headers and chunks of a tiny photo's mask."""
NO_MASK = "none"
"""The tag of a photo whose mask does not exist yet."""
_CORRUPT_PNG = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


class PhotoStatus(str, Enum):
    """A photo's state on the page."""

    EDITED = "edited"
    UNEDITED = "unedited"
    NO_DAMAGE = "no damage"
    PROBLEM = "problem"


class Refused(Exception):
    """A request the editor refuses: an HTTP status and one line that says why (nothing was written)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Saved:
    tag: str
    """The mask's new tag, for the next `If-Match`."""
    status: PhotoStatus


def upload_limit(size: tuple[int, int]) -> int:
    """The largest mask upload (bytes) accepted for a photo of `size` (height, width)."""
    return int(size[0] * size[1] * UPLOAD_FACTOR) + UPLOAD_SLACK


def decode_upload(data: bytes, photo: Photo, size: tuple[int, int]) -> np.ndarray:
    """The hole (H×W bool) in an uploaded PNG; `Refused` with the reason for anything else."""
    if len(data) > upload_limit(size):
        raise Refused(413, f"{photo.name}: the mask upload is larger than {upload_limit(size):,} bytes")
    if not data.startswith(PNG_SIGNATURE):
        raise Refused(415, f"{photo.name}: the mask upload is not a PNG image")
    area = size[0] * size[1]
    try:
        # The photo's own area is the pixel limit: a PNG claiming more is refused before decoding.
        with headers.open_image(Path(photo.name), area, data=io.BytesIO(data)) as image:
            if (image.height, image.width) != size:
                mismatch = masks.size_mismatch(Path(photo.name), (image.height, image.width), size)
                raise Refused(422, mismatch.one_line())
            if image.format != "PNG" or image.mode not in ("1", "L"):
                raise Refused(415, f"{photo.name}: the mask upload must be a grey PNG, not {image.mode}")
            image.load()
            pixels = np.asarray(image)
    except InpaintError as error:
        raise Refused(422, f"{photo.name}: the mask upload: {error.what}") from None
    except _CORRUPT_PNG as error:
        raise Refused(422, f"{photo.name}: the mask upload is truncated or corrupt ({error})") from None
    return masks.hole_from_array(pixels)  # the one mask rule: 1-bit is the hole, grey above 127 too


class MaskStore:
    """The masks of a catalogue: what each photo's hole is now, and saving it (thread-safe)."""

    def __init__(self, catalogue: Catalogue, *, max_pixels: int) -> None:
        self.catalogue = catalogue
        self.max_pixels = max_pixels
        self.saves = 0
        self._sources = {photo.name: photo.sources for photo in catalogue.photos}
        self._locks = {photo.name: threading.Lock() for photo in catalogue.photos}

    def load(self, photo: Photo, size: tuple[int, int]) -> tuple[np.ndarray, str]:
        """The hole the page starts from (H×W bool) and its tag; `InpaintError` for a bad mask file."""
        with self._locks[photo.name]:
            sources = self._sources[photo.name]
            tag = _tag(sources)
            if tag == NO_MASK:
                return np.zeros(size, dtype=bool), tag
            existing = [path for path in sources if path.exists()]
            return masks.read_mask(existing, size=size, max_pixels=self.max_pixels, image=photo.image), tag

    def tag(self, photo: Photo) -> str:
        """What the photo's mask files are now (the `If-Match` a save must bring)."""
        with self._locks[photo.name]:
            return _tag(self._sources[photo.name])

    def status(self, photo: Photo) -> PhotoStatus:
        if photo.problem is not None:
            return PhotoStatus.PROBLEM
        record = records.hand_edit(photo.mask)
        if record is None:
            return PhotoStatus.UNEDITED
        return PhotoStatus.NO_DAMAGE if record.no_damage else PhotoStatus.EDITED

    def save(self, photo: Photo, hole: np.ndarray, *, no_damage: bool, expected: str | None) -> Saved:
        """Write `hole` as the photo's mask (the steps in the module's docstring)."""
        with self._locks[photo.name]:
            sources = self._sources[photo.name]
            if expected is not None and expected != _tag(sources):
                raise Refused(
                    409,
                    f"{photo.name}: the mask changed on disk since the page loaded it "
                    "(another tab or program); reload the page to see it",
                )
            originals = _keep_originals(photo, sources)
            masks.write_mask(photo.mask, hole)
            for source in sources:
                if source != photo.mask:
                    source.unlink(missing_ok=True)
            self._sources[photo.name] = (photo.mask,)
            record = records.new_record(
                photo.mask, no_damage=no_damage and not hole.any(), originals=originals
            )
            records.write_edit_record(photo.mask, record)
            self.saves += 1
            status = PhotoStatus.NO_DAMAGE if record.no_damage else PhotoStatus.EDITED
            return Saved(_tag((photo.mask,)), status)


def _keep_originals(photo: Photo, sources: tuple[Path, ...]) -> tuple[str, ...]:
    """Copy each paired file to its original's name unless one is kept already; all names kept."""
    earlier = records.read_edit_record(photo.mask)
    kept = set(earlier.originals) if earlier is not None else set()
    for source in sources:
        original = records.original_path(source)
        if not original.exists() and source.exists():
            with atomic_path(original) as tmp:
                shutil.copyfile(source, tmp)
        if original.exists():
            kept.add(original.name)
    return tuple(sorted(kept))


def _tag(sources: tuple[Path, ...]) -> str:
    """What the hole's files are now: a digest of their names and contents, or `NO_MASK`."""
    existing = [path for path in sources if path.exists()]
    if not existing:
        return NO_MASK
    listing = "\n".join(f"{path.name} {file_sha256(path)}" for path in existing)
    return hashlib.sha256(listing.encode()).hexdigest()[:32]
