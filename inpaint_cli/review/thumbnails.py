"""Pixels of the review page: thumbnails (input, mask overlay, result) and what the pixels reveal.

Thumbnails are JPEGs written atomically; `pixel_findings` flags results worth a look (a large hole,
a hole filled with one flat colour, an unchanged hole).
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inpaint_cli.errors import InputError
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.options import DEFAULT_MAX_PIXELS

logger = logging.getLogger(__name__)

THUMBNAIL_QUALITY = 80
NO_THUMBNAIL = "no thumbnail"
"""Starts the finding of a picture that could not be shown (too many pixels, unreadable)."""
LARGE_HOLE = 0.4
"""A hole covering more of the image than this is suspicious: little context is left to fill it."""
FLAT_FILL_STD = 1.5
"""A hole filled with nearly one colour (8-bit standard deviation below this) while its surroundings
vary (above `BUSY_SURROUNDINGS_STD`) is suspicious: a broken network or non-finite output."""
BUSY_SURROUNDINGS_STD = 8.0
FOREIGN_SHARE = 0.02
"""A fill whose colours are found nowhere around the hole, in this share of the hole or more (and
in one patch of `FOREIGN_PATCH` pixels or more), looks unfilled or broken: issue 30's torn corner,
left to pconv-tiny at native scale, came out a flat block with green, red and black blots on a sepia
print (7.9 % of the hole foreign), gatedconv-tiny's a blue cast (58 %); good fills of that photo
measured 0-1 %."""
FOREIGN_PATCH = 256
PALETTE_BIN = 8
"""Colours are compared in 8-bit Lab, in bins this wide; a neighbouring bin counts as the same."""
PALETTE_RING = 31
"""Side of the square that grows the hole into the ring of surroundings whose colours count."""
MASK_OPTIONS = ("threshold", "invert", "dilate")
"""How a run read its masks (recorded in its provenance): `masks.read_mask` keywords."""


def thumbnail(pixels: np.ndarray, side: int) -> np.ndarray:
    import cv2

    height, width = pixels.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return pixels


def save_jpeg(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(pixels, "RGB").save(tmp, format="JPEG", quality=THUMBNAIL_QUALITY)


def display(path: Path | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """8-bit RGB pixels of an image file (None for no file). The file's header is checked against
    `max_pixels` before anything is decoded, as `run` does; a problem is an `InputError`."""
    from inpaint_cli.imaging import imageio
    from inpaint_cli.imaging.pixels import to_rgb8

    if path is None:
        return None
    try:
        return to_rgb8(imageio.read_image(path, max_pixels=max_pixels).pixels)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot be read ({exc})", path=path) from None


def read_hole(
    masks: tuple[Path, ...],
    size: tuple[int, int],
    options: dict | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray | None:
    """The hole of these mask files at `size`, read with the run's `options` (`MASK_OPTIONS`), or
    None if there is none to read."""
    from inpaint_cli.imaging.masks import read_mask

    if not masks:
        return None
    chosen = {key: value for key, value in (options or {}).items() if key in MASK_OPTIONS}
    try:
        return read_mask(masks, size=size, max_pixels=max_pixels, **chosen)
    except (OSError, ValueError, InputError) as exc:
        logger.info("no mask overlay from %s: %s", masks[0], exc)
        return None


def overlay(pixels: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """`pixels` (8-bit RGB) tinted where `coverage` (H×W, 0..1: the share of hole under each pixel,
    or a bool hole) says, as much as it says: a downscaled hole keeps its soft edges."""
    from inpaint_cli.review.visualize import HOLE_OVERLAY_ALPHA, HOLE_OVERLAY_COLOUR

    weight = coverage.astype(np.float32)[..., None] * HOLE_OVERLAY_ALPHA
    shown = pixels.astype(np.float32) * (1 - weight) + HOLE_OVERLAY_COLOUR * weight
    return shown.round().astype(np.uint8)


def pixel_findings(before: np.ndarray | None, hole: np.ndarray | None, after: np.ndarray | None) -> list[str]:
    """Reasons to look at a result, from its pixels (8-bit RGB): a large hole, a flat or unchanged fill."""
    if hole is None or not hole.any():
        return []
    found = []
    fraction = float(hole.mean())
    if fraction > LARGE_HOLE:
        found.append(f"hole covers {fraction:.0%} of the image")
    if after is None or after.shape[:2] != hole.shape:
        return found
    import cv2

    ring = cv2.dilate(hole.view(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~hole
    inside = after[hole].astype(np.float32)
    if ring.any() and inside.std(axis=0).max() < FLAT_FILL_STD and after[ring].std() > BUSY_SURROUNDINGS_STD:
        found.append("the hole is filled with one flat colour")
    elif before is not None and before.shape == after.shape and np.array_equal(before[hole], after[hole]):
        found.append("the hole is unchanged")
    else:
        share, patch = foreign_colours(after, hole)
        if share >= FOREIGN_SHARE and patch >= FOREIGN_PATCH:
            found.append(f"{share:.0%} of the fill has colours found nowhere around the hole (unfilled?)")
    return found


def foreign_colours(after: np.ndarray, hole: np.ndarray) -> tuple[float, int]:
    """The share of hole pixels whose colour (8-bit RGB) is found nowhere in the ring around the hole,
    and the largest connected patch of them (pixels)."""
    import cv2

    bins = cv2.cvtColor(np.ascontiguousarray(after), cv2.COLOR_RGB2LAB) // PALETTE_BIN
    grown = cv2.dilate(hole.view(np.uint8), np.ones((PALETTE_RING, PALETTE_RING), np.uint8))
    ring = grown.astype(bool) & ~hole
    if not ring.any():
        return 0.0, 0
    side = 256 // PALETTE_BIN
    seen = np.zeros((side + 2,) * 3, bool)  # one empty bin on each side, for the neighbours below
    found = bins[ring].astype(np.intp) + 1
    seen[found[:, 0], found[:, 1], found[:, 2]] = True
    near = np.zeros_like(seen)
    for offset in np.ndindex(3, 3, 3):  # a bin next to a seen one counts as seen
        near[1:-1, 1:-1, 1:-1] |= seen[tuple(slice(o, o + side) for o in offset)]
    inside = bins[hole].astype(np.intp) + 1
    foreign = ~near[inside[:, 0], inside[:, 1], inside[:, 2]]
    if not foreign.any():
        return 0.0, 0
    where = np.zeros(hole.shape, np.uint8)
    where[hole] = foreign
    count, _, stats, _ = cv2.connectedComponentsWithStats(where, connectivity=8)
    return float(foreign.mean()), int(stats[1:count, cv2.CC_STAT_AREA].max())


@dataclass
class Thumbnails:
    """One row's pictures made small (`input`, `mask` overlay, `result`; absent ones left out) and
    what the full-size pixels revealed."""

    small: dict[str, np.ndarray]
    findings: list[str]


def make_thumbnails(
    image: Path | None,
    masks: tuple[Path, ...],
    output: Path | None,
    side: int,
    mask_options: dict | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Thumbnails:
    """Thumbnails of one row, in memory; `output` None for a failure.

    Every picture is made small before anything else is computed on it (the overlay was float32 at
    full size: 12 bytes a pixel, 7 GB for a 240 MP scan); only the findings look at full resolution.
    Files over `max_pixels` are not decoded: their thumbnail is missing, with a finding saying why.
    """
    notes: list[str] = []
    before, after = (_display_or_note(path, max_pixels, notes) for path in (image, output))
    hole = read_hole(masks, before.shape[:2], mask_options, max_pixels) if before is not None else None
    findings = pixel_findings(before, hole, after) + notes
    small = {
        kind: thumbnail(pixels, side)
        for kind, pixels in (("input", before), ("result", after))
        if pixels is not None
    }
    if hole is not None:
        small["mask"] = overlay(small["input"], thumbnail(hole.view(np.uint8) * np.uint8(255), side) / 255)
    return Thumbnails(small, findings)


THUMBNAIL_KINDS = ("input", "mask", "result")


def thumbnail_path(folder: Path, key: str, kind: str) -> Path:
    """Where the `kind` thumbnail of the row `key` goes in the page's files folder."""
    return folder / f"{key}_{kind}.jpg"


def write_thumbnails(made: Thumbnails, folder: Path, key: str) -> dict[str, str | None]:
    """Write the JPEGs; per kind, its URL relative to the page's folder (None when absent)."""
    written: dict[str, str | None] = dict.fromkeys(THUMBNAIL_KINDS)
    for kind, pixels in made.small.items():
        path = thumbnail_path(folder, key, kind)
        save_jpeg(path, np.ascontiguousarray(pixels))
        written[kind] = urllib.parse.quote(f"{folder.name}/{path.name}", errors="surrogateescape")
    return written


def _display_or_note(path: Path | None, max_pixels: int, notes: list[str]) -> np.ndarray | None:
    try:
        return display(path, max_pixels)
    except InputError as exc:
        notes.append(f"{NO_THUMBNAIL}: {exc.one_line()}")
        return None
