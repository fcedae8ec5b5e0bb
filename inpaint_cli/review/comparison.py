"""Side-by-side model comparison: the same hole filled by several models, scored and drawn in one grid.

`compare` runs each model on one image (every model loaded once); a folder whose clean originals are
known goes through the batch engine as the compare job kind (`batch.kinds.compare.compare_folder`),
giving a mean per model (`FolderComparison`). With an original, each
result is scored by PSNR and SSIM inside the hole and over the whole image. `make_grid` draws one
labelled picture: per model a column with the whole result scaled down and a crop around the hole
at full size, so the fill itself is seen pixel for pixel.

Scores come from `inpaint_cli.review.metrics`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inpaint_cli.errors import InputError, UsageError
from inpaint_cli.options import DEFAULT_COMPARE_MODELS, DEFAULT_MAX_PIXELS
from inpaint_cli.review.metrics import psnr, ssim_map

CROP_SIDE = 384
"""Largest side of the full-size crop around the hole in the grid."""
CROP_MARGIN = 24
"""Known pixels shown around the hole's bounding box in the crop."""
CROP_MAX_SHARE = 0.5
"""A crop covering more of the image than this would repeat the whole picture: zoom in instead."""
CROP_MIN_SIDE = 64
COLUMN_MIN = 256
"""Narrowest grid column: the whole picture stays readable when the hole is small."""
WHOLE_MAX_HEIGHT = 384
LABEL_HEIGHT = 46
GAP = 6


SCORE_NAMES = ("psnr_hole", "ssim_hole", "psnr_whole", "ssim_whole")


@dataclass(frozen=True)
class Scores:
    psnr_hole: float
    ssim_hole: float
    psnr_whole: float
    ssim_whole: float

    @classmethod
    def of(cls, result: np.ndarray, original: np.ndarray, hole: np.ndarray) -> Scores:
        whole_ssim = ssim_map(result, original)
        return cls(
            psnr_hole=psnr(result, original, hole),
            ssim_hole=float(whole_ssim[hole].mean()) if hole.any() else math.nan,
            psnr_whole=psnr(result, original),
            ssim_whole=float(whole_ssim.mean()),
        )


# --- running the models -------------------------------------------------------------------------------


@dataclass
class ModelResult:
    model: str
    pixels: np.ndarray | None
    """The filled image (None once dropped to save memory in folder mode)."""
    seconds: float
    """Time of the fill alone (the model was loaded before)."""
    scores: Scores | None = None


@dataclass
class Comparison:
    """Every model's fill of one image, with scores when the original is known."""

    name: str
    pixels: np.ndarray | None
    hole: np.ndarray | None
    original: np.ndarray | None
    results: list[ModelResult]
    load_seconds: dict[str, float] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)
    """(width, height)."""
    hole_fraction: float = 0.0

    def __post_init__(self) -> None:
        self.size = (int(self.pixels.shape[1]), int(self.pixels.shape[0]))
        self.hole_fraction = float(self.hole.mean())

    def drop_pixels(self) -> None:
        """Forget every picture, keeping names, sizes, times and scores."""
        self.pixels = self.hole = self.original = None
        for result in self.results:
            result.pixels = None

    def rows(self) -> list[dict[str, Any]]:
        """Per model: time, load time and scores (see `result_row`)."""
        return [result_row(result, self.load_seconds.get(result.model)) for result in self.results]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: infinite PSNR (identical pixels) and missing scores become null."""
        return {
            "image": self.name,
            "size": list(self.size),
            "hole_fraction": round(self.hole_fraction, 6),
            "models": [_json_row(row) for row in self.rows()],
        }


def _number(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def result_row(result: ModelResult, load_seconds: float | None = None) -> dict[str, Any]:
    """One model's time and scores as plain numbers (inf for identical pixels, nan when unscored)."""
    scores = result.scores
    row: dict[str, Any] = {"model": result.model, "seconds": result.seconds, "load_seconds": load_seconds}
    for name in SCORE_NAMES:
        row[name] = getattr(scores, name) if scores else math.nan
    return row


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    digits = {
        "seconds": 4,
        "load_seconds": 4,
        "psnr_hole": 3,
        "psnr_whole": 3,
        "ssim_hole": 5,
        "ssim_whole": 5,
    }
    return {key: _number(value, digits[key]) if key in digits else value for key, value in row.items()}


Filler = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(H×W×C pixels, H×W bool hole) -> filled pixels of the same shape and dtype."""


def load_models(
    names: Sequence[str], *, device: str = "auto", precision: str = "auto", strategy: str = "auto"
) -> tuple[dict[str, Filler], dict[str, float]]:
    """Load each named model once (`inpaint_cli.load_model`): fill functions and load times. Unknown
    names fail here, before any image is processed. `strategy` is every fill's resolution strategy."""
    from inpaint_cli.api import load_model

    if not names:
        raise UsageError("no models to compare", hint=f"e.g. --models {','.join(DEFAULT_COMPARE_MODELS)}")
    duplicates = sorted({name for name in names if list(names).count(name) > 1})
    if duplicates:
        raise UsageError(f"model named twice: {', '.join(duplicates)}")
    fillers: dict[str, Filler] = {}
    load_seconds: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        model = load_model(name, device=device, precision=precision, strategy=strategy)
        load_seconds[name] = time.perf_counter() - started
        fillers[name] = model.inpaint
    return fillers, load_seconds


def _read(
    image: Path | np.ndarray,
    mask: Path | np.ndarray,
    original: Path | np.ndarray | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
):
    """Pixels, hole and clean pixels; files are checked against `max_pixels` before decoding (as `run`)."""
    from inpaint_cli.imaging import imageio
    from inpaint_cli.imaging.masks import hole_from_array, read_mask

    def pixels_of(source: Path | np.ndarray) -> np.ndarray:
        return (
            source
            if isinstance(source, np.ndarray)
            else imageio.read_image(Path(source), max_pixels=max_pixels).pixels
        )

    pixels = pixels_of(image)
    # An array by the rule of mask files, so the same mask gives the same hole either way.
    if isinstance(mask, np.ndarray):
        hole = hole_from_array(mask)
    else:
        hole = read_mask(Path(mask), size=pixels.shape[:2], max_pixels=max_pixels)
    if hole.shape != pixels.shape[:2]:
        raise InputError(f"mask is {hole.shape[::-1]} but image is {pixels.shape[1::-1]} (width, height)")
    clean = None
    if original is not None:
        clean = pixels_of(original)
        if clean.shape != pixels.shape:
            where = None if isinstance(original, np.ndarray) else original
            raise InputError(
                f"original is {clean.shape} but image is {pixels.shape}",
                path=where,
                hint="the original must be the clean version of the same picture",
            )
    return pixels, hole, clean


def run_comparison(
    name: str,
    pixels: np.ndarray,
    hole: np.ndarray,
    fillers: dict[str, Filler],
    original: np.ndarray | None = None,
) -> Comparison:
    """Fill one image with every loaded model, timing and (with an original) scoring each."""
    results = []
    for model, fill in fillers.items():
        started = time.perf_counter()
        filled = fill(pixels, hole)
        seconds = time.perf_counter() - started
        scores = Scores.of(filled, original, hole) if original is not None else None
        results.append(ModelResult(model, filled, seconds, scores))
    return Comparison(name, pixels, hole, original, results)


def compare(
    image: str | Path | np.ndarray,
    mask: str | Path | np.ndarray,
    models: Sequence[str] = DEFAULT_COMPARE_MODELS,
    *,
    original: str | Path | np.ndarray | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    **options: Any,
) -> Comparison:
    """Fill `image`'s hole with each of `models` and score each against `original` when given.

    Paths or arrays (H×W×C uint8/uint16 pixels, H×W bool mask); files with more than `max_pixels`
    are refused from their header, as `run` refuses them. `options` go to the model loader
    (device, precision, strategy, ...). `make_grid(result)` draws it, `.as_dict()` is its JSON.
    """
    pixels, hole, clean = _read(image, mask, original, max_pixels)
    fillers, load_seconds = load_models(list(models), **options)
    name = "image" if isinstance(image, np.ndarray) else str(image)
    comparison = run_comparison(name, pixels, hole, fillers, clean)
    comparison.load_seconds = load_seconds
    return comparison


# --- folders ------------------------------------------------------------------------------------------


@dataclass
class FolderComparison:
    """Scores of every model on every usable image of a folder; the filled pixels are not kept."""

    comparisons: list[Comparison]
    failures: list[str]
    """One line per image that could not be compared (no mask, no original, unreadable)."""
    load_seconds: dict[str, float]

    def means(self) -> list[dict[str, Any]]:
        """Per model, the mean time and scores over the compared images (`result_row`'s keys)."""
        rows = []
        for index, model in enumerate(self.load_seconds):
            per_image = [result_row(comparison.results[index]) for comparison in self.comparisons]
            row: dict[str, Any] = {"model": model, "images": len(per_image)}
            for key in ("seconds", *SCORE_NAMES):
                row[key] = float(np.mean([r[key] for r in per_image])) if per_image else math.nan
            row["load_seconds"] = self.load_seconds[model]
            rows.append(row)
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "means": [_json_row(row) for row in self.means()],
            "images": [comparison.as_dict() for comparison in self.comparisons],
            "failures": self.failures,
            "load_seconds": {name: _number(value, 4) for name, value in self.load_seconds.items()},
        }


# --- the grid ------------------------------------------------------------------------------------------


@dataclass
class Grid:
    """The comparison picture and where everything is on it (for tests and captions)."""

    picture: Any
    """A PIL RGB image."""
    labels: list[str]
    """Column titles, left to right: input, [original,] the models."""
    crop: tuple[int, int, int, int]
    """(top, left, height, width) of the full-size crop in the image."""
    cells: dict[str, tuple[int, int, int, int]]
    """`<label>/whole` and `<label>/crop` -> (x, y, width, height) on the picture."""


def _column(
    pixels: np.ndarray, hole: np.ndarray | None, whole_size: tuple[int, int], box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """One column of the grid as 8-bit RGB: the whole picture scaled to `whole_size` and the crop `box`
    (top, left, height, width) at full size, the hole tinted when given. One column at a time is
    converted, and nothing of full size is kept (the grid of a 240 MP scan took 30 bytes a pixel)."""
    import cv2

    from inpaint_cli.imaging.pixels import to_rgb8
    from inpaint_cli.review.thumbnails import overlay

    top, left, height, width = box
    rgb = to_rgb8(pixels)
    whole = cv2.resize(rgb, whole_size, interpolation=cv2.INTER_AREA)
    crop = np.ascontiguousarray(rgb[top : top + height, left : left + width])
    del rgb
    if hole is not None:
        coverage = cv2.resize(hole.view(np.uint8) * np.uint8(255), whole_size, interpolation=cv2.INTER_AREA)
        whole = overlay(whole, coverage / 255)
        crop = overlay(crop, hole[top : top + height, left : left + width])
    return whole, crop


def crop_box(
    hole: np.ndarray, max_side: int = CROP_SIDE, margin: int = CROP_MARGIN
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the grid's full-size crop: the hole's bounding box plus `margin`,
    at most `max_side` a side. When that would show most of the image anyway (scratches all over),
    a window of half the image's shorter side is used instead. A cut window is centred on the largest
    hole region. Without a hole: the top-left corner."""
    import cv2

    height, width = hole.shape
    if not hole.any():
        return 0, 0, min(height, max_side), min(width, max_side)
    rows, columns = np.nonzero(hole)
    top, bottom = rows.min() - margin, rows.max() + 1 + margin
    left, right = columns.min() - margin, columns.max() + 1 + margin
    covered = (min(bottom, height) - max(top, 0)) * (min(right, width) - max(left, 0))
    limit = max_side
    if covered > CROP_MAX_SHARE * height * width:
        limit = min(max_side, max(CROP_MIN_SIDE, min(height, width) // 2))
    if bottom - top > limit or right - left > limit:
        count, _, stats, centroids = cv2.connectedComponentsWithStats(hole.view(np.uint8), connectivity=8)
        largest = 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))
        centre_x, centre_y = centroids[largest]
        if bottom - top > limit:
            top = round(centre_y - limit / 2)
            bottom = top + limit
        if right - left > limit:
            left = round(centre_x - limit / 2)
            right = left + limit

    def clamp(start: int, stop: int, size: int) -> tuple[int, int]:
        length = min(stop - start, size)
        start = min(max(start, 0), size - length)
        return int(start), int(length)

    top, crop_height = clamp(top, bottom, height)
    left, crop_width = clamp(left, right, width)
    return top, left, crop_height, crop_width


def _caption(result: ModelResult) -> list[str]:
    lines = [result.model]
    if result.scores is not None:
        scores = result.scores
        lines.append(f"hole {scores.psnr_hole:.2f} dB  SSIM {scores.ssim_hole:.3f}")
    lines.append(f"{result.seconds:.2f} s")
    return lines


def make_grid(comparison: Comparison) -> Grid:
    """One labelled picture: a column per picture (input with the hole in red, the original if known,
    each model's result) showing the whole image scaled to the column and the crop around the hole at
    full size (one image pixel = one grid pixel)."""
    from PIL import Image, ImageDraw

    from inpaint_cli.review.visualize import font

    if comparison.pixels is None:
        raise ValueError("the comparison's pixels were dropped; draw the grid before drop_pixels()")
    hole = comparison.hole
    columns: list[tuple[list[str], np.ndarray]] = [(["input", f"hole {hole.mean():.1%}"], comparison.pixels)]
    if comparison.original is not None:
        columns.append((["original"], comparison.original))
    columns += [(_caption(result), result.pixels) for result in comparison.results]
    top, left, crop_height, crop_width = crop_box(hole)
    height, width = hole.shape
    column_width = max(crop_width, COLUMN_MIN)
    scale = min(column_width / width, WHOLE_MAX_HEIGHT / height)
    whole_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    whole_y = LABEL_HEIGHT
    crop_y = whole_y + whole_size[1] + GAP
    canvas = Image.new("RGB", (len(columns) * (column_width + GAP) - GAP, crop_y + crop_height), "white")
    draw = ImageDraw.Draw(canvas)
    text_font = font(12)
    cells: dict[str, tuple[int, int, int, int]] = {}
    for index, (lines, pixels) in enumerate(columns):
        x = index * (column_width + GAP)
        title = lines[0]
        for line_index, line in enumerate(lines):
            draw.text((x + 2, 2 + 14 * line_index), line, fill="black", font=text_font)
        whole, crop = _column(
            pixels, hole if index == 0 else None, whole_size, (top, left, crop_height, crop_width)
        )
        canvas.paste(Image.fromarray(whole, "RGB"), (x, whole_y))
        canvas.paste(Image.fromarray(crop, "RGB"), (x, crop_y))
        # Where the crop lies, on the scaled-down whole picture.
        box = [
            x + left * scale,
            whole_y + top * scale,
            x + (left + crop_width) * scale,
            whole_y + (top + crop_height) * scale,
        ]
        draw.rectangle([round(v) for v in box], outline=(255, 200, 0))
        cells[f"{title}/whole"] = (x, whole_y, *whole_size)
        cells[f"{title}/crop"] = (x, crop_y, crop_width, crop_height)
    labels = [lines[0] for lines, _ in columns]
    return Grid(canvas, labels, (top, left, crop_height, crop_width), cells)
