"""Finding the damage: a probability of damage per pixel and a mask, from a scratch detector.

Two official modes reproduce BOPBtL's `detection.py` exactly (SPEC in the scratch reference):
`full_size` and `scale_256` both run the network at a short side of 256 px, so a 3-px scratch of a
4000-px scan is lost there. `high_res` runs the same fully convolutional network at a chosen scale
(1.0 = the image's own pixels) in overlapping tiles, so memory is bounded by the tile, not the image.

The pipeline works on upright 8-bit RGB pixels; masks come back at the image's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from inpaint_cli.checkpoints.loading import load_network
from inpaint_cli.detect.detection import Detection, Mode, finish
from inpaint_cli.errors import InputError
from inpaint_cli.imaging.pixels import to_rgb8
from inpaint_cli.models import DETECTORS
from inpaint_cli.models.scratch import DEFAULT_THRESHOLD, ScratchUNet

NETWORK_SHORT_SIDE = 256
"""Both official modes feed the network a short side of 256 px."""
SIZE_MULTIPLE = 16
CLEAN_FRACTION_BOUND = 0.001
"""What the detectors are calibrated for: under 0.1 % of a clean photo's pixels reported as damage.
A bound on false alarms, not a rule: real detections, however small, are kept."""
DEFAULT_TILE = 512
DEFAULT_TILE_MARGIN = 64
"""Context (pixels) each side of a tile's kept core (a multiple of 16): the small fixture network,
whose random weights reach farthest, differs from one pass by 2e-3 on average with 64, 2e-4 with 96."""
_LUMA_FIXED = (19595, 38470, 7471)
"""Pillow's convert("L"): (19595 R + 38470 G + 7471 B + 32768) >> 16, bit-exact."""


def round16(value: float) -> int:
    """BOPBtL's multiple-of-16 rounding: Python's round, halves to even."""
    return int(round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)


def transform_size(width: int, height: int, mode: Mode) -> tuple[int, int]:
    """(width, height) of the first, bicubic resize of an official mode."""
    if mode is Mode.FULL_SIZE:
        return round16(width), round16(height)
    if width < height:
        return NETWORK_SHORT_SIDE, round16(height / width * NETWORK_SHORT_SIDE)
    return round16(width / height * NETWORK_SHORT_SIDE), NETWORK_SHORT_SIDE


def network_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) the network runs at for a transform of height×width (`scale_tensor`)."""
    if height < width:
        return NETWORK_SHORT_SIDE, round16(width / height * NETWORK_SHORT_SIDE)
    return round16(height / width * NETWORK_SHORT_SIDE), NETWORK_SHORT_SIDE


def grey_u8(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 -> H×W uint8 exactly as Pillow's convert("L")."""
    r, g, b = (rgb[..., c].astype(np.uint32) for c in range(3))
    return ((_LUMA_FIXED[0] * r + _LUMA_FIXED[1] * g + _LUMA_FIXED[2] * b + 32768) >> 16).astype(np.uint8)


def normalise_u8(values: np.ndarray) -> torch.Tensor:
    """uint8 H×W(×C) -> float32 1×C×H×W in [-1, 1], computed as torchvision does: (v/255 - .5)/.5."""
    # A copy when the array is read-only (decoded by Pillow): torch tensors are always writable.
    tensor = torch.from_numpy(np.ascontiguousarray(values) if values.flags.writeable else values.copy())
    tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    return (tensor.to(torch.float32) / 255 - 0.5) / 0.5


@dataclass
class OfficialRun:
    """Every stage of one official-mode run (the fixtures' names), for parity checks."""

    gray_u8: np.ndarray
    net_input: torch.Tensor
    logits: torch.Tensor
    prob_up: torch.Tensor
    """sigmoid(logits) nearest-resized to the transform size, 1×1×H1×W1."""
    resized_rgb: np.ndarray


@torch.no_grad()
def logits_of(network: ScratchUNet, batch: torch.Tensor) -> torch.Tensor:
    device = next(network.parameters()).device
    return network(batch.to(device)).float().cpu()


# --- official modes ----------------------------------------------------------------------------------


def official_run(network: ScratchUNet, rgb: np.ndarray, mode: Mode) -> OfficialRun:
    """BOPBtL's `detection.py` on H×W×3 uint8 pixels: bicubic to a multiple of 16 (or short side 256),
    grey, normalise, bilinear to short side 256, network, sigmoid, nearest back to the transform size."""
    height, width = rgb.shape[:2]
    target = transform_size(width, height, mode)
    if min(target) <= 0:
        raise InputError(f"image of {width}×{height} is too small for the detector")
    resized = rgb
    if target != (width, height):
        resized = np.asarray(Image.fromarray(rgb, "RGB").resize(target, Image.Resampling.BICUBIC))
    grey = grey_u8(resized)
    channels = network.in_channels
    x = normalise_u8(grey if channels == 1 else resized)
    h1, w1 = grey.shape
    h2, w2 = network_size(h1, w1)
    net_input = F.interpolate(x, [h2, w2], mode="bilinear") if (h2, w2) != (h1, w1) else x
    logits = logits_of(network, net_input)
    prob_up = F.interpolate(torch.sigmoid(logits), [h1, w1], mode="nearest")
    return OfficialRun(grey, net_input, logits, prob_up, resized)


def _nearest_resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Legacy nearest (floor of o * in/out), as F.interpolate(mode="nearest"), for 2-d arrays."""
    rows = np.minimum((np.arange(height) * (values.shape[0] / height)).astype(np.int64), values.shape[0] - 1)
    cols = np.minimum((np.arange(width) * (values.shape[1] / width)).astype(np.int64), values.shape[1] - 1)
    return values[rows][:, cols]


# --- high resolution: the same network in overlapping tiles ---------------------------------------------


def tiles(length: int, core: int, multiple: int = 1) -> Iterator[tuple[int, int]]:
    """[start, stop) cores covering 0..length, each at most `core` long (rounded up to `multiple`),
    starting at multiples of `multiple`."""
    count = max(1, math.ceil(length / core))
    step = -(-math.ceil(length / count) // multiple) * multiple
    for start in range(0, length, step):
        yield start, min(start + step, length)


def _pad_to(values: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    # Reflection as the network's own padding; symmetric for slivers too thin to reflect.
    pad = ((top, bottom), (left, right)) + ((0, 0),) * (values.ndim - 2)
    mode = "reflect" if min(values.shape[:2]) > max(top, bottom, left, right) else "symmetric"
    return np.pad(values, pad, mode=mode)


def tiled_probability(
    network: ScratchUNet, rgb: np.ndarray, *, tile: int = DEFAULT_TILE, margin: int = DEFAULT_TILE_MARGIN
) -> np.ndarray:
    """sigmoid(network) over H×W×3 uint8 pixels at their own resolution, H×W float32.

    Each core of at most tile×tile pixels is run with up to `margin` pixels of context on each side
    (less at the image's border) and padded up to the network's multiple; only the core is kept.
    """
    height, width = rgb.shape[:2]
    multiple, smallest = network.pad_multiple, network.min_size
    # Tiles start on the grid of the network's downsampling, so every tile sees the pixels in the
    # phase a single pass would: blur-pools with stride 2 are not shift-invariant.
    margin = -(-margin // multiple) * multiple
    probability = np.empty((height, width), dtype=np.float32)
    for top, bottom in tiles(height, tile, multiple):
        for left, right in tiles(width, tile, multiple):
            y0, y1 = max(0, top - margin), min(height, bottom + margin)
            x0, x1 = max(0, left - margin), min(width, right + margin)
            window = rgb[y0:y1, x0:x1]
            values = grey_u8(window) if network.in_channels == 1 else window
            # At the image's bottom and right the window is padded to the network's multiple, as a
            # single pass over the whole image would be; elsewhere its size is already a multiple.
            pad_bottom = max(smallest, -(-(y1 - y0) // multiple) * multiple) - (y1 - y0)
            pad_right = max(smallest, -(-(x1 - x0) // multiple) * multiple) - (x1 - x0)
            padded = _pad_to(values, 0, pad_bottom, 0, pad_right)
            logits = logits_of(network, normalise_u8(padded))
            core = torch.sigmoid(logits[0, 0, top - y0 : bottom - y0, left - x0 : right - x0])
            probability[top:bottom, left:right] = core.numpy()
    return probability


def _scaled(rgb: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, size, interpolation=interpolation)


# --- the detector ------------------------------------------------------------------------------------


@dataclass
class NetworkDetector:
    """A scratch network with its defaults: threshold, and the scale of the high-res mode."""

    network: ScratchUNet
    name: str
    threshold: float = DEFAULT_THRESHOLD
    scale: float = 1.0
    strong: float = 0.0
    min_area: int = 0
    max_step_ratio: float = 0.0
    reference_side: int = 0
    min_surround_contrast: float = 0.0
    min_length: int = 0
    line_width: float = 0.0
    with_classical: int = 0
    min_fraction: float = 0.0
    """Optional: a mask covering less than this fraction of the image is dropped ('no damage found').
    Off by default: the thresholds are calibrated so that clean photos yield nothing."""
    tile: int = DEFAULT_TILE
    margin: int = DEFAULT_TILE_MARGIN

    @classmethod
    def from_file(
        cls, path: str | Path, name: str | None = None, device: torch.device | str = "cpu"
    ) -> NetworkDetector:
        """The detector in a weight file (BOPBtL's `FT_Epoch_latest.pt` or ours), through the one
        loader, on `device`, with the defaults its file declares."""
        network = load_network(path, registry=DETECTORS, device=device)
        config = network.config
        return cls(
            network,
            name or Path(path).name,
            threshold=config.threshold,
            scale=config.scale,
            strong=config.strong,
            min_area=config.min_area,
            max_step_ratio=config.max_step_ratio,
            reference_side=config.reference_side,
            min_surround_contrast=config.min_surround_contrast,
            min_length=config.min_length,
            line_width=config.line_width,
            with_classical=config.with_classical,
        )

    def probability(self, pixels: np.ndarray, mode: Mode) -> np.ndarray:
        """H×W float32 probability of damage for upright H×W×C uint8/uint16 pixels."""
        rgb = to_rgb8(pixels)
        height, width = rgb.shape[:2]
        if mode is not Mode.HIGH_RES:
            prob_up = official_run(self.network, rgb, mode).prob_up[0, 0].numpy()
            return _nearest_resize(prob_up, height, width)
        if self.scale == 1:
            return tiled_probability(self.network, rgb, tile=self.tile, margin=self.margin)
        small = tiled_probability(self.network, _scaled(rgb, self.scale), tile=self.tile, margin=self.margin)
        import cv2

        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)

    def detect(
        self, pixels: np.ndarray, mode: Mode = Mode.HIGH_RES, threshold: float | None = None
    ) -> Detection:
        probability = self.probability(pixels, mode)
        cut = self.threshold if threshold is None else threshold
        mask = self.judge(probability, to_rgb8(pixels), cut)
        if self.with_classical:
            from inpaint_cli.detect.classical import ClassicalDetector

            mask |= ClassicalDetector().detect(pixels).mask
        return finish(probability, mask, self.min_fraction)

    def judge(self, probability: np.ndarray, rgb: np.ndarray, cut: float) -> np.ndarray:
        """The mask of a probability map: hysteresis, then each region judged by its shape (lines by
        skeleton length, compact regions by area) and by its contrast to the picture around it."""
        mask = probability >= np.float32(cut)
        if not mask.any():
            return mask
        strong = probability >= np.float32(max(self.strong, cut))
        min_area = scaled_min_area(self.min_area, mask.shape, self.reference_side)
        if self.min_length:
            mask = self._judge_shapes(mask, strong, rgb, min_area)
        elif self.strong or self.min_area:
            mask = keep_regions(mask, strong, min_area)
            if self.min_surround_contrast and mask.any():
                mask = drop_plain_blobs(mask, rgb, self.min_surround_contrast)
        if self.max_step_ratio and mask.any():
            mask = drop_edges(mask, rgb, self.max_step_ratio)
        return mask

    def _judge_shapes(
        self, mask: np.ndarray, strong: np.ndarray, rgb: np.ndarray, min_area: int
    ) -> np.ndarray:
        """The shape rule: lines kept by skeleton length, compact regions by area and by their contrast
        to the surround (`drop_plain_blobs`' measure), each region measured once."""
        shapes = Shapes.of(mask)
        line = shapes.lines(self.min_length, self.line_width)
        keep = shapes.holding(strong) & (line | (shapes.area >= min_area))
        keep[0] = False
        if self.min_surround_contrast:
            compact = keep & ~line
            contrast = surround_contrast(rgb, shapes.labels, shapes.stats, compact)
            keep &= ~(compact & (contrast < self.min_surround_contrast))
        return keep[shapes.labels]


SKELETON_STEPS = 12
"""Erosions of the morphological skeleton: a region still standing after them is over 24 px wide, so
compact whatever its length (its skeleton is counted up to there, which only makes it wider)."""


@dataclass
class Shapes:
    """The 8-connected regions of a mask with their area and skeleton length (px)."""

    count: int
    labels: np.ndarray
    stats: np.ndarray
    length: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray) -> Shapes:
        import cv2

        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
        skeleton = morphological_skeleton(mask)
        length = np.bincount(labels[skeleton], minlength=count).astype(np.float64)
        return cls(count, labels, stats, length)

    @property
    def area(self) -> np.ndarray:
        import cv2

        return self.stats[:, cv2.CC_STAT_AREA]

    def width(self) -> np.ndarray:
        """Mean width (px): area over skeleton length."""
        return self.area / np.maximum(self.length, 1)

    def lines(self, min_length: int, line_width: float) -> np.ndarray:
        """Which regions are lines: a skeleton of at least `min_length` px, at most `line_width` wide."""
        return (self.length >= min_length) & (self.width() <= line_width)

    def holding(self, strong: np.ndarray) -> np.ndarray:
        """Which regions hold a pixel of `strong` (hysteresis)."""
        return np.bincount(self.labels[strong], minlength=self.count) > 0


def morphological_skeleton(mask: np.ndarray, steps: int = SKELETON_STEPS) -> np.ndarray:
    """Lantuéjoul's skeleton with a 3×3 cross: the union over k of erode^k minus its opening. A 1-px
    line is its own skeleton; a line of odd width leaves one pixel across it, of even width two (so
    area / skeleton length measures a w-px line as w or w/2)."""
    import cv2

    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    current = mask.view(np.uint8).copy()
    skeleton = np.zeros(mask.shape, bool)
    for _ in range(steps):
        opened = cv2.morphologyEx(current, cv2.MORPH_OPEN, cross)
        skeleton |= current > opened
        current = cv2.erode(current, cross)
        if not current.any():
            break
    return skeleton


def scaled_min_area(min_area: int, shape: tuple[int, ...], reference_side: int = 0) -> int:
    """The minimum region (px) for a picture of `shape` (H, W, ...): `min_area`, times
    (short side / `reference_side`)² when the short side is under `reference_side` (0: never).

    A small print is the same picture on fewer pixels: its damage, and the textures the network
    mistakes for damage, shrink with the square of the scale, so the minimum region does too and asks
    for the same share of the picture. It does not grow on larger pictures: a thin scratch stays 1-3 px
    wide on a large scan, and the calibrated area already keeps clean photos of every size quiet."""
    short = min(shape[:2])
    if not reference_side or short >= reference_side:
        return min_area
    return max(1, round(min_area * (short / reference_side) ** 2))


def keep_regions(weak: np.ndarray, strong: np.ndarray, min_area: int = 0) -> np.ndarray:
    """The 8-connected regions of `weak` that hold a `strong` pixel and at least `min_area` pixels."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(weak.view(np.uint8), connectivity=8)
    keep = np.bincount(labels[strong], minlength=count) > 0
    keep &= stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]


EDGE_ELEMENT = 15
"""Structuring element (px) of the edge check: wider than the thin regions it judges."""
EDGE_ELONGATION = 8.0
"""Only thin regions (length² / area at least this) are judged: tears, corners and stains are not."""


def edge_context(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the edge check compares a region with: the blurred grey picture and its top-hat response.
    Computed once per picture when many masks of it are judged (calibration)."""
    import cv2

    from inpaint_cli.detect.classical import ClassicalDetector

    judge = ClassicalDetector(element=EDGE_ELEMENT)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return judge.blurred(grey), judge.response(grey)


def drop_edges(
    mask: np.ndarray,
    rgb: np.ndarray,
    max_step_ratio: float,
    context: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """`mask` without its thin regions that separate two different backgrounds (rims of cups, edges of
    shells): the step across them exceeds `max_step_ratio` times their own top-hat contrast.
    `context`: `edge_context(rgb)` if already computed."""
    import cv2

    from inpaint_cli.detect.classical import step_ratio

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    length = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    thin = length**2 / np.maximum(stats[:, cv2.CC_STAT_AREA], 1) >= EDGE_ELONGATION
    thin[0] = False
    if not thin.any():
        return mask
    blurred, response = edge_context(rgb) if context is None else context
    ratio = step_ratio(labels, count, thin, blurred, response, EDGE_ELEMENT)
    drop = thin & (ratio > max_step_ratio)
    return mask & ~drop[labels]


SURROUND_WIDTH = 7
"""Ring (px) around a compact region that `drop_plain_blobs` compares it with: half the edge element."""
SURROUND_BLUR = 2.0
"""Gaussian sigma (px) before the comparison, so that film grain does not count as contrast."""


def surround_contrast(
    rgb: np.ndarray, labels: np.ndarray, stats: np.ndarray, judge: np.ndarray
) -> np.ndarray:
    """Per region (`labels` and `stats` from cv2.connectedComponentsWithStats; `judge`:
    which to measure), the median colour distance (8-bit Lab, blurred) between the region's median
    colour and the pixels of a SURROUND_WIDTH-px ring around it. Each region is judged alone (its
    ring may cross other regions), so calibration can measure every region once. Regions not
    measured, or covering the whole picture, get infinity."""
    import cv2

    contrast = np.full(len(judge), np.inf)
    height, width = labels.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * SURROUND_WIDTH + 1,) * 2)
    pad = SURROUND_WIDTH + 3 * math.ceil(SURROUND_BLUR)
    for index in np.flatnonzero(judge):
        # The region's bounding box grown by the ring and the blur: a 48 MP scan is never converted whole.
        x, y, w, h = (int(v) for v in stats[index, :4])
        x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(width, x + w + pad), min(height, y + h + pad)
        lab = cv2.cvtColor(cv2.GaussianBlur(rgb[y0:y1, x0:x1], (0, 0), SURROUND_BLUR), cv2.COLOR_RGB2LAB)
        region = labels[y0:y1, x0:x1] == index
        ring = cv2.dilate(region.view(np.uint8), kernel).astype(bool) & ~region
        if ring.any():
            inside = np.median(lab[region].astype(np.float32), axis=0)
            contrast[index] = float(np.median(np.linalg.norm(lab[ring].astype(np.float32) - inside, axis=1)))
    return contrast


def drop_plain_blobs(mask: np.ndarray, rgb: np.ndarray, min_contrast: float) -> np.ndarray:
    """`mask` without its compact regions (length² / area under EDGE_ELONGATION) whose colour continues
    into the picture around them (median Lab distance to their ring under `min_contrast`): a spot,
    stain, tear or missing corner differs from the photo all round; a patch of cloud or highlight
    the network took for a stain does not."""
    import cv2

    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    length = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    compact = length**2 / np.maximum(stats[:, cv2.CC_STAT_AREA], 1) < EDGE_ELONGATION
    compact[0] = False
    if not compact.any():
        return mask
    drop = compact & (surround_contrast(rgb, labels, stats, compact) < min_contrast)
    return mask & ~drop[labels]
