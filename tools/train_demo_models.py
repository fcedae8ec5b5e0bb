"""Train the bundled demo models `lama-tiny`, `gatedconv-tiny` and `pconv-tiny` on CPU.

Demo quality: a few hundred thousand parameters each, so that `inpaint` works offline out of the
box and its intermediates (PConv mask updates, GatedConv gates) come from a network that learned
something. The networks are this project's own (`FAMILIES[family].build(config)`), fed exactly as
the engine feeds them (`Runner.predict`): normalised with the family's `normalization`, the mask in
its `hole_value` convention (every family blanks the hole itself, so what the damaged pixels held
never reaches the network), sides already multiples of `pad_multiple`.

Data: the photographs of Debian's `plasma-workspace-wallpapers`, `mate-backgrounds`,
`lomiri-wallpapers-16.04` and `lomiri-wallpapers-20.04` (LGPL-3, GPL-2+, CC-BY-4.0, CC-BY-SA-3.0/4.0,
CC0-1.0; `photo_data.py` fetches them with `apt-get download` + `dpkg -x`, keeps only photographs and
records each one's licence). `EVAL_COLOUR`, `EVAL_GREY` (`benchmarks/eval_demo_models.py`) and
`VALIDATION` (the checkpoint choice) are never trained on. Random square crops at scales from 1:1 to
1:6, flips, exposure, white-balance and saturation jitter, film grain; some crops grey (`--grey`,
default 20 %) or sepia (`--sepia`, 10 %) — the first demo models saw 58 % grey or sepia crops and
their colour crops were mostly warm (a retina, a cat, immunohistochemistry), and they learned to
fill holes with a desaturated warm grey: the tinted scratches of issue 18. Masks
(`MASK_KINDS`): thin scratches (1-8 px), dust, DeepFill v2 brush strokes, LaMa thick lines and
boxes, torn corners and large holes.

Loss: L1 inside the hole, L1 outside it (weighted less), and L1 between the image gradients of the
composited result and of the original; both stages for GatedConv, as in DeepFill v2. No adversarial
or perceptual loss (no pretrained VGG offline). Adam with warm-up and cosine decay over a wall-time
budget; every `--check-minutes` the network (BatchNorm statistics re-estimated over fresh batches)
is scored on the validation crops and written if it is the best so far, so a run can be stopped at
any time. `--init` continues from existing weights (the bundled file by default).

    python tools/train_demo_models.py --minutes 50 --register        # all three, one after the other
    python tools/train_demo_models.py lama-tiny --minutes 2 --output /tmp/demo   # a quick try

Written to `<output>/<name>.safetensors` (our format, architecture in the metadata) and
`<output>/<name>.json` (seed, steps, minutes, the validation curve, every image and its licence);
`--register` records each file's size and SHA-256 in `inpaint_cli/weights_manifest.json`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import photo_data
import torch
from torch import nn

from inpaint_cli.checkpoints.containers import read_checkpoint, save_converted
from inpaint_cli.checkpoints.loading import load_strict, network_from_checkpoint
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.models import FAMILIES
from inpaint_cli.models.base import InpaintModel

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DIR = ROOT / "inpaint_cli" / "bundled"
MANIFEST = ROOT / "inpaint_cli" / "weights_manifest.json"
LICENSE = "Apache-2.0"
"""The project's licence for the weights; each training photo's own licence is in the record."""

EVAL_COLOUR = ("ColorfulCups", "Kite", "LadyBird", "Path")
EVAL_GREY = ("ColdRipple",)
"""Held out for `benchmarks/eval_demo_models.py` (the colour ones also as grey)."""
VALIDATION = ("Storm",)
"""Held out to choose the checkpoint."""
MAX_SIDE = 1280
"""Photos are kept in memory at most this long, to crop from."""

CROP = 128
"""Side of the training crops: a multiple of every tiny model's `pad_multiple`."""
LARGEST_CROP = 6
"""Crops cover from `CROP` to `LARGEST_CROP` × `CROP` photo pixels (log-uniform), shrunk to `CROP`."""
HOLE_WEIGHT = 1.0
VALID_WEIGHT = 0.5
EDGE_WEIGHT = 1.0
MIN_HOLE_FRACTION = 0.01
MAX_HOLE_FRACTION = 0.5
GREY_PROBABILITY = 0.2
SEPIA_PROBABILITY = 0.1
"""70 % colour crops. 58 % grey or sepia taught the first models a warm grey fill (tinted colour
scratches); 10 % grey and 5 % sepia lost grey quality and gave a pink-green blotch on the sepia example.
Fine-tuning at 20 % / 10 % gained on grey and on colour alike (README, demo models)."""
SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)
"""The usual sepia toning matrix (rows: output R, G, B)."""
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
WARMUP_STEPS = 50
FINAL_LR_FRACTION = 0.05
BN_CALIBRATION_BATCHES = 16
LOG_EVERY = 50
VALIDATION_CROPS = 8
"""Crops of each validation photo (and as many grey copies) per mask kind."""


@dataclass(frozen=True)
class DemoModel:
    """What to train for one bundled model."""

    family: str
    config: Mapping[str, Any]
    batch_size: int
    learning_rate: float
    shared_mask: bool = False
    """One mask for the whole batch, as DeepFill v2's training does (its contextual attention
    also reads the hole of the batch's first item only)."""


DEMO_MODELS = {
    "lama-tiny": DemoModel(
        family="lama",
        # big-lama's layout (3 downsamplings, 3/4 of the bottleneck global) at 1/4 of its width.
        config={
            "input_nc": 4,
            "output_nc": 3,
            "ngf": 16,
            "n_downsampling": 3,
            "n_blocks": 3,
            "max_features": 128,
            "global_channels": 96,
            "enable_lfu": False,
        },
        batch_size=8,
        learning_rate=1e-3,
    ),
    "gatedconv-tiny": DemoModel(
        family="gatedconv",
        config={"variant": "pt", "cnum": 16},
        batch_size=8,
        learning_rate=1e-3,
        shared_mask=True,
    ),
    "pconv-tiny": DemoModel(
        family="pconv",
        config={"layer_size": 5, "base_channels": 16},
        batch_size=8,
        learning_rate=1e-3,
    ),
}


# --- data -------------------------------------------------------------------------------------------


def split_photos(data: Path) -> dict[str, list[photo_data.Photo]]:
    """The photographs by use: `train`, `validation`, `eval_colour`, `eval_grey`."""
    photos = photo_data.photographs(data)
    held_out = {"validation": VALIDATION, "eval_colour": EVAL_COLOUR, "eval_grey": EVAL_GREY}
    split = {use: [photo for photo in photos if photo.name in names] for use, names in held_out.items()}
    split["train"] = [
        photo for photo in photos if not any(photo.name in names for names in held_out.values())
    ]
    return split


def load_photo(photo: photo_data.Photo, grey: bool = False) -> np.ndarray:
    """H×W×3 uint8 RGB, at most `MAX_SIDE` long; `grey`: its luma in all three channels."""
    pixels = photo_data.load_rgb(photo.file, MAX_SIDE)
    if grey:
        pixels = np.repeat((pixels @ LUMA).round().clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return pixels


def random_crop(photo: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A square region of random position and scale (1 down to 1/`LARGEST_CROP`, log-uniform),
    resized to `size`; float32 in [0, 1]."""
    height, width = photo.shape[:2]
    largest = min(height, width, LARGEST_CROP * size)
    smallest = min(largest, size)
    side = round(math.exp(rng.uniform(math.log(smallest), math.log(largest))))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    region = photo[top : top + side, left : left + side]
    if side != size:
        region = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
    return region.astype(np.float32) / 255


def augment(
    crop: np.ndarray,
    rng: np.random.Generator,
    tones: tuple[float, float] = (GREY_PROBABILITY, SEPIA_PROBABILITY),
) -> np.ndarray:
    """Flip; exposure, white balance and saturation jitter; film grain; grey or sepia with the
    probabilities `tones` (grey, sepia)."""
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop ** (2 ** rng.uniform(-0.3, 0.3)) * (2 ** rng.uniform(-0.4, 0.4))
    crop = crop * (1 + rng.normal(0, 0.05, 3)).astype(np.float32)
    grey = crop @ LUMA
    crop = grey[..., None] + (crop - grey[..., None]) * rng.uniform(0.6, 1.4)
    if rng.random() < 0.4:
        shape = (*crop.shape[:2], 1 if rng.random() < 0.5 else 3)
        crop = crop + rng.normal(0, rng.uniform(0.005, 0.03), shape).astype(np.float32)
    tone, (grey_probability, sepia_probability) = rng.random(), tones
    if tone < grey_probability:
        crop = np.repeat((crop @ LUMA)[..., None], 3, axis=2)
    elif tone < grey_probability + sepia_probability:
        crop = crop @ SEPIA.T
    return np.ascontiguousarray(np.clip(crop, 0, 1), dtype=np.float32)


# --- masks ------------------------------------------------------------------------------------------


def brush_strokes(rng: np.random.Generator, size: int) -> np.ndarray:
    """DeepFill v2 free-form mask: 1-3 strokes of 4-12 vertices, zig-zag angles, wide round brush.

    The paper's parameters (brush 12-40 px, segment length around diagonal/8 at 256 px) scaled to `size`.
    """
    mask = np.zeros((size, size), np.uint8)
    mean_length = math.hypot(size, size) / 8
    for _ in range(rng.integers(1, 4)):
        vertices = rng.integers(4, 13)
        width = max(2, int(rng.uniform(12, 40) * size / 256))
        turn = 2 * math.pi / 5
        x, y = rng.uniform(0, size, 2)
        for vertex in range(vertices):
            angle = rng.uniform(turn - 2 * math.pi / 15, turn + 2 * math.pi / 15)
            angle = angle if vertex % 2 == 0 else 2 * math.pi - angle
            length = np.clip(rng.normal(mean_length, mean_length / 2), 0, 2 * mean_length)
            end_x = float(np.clip(x + length * math.cos(angle), 0, size - 1))
            end_y = float(np.clip(y + length * math.sin(angle), 0, size - 1))
            cv2.line(mask, (int(x), int(y)), (int(end_x), int(end_y)), 1, width)
            cv2.circle(mask, (int(end_x), int(end_y)), width // 2, 1, -1)
            x, y = end_x, end_y
    return mask.astype(bool)


def thick_lines(rng: np.random.Generator, size: int) -> np.ndarray:
    """LaMa's "thick" irregular masks: a few long straight segments, 5-15 % of the side wide."""
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 4)):
        start = rng.integers(0, size, 2)
        angle = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.2, 0.6) * size
        end = start + length * np.array([math.cos(angle), math.sin(angle)])
        width = max(2, int(rng.uniform(0.05, 0.15) * size))
        cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, width)
    return mask.astype(bool)


def boxes(rng: np.random.Generator, size: int) -> np.ndarray:
    """LaMa's box masks: 1-3 rectangles of 10-40 % of the side (a torn-off corner is one)."""
    mask = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 4)):
        height, width = (rng.uniform(0.1, 0.4, 2) * size).astype(int) + 1
        top, left = rng.integers(0, size - height + 1), rng.integers(0, size - width + 1)
        mask[top : top + height, left : left + width] = True
    return mask


def torn_corner(rng: np.random.Generator, size: int) -> np.ndarray:
    """A corner torn off a print: cut along a jagged line between its two edges, 15-50 % of the side
    from the corner on each."""
    reach_x, reach_y = rng.uniform(0.15, 0.5, 2) * size
    along = np.linspace(0, 1, 10)
    jitter = rng.normal(0, 0.03 * size, (2, along.size)) * (along > 0) * (along < 1)
    edge = np.stack([reach_x * (1 - along) + jitter[0], reach_y * along + jitter[1]], axis=1)
    polygon = np.clip(np.vstack([[0, 0], edge]), 0, size - 1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [polygon.round().astype(np.int32)], 1)
    return np.rot90(mask, k=rng.integers(4)).astype(bool)


def thin_scratches(rng: np.random.Generator, size: int) -> np.ndarray:
    """1-5 wandering scratches 1-8 px wide (mostly 1-3), like a print's or a negative's."""
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 6)):
        points = np.cumsum(rng.normal(0, size / 6, (rng.integers(2, 6), 2)), axis=0) + rng.uniform(0, size, 2)
        width = int(rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8]))
        cv2.polylines(mask, [points.astype(np.int32)], False, 1, width)
    return mask.astype(bool)


def dust(rng: np.random.Generator, size: int) -> np.ndarray:
    """5-40 round dust spots of radius 1-4 px."""
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(5, 41)):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(mask, centre, int(rng.integers(1, 5)), 1, -1)
    return mask.astype(bool)


def large_hole(rng: np.random.Generator, size: int) -> np.ndarray:
    """One big hole, at least a quarter of the side wide and high: a box or a blob (an ellipse)."""
    mask = np.zeros((size, size), np.uint8)
    height, width = (rng.uniform(0.25, 0.5, 2) * size).astype(int)
    top, left = rng.integers(0, size - height + 1), rng.integers(0, size - width + 1)
    if rng.random() < 0.5:
        mask[top : top + height, left : left + width] = 1
    else:
        centre = (int(left + width / 2), int(top + height / 2))
        cv2.ellipse(mask, centre, (width // 2, height // 2), rng.uniform(0, 180), 0, 360, 1, -1)
    return mask.astype(bool)


MASK_KINDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "thin": thin_scratches,
    "dust": dust,
    "medium strokes": brush_strokes,
    "large holes": large_hole,
    "thick lines": thick_lines,
    "boxes": boxes,
    "torn corner": torn_corner,
}
MASK_KIND_WEIGHTS = (0.3, 0.1, 0.2, 0.15, 0.05, 0.1, 0.1)
"""Thin damage most often: it is what old photos have most of, and where a network must not lose
to the classical methods."""
EVAL_KINDS = ("thin", "dust", "medium strokes", "large holes")
"""The mask kinds the evaluation reports (thin ≤ 8 px, dust, medium strokes, large holes ≥ 1/4 side)."""


def random_hole(rng: np.random.Generator, size: int) -> np.ndarray:
    """An H×W bool hole (True = hole) of one or two mask kinds, covering 1-50 % of the square."""
    makers = list(MASK_KINDS.values())
    while True:
        count = 1 if rng.random() < 0.7 else 2
        kinds = rng.choice(len(makers), size=count, replace=False, p=MASK_KIND_WEIGHTS)
        hole = np.logical_or.reduce([makers[kind](rng, size) for kind in kinds])
        if MIN_HOLE_FRACTION <= hole.mean() <= MAX_HOLE_FRACTION:
            return hole


def hole_of_kind(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A non-empty hole of one kind."""
    while True:
        hole = MASK_KINDS[kind](rng, size)
        if hole.any():
            return hole


def batches(
    photos: list[np.ndarray],
    rng: np.random.Generator,
    size: int,
    batch_size: int,
    shared_mask: bool,
    tones: tuple[float, float] = (GREY_PROBABILITY, SEPIA_PROBABILITY),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (N×3×S×S images in [0, 1], N×1×S×S {0, 1} holes); photos drawn by their area, crops
    grey or sepia with the probabilities `tones`."""
    weights = np.array([math.sqrt(photo.shape[0] * photo.shape[1]) for photo in photos])
    weights /= weights.sum()
    while True:
        images = [
            augment(random_crop(photos[rng.choice(len(photos), p=weights)], rng, size), rng, tones)
            for _ in range(batch_size)
        ]
        holes = (
            [random_hole(rng, size)] * batch_size if shared_mask else [random_hole(rng, size) for _ in images]
        )
        image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        hole = torch.from_numpy(np.stack(holes)).float()[:, None]
        yield image, hole


# --- the network as the engine runs it -----------------------------------------------------------------


def predictions(network: InpaintModel, image: torch.Tensor, hole: torch.Tensor) -> list[torch.Tensor]:
    """The network's outputs in [0, 1] RGB for a [0, 1] image and a {0, 1} hole, fed like the engine
    feeds it; a two-stage network's coarse output comes first."""
    if image.shape[-1] % network.pad_multiple or image.shape[-2] % network.pad_multiple:
        raise ValueError(f"crops must be multiples of {network.pad_multiple}")
    mask = hole if network.hole_value == 1 else 1 - hole
    captured: dict[str, torch.Tensor] = {}
    output = network(network.normalization.to_network(image), mask, captured)
    stages = [captured["coarse"]] if "coarse" in captured else []
    return [network.normalization.from_network(stage) for stage in [*stages, output]]


def image_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return image[..., :, 1:] - image[..., :, :-1], image[..., 1:, :] - image[..., :-1, :]


def reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Mean L1 inside the hole + `VALID_WEIGHT` × mean L1 outside + `EDGE_WEIGHT` × the gradient L1
    of the composite (prediction in the hole, original outside) per hole pixel."""
    error = (prediction - target).abs().mean(dim=1, keepdim=True)
    hole_pixels = hole.sum().clamp_min(1)
    hole_l1 = (error * hole).sum() / hole_pixels
    valid_l1 = (error * (1 - hole)).sum() / (1 - hole).sum().clamp_min(1)
    composite = prediction * hole + target * (1 - hole)
    edge = sum(
        (ours - theirs).abs().sum()
        for ours, theirs in zip(image_gradients(composite), image_gradients(target), strict=True)
    )
    return HOLE_WEIGHT * hole_l1 + VALID_WEIGHT * valid_l1 + EDGE_WEIGHT * edge / (3 * hole_pixels)


# --- after training ----------------------------------------------------------------------------------


@torch.no_grad()
def calibrate_batch_norms(network: InpaintModel, data: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Re-estimate every BatchNorm's running statistics as plain averages over fresh batches, with
    the trained weights, so that eval mode normalises like training did."""
    norms = [module for module in network.modules() if isinstance(module, nn.BatchNorm2d)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    network.train()
    for _ in range(BN_CALIBRATION_BATCHES):
        predictions(network, *next(data))
    network.eval()


# --- training --------------------------------------------------------------------------------------


def learning_rate_factor(progress: float, step: int) -> float:
    """Linear warm-up over `WARMUP_STEPS`, then cosine decay to `FINAL_LR_FRACTION` over the budget."""
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    cosine = FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return warm * cosine


def validation_set(photos: list[np.ndarray], seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per evaluated mask kind: fixed crops of the validation photos, in colour and grey, with holes."""
    rng = np.random.default_rng(seed)
    found = {}
    for kind in EVAL_KINDS:
        crops = [random_crop(photo, rng, CROP) for photo in photos for _ in range(VALIDATION_CROPS)]
        crops += [np.repeat((crop @ LUMA)[..., None], 3, axis=2) for crop in crops]
        holes = [hole_of_kind(kind, rng, CROP) for _ in crops]
        image = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
        found[kind] = (image, torch.from_numpy(np.stack(holes)).float()[:, None])
    return found


@torch.no_grad()
def hole_l1(network: InpaintModel, image: torch.Tensor, hole: torch.Tensor) -> float:
    prediction = predictions(network, image, hole)[-1].clamp(0, 1)
    return float(((prediction - image).abs().mean(dim=1, keepdim=True) * hole).sum() / hole.sum())


def warm_start(network: InpaintModel, path: Path) -> None:
    """Load trained weights (our file's layout) into a network already prepared for training."""
    state = read_checkpoint(path).state_dict
    folded = {
        f"{name}.weight": module.folded_window_size
        for name, module in network.named_modules()
        if getattr(module, "folded_window_size", 1) != 1
    }
    state = {key: value / folded.get(key, 1) for key, value in state.items()}
    missing, unexpected = network.load_state_dict(state, strict=False)
    if unexpected or any(not key.endswith("num_batches_tracked") for key in missing):
        raise RuntimeError(f"{path} does not fit: missing {missing}, unexpected {unexpected}")


@dataclass
class Run:
    """What one training run keeps between checkpoints."""

    name: str
    spec: DemoModel
    output: Path
    record: dict[str, Any]
    best: float = math.inf
    frozen_norms: bool = False
    """BatchNorm layers keep their loaded statistics (eval mode) while the rest trains."""
    tones: tuple[float, float] = (GREY_PROBABILITY, SEPIA_PROBABILITY)
    """Probabilities of a grey and of a sepia training crop."""


def checkpoint(
    run: Run, network: InpaintModel, data: Iterator, validation: dict, step: int, minutes: float
) -> None:
    """Score a BatchNorm-calibrated copy on the validation crops; write it if it is the best so far."""
    candidate = copy.deepcopy(network)
    if not run.frozen_norms:
        calibrate_batch_norms(candidate, data)
    candidate.eval()
    scores = {kind: hole_l1(candidate, *pair) for kind, pair in validation.items()}
    mean = float(np.mean(list(scores.values())))
    run.record["curve"].append({"step": step, "minutes": round(minutes, 2), "hole_l1": scores, "mean": mean})
    written = ""
    if mean < run.best:
        run.best = mean
        run.record.update(steps=step, minutes=round(minutes, 2), validation_hole_l1=scores)
        save_and_check(run.name, run.spec, candidate, run.output)
        written = " (best: written)"
    (run.output / f"{run.name}.json").write_text(json.dumps(run.record, indent=2) + "\n", encoding="utf-8")
    details = ", ".join(f"{kind} {value:.4f}" for kind, value in scores.items())
    print(f"  checkpoint at step {step}: validation hole L1 {mean:.4f} ({details}){written}", flush=True)


def train(
    run: Run,
    photos: list[np.ndarray],
    validation: dict,
    minutes: float,
    check: float,
    seed: int,
    init: Path | None,
    steps: int = 0,
) -> None:
    """Train one demo model for `minutes` of wall time, checkpointing every `check` minutes; or, with
    `steps`, for that many steps with a checkpoint every tenth of them (repeatable with the seed)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = run.spec
    network = FAMILIES[spec.family].build(spec.config)
    network.prepare_for_training()
    if init is not None:
        warm_start(network, init)
    # Channels-last convolutions are about 25 % faster on CPU; the saved tensors are contiguous again.
    network.to(memory_format=torch.channels_last).train()
    if run.frozen_norms:
        # Fine-tuning with batches of 8: per-batch statistics differ from the loaded ones enough that
        # lama-tiny's held-out error doubled in train mode; frozen, training sees what inference sees.
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
    optimizer = torch.optim.Adam(network.parameters(), lr=spec.learning_rate)
    data = batches(photos, rng, CROP, spec.batch_size, spec.shared_mask, run.tones)
    parameters = sum(p.numel() for p in network.parameters())
    print(
        f"{run.name}: {spec.family} {dict(spec.config)}, {parameters:,} parameters, {minutes} min", flush=True
    )
    if init is not None:
        checkpoint(run, network, data, validation, 0, 0.0)
    started = time.monotonic()
    last_check, step, running = started, 0, 0.0
    while (elapsed := time.monotonic() - started) < minutes * 60 or steps:
        progress = step / steps if steps else elapsed / (minutes * 60)
        if progress >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = spec.learning_rate * learning_rate_factor(progress, step)
        image, hole = (x.contiguous(memory_format=torch.channels_last) for x in next(data))
        loss = sum(reconstruction_loss(stage, image, hole) for stage in predictions(network, image, hole))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item()
        step += 1
        if step % LOG_EVERY == 0:
            print(f"  step {step:5d}  loss {running / LOG_EVERY:.4f}  {elapsed:6.0f} s", flush=True)
            running = 0.0
        if (step % max(1, steps // 10) == 0) if steps else (time.monotonic() - last_check >= check * 60):
            checkpoint(run, network, data, validation, step, (time.monotonic() - started) / 60)
            last_check = time.monotonic()
    if not steps or step % max(1, steps // 10):
        checkpoint(run, network, data, validation, step, (time.monotonic() - started) / 60)


def save_and_check(name: str, spec: DemoModel, network: InpaintModel, output_dir: Path) -> Path:
    """Write our safetensors file, then load it back strictly the normal way and compare outputs."""
    path = save_converted(
        output_dir / f"{name}.safetensors",
        network.trained_state_dict(),
        family=spec.family,
        variant="demo",
        config=spec.config,
        license=LICENSE,
    )
    path.chmod(0o644)  # package data, readable by every user of an installation
    loaded = network_from_checkpoint(read_checkpoint(path))
    rebuilt = FAMILIES[spec.family].build(spec.config)
    load_strict(rebuilt, network.trained_state_dict(), path)
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((2, 3, CROP, CROP), dtype=np.float32))
    hole = torch.from_numpy(np.stack([random_hole(rng, CROP) for _ in range(2)])).float()[:, None]
    with torch.no_grad():
        expected = predictions(network, image, hole)[-1]
        difference = (predictions(loaded, image, hole)[-1] - expected).abs().max().item()
    if difference > 1e-4:
        raise RuntimeError(f"{path}: the loaded network differs from the trained one by {difference:.2e}")
    print(f"  wrote {path} ({path.stat().st_size / 1e6:.1f} MB); reloaded output within {difference:.1e}")
    return path


def register(name: str, spec: DemoModel, path: Path) -> None:
    """Record a bundled file's size and SHA-256 in its manifest entry (created if missing; its other
    fields and the other entries untouched)."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    if name not in manifest["models"]:
        official = next(entry for entry in manifest["models"].values() if entry["family"] == spec.family)
        manifest["models"][name] = {
            "family": spec.family,
            "variant": "demo",
            "license": LICENSE,
            "paper": official["paper"],
            "homepage": official["homepage"],
        }
    manifest["models"][name]["sources"] = [
        {
            "url": f"bundled:{path.name}",
            "format": "safetensors",
            "size": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    ]
    with atomic_path(MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"  registered {name} in {MANIFEST}")


def install(name: str, folder: Path) -> None:
    """Copy a trained file (and its training record) from `folder` into the package, then register it."""
    for suffix in (".safetensors", ".json"):
        with atomic_path(BUNDLED_DIR / f"{name}{suffix}") as temporary:
            shutil.copyfile(folder / f"{name}{suffix}", temporary)
            temporary.chmod(0o644)  # package data, readable by every user of an installation
    register(name, DEMO_MODELS[name], BUNDLED_DIR / f"{name}.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", metavar="NAME", help=f"of {', '.join(DEMO_MODELS)} (default: all)"
    )
    parser.add_argument("--minutes", type=float, default=50.0, help="wall-time budget per model")
    parser.add_argument("--steps", type=int, default=0, help="train this many steps instead (repeatable)")
    parser.add_argument("--check-minutes", type=float, default=5.0, help="time between checkpoints")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--frozen-norms", action="store_true", help="keep --init's BatchNorm statistics while training"
    )
    parser.add_argument("--learning-rate", type=float, help="override every model's peak learning rate")
    parser.add_argument("--grey", type=float, default=GREY_PROBABILITY, help="share of grey training crops")
    parser.add_argument(
        "--sepia", type=float, default=SEPIA_PROBABILITY, help="share of sepia training crops"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=photo_data.DEFAULT_DATA, help="where packages unpack")
    parser.add_argument("--output", type=Path, default=BUNDLED_DIR)
    parser.add_argument(
        "--init", default="none", help="'none' (from scratch), 'bundled' (each shipped file) or a file"
    )
    parser.add_argument("--register", action="store_true", help="record the files in the shipped manifest")
    parser.add_argument(
        "--install-from",
        type=Path,
        metavar="DIR",
        help="no training: copy DIR's files into the package, register",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.models) - set(DEMO_MODELS))
    if unknown:
        parser.error(f"unknown demo model {', '.join(unknown)}; choose from {', '.join(DEMO_MODELS)}")
    if args.install_from:
        for name in args.models or DEMO_MODELS:
            install(name, args.install_from)
        return
    if min(args.grey, args.sepia) < 0 or args.grey + args.sepia > 1:
        parser.error("--grey and --sepia are shares of the crops: each at least 0, together at most 1")
    if args.init == "bundled" and args.output.resolve() == BUNDLED_DIR.resolve():
        parser.error("--init bundled reads the shipped files: write to another --output, then copy")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    split = split_photos(args.data)
    photos = [load_photo(photo) for photo in split["train"]]
    validation = validation_set([load_photo(photo) for photo in split["validation"]], args.seed + 1)
    print(
        f"{len(photos)} training photographs; validation {VALIDATION}; evaluation {EVAL_COLOUR + EVAL_GREY}"
    )
    args.output.mkdir(parents=True, exist_ok=True)
    for name in args.models or DEMO_MODELS:
        init = {"none": None, "bundled": BUNDLED_DIR / f"{name}.safetensors"}.get(args.init, Path(args.init))
        record = {
            "seed": args.seed,
            "budget": {"steps": args.steps} if args.steps else {"minutes": args.minutes},
            "crop": CROP,
            "init": {"file": init.name, "sha256": hashlib.sha256(init.read_bytes()).hexdigest()}
            if init
            else None,
            "packages": sorted({photo.package for photo in split["train"]}),
            "validation": list(VALIDATION),
            "held_out": list(EVAL_COLOUR + EVAL_GREY),
            "images": [photo.record() for photo in split["train"]],
            "curve": [],
        }
        spec = DEMO_MODELS[name]
        if args.learning_rate:
            spec = dataclasses.replace(spec, learning_rate=args.learning_rate)
        record["learning_rate"] = spec.learning_rate
        if args.frozen_norms and init is None:
            parser.error("--frozen-norms needs --init weights whose statistics it keeps")
        record["frozen_norms"] = args.frozen_norms
        record["tones"] = {"grey": args.grey, "sepia": args.sepia}
        run = Run(
            name, spec, args.output, record, frozen_norms=args.frozen_norms, tones=(args.grey, args.sepia)
        )
        train(run, photos, validation, args.minutes, args.check_minutes, args.seed, init, args.steps)
        if args.register and args.output.resolve() == BUNDLED_DIR.resolve():
            register(name, run.spec, args.output / f"{name}.safetensors")
        elif args.register:
            install(name, args.output)


if __name__ == "__main__":
    main()
