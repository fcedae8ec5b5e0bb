"""What an image file's header says, read without decoding its pixels: format, mode, upright size,
frame count, and whether the file is cut short (where the format lets that be seen cheaply).

`imageio.read_image` opens every file through `open_image` (format and pixel-limit checks), and
`read_header` serves checks that must not decode: a dry run, and a mask's size before its pixels
(a 240-megapixel mask for a small photo is refused from its header).
"""

from __future__ import annotations

import contextlib
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from inpaint_cli.errors import InputError, display_path
from inpaint_cli.options import DEFAULT_MAX_PIXELS

READABLE_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")
ORIENTATION_TAG = 0x0112
UPRIGHT = 1
AXES_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
KNOWN_ORIENTATIONS = frozenset(range(1, 9))
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
_JPEG_TAIL = 4096
"""Bytes at the end of a JPEG searched for its end marker: cameras may append a little padding."""
_TIFF_DATA_TAGS = ((273, 279), (324, 325))
"""(offsets, byte counts) of strips and of tiles."""
_MULTI_FRAME_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})
"""Formats whose extra frames are other pictures (APNG, pages, animation). A phone's MPO JPEG also
has two frames, but the second is a depth map or preview, not a picture that is left out."""

# Pillow's decompression-bomb limit is a module global; it is raised to the caller's limit only while
# a header is parsed, one thread at a time, and restored at once.
_PILLOW_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Header:
    """An image file as its header describes it."""

    path: Path
    format: str
    """Pillow's format name: PNG, JPEG, TIFF, WEBP (MPO for a phone's multi-picture JPEG)."""
    mode: str
    size: tuple[int, int]
    """(height, width) once turned upright by the EXIF orientation."""
    frames: int
    truncated: bool
    """The file ends before the data its header announces (PNG, JPEG, TIFF strips, WebP)."""

    @property
    def frames_note(self) -> str | None:
        """The warning for an animation or a multi-page file, of which only the first frame is used."""
        if self.frames <= 1 or self.format not in _MULTI_FRAME_FORMATS:
            return None
        kind = "pages" if self.format == "TIFF" else "frames"
        return f"{display_path(self.path)}: has {self.frames} {kind}; only the first is used"


def require_nonempty_file(path: Path) -> None:
    if path.is_dir():
        raise InputError("is a folder, not an image file", path=path)
    try:
        empty = path.stat().st_size == 0
    except FileNotFoundError:
        raise InputError("file not found", path=path, hint="check the path") from None
    except OSError as error:
        raise InputError(f"cannot read the file ({error.strerror})", path=path) from error
    if empty:
        raise InputError("file is empty (0 bytes)", path=path, hint="the copy or download may have failed")


@contextlib.contextmanager
def open_image(path: Path, max_pixels: int, *, data: BinaryIO | None = None) -> Iterator[Image.Image]:
    """Open (header only) a file of a readable format no larger than `max_pixels`; with `data`,
    those bytes (an upload) under the name `path`."""
    over_limit = InputError(
        f"image has more than {max_pixels:,} pixels",
        path=path,
        hint="refused as a possible decompression bomb; raise --max-pixels if the image is genuine",
    )
    try:
        with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
            # Pillow warns between 1x and 2x its limit and raises above; the exact check is ours below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
            try:
                image = Image.open(path if data is None else data, formats=READABLE_FORMATS)
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except Image.DecompressionBombError as error:
        raise over_limit from error
    except Image.UnidentifiedImageError as error:
        raise InputError(
            "not a PNG, JPEG, TIFF or WebP image (or a damaged one)",
            path=path,
            hint="convert it to PNG or JPEG",
        ) from error
    except OSError as error:
        raise InputError(f"cannot read the file ({error.strerror or error})", path=path) from error
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise over_limit
        yield image


def orientation(image: Image.Image, *, decoded: bool = True) -> int:
    """The EXIF orientation (1-8) of an opened image; 1 when absent or invalid.

    Before decoding (`decoded=False`) a PNG's EXIF is taken from the chunks read with the header:
    Pillow's `getexif` would decode the whole image to look for an eXIf chunk after the pixels.
    """
    if image.format == "PNG" and not decoded:
        exif = Image.Exif()
        if image.info.get("exif"):
            exif.load(image.info["exif"])
    else:
        exif = image.getexif()
    value = exif.get(ORIENTATION_TAG, UPRIGHT)
    return value if value in KNOWN_ORIENTATIONS else UPRIGHT


def upright_size(image: Image.Image, *, decoded: bool = True) -> tuple[int, int]:
    """(height, width) of an opened image once turned upright by its EXIF orientation."""
    width, height = image.size
    swapped = orientation(image, decoded=decoded) in AXES_SWAPPING_ORIENTATIONS
    return (width, height) if swapped else (height, width)


def frame_count(image: Image.Image) -> int:
    try:
        return int(getattr(image, "n_frames", 1))
    except (OSError, ValueError, EOFError, struct.error):  # a damaged chain of TIFF pages
        return 1


def read_header(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """The header of an image file, without decoding pixels (milliseconds for any size).

    Raises InputError as `imageio.read_image` does for an empty, unreadable, unknown or too large file.
    """
    path = Path(path)
    require_nonempty_file(path)
    with open_image(path, max_pixels) as image:
        try:
            size = upright_size(image, decoded=False)
            frames = frame_count(image)
            truncated = _looks_truncated(path, image)
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
            raise InputError(
                f"image header is damaged ({error})", path=path, hint="re-export or re-scan it"
            ) from error
        return Header(path, image.format, image.mode, size, frames, truncated)


def _looks_truncated(path: Path, image: Image.Image) -> bool:
    """Whether the file ends before its data does, judged from its last bytes or its layout tags."""
    file_size = path.stat().st_size
    if image.format == "PNG":
        return _tail(path, len(_PNG_END)) != _PNG_END
    if image.format in ("JPEG", "MPO"):
        return _JPEG_END not in _tail(path, _JPEG_TAIL)
    if image.format == "WEBP":
        with path.open("rb") as file:
            riff = file.read(8)
        return len(riff) < 8 or struct.unpack("<I", riff[4:8])[0] + 8 > file_size
    if image.format == "TIFF":
        for offsets_tag, counts_tag in _TIFF_DATA_TAGS:
            offsets, counts = image.tag_v2.get(offsets_tag), image.tag_v2.get(counts_tag)
            if offsets is None or counts is None:
                continue
            offsets = offsets if isinstance(offsets, tuple) else (offsets,)
            counts = counts if isinstance(counts, tuple) else (counts,)
            if any(start + length > file_size for start, length in zip(offsets, counts, strict=False)):
                return True
    return False


def _tail(path: Path, count: int) -> bytes:
    with path.open("rb") as file:
        file.seek(0, 2)
        file.seek(max(0, file.tell() - count))
        return file.read()
