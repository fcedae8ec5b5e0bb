"""Pixels of the review page: thumbnails (input, mask overlay, result) and what the pixels reveal.

Thumbnails are JPEGs written atomically; `pixel_findings` flags results worth a look (a large hole,
a hole filled with one flat colour, an unchanged hole).
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path

import numpy as np

from inpaint_cli.errors import InputError
from inpaint_cli.files.atomic import atomic_path

logger = logging.getLogger(__name__)

THUMBNAIL_QUALITY = 80
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


def display(path: Path | None) -> np.ndarray | None:
    """8-bit RGB pixels of an image file, or None if it cannot be read."""
    from inpaint_cli.imaging import imageio
    from inpaint_cli.review import visualize

    if path is None:
        return None
    try:
        return np.asarray(visualize.to_display(imageio.read_image(path).pixels))
    except (OSError, ValueError, InputError) as exc:
        logger.info("no thumbnail of %s: %s", path, exc)
        return None


def read_hole(
    masks: tuple[Path, ...], size: tuple[int, int], options: dict | None = None
) -> np.ndarray | None:
    """The hole of these mask files at `size`, read with the run's `options` (`MASK_OPTIONS`), or
    None if there is none to read."""
    from inpaint_cli.imaging.masks import read_mask

    if not masks:
        return None
    chosen = {key: value for key, value in (options or {}).items() if key in MASK_OPTIONS}
    try:
        return read_mask(masks, size=size, **chosen)
    except (OSError, ValueError, InputError) as exc:
        logger.info("no mask overlay from %s: %s", masks[0], exc)
        return None


def overlay(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
    from inpaint_cli.review.visualize import HOLE_OVERLAY_ALPHA, HOLE_OVERLAY_COLOUR

    shown = pixels.astype(np.float32)
    shown[hole] = shown[hole] * (1 - HOLE_OVERLAY_ALPHA) + HOLE_OVERLAY_COLOUR * HOLE_OVERLAY_ALPHA
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


def make_thumbnails(
    image: Path | None,
    masks: tuple[Path, ...],
    output: Path | None,
    folder: Path,
    key: str,
    side: int,
    mask_options: dict | None = None,
) -> dict:
    """Thumbnails of one row as `{"thumbs": {kind: URL relative to the page's folder}, "findings": [...]}`;
    kinds are input, mask (overlay) and result (None when absent); `output` None for a failure."""
    before = display(image)
    after = display(output)
    hole = read_hole(masks, before.shape[:2], mask_options) if before is not None else None
    written: dict[str, str | None] = {"input": None, "mask": None, "result": None}
    pictures = {"input": before, "result": after}
    if hole is not None:
        pictures["mask"] = overlay(before, hole)
    for kind, pixels in pictures.items():
        if pixels is None:
            continue
        name = f"{key}_{kind}.jpg"
        save_jpeg(folder / name, np.ascontiguousarray(thumbnail(pixels, side)))
        written[kind] = urllib.parse.quote(f"{folder.name}/{name}")
    return {"thumbs": written, "findings": pixel_findings(before, hole, after)}
