"""Train the bundled demo models `lama-tiny`, `gatedconv-tiny` and `pconv-tiny` on CPU.

Demo quality only: a few hundred thousand parameters each, trained for minutes on a dozen freely
licensed sample photos that scikit-image ships, so that `inpaint` works offline out of the box and
its intermediates (PConv mask updates, GatedConv gates) come from a network that learned something.
The networks are this project's own (`FAMILIES[family].build(config)`), fed exactly as the engine
feeds them (`Inpainter.predict`): normalised with the family's `normalization`, the mask in its
`hole_value` convention, sides already multiples of `pad_multiple` (so no padding is needed).

Data: random crops (random scale, horizontal flips, some grey or sepia toned) of `TRAIN_IMAGES`,
mostly the colour ones; `HELD_OUT_IMAGES` (among them `astronaut`, the source of `examples/`) are
never trained on. Masks: DeepFill v2 free-form brush strokes, LaMa thick lines and boxes, and an old
print's damage: torn-off corners, thin scratches and dust spots. Loss: L1 inside the hole, L1 outside
it (weighted less), and L1 between the image gradients of the composited result and of the original
(an edge term against seams and blur); both stages for GatedConv, as in DeepFill v2. No adversarial
or perceptual loss (no pretrained VGG offline). Adam with warm-up and cosine decay; BatchNorm
statistics are re-estimated over fresh batches after training, so the eval-mode network matches
what was trained. One thread by default: on a machine shared with other jobs, two OpenMP threads
ran several times slower than one.

scikit-image is needed by this script only, not by `inpaint`:

    pip install scikit-image
    python tools/train_demo_models.py --register          # all three (8-12 min each), into the manifest
    python tools/train_demo_models.py lama-tiny --steps 50 --output /tmp/demo   # a quick try

Written to `inpaint_cli/bundled/<name>.safetensors` (our format, architecture in the metadata);
`--register` then records each file's size and SHA-256 in `inpaint_cli/weights_manifest.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from inpaint_cli.checkpoints import read_checkpoint, save_converted
from inpaint_cli.loading import load_strict, network_from_checkpoint
from inpaint_cli.models import FAMILIES
from inpaint_cli.models.base import InpaintModel

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DIR = ROOT / "inpaint_cli" / "bundled"
MANIFEST = ROOT / "inpaint_cli" / "weights_manifest.json"
LICENSE = "Apache-2.0"
"""The project's licence; the training photos are public domain or CC0 (see `TRAIN_IMAGES`)."""

# scikit-image 0.26 sample images by `skimage.data` function, with the licence its docstring states
# (`skimage/data/README.txt` lists none). Images whose docstring states no licence are not used.
TRAIN_IMAGES = {
    "chelsea": "CC0 (photographer Stefan van der Walt)",
    "rocket": "public domain (SpaceX)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 1.0 (Mikael Häggström, Wikimedia Commons)",
    "immunohistochemistry": "no known copyright restrictions (CMMI)",
    "brick": "CC0 (CC0Textures)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "coins": "no known copyright restrictions (Brooklyn Museum)",
    "text": "no known copyright restrictions, public domain",
    "clock": "public domain (photographer Stefan van der Walt)",
    "cell": "CC0",
}
HELD_OUT_IMAGES = {
    "astronaut": "no known copyright restrictions, public domain (NASA); the source of examples/",
    "coffee": "CC0 (photographer Rachel Michetti)",
    "camera": "CC0 (photographer Lav Varshney)",
}

CROP = 96
"""Side of the training crops: a multiple of every tiny model's `pad_multiple`."""
HOLE_WEIGHT = 1.0
VALID_WEIGHT = 0.5
EDGE_WEIGHT = 1.0
MIN_HOLE_FRACTION = 0.02
MAX_HOLE_FRACTION = 0.5
COLOUR_SHARE = 0.7
"""Share of crops taken from the colour photos (5 of the 12; the rest are grey), so that the
networks learn to carry colour into the hole."""
GREY_PROBABILITY = 0.2
SEPIA_PROBABILITY = 0.2
SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)
"""The usual sepia toning matrix (rows: output R, G, B)."""
WARMUP_STEPS = 50
FINAL_LR_FRACTION = 0.05
BN_CALIBRATION_BATCHES = 16
LOG_EVERY = 100


@dataclass(frozen=True)
class DemoModel:
    """What to train for one bundled model."""

    family: str
    config: Mapping[str, Any]
    steps: int
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
        steps=2400,
        batch_size=8,
        learning_rate=2e-3,
    ),
    "gatedconv-tiny": DemoModel(
        family="gatedconv",
        config={"variant": "pt", "cnum": 16},
        steps=1900,
        batch_size=8,
        learning_rate=2e-3,
        shared_mask=True,
    ),
    "pconv-tiny": DemoModel(
        family="pconv",
        config={"layer_size": 5, "base_channels": 16},
        steps=5000,
        batch_size=8,
        learning_rate=2e-3,
    ),
}


# --- data -------------------------------------------------------------------------------------------


def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample as H×W×3 float32 in [0, 1] (grey replicated)."""
    import skimage.data

    pixels = np.asarray(getattr(skimage.data, name)())
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return pixels[..., :3].astype(np.float32) / 255


def random_crop(photo: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A square region of random position and scale (1 down to 1/4, log-uniform), resized to `size`."""
    height, width = photo.shape[:2]
    largest = min(height, width)
    smallest = min(largest, size)
    side = round(math.exp(rng.uniform(math.log(smallest), math.log(min(largest, 4 * size)))))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    region = photo[top : top + side, left : left + side]
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA) if side != size else region.copy()


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal flip, and sometimes the tone of an old print: grey or sepia."""
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tone = rng.random()
    if tone < GREY_PROBABILITY:
        crop = np.repeat(crop.mean(axis=2, keepdims=True), 3, axis=2)
    elif tone < GREY_PROBABILITY + SEPIA_PROBABILITY:
        crop = np.clip(crop @ SEPIA.T, 0, 1)
    return np.ascontiguousarray(crop)


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


def scratches_and_dust(rng: np.random.Generator, size: int) -> np.ndarray:
    """Old-print damage: thin wandering scratches (1-3 px) and round dust spots (radius 1-4 px)."""
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 5)):
        points = np.cumsum(rng.normal(0, size / 6, (rng.integers(2, 6), 2)), axis=0) + rng.uniform(0, size, 2)
        cv2.polylines(mask, [points.astype(np.int32)], False, 1, int(rng.integers(1, 4)))
    for _ in range(rng.integers(3, 15)):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(mask, centre, int(rng.integers(1, 5)), 1, -1)
    return mask.astype(bool)


MASK_KINDS: tuple[Callable[[np.random.Generator, int], np.ndarray], ...] = (
    brush_strokes,
    thick_lines,
    boxes,
    torn_corner,
    scratches_and_dust,
)
MASK_KIND_WEIGHTS = (0.3, 0.15, 0.15, 0.15, 0.25)


def random_hole(rng: np.random.Generator, size: int) -> np.ndarray:
    """An H×W bool hole (True = hole) of one or two mask kinds, covering 2-50 % of the square."""
    while True:
        count = 1 if rng.random() < 0.7 else 2
        kinds = rng.choice(len(MASK_KINDS), size=count, replace=False, p=MASK_KIND_WEIGHTS)
        hole = np.logical_or.reduce([MASK_KINDS[kind](rng, size) for kind in kinds])
        if MIN_HOLE_FRACTION <= hole.mean() <= MAX_HOLE_FRACTION:
            return hole


def sampling_weights(photos: list[np.ndarray]) -> np.ndarray:
    """Probability of drawing each photo: `COLOUR_SHARE` for the colour ones together."""
    colour = np.array([np.ptp(photo, axis=2).max() > 0 for photo in photos])
    weights = np.where(colour, COLOUR_SHARE / colour.sum(), (1 - COLOUR_SHARE) / (~colour).sum())
    return weights / weights.sum()


def batches(
    photos: list[np.ndarray], rng: np.random.Generator, size: int, batch_size: int, shared_mask: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (N×3×S×S images in [0, 1], N×1×S×S {0, 1} holes)."""
    weights = sampling_weights(photos)
    while True:
        images = [
            augment(random_crop(photos[rng.choice(len(photos), p=weights)], rng, size), rng)
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


def learning_rate_factor(step: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to `FINAL_LR_FRACTION`."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def held_out_batch(seed: int, size: int = CROP, count: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed crops and holes from the held-out photos, for the progress log and the final check."""
    rng = np.random.default_rng(seed)
    photos = [load_photo(name) for name in HELD_OUT_IMAGES]
    crops = [random_crop(photos[i % len(photos)], rng, size) for i in range(count)]
    holes = [random_hole(rng, size) for _ in crops]
    image = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    return image, torch.from_numpy(np.stack(holes)).float()[:, None]


@torch.no_grad()
def hole_l1(network: InpaintModel, image: torch.Tensor, hole: torch.Tensor) -> float:
    prediction = predictions(network, image, hole)[-1].clamp(0, 1)
    return float(((prediction - image).abs().mean(dim=1, keepdim=True) * hole).sum() / hole.sum())


def mean_fill_l1(image: torch.Tensor, hole: torch.Tensor) -> float:
    """Hole L1 of filling each crop's hole with the mean colour of its known pixels."""
    known = 1 - hole
    mean = (image * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True)
    return float(((mean - image).abs().mean(dim=1, keepdim=True) * hole).sum() / hole.sum())


def train(name: str, spec: DemoModel, steps: int, seed: int) -> InpaintModel:
    """Train one demo model; returns the network in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    photos = [load_photo(photo) for photo in TRAIN_IMAGES]
    network = FAMILIES[spec.family].build(spec.config)
    network.prepare_for_training()
    # Channels-last convolutions are about 25 % faster on CPU; the saved tensors are contiguous again.
    network.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=spec.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, steps))
    data = batches(photos, rng, CROP, spec.batch_size, spec.shared_mask)
    check_image, check_hole = held_out_batch(seed + 1)
    parameters = sum(p.numel() for p in network.parameters())
    print(f"{name}: {spec.family} {dict(spec.config)}, {parameters:,} parameters, {steps} steps")
    started = time.perf_counter()
    running = 0.0
    for step in range(steps):
        image, hole = (x.contiguous(memory_format=torch.channels_last) for x in next(data))
        loss = sum(reconstruction_loss(stage, image, hole) for stage in predictions(network, image, hole))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running += loss.item()
        if (step + 1) % LOG_EVERY == 0 or step + 1 == steps:
            network.eval()  # held-out crops must not reach the batch-norm statistics
            check = hole_l1(network, check_image, check_hole)
            network.train()
            count = (step % LOG_EVERY) + 1
            print(
                f"  step {step + 1:5d}  loss {running / count:.4f}  held-out hole L1 {check:.4f}  "
                f"{time.perf_counter() - started:6.0f} s",
                flush=True,
            )
            running = 0.0
    calibrate_batch_norms(network, data)
    network.eval()
    elapsed = time.perf_counter() - started
    print(
        f"  eval mode: held-out hole L1 {hole_l1(network, check_image, check_hole):.4f} "
        f"(mean-colour fill {mean_fill_l1(check_image, check_hole):.4f}), {elapsed:.0f} s"
    )
    return network


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
    image, hole = held_out_batch(seed=0, count=4)
    with torch.no_grad():
        expected = predictions(network, image, hole)[-1]
        difference = (predictions(loaded, image, hole)[-1] - expected).abs().max().item()
    if difference > 1e-4:
        raise RuntimeError(f"{path}: the loaded network differs from the trained one by {difference:.2e}")
    print(f"  wrote {path} ({path.stat().st_size / 1e6:.1f} MB); reloaded output within {difference:.1e}")
    return path


def register(name: str, spec: DemoModel, path: Path) -> None:
    """Record a bundled file in the manifest with its size and SHA-256 (other entries untouched)."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    official = next(entry for entry in manifest["models"].values() if entry["family"] == spec.family)
    manifest["models"][name] = {
        "family": spec.family,
        "variant": "demo",
        "license": LICENSE,
        "paper": official["paper"],
        "homepage": official["homepage"],
        "sources": [
            {
                "url": f"bundled:{path.name}",
                "format": "safetensors",
                "size": path.stat().st_size,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "md5": None,
            }
        ],
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"  registered {name} in {MANIFEST}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", metavar="NAME", help=f"of {', '.join(DEMO_MODELS)} (default: all)"
    )
    parser.add_argument("--steps", type=int, help="override every model's number of steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--register", action="store_true", help="record the files in the shipped manifest")
    args = parser.parse_args()
    unknown = sorted(set(args.models) - set(DEMO_MODELS))
    if unknown:
        parser.error(f"unknown demo model {', '.join(unknown)}; choose from {', '.join(DEMO_MODELS)}")
    torch.set_num_threads(args.threads)
    for name in args.models or DEMO_MODELS:
        spec = DEMO_MODELS[name]
        network = train(name, spec, args.steps or spec.steps, args.seed)
        path = save_and_check(name, spec, network, args.output)
        if args.register:
            register(name, spec, path)


if __name__ == "__main__":
    main()
