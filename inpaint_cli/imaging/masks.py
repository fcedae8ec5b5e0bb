"""Reading masks: one or several files into the hole (H×W bool, True = fill) of an image.

Thresholds are on the 8-bit scale whatever the mask's depth, masks are turned upright by EXIF like
images (`imageio.read_image`), and their size is checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inpaint_cli.errors import InputError, UsageError
from inpaint_cli.imaging import headers
from inpaint_cli.imaging.imageio import Picture, read_image
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
    as to images. `dilate` grows the hole by that many pixels (a disc). Warnings (a multi-page mask)
    are appended to `notes`.
    """
    if not 0 <= threshold <= _MAX_8BIT:
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
        mask_hole = _mask_levels(picture) > threshold * _scale_from_8bit(picture.pixels.dtype)
        hole |= ~mask_hole if invert else mask_hole
    if dilate:
        hole = grow_hole(hole, dilate)
    return hole


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


def _mask_levels(picture: Picture) -> np.ndarray:
    """The grey levels a mask is thresholded on: its alpha if its colour is uniform, else its luma."""
    pixels = picture.pixels
    if picture.alpha is not None and (pixels == pixels[:1, :1]).all():
        return picture.alpha
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
