"""Masks: the one rule that turns mask levels into a hole (H×W bool, True = fill), for files and arrays,
and the one way a hole grows.

`hole_from_levels` is the rule (README, "Masks"): grey above the threshold is a hole (white = hole),
`invert` for black = hole; the threshold is on the 8-bit scale whatever the depth; grey is integer
ITU-R 601 luma; a mask with alpha and a uniform colour uses its alpha. `read_mask` applies it to files
(turned upright by EXIF like images, their size checked from the header before any pixel is decoded),
`hole_from_array` to numpy masks (the Python API, `compare`), so a mask gives the same hole whichever
way it comes in. `grow_hole` is the one dilation (`--dilate`, detected damage).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inpaint_cli.errors import InputError, UsageError
from inpaint_cli.imaging import headers
from inpaint_cli.imaging.imageio import read_image
from inpaint_cli.options import DEFAULT_MASK_THRESHOLD, DEFAULT_MAX_PIXELS

_MAX_8BIT = 255
_8BIT_TO_16BIT = 65535 // _MAX_8BIT  # 257: 0xAB -> 0xABAB
_LUMA_PER_MILLE = (299, 587, 114)


def read_mask(
    paths: Path | Sequence[Path],
    *,
    size: tuple[int, int],
    threshold: int = DEFAULT_MASK_THRESHOLD,
    invert: bool = False,
    dilate: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    image: Path | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """The hole (H×W bool, True = fill) described by one or several mask files, OR-ed together.

    A pixel is a hole where its grey value is above `threshold` (white = hole), or at or below it
    with `invert` (black = hole; applied to each mask before OR-ing). The threshold is on the 8-bit
    scale; a 16-bit mask is compared with `threshold * 257`, so the 8- and 16-bit versions of a
    mask give the same hole. Grey is ITU-R 601 luma for colour masks; a mask with alpha and a
    uniform colour uses its alpha instead. Masks are turned upright by their EXIF orientation and
    must then have the image's `size` (height, width): this is checked from the header, before any
    pixel is decoded, and the error is filed under `image` when given. `max_pixels` applies to masks
    as to images. `dilate` grows the hole by that many pixels (a disc). Warnings (a multi-page mask,
    a lossy one: `lossy_mask_note`) are appended to `notes`.
    """
    if not 0 <= threshold <= _MAX_8BIT:  # before any file is read
        raise UsageError(f"mask threshold {threshold} is outside 0..255")
    if dilate < 0:
        raise UsageError(f"mask dilation {dilate} is negative")
    mask_paths = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not mask_paths:
        raise UsageError("no mask file given")
    hole = np.zeros(size, dtype=bool)
    for mask_path in mask_paths:
        header = headers.read_header(mask_path, max_pixels=max_pixels)
        # Sideways is decoded and checked again: a PNG may keep its EXIF orientation after the pixels.
        if tuple(size) not in (header.size, header.size[::-1]):
            raise size_mismatch(mask_path, header.size, size, image)
        picture = read_image(mask_path, max_pixels=max_pixels)
        if picture.size != tuple(size):
            raise size_mismatch(mask_path, picture.size, size, image)
        if notes is not None:
            notes += picture.notes
            levels = _mask_levels(picture.pixels, picture.alpha) // _scale_from_8bit(picture.pixels.dtype)
            lossy = lossy_mask_note(levels, threshold, invert)
            if lossy:
                notes.append(f"{mask_path}: {lossy}")
        hole |= hole_from_levels(picture.pixels, picture.alpha, threshold=threshold, invert=invert)
    if dilate:
        hole = grow_hole(hole, dilate)
    return hole


def hole_from_levels(
    pixels: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    threshold: int = DEFAULT_MASK_THRESHOLD,
    invert: bool = False,
) -> np.ndarray:
    """The mask rule: the hole of H×W×C (C = 1 or 3) uint8/uint16 mask pixels and their alpha (H×W or
    None). A pixel is a hole where its grey level is above `threshold` (on the 8-bit scale: a 16-bit
    mask is compared with `threshold * 257`), or at or below it with `invert`. The grey level is the
    alpha when the colour is uniform, else integer ITU-R 601 luma rounded half up."""
    if not 0 <= threshold <= _MAX_8BIT:
        raise UsageError(f"mask threshold {threshold} is outside 0..255")
    hole = _mask_levels(pixels, alpha) > threshold * _scale_from_8bit(pixels.dtype)
    return ~hole if invert else hole


def hole_from_array(
    mask: np.ndarray, *, threshold: int = DEFAULT_MASK_THRESHOLD, invert: bool = False
) -> np.ndarray:
    """The hole of a numpy mask, by the rule of mask files (`hole_from_levels`): a bool H×W (or H×W×1)
    array is the hole itself; uint8/uint16 H×W, H×W×1 (grey), H×W×2 (grey, alpha), H×W×3 (RGB) or
    H×W×4 (RGBA) levels are read as a mask file with those pixels would be. Raises ValueError for other
    shapes and types (a float mask has no agreed scale)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.dtype == bool:
        if mask.ndim != 2:
            raise ValueError(f"a bool mask is the hole itself and must be H×W, not {mask.shape}")
        return ~mask if invert else mask
    if mask.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a bool, uint8 or uint16 mask, not {mask.dtype}")
    if mask.ndim == 2:
        return hole_from_levels(mask[..., None], threshold=threshold, invert=invert)
    if mask.ndim == 3 and mask.shape[2] in (2, 4):
        return hole_from_levels(mask[..., :-1], mask[..., -1], threshold=threshold, invert=invert)
    if mask.ndim == 3 and mask.shape[2] == 3:
        return hole_from_levels(mask, threshold=threshold, invert=invert)
    raise ValueError(f"expected an H×W or H×W×C mask (C = 1 to 4), not {mask.shape}")


def write_mask(path: Path, hole: np.ndarray) -> Path:
    """A hole as a mask file by the convention (8-bit grey PNG, 255 = hole), written atomically."""
    from PIL import Image

    from inpaint_cli.files.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(hole.astype(np.uint8) * _MAX_8BIT, "L").save(tmp, format="PNG")
    return path


LOSSY_NOISE = (64, 192)
"""Levels below the first and from the second on, but not 0 or 255, are near black or near white:
where lossy compression puts its noise around a black-and-white mask's edges."""
LOSSY_NOISE_PER_MID = 5
"""A lossy black-and-white mask has this many near-black/near-white pixels per mid-level one, or
more (JPEG at quality 75-95: tens of thousands); a drawn mask's soft edges have about 2 (anti-aliased
lines) to 3 (a feathered brush). Measured on the example mask and masks drawn with OpenCV."""
LOSSY_NOISE_PER_HOLE = 0.1
"""...and that noise amounts to a tenth of the hole or more (JPEG quality 75-95: 0.6-0.9; 100: 0.05)."""


def lossy_mask_note(levels: np.ndarray, threshold: int, invert: bool = False) -> str | None:
    """A warning for a mask with the noise of lossy compression (JPEG, lossy WebP) around its edges,
    with the advice that fits the threshold in use; None for a clean or a softly drawn mask.
    `levels`: the mask's H×W 8-bit grey levels (`_mask_levels`)."""
    counts = np.bincount(levels.ravel(), minlength=_MAX_8BIT + 1)
    low, high = LOSSY_NOISE
    noise = int(counts[1:low].sum() + counts[high:_MAX_8BIT].sum())
    middle = int(counts[low:high].sum())

    def hole_share(limit: int) -> float:
        return float((counts[: limit + 1] if invert else counts[limit + 1 :]).sum() / levels.size)

    if (
        noise < LOSSY_NOISE_PER_MID * middle
        or noise < LOSSY_NOISE_PER_HOLE * hole_share(threshold) * levels.size
    ):
        return None
    noisy = f"has the noise of lossy compression (JPEG?) around its edges ({noise / levels.size:.1%} of it)"
    now, default = hole_share(threshold), hole_share(DEFAULT_MASK_THRESHOLD)
    widest = _MAX_8BIT - 1 if invert else 0  # the threshold that takes in every noisy pixel
    if (threshold >= high) if invert else (threshold < low):
        return (
            f"{noisy}: at --mask-threshold {threshold} the noise joins the hole ({now:.1%} of the image, "
            f"{default:.1%} at the default {DEFAULT_MASK_THRESHOLD}); use the default, and --dilate for a "
            "margin, or save masks as PNG"
        )
    return (
        f"{noisy}, left out at --mask-threshold {threshold} ({now:.1%} of the image is hole; "
        f"--mask-threshold {widest} would make it {hole_share(widest):.1%}): for a margin use --dilate, "
        "or save masks as PNG"
    )


DILATE_KERNEL_LIMIT = 32
"""Up to this radius the hole grows by OpenCV's elliptic kernel; beyond it by a distance transform,
whose time and memory do not grow with the radius (a 100000 px kernel would take 40 GB)."""


def grow_hole(hole: np.ndarray, radius: int) -> np.ndarray:
    """The hole grown by a disc of `radius` pixels."""
    if radius <= DILATE_KERNEL_LIMIT:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return cv2.dilate(hole.view(np.uint8), disc).astype(bool)
    if not hole.any():
        return hole
    # Distance from each known pixel to the nearest hole pixel (float32, one image's worth).
    distance = cv2.distanceTransform((~hole).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return hole | (distance <= radius)


def size_mismatch(
    mask: Path, mask_size: Sequence[int], image_size: Sequence[int], image: Path | None = None
) -> InputError:
    """The error for a mask whose upright size is not the image's, filed under the image if known."""
    hint = "a mask must have the image's size once both are turned upright by EXIF"
    if image is None:
        return InputError(
            f"mask is {_width_x_height(mask_size)} but image is {_width_x_height(image_size)}",
            path=mask,
            hint=hint,
        )
    return InputError(
        f"its mask {mask} is {_width_x_height(mask_size)} but the image is {_width_x_height(image_size)}",
        path=image,
        hint=hint,
    )


def _mask_levels(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """The grey levels a mask is thresholded on: its alpha if its colour is uniform, else its luma."""
    if alpha is not None and (pixels == pixels[:1, :1]).all():
        return alpha
    if pixels.shape[2] == 1:
        return pixels[..., 0]
    per_mille = np.zeros(pixels.shape[:2], dtype=np.uint32)
    for channel, weight in enumerate(_LUMA_PER_MILLE):
        per_mille += pixels[..., channel].astype(np.uint32) * weight
    # Integer luma rounded half up, so a grey saved as RGB gives exactly its grey value.
    return (per_mille + 500) // 1000


def _scale_from_8bit(dtype: np.dtype) -> int:
    return _8BIT_TO_16BIT if dtype == np.uint16 else 1


def _width_x_height(size: Sequence[int]) -> str:
    height, width = size
    return f"{width}x{height}"
