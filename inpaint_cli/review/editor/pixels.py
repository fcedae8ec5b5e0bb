"""What the page shows of a photo: a downscaled view first, then full-resolution tiles as it zooms in.

A photo is decoded once (`imageio.read_image`: EXIF orientation, the decompression-bomb limit) and
kept, with the levels of its pyramid (each half the size of the one above, by area averaging) made
as they are asked for, in a cache bounded in bytes. Level 0 is the photo itself; the last level is the
first view the page loads, at most `VIEW_SIDE` pixels a side. Levels between are served as
`TILE`-pixel JPEG tiles, so a 24-megapixel scan shows at once and sharpens where the page zooms in.
16-bit photos are shown by their upper 8 bits (what a screen shows); grey stays grey.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from inpaint_cli.imaging import headers, imageio
from inpaint_cli.review.editor.catalogue import Photo

VIEW_SIDE = 2048
"""Longest side of the first view: 1500x1000 for a 6000x4000 scan, about 300 KB as JPEG, sharp on
any screen until the page zooms in past 1:4."""
TILE = 512
JPEG_QUALITY = 90
CACHE_BYTES = 768 * 2**20
"""Decoded photos kept (8-bit, with their levels): three 24-megapixel colour scans, so that the
previous and the next photo (decoded ahead) open without decoding again."""


@dataclass(frozen=True)
class Geometry:
    """A photo's upright size and the sizes of its pyramid's levels (`levels[0]` is the photo)."""

    height: int
    width: int
    levels: tuple[tuple[int, int], ...]
    """(height, width) per level."""

    @property
    def view_level(self) -> int:
        return len(self.levels) - 1

    def as_json(self) -> dict[str, object]:
        return {
            "width": self.width,
            "height": self.height,
            "levels": [{"width": w, "height": h} for h, w in self.levels],
            "view_level": self.view_level,
            "tile": TILE,
        }


def geometry(height: int, width: int) -> Geometry:
    """The levels of a photo of this size: halved (rounding up) until the longest side fits VIEW_SIDE."""
    levels = [(height, width)]
    while max(levels[-1]) > VIEW_SIDE:
        h, w = levels[-1]
        levels.append((math.ceil(h / 2), math.ceil(w / 2)))
    return Geometry(height, width, tuple(levels))


@dataclass
class _Decoded:
    levels: list[np.ndarray | None]
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def bytes(self) -> int:
        return sum(level.nbytes for level in self.levels if level is not None)


class Views:
    """Decoded photos and the JPEGs the page asks for (thread-safe; decoding happens once a photo)."""

    def __init__(self, *, max_pixels: int, cache_bytes: int = CACHE_BYTES) -> None:
        self.max_pixels = max_pixels
        self.cache_bytes = cache_bytes
        self._geometry: dict[str, Geometry] = {}
        self._decoded: OrderedDict[str, _Decoded] = OrderedDict()
        self._lock = threading.Lock()
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode-ahead")

    def geometry(self, photo: Photo) -> Geometry:
        """From the header alone (milliseconds); `InpaintError` for an unreadable photo."""
        known = self._geometry.get(photo.name)
        if known is None:
            header = headers.read_header(photo.image, max_pixels=self.max_pixels)
            known = self._geometry[photo.name] = geometry(*header.size)
        return known

    def view(self, photo: Photo) -> bytes:
        """The whole photo at its view level, as JPEG."""
        return encode_jpeg(self._level(photo, self.geometry(photo).view_level))

    def tile(self, photo: Photo, level: int, column: int, row: int) -> bytes | None:
        """One tile of a level above the view level, as JPEG; None where there is no such tile."""
        geometry = self.geometry(photo)
        if not 0 <= level < geometry.view_level:
            return None
        height, width = geometry.levels[level]
        if not (0 <= column < math.ceil(width / TILE) and 0 <= row < math.ceil(height / TILE)):
            return None
        pixels = self._level(photo, level)
        return encode_jpeg(pixels[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE])

    def region(self, photo: Photo, left: int, top: int, width: int, height: int) -> np.ndarray:
        """Full-resolution pixels of a part of the photo (as shown: 8-bit, RGB or grey)."""
        return self._level(photo, 0)[top : top + height, left : left + width]

    def decode_ahead(self, photo: Photo, level: int | None = None) -> None:
        """Decode `photo` in the background (by default its view: the page is about to ask for it)."""
        self.later(self._quietly_decode, photo, level)

    def later(self, work: Callable[..., object], *args: object) -> None:
        """Run `work(*args)` in the background: one task at a time, in the order asked, so what the
        page needs now is never queued behind what it may need next."""
        self._ahead.submit(work, *args)

    def opened(self, photo: Photo, following: Photo | None) -> None:
        """The page has what it shows first: decode the rest in the background, the photo's full
        resolution (for tiles) and then the view of the photo it will likely open next."""
        if self.geometry(photo).view_level > 0:
            self.decode_ahead(photo, level=0)
        if following is not None:
            self.decode_ahead(following)

    def close(self) -> None:
        self._ahead.shutdown(wait=False, cancel_futures=True)

    def _quietly_decode(self, photo: Photo, level: int | None) -> None:
        try:
            self._level(photo, self.geometry(photo).view_level if level is None else level)
        except Exception:  # any problem shows when the page opens the photo, with its message
            return

    def _level(self, photo: Photo, level: int) -> np.ndarray:
        geometry = self.geometry(photo)
        decoded = self._entry(photo)
        with decoded.lock:
            if decoded.levels[level] is None and decoded.levels[0] is None and level == geometry.view_level:
                self._first_view(photo, decoded)
            if decoded.levels[level] is None:
                self._build(photo, decoded, level)
            pixels = decoded.levels[level]
        self._evict(keep=photo.name)
        return pixels

    def _first_view(self, photo: Photo, decoded: _Decoded) -> None:
        """The view level before anything else: a JPEG decodes it at a fraction of the full cost
        (DCT scaling); other formats decode in full, kept as level 0 for the tiles to come."""
        geometry = self.geometry(photo)
        height, width = geometry.levels[geometry.view_level]
        picture = imageio.read_image(photo.image, max_pixels=self.max_pixels, at_least=(height, width))
        pixels = _displayable(picture.pixels)
        if picture.size == geometry.levels[0]:
            decoded.levels[0] = pixels
            self._build(photo, decoded, geometry.view_level)
        else:
            decoded.levels[geometry.view_level] = cv2.resize(
                pixels, (width, height), interpolation=cv2.INTER_AREA
            )

    def _build(self, photo: Photo, decoded: _Decoded, level: int) -> None:
        """Level 0 from the file, then each level up to `level` from the one above it."""
        if decoded.levels[0] is None:
            picture = imageio.read_image(photo.image, max_pixels=self.max_pixels)
            decoded.levels[0] = _displayable(picture.pixels)
        for index in range(1, level + 1):
            if decoded.levels[index] is None:
                height, width = self.geometry(photo).levels[index]
                above = decoded.levels[index - 1]
                decoded.levels[index] = cv2.resize(above, (width, height), interpolation=cv2.INTER_AREA)

    def _entry(self, photo: Photo) -> _Decoded:
        with self._lock:
            entry = self._decoded.get(photo.name)
            if entry is None:
                entry = self._decoded[photo.name] = _Decoded([None] * len(self.geometry(photo).levels))
            self._decoded.move_to_end(photo.name)
            return entry

    def _evict(self, keep: str) -> None:
        """Forget the least recently used photos beyond the byte budget (never the one just used)."""
        with self._lock:
            while sum(entry.bytes for entry in self._decoded.values()) > self.cache_bytes:
                oldest = next(iter(self._decoded))
                if oldest == keep:
                    return
                del self._decoded[oldest]


def _displayable(pixels: np.ndarray) -> np.ndarray:
    """8-bit samples, grey as H×W, colour as H×W×3 (RGB, as decoded: no copy of a whole scan)."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if pixels.shape[2] == 1:
        return np.ascontiguousarray(pixels[..., 0])
    return np.ascontiguousarray(pixels)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """A view or a tile as JPEG (OpenCV takes colour in BGR order: only this small piece is turned)."""
    if pixels.ndim == 3:
        pixels = np.ascontiguousarray(pixels[..., ::-1])
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # OpenCV encodes any 8-bit grey or BGR array; a failure here is a bug, not a bad input
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()
