"""Train the bundled damage detector `scratch-tiny` on CPU, on photos with synthetic old-photo damage.

The network is BOPBtL's detection U-Net (`inpaint_cli.models.scratch`), narrow (wf = 3: 8 stem
channels, 0.6 M parameters, 2.4 MB) and fed RGB so that it sees the colour of foxing stains. It runs
at the photo's own resolution in the detector's high-res mode.

Data: the photographs and renderings of Debian's `plasma-workspace-wallpapers` (LGPL-3 and
CC-BY-SA-4.0, as each wallpaper's `metadata.json` states), fetched by this script with
`apt-get download` and unpacked with `dpkg -x` into --data (nothing is installed). `HELD_OUT` never
reaches training; the evaluation (`benchmarks/eval_detectors.py`) uses them. Every image's licence is
written to the training record beside the weights.

Damage (`synthesize`): thin light and dark scratches, cracks, creases, dust, spots, tears, missing
corners and foxing, each with its ground-truth mask; then what is *not* damage, applied to damaged
and clean crops alike: sepia or grey toning, paper texture, film grain, blur and JPEG artefacts.
40 % of the crops carry no damage and heavier grain, texture and JPEG blocks (hard negatives).
Loss: binary cross-entropy (damage weighted 2x) plus soft Dice. Adam, cosine decay, one thread; the
weights with the best validation F1 on the CALIBRATION photos (checked every 150 steps) are kept.

    python tools/train_scratch_tiny.py --minutes 35 --register   # about 35 min on one core
    python tools/train_scratch_tiny.py --minutes 2 --output /tmp/try   # a quick try

Written to `inpaint_cli/bundled/scratch-tiny.safetensors` (our format, config in the metadata) and
`scratch-tiny.json` (seed, steps, loss, images and their licences); `--register` records size and
SHA-256 in `inpaint_cli/weights_manifest.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from inpaint_cli.checkpoints.containers import read_checkpoint, save_converted
from inpaint_cli.models.scratch import ScratchConfig, ScratchUNet

sys.path.insert(0, str(Path(__file__).resolve().parent))  # photo_data.py, also when loaded by path
from photo_data import fetch_wallpapers, list_wallpapers, load_rgb

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DIR = ROOT / "inpaint_cli" / "bundled"
MANIFEST = ROOT / "inpaint_cli" / "weights_manifest.json"
NAME = "scratch-tiny"
LICENSE = "Apache-2.0"
PACKAGE = "plasma-workspace-wallpapers"
DEFAULT_DATA = Path.home() / ".cache" / "inpaint-train" / "wallpapers"
HELD_OUT = ("Path", "Kite", "ColorfulCups", "MilkyWay", "Volna", "Shell")
"""Wallpapers kept for the evaluation (photos and renderings): the test split, never trained or tuned on."""
CALIBRATION = ("Autumn", "FallenLeaf", "Cascade")
"""Wallpapers kept out of training for validation (the best checkpoint) and for choosing the thresholds
(`benchmarks/eval_detectors.py --calibrate`)."""
CLEAN_FRACTION = 0.4
"""Share of training crops with no damage at all: the detector must learn to say nothing."""
MAX_SIDE = 2560
"""Photos are kept in memory at most this long (and at half that), to crop from."""
CONFIG = ScratchConfig(
    in_channels=3,
    out_channels=1,
    depth=4,
    wf=3,
    threshold=0.3,
    strong=0.7,
    min_area=1280,
    reference_side=640,
    max_step_ratio=0.35,
    min_surround_contrast=25.0,
)
"""The bundled file's post-processing, chosen by `benchmarks/eval_detectors.py --calibrate` on the
CALIBRATION photos and small prints made from them: hysteresis 0.3 / 0.7, regions of 1280 px or more
(scaled down with the square of the short side below 640 px), thin regions dropped where the step
across them exceeds 0.35 of their contrast, compact regions dropped where their colour differs from
their surroundings by less than 25 (8-bit Lab). The best F1 (damaged crops, thin scratches on a
3000-px picture, small prints) whose clean calibration pictures stay under half the 0.1 % bound."""
CROP = 128
BATCH = 8
DAMAGE_WEIGHT = 2.0
"""pos_weight of the BCE: damage is a few % of the pixels; Dice balances the rest."""
HARD_FRACTION = 0.25
"""Share of crops taken around places where the network fired on a clean training photo."""
HARD_CLEAN_FRACTION = 0.7
"""Hard-negative crops are mostly left clean; the rest carry damage beside what fooled the network."""
MINE_EVERY = 100
MINE_WINDOWS = 6
MINE_SIDE = 384
MINE_THRESHOLD = 0.5
MINE_PER_WINDOW = 4
MINE_POOL = 600
ZOOM_SHARE = 0.2
"""Share of crops enlarged (by up to --zoom) instead of shrunk, when --zoom is above 1."""
BN_BATCHES = 200
"""Batches of training crops that measure the batch-norm statistics of averaged weights."""
VALIDATION_CROPS = 24
VALIDATION_SIDE = 192
KINDS = (
    "scratch_light",
    "scratch_dark",
    "crack",
    "crease",
    "dust",
    "spots",
    "tear",
    "corner",
    "foxing",
)
TRUTH_ALPHA = 0.3
"""A pixel is damage in the ground truth where the damage layer covers at least this much of it."""

# --- data -------------------------------------------------------------------------------------------


# `fetch_wallpapers`, `list_wallpapers` and `load_rgb` are `photo_data`'s (shared with train_demo_models.py).


# --- synthetic damage -------------------------------------------------------------------------------


def _curve(rng: np.random.Generator, height: int, width: int, length: float, bend: float) -> np.ndarray:
    """A smooth random polyline of about `length` pixels; `bend` is the turning per step (radians)."""
    steps = max(2, int(length / 4))
    angle = rng.uniform(0, 2 * math.pi)
    turn = np.cumsum(rng.normal(0, bend, steps))
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    points = [(x, y)]
    for delta in turn:
        x += 4 * math.cos(angle + delta)
        y += 4 * math.sin(angle + delta)
        points.append((x, y))
    return np.array(points, dtype=np.float32)


def _draw(layer: np.ndarray, points: np.ndarray, thickness: int) -> None:
    # 16x sub-pixel coordinates and anti-aliasing: thin lines get fractional coverage.
    shift = 4
    pts = np.round(points * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(layer, [pts], False, 1.0, thickness, cv2.LINE_AA, shift)


def scratches(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 5)):
        length = rng.uniform(0.3, 1.5) * max(h, w)
        _draw(layer, _curve(rng, h, w, length, rng.uniform(0.0, 0.03)), int(rng.choice([1, 1, 2, 2, 3])))
    return layer


def cracks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 3)):
        trunk = _curve(rng, h, w, rng.uniform(0.2, 0.8) * max(h, w), 0.2)
        _draw(layer, trunk, int(rng.choice([1, 2])))
        for _ in range(rng.integers(0, 4)):
            start = trunk[rng.integers(len(trunk))]
            branch = _curve(rng, h, w, rng.uniform(0.05, 0.3) * max(h, w), 0.4)
            _draw(layer, branch - branch[0] + start, 1)
    return layer


def creases(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    _draw(layer, _curve(rng, h, w, 1.5 * max(h, w), 0.01), int(rng.integers(3, 7)))
    return cv2.GaussianBlur(layer, (0, 0), 1.0)


def dust(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(5, 40)):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        cv2.ellipse(layer, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    return layer


def spots(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 6)):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
        cv2.ellipse(layer, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(layer, (0, 0), 1.0)


def _jagged(rng: np.random.Generator, start: np.ndarray, end: np.ndarray, roughness: float) -> np.ndarray:
    count = max(3, int(np.linalg.norm(end - start) / 3))
    t = np.linspace(0, 1, count)[:, None]
    normal = np.array([-(end - start)[1], (end - start)[0]]) / (np.linalg.norm(end - start) + 1e-6)
    wobble = np.cumsum(rng.normal(0, roughness, count))
    wobble -= np.linspace(wobble[0], wobble[-1], count)
    return start + t * (end - start) + wobble[:, None] * normal


def tears(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A jagged strip torn off along one edge."""
    layer = np.zeros((h, w), np.float32)
    depth = rng.uniform(0.05, 0.25)
    side = rng.integers(4)
    a, b = sorted(rng.uniform(0, 1, 2))
    if side in (0, 1):  # top or bottom
        y = depth * h if side == 0 else (1 - depth) * h
        edge = _jagged(rng, np.array([a * w, y]), np.array([max(b, a + 0.2) * w, y]), 1.5)
        cap = 0 if side == 0 else h
        polygon = np.vstack([[edge[0][0], cap], edge, [edge[-1][0], cap]])
    else:
        x = depth * w if side == 2 else (1 - depth) * w
        edge = _jagged(rng, np.array([x, a * h]), np.array([x, max(b, a + 0.2) * h]), 1.5)
        cap = 0 if side == 2 else w
        polygon = np.vstack([[cap, edge[0][1]], edge, [cap, edge[-1][1]]])
    cv2.fillPoly(layer, [np.round(polygon).astype(np.int32)], 1.0, cv2.LINE_AA)
    return layer


def corners(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    corner = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)[rng.integers(4)]
    reach = rng.uniform(0.15, 0.45, 2) * np.array([w, h])
    along_x = np.array([w - corner[0] if corner[0] == 0 else -corner[0], 0]) / w * reach[0]
    along_y = np.array([0, h - corner[1] if corner[1] == 0 else -corner[1]]) / h * reach[1]
    edge = _jagged(rng, corner + along_x, corner + along_y, 1.5)
    cv2.fillPoly(layer, [np.round(np.vstack([corner, edge])).astype(np.int32)], 1.0, cv2.LINE_AA)
    return layer


def foxing(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 6)):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        radius = int(rng.integers(3, 14))
        cv2.circle(layer, centre, radius, float(rng.uniform(0.6, 1.0)), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(layer, (0, 0), rng.uniform(1.0, 3.0))


LAYERS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "scratch_light": scratches,
    "scratch_dark": scratches,
    "crack": cracks,
    "crease": creases,
    "dust": dust,
    "spots": spots,
    "tear": tears,
    "corner": corners,
    "foxing": foxing,
}


def _colour(kind: str, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The colour a damage layer paints (RGB in [0, 1])."""
    if kind in ("scratch_light", "crease") or (kind == "dust" and rng.random() < 0.6):
        return np.full(3, rng.uniform(0.8, 1.0), np.float32)
    if kind in ("scratch_dark", "crack", "dust"):
        return np.full(3, rng.uniform(0.0, 0.25), np.float32)
    if kind == "foxing":
        return np.array([0.55, 0.35, 0.15], np.float32) * rng.uniform(0.8, 1.2)
    if kind in ("tear", "corner"):
        if rng.random() < 0.3:
            return np.full(3, rng.uniform(0.0, 0.15), np.float32)
        paper = rng.uniform(0.85, 1.0)
        return np.array([paper, paper, paper * rng.uniform(0.85, 1.0)], np.float32)
    tone = 1.0 - float(image.mean()) if rng.random() < 0.5 else rng.uniform(0, 1)
    return np.full(3, tone, np.float32)


def add_damage(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint one kind of damage over H×W×3 float32 pixels in [0, 1]; returns (pixels, truth mask)."""
    h, w = image.shape[:2]
    layer = LAYERS[kind](rng, h, w)
    strength = 1.0 if kind in ("tear", "corner") else rng.uniform(0.55, 1.0)
    if kind == "foxing":
        strength = rng.uniform(0.35, 0.7)
    alpha = np.clip(layer * strength, 0, 1)[..., None]
    painted = image * (1 - alpha) + _colour(kind, rng, image) * alpha
    return painted.astype(np.float32), layer * strength >= TRUTH_ALPHA


def nuisances(image: np.ndarray, rng: np.random.Generator, hard: bool = False) -> np.ndarray:
    """What is not damage: toning, paper texture, grain, blur; float32 in [0, 1] in and out.
    `hard`: heavier grain and texture (the hard negatives of clean training crops)."""
    h, w = image.shape[:2]
    boost = 2.0 if hard else 1.0
    if rng.random() < 0.4:
        grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
        tint = np.array([1.0, 0.87, 0.68], np.float32) if rng.random() < 0.6 else np.ones(3, np.float32)
        image = grey[..., None] * tint
    if rng.random() < 0.5:
        low = cv2.resize(rng.normal(0, 1, (max(2, h // 32), max(2, w // 32))).astype(np.float32), (w, h))
        fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
        texture = (
            rng.uniform(0, 0.06 * boost) * low[..., None] + rng.uniform(0, 0.04 * boost) * fine[..., None]
        )
        image = image * (1 + texture)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.7:
        sigma = rng.uniform(0.005, 0.05 * boost)
        mono = rng.random() < 0.6
        noise = rng.normal(0, sigma, (h, w, 1) if mono else (h, w, 3)).astype(np.float32)
        image = image + noise
    return np.clip(image, 0, 1)


def to_u8(image: np.ndarray, rng: np.random.Generator, hard: bool = False) -> np.ndarray:
    """Quantise, with JPEG artefacts half of the time (blockier ones for `hard`)."""
    pixels = np.round(image * 255).astype(np.uint8)
    if rng.random() < 0.5:
        quality = int(rng.integers(12 if hard else 30, 92))
        ok, encoded = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            pixels = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(pixels)


def synthesize(
    clean_u8: np.ndarray, kinds: list[str], rng: np.random.Generator, hard: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Damage a clean uint8 RGB picture with `kinds`; (damaged uint8 RGB, truth mask per kind)."""
    image = clean_u8.astype(np.float32) / 255
    truths = {}
    for kind in kinds:
        image, truths[kind] = add_damage(image, kind, rng)
    return to_u8(nuisances(image, rng, hard), rng, hard), truths


# --- training ---------------------------------------------------------------------------------------


class Crops:
    """Random training crops: a photo, a scale, a position, a flip; then damage and nuisances.

    With `zoom` > 1 some crops are enlarged (up to that factor): large scans are smooth at the pixel
    scale, and a thin scratch there crosses backgrounds the photos kept at MAX_SIDE never show.
    `hard` holds places of clean training photos where the network fired (`mine`); a share of the
    crops is taken around them (hard-negative mining)."""

    def __init__(self, photos: list[np.ndarray], rng: np.random.Generator, zoom: float = 1.0) -> None:
        halves = [cv2.resize(p, (p.shape[1] // 2, p.shape[0] // 2), cv2.INTER_AREA) for p in photos]
        self.photos = photos + halves
        self.rng = rng
        self.zoom = zoom
        self.hard: list[tuple[int, int, int, int]] = []
        """(photo index, centre y, centre x, crop side) where the network fired on a clean photo."""

    def _place(self, crop_side: int) -> tuple[np.ndarray, int, int, int, bool]:
        """A photo, a square window of it (top, left, side) and whether it is a hard-negative place."""
        rng = self.rng
        if self.hard and rng.random() < HARD_FRACTION:
            index, cy, cx, side = self.hard[rng.integers(len(self.hard))]
            photo = self.photos[index]
            side = min(side, *photo.shape[:2])
            # The place lies anywhere in the crop's central part, not always at its centre.
            jitter = rng.integers(-side // 4, side // 4 + 1, 2)
            y = int(np.clip(cy - side // 2 + jitter[0], 0, photo.shape[0] - side))
            x = int(np.clip(cx - side // 2 + jitter[1], 0, photo.shape[1] - side))
            return photo, y, x, side, True
        photo = self.photos[rng.integers(len(self.photos))]
        low = 1.0 / self.zoom if rng.random() < ZOOM_SHARE else 1.0
        side = int(crop_side * rng.uniform(low, 2.0 if low == 1.0 else 1.0))
        y = int(rng.integers(0, photo.shape[0] - side))
        x = int(rng.integers(0, photo.shape[1] - side))
        return photo, y, x, side, False

    def sample(self, crop_side: int = CROP) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        photo, y, x, side, hard = self._place(crop_side)
        # Enlarged crops are interpolated smoothly, as a scan of a print is; shrunk ones area-averaged.
        interpolation = cv2.INTER_AREA if side >= crop_side else cv2.INTER_CUBIC
        crop = cv2.resize(photo[y : y + side, x : x + side], (crop_side,) * 2, interpolation=interpolation)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        clean = rng.random() < (HARD_CLEAN_FRACTION if hard else CLEAN_FRACTION)
        kinds = [] if clean else list(rng.choice(KINDS, size=rng.integers(1, 4), replace=False))
        damaged, truths = synthesize(np.ascontiguousarray(crop), kinds, rng, hard=clean)
        truth = np.zeros((crop_side, crop_side), bool)
        for mask in truths.values():
            truth |= mask
        return damaged, truth

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, truths = zip(*(self.sample() for _ in range(BATCH)), strict=True)
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(np.stack(truths)).float()[:, None]
        return (x - 0.5) / 0.5, y

    @torch.no_grad()
    def mine(self, network: ScratchUNet, windows: int = MINE_WINDOWS, side: int = MINE_SIDE) -> int:
        """Run the network over clean windows of the training photos (at the training scales, with
        the usual nuisances) and remember where it fires: those places become crops of their own.
        Returns how many places were added."""
        rng = self.rng
        was_training = network.training
        network.eval()
        added = 0
        for _ in range(windows):
            index = int(rng.integers(len(self.photos)))
            photo = self.photos[index]
            scale = rng.uniform(0.5, 1.0)  # the shrink of a training crop (side 1-2x the crop)
            extent = min(int(side / scale), *photo.shape[:2])
            y0 = int(rng.integers(0, photo.shape[0] - extent + 1))
            x0 = int(rng.integers(0, photo.shape[1] - extent + 1))
            window = cv2.resize(photo[y0 : y0 + extent, x0 : x0 + extent], (side, side), cv2.INTER_AREA)
            pixels = to_u8(nuisances(window.astype(np.float32) / 255, rng), rng)
            x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / 255
            probability = torch.sigmoid(network((x - 0.5) / 0.5))[0, 0].numpy()
            ys, xs = np.nonzero(probability >= MINE_THRESHOLD)
            if ys.size == 0:
                continue
            picks = rng.choice(ys.size, size=min(MINE_PER_WINDOW, ys.size), replace=False)
            factor = extent / side
            crop_side = int(CROP * rng.uniform(1.0, 2.0))
            for pick in picks:
                place = (index, y0 + int(ys[pick] * factor), x0 + int(xs[pick] * factor), crop_side)
                self.hard.append(place)
                added += 1
        del self.hard[:-MINE_POOL]  # the most recent places: what the network still gets wrong
        network.train(was_training)
        return added


def loss_of(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    weight = torch.tensor(DAMAGE_WEIGHT)
    bce = F.binary_cross_entropy_with_logits(logits, truth, pos_weight=weight)
    probability = torch.sigmoid(logits)
    dice = 1 - (2 * (probability * truth).sum() + 1) / (probability.sum() + truth.sum() + 1)
    return bce + dice


def validation_set(photos: list[np.ndarray], seed: int) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Fixed crops of the calibration photos (damaged and clean alike), as network inputs and truths."""
    crops = Crops(photos, np.random.default_rng(seed + 1))
    found = []
    for _ in range(VALIDATION_CROPS):
        image, truth = crops.sample(VALIDATION_SIDE)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
        found.append(((x - 0.5) / 0.5, truth))
    return found


@torch.no_grad()
def validation_f1(network: ScratchUNet, samples: list[tuple[torch.Tensor, np.ndarray]]) -> float:
    """Pixel F1 at the configured threshold over all validation crops (false alarms on clean ones count)."""
    network.eval()
    tp = fp = fn = 0
    for x, truth in samples:
        found = torch.sigmoid(network(x))[0, 0].numpy() >= CONFIG.threshold
        tp += int(np.count_nonzero(found & truth))
        fp += int(np.count_nonzero(found & ~truth))
        fn += int(np.count_nonzero(~found & truth))
    network.train()
    return 2 * tp / max(2 * tp + fp + fn, 1)


def train(
    photos: list[np.ndarray],
    minutes: float,
    seed: int,
    log: Callable[[str], None],
    start: Path | None = None,
    validation: list[np.ndarray] | None = None,
    learning_rate: float = 2e-3,
    mine: bool = False,
    zoom: float = 1.0,
    snapshots: Path | None = None,
) -> tuple[ScratchUNet, dict]:
    """Train for `minutes` of wall time (from `start`'s weights if given); with `validation` photos,
    the weights with the best validation F1 (checked every 150 steps) are the ones returned.
    `mine`: hard-negative mining every MINE_EVERY steps; `snapshots`: a folder where the weights of
    every check are saved (`step-<n>.safetensors`) so that a later calibration can choose among them."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = ScratchUNet(CONFIG)
    if start is not None:
        network.load_state_dict(read_checkpoint(start).state_dict)
    crops = Crops(photos, rng, zoom)
    samples = validation_set(validation, seed) if validation else []
    best_f1 = validation_f1(network, samples) if samples else -1.0
    best_state = {k: v.clone() for k, v in network.state_dict().items()}
    best_step = 0
    if samples:
        log(f"step 0: validation F1 {best_f1:.4f}")
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    deadline = time.monotonic() + minutes * 60
    started = time.monotonic()
    step, recent = 0, []
    network.train()
    while time.monotonic() < deadline:
        progress = (time.monotonic() - started) / (minutes * 60)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        x, y = crops.batch()
        loss = loss_of(network(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        recent.append(float(loss.detach()))
        step += 1
        if mine and step % MINE_EVERY == 0:
            added = crops.mine(network)
            log(f"step {step}: mined {added} hard-negative places ({len(crops.hard)} kept)")
        if step % 150 == 0:
            line = f"step {step}: loss {np.mean(recent[-150:]):.4f} ({time.monotonic() - started:.0f} s)"
            if samples:
                f1 = validation_f1(network, samples)
                line += f", validation F1 {f1:.4f}"
                if f1 > best_f1:
                    best_f1, best_step = f1, step
                    best_state = {k: v.clone() for k, v in network.state_dict().items()}
            if snapshots is not None:
                snapshots.mkdir(parents=True, exist_ok=True)
                save_converted(
                    snapshots / f"step-{step:05d}.safetensors",
                    network.state_dict(),
                    family="scratch",
                    variant="tiny",
                    config=CONFIG.to_json(),
                    license=LICENSE,
                )
            log(line)
    if samples:
        network.load_state_dict(best_state)
        log(f"kept step {best_step}: validation F1 {best_f1:.4f}")
    network.eval()
    final = float(np.mean(recent[-150:])) if recent else None
    return network, {"steps": step, "final_loss": final, "best_step": best_step, "validation_f1": best_f1}


@torch.no_grad()
def average(
    snapshots: list[Path], photos: list[np.ndarray], seed: int, batches: int = BN_BATCHES
) -> ScratchUNet:
    """The mean of several snapshots' weights (late snapshots of one run: their mean sits in a flatter
    place than any of them), with batch-norm statistics measured again on training crops, since the
    mean of the snapshots' running statistics does not match the mean weights."""
    network = ScratchUNet(CONFIG)
    states = [read_checkpoint(path).state_dict for path in snapshots]
    network.load_state_dict(
        {key: sum(state[key].double() for state in states) / len(states) for key in states[0]}
    )
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative mean over all the batches below
    crops = Crops(photos, np.random.default_rng(seed + 2))
    network.train()
    for _ in range(batches):
        network(crops.batch()[0])
    return network.eval()


def register(path: Path) -> None:
    """Record the file's size, tensor values and SHA-256 in the manifest's `scratch-tiny` entry."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        values = sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())  # noqa: SIM118
    manifest = json.loads(MANIFEST.read_text())
    manifest["models"][NAME] = {
        "family": "scratch",
        "variant": "tiny",
        "license": LICENSE,
        "paper": "Wan et al., Bringing Old Photos Back to Life, CVPR 2020 (the detector's architecture), "
        "https://arxiv.org/abs/2004.09484",
        "homepage": "https://github.com/microsoft/Bringing-Old-Photos-Back-to-Life",
        "parameters": values,
        "sources": [
            {
                "url": f"bundled:{path.name}",
                "format": "safetensors",
                "size": path.stat().st_size,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        ],
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def configure(source: Path, output: Path, register_it: bool) -> None:
    """Re-save trained weights with the calibrated thresholds of CONFIG (and their training record)."""
    record = json.loads(source.with_suffix(".json").read_text())
    state = read_checkpoint(source).state_dict
    output.mkdir(parents=True, exist_ok=True)
    path = save_converted(
        output / f"{NAME}.safetensors",
        state,
        family="scratch",
        variant="tiny",
        config=CONFIG.to_json(),
        license=LICENSE,
    )
    record["config"] = CONFIG.to_json()
    (output / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path} with {CONFIG.to_json()}", flush=True)
    if register_it:
        register(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=35.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="where the wallpapers are unpacked")
    parser.add_argument("--output", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--register", action="store_true", help="record size and SHA-256 in the manifest")
    parser.add_argument("--resume", type=Path, help="continue from these weights (a previous output)")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--mine", action="store_true", help="hard-negative mining on clean training photos")
    parser.add_argument("--zoom", type=float, default=1.0, help="enlarge some crops by up to this factor")
    parser.add_argument("--snapshots", type=Path, help="save the weights of every check in this folder")
    parser.add_argument(
        "--average",
        type=Path,
        nargs="+",
        help="no training: average these snapshots of one run, batch norms measured again "
        "(--resume: the run's start, --minutes: the run's time, for the record)",
    )
    parser.add_argument(
        "--configure", type=Path, help="no training: save these weights again with CONFIG's thresholds"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    if args.configure is not None:
        configure(args.configure, args.output, args.register)
        return
    wallpapers = list_wallpapers(fetch_wallpapers(args.data))
    chosen = [w for w in wallpapers if w["name"] not in HELD_OUT + CALIBRATION]
    photos = [load_rgb(w["file"], MAX_SIDE) for w in chosen]
    validation = [load_rgb(w["file"], MAX_SIDE) for w in wallpapers if w["name"] in CALIBRATION]
    print(f"{len(photos)} training pictures; held out: {', '.join(HELD_OUT + CALIBRATION)}", flush=True)
    if args.average:
        network = average(args.average, photos, args.seed)
        record = {"averaged": [path.name for path in args.average], "bn_batches": BN_BATCHES}
        record["steps"] = max(int(path.stem.split("-")[-1]) for path in args.average)
        record["final_loss"] = None
    else:
        network, record = train(
            photos,
            args.minutes,
            args.seed,
            lambda line: print(line, flush=True),
            args.resume,
            validation,
            args.learning_rate,
            args.mine,
            args.zoom,
            args.snapshots,
        )
    if args.resume is not None:
        previous = json.loads(args.resume.with_suffix(".json").read_text())
        record["steps"] += previous["steps"]
        args.minutes += previous["minutes"]
    args.output.mkdir(parents=True, exist_ok=True)
    path = save_converted(
        args.output / f"{NAME}.safetensors",
        network.state_dict(),
        family="scratch",
        variant="tiny",
        config=CONFIG.to_json(),
        license=LICENSE,
    )
    record.update(
        seed=args.seed,
        minutes=args.minutes,
        crop=CROP,
        batch=BATCH,
        learning_rate=args.learning_rate,
        hard_negative_mining=args.mine,
        zoom=args.zoom,
        config=CONFIG.to_json(),
        package=PACKAGE,
        held_out=list(HELD_OUT),
        calibration=list(CALIBRATION),
        images=[{"name": w["name"], "file": Path(w["file"]).name, "license": w["license"]} for w in chosen],
    )
    (args.output / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes), {record['steps']} steps", flush=True)
    if args.register:
        register(path)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
