"""Train the damage detector `scratch-tiny` on freely licensed photographs with synthetic old-print damage.

The bundled `scratch-tiny.safetensors` is still the earlier network (depth 4, its data listed in its
model card); this recipe's run so far (`SUCCESSOR`) marks more of held-out clean and old prints than
that file and is kept here, with its learning curve, for the next session to continue (`--init`).

The network is BOPBtL's detection U-Net (`inpaint_cli.models.scratch`), 8 stem channels wide and
5 levels deep (2.4 M parameters: the fifth level is cheap at 1/32 of the picture and doubles what a
pixel sees, which tells a crack from an edge), fed RGB so that it sees the colour of foxing and
paper. It runs at the photo's own resolution in the detector's high-res mode.

Data: only public-domain, CC0 and CC-BY photographs (`free_photos.py`: Lomiri's CC-BY/CC0
wallpapers, scikit-image's and matplotlib's sample photographs), and MyPaint's CC0 paper textures
for what damage uncovers; each file's licence and attribution goes into the training record and the
model card. `HELD_OUT` never reaches training (the evaluation uses it), `CALIBRATION` chooses the
best checkpoint and the post-processing. Damage and the old-photo look: `damage.py`.

Loss: binary cross-entropy, thin damage weighted THIN_WEIGHT, the rest of it THICK_WEIGHT. Adam with
cosine decay over the planned total time, one thread. Training is resumable: every CHECK_EVERY steps
the whole state (weights, optimiser, step, time spent, random generators, learning curve) is written
atomically to `<work>/state.pt`; `--resume` continues it, also on another machine (`--device cuda`).
The weights with the best validation score so far are kept as `<work>/best.safetensors`.

    python tools/train_scratch_tiny.py --work ~/det-run --minutes 60          # 60 min of a 180-min plan
    python tools/train_scratch_tiny.py --work ~/det-run --minutes 60 --resume # the next 60
    python tools/train_scratch_tiny.py --configure ~/det-run/best.safetensors --register

`--configure` writes the bundled `inpaint_cli/bundled/scratch-tiny.safetensors` with CONFIG's
calibrated post-processing and `scratch-tiny.json` (the record); `--register` records size and
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from inpaint_cli.checkpoints.containers import read_checkpoint, save_converted
from inpaint_cli.detect.network import tiled_probability
from inpaint_cli.models.scratch import ScratchConfig, ScratchUNet

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts beside this one
import damage
import free_photos
import scoring
from photo_data import load_rgb

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DIR = ROOT / "inpaint_cli" / "bundled"
MANIFEST = ROOT / "inpaint_cli" / "weights_manifest.json"
NAME = "scratch-tiny"
LICENSE = "Apache-2.0"
HELD_OUT = ("picosdeeuropa_by_Aitzol_Berasategi", "sunset_by_Aitzol_Berasategi")
"""Free photographs kept for the evaluation: never trained or tuned on."""
CALIBRATION = ("Picture_1A_by_freespace", "coffee")
"""Free photographs kept out of training: the best checkpoint and the post-processing are chosen on them."""
PORTRAITS = ("astronaut", "camera", "grace_hopper", "chelsea", "friends_by_Aitzol_Berasategi")
PORTRAIT_SHARE = 0.3
KIND_P = np.array([damage.SHARE[kind] for kind in damage.KINDS]) / sum(damage.SHARE.values())
TEXTURES_ONLY = ("brick", "grass", "gravel", "hubble_deep_field", "text")
"""Pictures that are all fine texture: kept clean more often (what must never be called damage)."""
CONFIG = ScratchConfig(in_channels=3, out_channels=1, depth=5, wf=3, threshold=0.5)
"""The architecture; the bundled file's post-processing is chosen by `benchmarks/eval_detectors.py
--calibrate` and written by `--configure` (BUNDLED_POSTPROCESSING)."""
BUNDLED_POSTPROCESSING: dict[str, float | int] = {
    "threshold": 0.3,
    "strong": 0.98,
    "min_length": 160,
    "line_width": 8.0,
    "min_area": 640,
    "max_step_ratio": 0.35,
    "min_surround_contrast": 60.0,
    "with_classical": 1,
}
"""The bundled file's post-processing, chosen by `benchmarks/eval_detectors.py --calibrate --quick` on
the CALIBRATION photos for the weights of step 1,800: among the settings that keep every clean
calibration picture under half the 0.1 % bound (348 of 31,122 tried), the best score (crop F1 0.23;
thin-scratch F1 0 at every setting, on a 3000-px picture of paint brushes whose bristles the network
takes for scratches) with the shape rule on: regions above 0.3 that reach 0.98 somewhere; lines of a
skeleton of 160 px or more and a mean width of at most 8 px kept whatever their area (shorter lines
let clean calibration pictures through; of the widths tied, the widest); other regions
kept from 640 px if their colour differs from a 7-px ring around them by a median of 60 (8-bit Lab);
thin regions dropped where the step across them exceeds 0.35 of their contrast. With the classical
detector's findings added (`with_classical`): on held-out pictures both together beat either alone
(`benchmarks/eval_detectors.py`, the union row), and classical stays quiet on clean photos."""
MAX_SIDE = 2048
CANVAS = 512
"""Damage is drawn on canvases of the held-out crops' size (so tears, corners and cracks have their
held-out proportions) and training crops are cut from them."""
CROP = 192
CROPS_PER_CANVAS = 2
BATCH = 8
CLEAN_FRACTION = 0.35
"""Share of canvases with no damage at all (with a heavier old-photo look): saying nothing."""
SCENE_LINES = 0.35
"""Share of canvases (clean or damaged) whose photograph gets ropes, rigging, wires or striped cloth
(`damage.scene_lines`), not damage: recipe 3 marked the rigging, ropes and light cloth of held-out
pictures, and the free photographs have almost none."""
DAMAGE_CENTRED = 0.7
"""Share of a damaged canvas's crops placed over its thin damage where it has some, over any damage
otherwise (random crops of one were half clean)."""
THIN_WIDTH = 7
"""Damage that an opening with a disk of this diameter (px) removes is thin: scratches, cracks, hair,
dust, torn rims."""
THIN_WEIGHT = 3.0
"""Weight of a thin damaged pixel in the cross-entropy (6 in the first 2,850 steps of recipe 3; 3 since:
in 300-step comparisons it found as much thin damage and marked less of the clean calibration pictures,
and after 2,021 more steps the real old prints stayed under 0.5 %, though more held-out clean photos
went over 0.1 %). Weighting every damaged pixel alike (3x) let the large paper-coloured areas of tears,
corners and lost emulsion (four fifths of the damaged pixels) set the loss: the network learned 'bright
and plain is damage', marked 5-10 % of clean calibration pictures (white cups, windows) and found no
cracks (mean probability 0.02 on them)."""
THICK_WEIGHT = 1.0
"""Weight of the other damaged pixels (the inside of tears, corners, lost emulsion, spots)."""
CHECK_EVERY = 150
VALIDATION_REPEATS = 2
"""Crops per calibration photo and kind (one gave checks that swung by 0.1 from one to the next)."""
LEARNING_RATE = 1e-3
WARMUP_STEPS = 50
SUCCESSOR = ROOT / "tools" / "checkpoints" / "scratch-free-r5-step8785.safetensors"
"""The free-licence run so far (float16 weights, float32 batch-norm statistics; its record and
learning curve beside it): 1,800 steps of recipe 1 (`scratch-free-step1800`), 600 of recipe 2, 2,850
of recipe 3 with thin damage 6x (`scratch-free-r3-step2850.json`), 2,021 with 3x
(`scratch-free-r4-step2021.json`), 8,785 with scene lines on 35 % of canvases (this one); the start of
the next sitting (`--init`)."""


# --- data -------------------------------------------------------------------------------------------


class Crops:
    """Random training crops, synthesised as they are needed in a second thread (80 ms a canvas, two
    canvases' crops a 0.8-2.3 s training step on this CPU: a dataset on disk would save nothing):
    a photo, a window of 0.5-2 canvas sides shrunk or enlarged to the canvas, a turn; the old-photo
    look, damage and a scan (`damage.synthesize`); then crops of the canvas."""

    def __init__(
        self, photos: list[np.ndarray], textured: list[bool], textures: list[np.ndarray], rng, portraits=()
    ) -> None:
        self.photos, self.textured, self.textures, self.rng = photos, textured, textures, rng
        self.portraits = list(portraits)
        """Indices of portraits: drawn more often, since old prints are mostly portraits and their light
        faces and collars are what the network must not take for paper."""

    def canvas(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        portrait = self.portraits and rng.random() < PORTRAIT_SHARE
        index = int(rng.choice(self.portraits)) if portrait else int(rng.integers(len(self.photos)))
        photo = self.photos[index]
        window = min(int(CANVAS * rng.uniform(0.5, 2.0)), *photo.shape[:2])
        y = int(rng.integers(0, photo.shape[0] - window + 1))
        x = int(rng.integers(0, photo.shape[1] - window + 1))
        interpolation = cv2.INTER_AREA if window >= CANVAS else cv2.INTER_CUBIC
        crop = cv2.resize(
            photo[y : y + window, x : x + window], (CANVAS, CANVAS), interpolation=interpolation
        )
        crop = np.rot90(crop, int(rng.integers(4)))
        clean = rng.random() < (0.6 if self.textured[index] else CLEAN_FRACTION)
        count = int(rng.choice([1, 1, 2, 3]))
        kinds = [] if clean else list(rng.choice(damage.KINDS, size=count, replace=False, p=KIND_P))
        lines = rng.random() < SCENE_LINES
        pixels, truths = damage.synthesize(
            np.ascontiguousarray(crop), kinds, rng, self.textures, heavy=clean, lines=lines
        )
        truth = np.zeros((CANVAS, CANVAS), bool)
        for mask in truths.values():
            truth |= mask
        return pixels, truth

    def batch(self, count: int = BATCH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, truths, per-pixel loss weights), each N×C×CROP×CROP."""
        images, truths, weights = [], [], []
        while len(images) < count:
            pixels, truth = self.canvas()
            thin = thin_damage(truth)
            weight = np.where(thin, THIN_WEIGHT, np.where(truth, THICK_WEIGHT, 1.0)).astype(np.float32)
            centres = np.argwhere(thin) if thin.any() else np.argwhere(truth)
            for _ in range(CROPS_PER_CANVAS):
                y, x = self.corner(centres)
                images.append(pixels[y : y + CROP, x : x + CROP])
                truths.append(truth[y : y + CROP, x : x + CROP])
                weights.append(weight[y : y + CROP, x : x + CROP])
        tensors = (torch.from_numpy(np.stack(a[:count])).float()[:, None] for a in (truths, weights))
        return (to_input(np.stack(images[:count])), *tensors)

    def corner(self, damaged: np.ndarray) -> tuple[int, int]:
        """Top-left corner of a crop of the canvas: over a damaged pixel (`damaged`: their positions)
        DAMAGE_CENTRED of the time, anywhere otherwise (a damaged print's undamaged parts)."""
        rng = self.rng
        if len(damaged) and rng.random() < DAMAGE_CENTRED:
            cy, cx = damaged[rng.integers(len(damaged))]
            dy, dx = rng.integers(0, CROP, 2)
            return int(np.clip(cy - dy, 0, CANVAS - CROP)), int(np.clip(cx - dx, 0, CANVAS - CROP))
        y, x = rng.integers(0, CANVAS - CROP + 1, 2)
        return int(y), int(x)


def thin_damage(truth: np.ndarray) -> np.ndarray:
    """The damaged pixels of `truth` that an opening with a THIN_WIDTH disk removes."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (THIN_WIDTH, THIN_WIDTH))
    return truth & ~cv2.morphologyEx(truth.view(np.uint8), cv2.MORPH_OPEN, disk).view(bool)


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """N×H×W×3 uint8 -> N×3×H×W in [-1, 1], as the detector feeds the network."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.5


def load_data(data: Path) -> tuple[list, list, list, list, list, list]:
    """(training pictures, whether each is all texture, paper textures, calibration pictures at 1024 px,
    the per-file licence records of everything trained on, the indices of the portraits)."""
    everything = free_photos.free_photographs(data)
    chosen = [p for p in everything if p.name not in HELD_OUT + CALIBRATION]
    pictures, textured, portraits = [], [], []
    for photo in chosen:
        pixels = load_rgb(photo.file, MAX_SIDE)
        copies = [pixels]
        if min(pixels.shape[:2]) >= 2 * CANVAS:  # a second scale: the same damage widths over more content
            copies.append(cv2.resize(pixels, (pixels.shape[1] // 2, pixels.shape[0] // 2), cv2.INTER_AREA))
        pictures += copies
        textured += [photo.name in TEXTURES_ONLY] * len(copies)
        portraits += [photo.name in PORTRAITS] * len(copies)
    papers = free_photos.paper_textures(data)
    textures = damage.load_textures([p.file for p in papers])
    calibration = [load_rgb(p.file, 1024) for p in everything if p.name in CALIBRATION]
    records = [p.record() for p in chosen] + [p.record() for p in papers]
    return pictures, textured, textures, calibration, records, list(np.flatnonzero(portraits))


# --- training ---------------------------------------------------------------------------------------


def loss_of(logits: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy weighted per pixel (`Crops.batch`). No soft Dice over the batch any more: it was
    0.83 of a 0.95 loss that hardly moved, its overlap set by the large regions as well, and without
    it the same 300 steps marked less of the clean calibration pictures (3.6 % against 4.9 %)."""
    return F.binary_cross_entropy_with_logits(logits.float(), truth, weight=weight)


def validation_set(calibration: list[np.ndarray], textures: list[np.ndarray], seed: int) -> dict:
    """Pictures of the calibration photos, as the held-out evaluation makes them: a 512-px crop per
    photo and kind of damage, and the photos clean (plain, with a heavy old-photo look, and with
    ropes, wires or striped cloth in them)."""
    photos = dict(enumerate(calibration))
    damaged = list(scoring.damaged_crops(photos, VALIDATION_REPEATS, seed + 1, textures))
    rng = np.random.default_rng(seed + 2)
    clean = [p for p in calibration] + [
        damage.scan(damage.age(p.astype(np.float32) / 255, rng, textures, heavy=True), rng)
        for p in calibration
    ]
    clean += [damage.synthesize(p, [], rng, textures, lines=True)[0] for p in calibration]
    return {"damaged": damaged, "clean": clean}


VALIDATION_THRESHOLDS = (0.3, 0.5, 0.7)


@torch.no_grad()
def validate(network: ScratchUNet, samples: dict) -> dict:
    """Raw network (no post-processing) on the validation pictures: tolerant F1 over all damaged crops
    and per kind at each of VALIDATION_THRESHOLDS, the largest area marked on a clean picture."""
    network.eval()
    counts = {t: scoring.Counts() for t in VALIDATION_THRESHOLDS}
    kinds: dict[str, scoring.Counts] = {}
    for kind, pixels, truth in samples["damaged"]:
        probability = tiled_probability(network, pixels)
        for t, c in counts.items():
            c.add(probability >= t, truth)
        kinds.setdefault(kind, scoring.Counts()).add(probability >= 0.5, truth)
    clean = [tiled_probability(network, pixels) for pixels in samples["clean"]]
    network.train()
    return {
        "f1": {str(t): round(c.f1, 4) for t, c in counts.items()},
        "kinds": {kind: round(c.f1, 4) for kind, c in kinds.items()},
        "clean": {
            str(t): round(max(float((p >= t).mean()) for p in clean), 5) for t in VALIDATION_THRESHOLDS
        },
    }


def save_weights(path: Path, state: dict) -> Path:
    return save_converted(
        path, state, family="scratch", variant="tiny", config=CONFIG.to_json(), license=LICENSE
    )


def save_state(path: Path, state: dict) -> None:
    """Atomically: a crash while writing leaves the previous state."""
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


@dataclass(frozen=True)
class Sitting:
    """One sitting of a run: `minutes` of wall time within a cosine schedule planned over `total`
    minutes, continuing `<work>/state.pt` if `resume`; `note` says what changed in the recipe."""

    minutes: float
    total: float
    seed: int
    resume: bool
    device: str
    note: str = ""


def train(init: Path | None, work: Path, sitting: Sitting, log: Callable[[str], None]) -> dict:
    """Train for one sitting; the record of the run so far."""
    total, seed, device = sitting.total, sitting.seed, sitting.device
    pictures, textured, textures, calibration, records, portraits = load_data(DATA)
    log(f"{len(pictures)} training pictures; held out {', '.join(HELD_OUT + CALIBRATION)}")
    network = ScratchUNet(CONFIG).to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    state = {"step": 0, "seconds": 0.0, "curve": [], "best_score": -1.0, "best_step": 0}
    state_file = work / "state.pt"
    if init is not None:
        network.load_state_dict({k: v.float() for k, v in read_checkpoint(init).state_dict.items()})
        state["init"] = init.name
    if sitting.resume:
        saved = torch.load(state_file, map_location=device, weights_only=False)  # our own file
        network.load_state_dict(saved["network"])
        optimiser.load_state_dict(saved["optimiser"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        state = saved["progress"]
    state["total_minutes"] = total
    if reset_overflowed_statistics(network):
        log("batch-norm running statistics that were not finite reset (they are measured again)")
    if sitting.note:
        state.setdefault("notes", []).append({"step": state["step"], "note": sitting.note})
    samples = validation_set(calibration, textures, seed)
    crops = Crops(pictures, textured, textures, rng, portraits)
    deadline = time.monotonic() + sitting.minutes * 60
    started, spent, losses = time.monotonic(), state["seconds"], []
    network.train()
    # The next batch is synthesised in a second thread while the network trains on this one (OpenCV and
    # NumPy release the GIL): 0.3 s of synthesis a step off the critical path.
    pool = ThreadPoolExecutor(1)
    pending = pool.submit(crops.batch)
    while time.monotonic() < deadline:
        progress = min(1.0, (spent + time.monotonic() - started) / (total * 60))
        warm = min(1.0, (state["step"] + 1) / WARMUP_STEPS)
        for group in optimiser.param_groups:
            group["lr"] = warm * LEARNING_RATE * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
        x, y, w = pending.result()
        pending = pool.submit(crops.batch)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=BF16):
            logits = network(x.to(device).contiguous(memory_format=torch.channels_last))
        loss = loss_of(logits, y.to(device), w.to(device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        state["step"] += 1
        if state["step"] % CHECK_EVERY == 0:
            pending.result()  # the generators are saved with the state: not while one draws
            state["seconds"] = spent + time.monotonic() - started
            check(network, optimiser, rng, state, samples, float(np.mean(losses)), work, log)
            write_record(work, state, seed, records)
            losses = []
    if state["step"] % CHECK_EVERY:  # the sitting's last steps: saved too, so that --resume loses none
        pending.result()
        state["seconds"] = spent + time.monotonic() - started
        check(network, optimiser, rng, state, samples, float(np.mean(losses)), work, log)
    pool.shutdown(cancel_futures=True)
    return write_record(work, state, seed, records)


def reset_overflowed_statistics(network: ScratchUNet) -> bool:
    """Reset batch norms whose running variance is not finite. The first free-licence run's float16
    file stored variances over 65,504 (the decoder's, fed by an unnormalised up-convolution) as
    infinity, which no momentum update undoes: in evaluation those channels were silenced."""
    found = False
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d) and not torch.isfinite(module.running_var).all():
            module.reset_running_stats()
            found = True
    return found


def half_weights(network: ScratchUNet) -> dict[str, torch.Tensor]:
    """The state dict with weights in float16 and batch-norm running statistics in float32 (decoder
    variances exceed float16's range)."""
    return {
        key: value.half() if value.is_floating_point() and "running_" not in key else value
        for key, value in network.state_dict().items()
    }


BF16 = True
"""bfloat16 autocast (weights and optimiser stay float32): 2.3 s a step of 8 crops of 192 px against
2.9 s in float32 (both channels-last, 2 threads of a shared AMD EPYC Zen 4 with avx512_bf16)."""
CLEAN_LIMIT = 0.005
"""A check whose network marks more than this share of a clean validation picture at 0.5 is not
taken as the best (post-processing is calibrated for under 0.1 %, from raw maps near it)."""


def check(network, optimiser, rng, state: dict, samples: dict, loss: float, work: Path, log) -> None:
    """Validate, add a point to the learning curve, keep a float16 snapshot and the resumable state."""
    scores = validate(network, samples)
    point = {
        "step": state["step"],
        "minutes": round(state["seconds"] / 60, 1),
        "loss": round(loss, 4),
        **scores,
    }
    state["curve"].append(point)
    score = scores["f1"]["0.5"] - (1.0 if scores["clean"]["0.5"] > CLEAN_LIMIT else 0.0)
    weights = half_weights(network)
    save_weights(work / f"step-{state['step']:06d}.safetensors", weights)
    if score > state["best_score"]:
        state["best_score"], state["best_step"] = score, state["step"]
        save_weights(work / "best.safetensors", weights)
    save_state(
        work / "state.pt",
        {
            "network": network.state_dict(),
            "optimiser": optimiser.state_dict(),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "progress": state,
        },
    )
    log(json.dumps(point))


def write_record(work: Path, state: dict, seed: int, records: list) -> dict:
    """`<work>/record.json`: the run so far (steps, time, learning curve, every picture's licence),
    written at every check so that a run stopped at any moment has one."""
    record = {
        "steps": state["step"],
        "minutes": round(state["seconds"] / 60, 1),
        "best_step": state["best_step"],
        "init": state.get("init"),
        "seed": seed,
        "canvas": CANVAS,
        "crop": CROP,
        "batch": BATCH,
        "learning_rate": LEARNING_RATE,
        "loss": "weighted cross-entropy",
        "validation_repeats": VALIDATION_REPEATS,
        "thin_weight": THIN_WEIGHT,
        "thick_weight": THICK_WEIGHT,
        "damage_centred": DAMAGE_CENTRED,
        "clean_fraction": CLEAN_FRACTION,
        "scene_lines": SCENE_LINES,
        "bf16": BF16,
        "planned_minutes": state["total_minutes"],
        "notes": state.get("notes", []),
        "curve": state["curve"],
        "held_out": list(HELD_OUT),
        "calibration": list(CALIBRATION),
        "images": records,
    }
    (work / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


# --- the bundled file ---------------------------------------------------------------------------------


def register(path: Path) -> None:
    """Record the file's size, tensor values and SHA-256 in the manifest's `scratch-tiny` entry."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        values = sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())  # noqa: SIM118
    manifest = json.loads(MANIFEST.read_text())
    entry = manifest["models"][NAME]
    entry["parameters"] = values
    entry["sources"] = [
        {
            "url": f"bundled:{path.name}",
            "format": "safetensors",
            "size": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    ]
    MANIFEST.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def configure(source: Path, output: Path, register_it: bool) -> None:
    """The trained weights `source` (beside its run's record.json) as the bundled file, with the
    calibrated post-processing, and its training record."""
    record = json.loads((source.parent / "record.json").read_text())
    config = ScratchConfig.from_json({**CONFIG.to_json(), **BUNDLED_POSTPROCESSING})
    state = read_checkpoint(source).state_dict
    output.mkdir(parents=True, exist_ok=True)
    path = save_converted(
        output / f"{NAME}.safetensors",
        state,
        family="scratch",
        variant="tiny",
        config=config.to_json(),
        license=LICENSE,
    )
    record["config"] = config.to_json()
    record["weights"] = source.name
    (output / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path} with {config.to_json()}", flush=True)
    if register_it:
        register(path)


DATA = free_photos.DEFAULT_DATA


def main() -> None:
    global DATA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path.home() / "scratch-tiny-run", help="state, snapshots, record"
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="training time of this sitting")
    parser.add_argument(
        "--total-minutes", type=float, default=180.0, help="length of the learning-rate schedule"
    )
    parser.add_argument("--resume", action="store_true", help="continue <work>/state.pt")
    parser.add_argument(
        "--init", type=Path, help="start from these weights (a fresh optimiser), e.g. " + str(SUCCESSOR)
    )
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--note", default="", help="what changed in the recipe from here (in the record)")
    parser.add_argument("--data", type=Path, default=free_photos.DEFAULT_DATA, help="where packages unpack")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--configure", type=Path, help="no training: bundle these weights with the calibrated settings"
    )
    parser.add_argument("--output", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--register", action="store_true", help="with --configure: record it in the manifest")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    DATA = args.data
    if args.configure is not None:
        configure(args.configure, args.output, args.register)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    record = train(
        args.init,
        args.work,
        Sitting(args.minutes, args.total_minutes, args.seed, args.resume, args.device, args.note),
        lambda s: print(s, flush=True),
    )
    print(f"{record['steps']} steps, best check at step {record['best_step']}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
