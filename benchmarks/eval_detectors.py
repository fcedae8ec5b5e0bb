"""Evaluate the damage detectors on held-out photographs with held-out synthetic damage; print tables.

Held out (never trained or tuned on): the free photographs `tools/train_scratch_tiny.py` holds out
and six of Debian's Plasma wallpapers (`PLASMA_TEST`; their LGPL/CC-BY-SA licences allow this
evaluation, and neither the current nor the earlier scratch-tiny trained on them); real old prints
without damage: BOPBtL's `test_images/old/` (`--old DIR`, from a checkout of
microsoft/Bringing-Old-Photos-Back-to-Life). Damage: `tools/damage.py` with seeds far from training.

1. Per damage kind, on 512-px crops of the photos at 1024 px (working resolution): precision, recall
   and F1 with a 2-px tolerance at boundaries (a detected pixel within 2 px of damage is right, a
   damaged pixel within 2 px of a detection is found), summed over all crops of the kind.
2. Clean pictures: the area marked on plain, grainy, sepia and faded versions of the photos and on
   the real old prints (the bound is 0.1 %).
3. Thin scratches (1-5 px) on 3000-6000 px scans, with the same tolerance, and the time taken.

`--calibrate` instead chooses scratch-tiny's post-processing on the CALIBRATION photos only: the
network runs once per picture, each (threshold, hysteresis) measures its regions once, and every
other setting is a lookup. Score: F1 on damaged crops + F1 on thin scratches of a 3000-px picture;
kept only where every clean calibration picture stays under half the 0.1 % bound (with
`--scene-lines` also the photos with ropes, wires or striped cloth drawn in).

    python benchmarks/eval_detectors.py [--tiny FILE] [--old DIR] [--quick] [--json OUT]
    python benchmarks/eval_detectors.py --calibrate [--scene-lines] [--tiny FILE] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from inpaint_cli.detect.classical import ClassicalDetector, step_ratio
from inpaint_cli.detect.network import (
    EDGE_ELEMENT,
    EDGE_ELONGATION,
    Mode,
    NetworkDetector,
    Shapes,
    edge_context,
    scaled_min_area,
    surround_contrast,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import damage  # noqa: E402  (scripts beside the package, not modules of it)
import free_photos  # noqa: E402
import train_scratch_tiny as T  # noqa: E402
from photo_data import fetch_wallpapers, list_wallpapers, load_rgb  # noqa: E402
from scoring import TOLERANCE, Counts, damaged_crops  # noqa: E402

TINY = ROOT / "inpaint_cli" / "bundled" / "scratch-tiny.safetensors"
PLASMA_TEST = ("Path", "Kite", "ColorfulCups", "MilkyWay", "Volna", "Shell")
PLASMA_DATA = Path.home() / ".cache" / "inpaint-train" / "wallpapers"
EVAL_SEED = 1_000_003
CLEAN_BOUND = 0.001
CLEAN_MARGIN = 0.0005
"""Calibrated settings keep every clean calibration picture under half the 0.1 % bound."""


# --- pictures ---------------------------------------------------------------------------------------


def free_pictures(names: tuple[str, ...], max_side: int | None) -> dict[str, np.ndarray]:
    photos = {p.name: p for p in free_photos.free_photographs()}
    return {name: load_rgb(photos[name].file, max_side) for name in names}


def test_photos(max_side: int | None) -> dict[str, np.ndarray]:
    """The held-out photographs: the free ones training holds out and Plasma's test wallpapers."""
    photos = free_pictures(T.HELD_OUT, max_side)
    wallpapers = {w["name"]: w for w in list_wallpapers(fetch_wallpapers(PLASMA_DATA))}
    photos.update({name: load_rgb(wallpapers[name]["file"], max_side) for name in PLASMA_TEST})
    return photos


def textures() -> list[np.ndarray]:
    return damage.load_textures([p.file for p in free_photos.paper_textures()])


def clean_variants(
    photo: np.ndarray, rng: np.random.Generator, papers: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """Plain, grainy, sepia and faded (the old-photo look at random, no damage) versions of a photo."""
    image = photo.astype(np.float32) / 255
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    sepia = np.clip(grey[..., None] * np.array([1.0, 0.87, 0.68], np.float32), 0, 1)
    grainy = np.clip(image + rng.normal(0, 0.04, (*image.shape[:2], 1)).astype(np.float32), 0, 1)
    faded = damage.scan(damage.age(image, rng, papers), rng)
    return {
        "plain": photo,
        "grainy": np.round(grainy * 255).astype(np.uint8),
        "sepia": np.round(sepia * 255).astype(np.uint8),
        "faded": faded,
    }


def old_prints(folder: Path | None) -> dict[str, np.ndarray]:
    """BOPBtL's undamaged old prints (RGBA ones on white, as `inpaint` reads them)."""
    if folder is None:
        return {}
    found = {}
    for path in sorted(folder.glob("*.png")):
        picture = cv2.imread(str(path), cv2.IMREAD_COLOR)
        found[f"old/{path.name}"] = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
    return found


def thin_picture(
    photo: np.ndarray, side: int, rng: np.random.Generator, papers
) -> tuple[np.ndarray, np.ndarray]:
    """`photo` at `side` px on its long side, aged, with thin light and dark scratches (1-5 px)."""
    scale = side / max(photo.shape[:2])
    size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    image = damage.age(
        cv2.resize(photo, size, interpolation=interpolation).astype(np.float32) / 255, rng, papers
    )
    truth = np.zeros(image.shape[:2], bool)
    for kind in ("scratch_light", "scratch_dark"):
        image, mask = damage.add_damage(image, kind, rng, papers)
        truth |= mask
    return damage.scan(image, rng), truth


# --- the tables -------------------------------------------------------------------------------------


def detectors(tiny: Path, before: Path | None) -> dict[str, object]:
    found: dict[str, object] = {"classical": ClassicalDetector()}
    if before is not None:
        found["scratch-tiny before"] = NetworkDetector.from_file(before, "scratch-tiny before")
    found["scratch-tiny"] = NetworkDetector.from_file(tiny, "scratch-tiny")
    return found


UNION = "classical ∪ scratch-tiny"
"""Both detectors together: what either finds."""


def masks_of(
    found: dict, pixels: np.ndarray, seconds: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Each detector's mask, and with classical and scratch-tiny both present, their union;
    `seconds` adds up each one's time."""
    seconds = {} if seconds is None else seconds
    masks = {}
    for name, detector in found.items():
        started = time.perf_counter()
        masks[name] = detector.detect(pixels, Mode.HIGH_RES).mask
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
    if "classical" in masks and "scratch-tiny" in masks:
        masks[UNION] = masks["classical"] | masks["scratch-tiny"]
        seconds[UNION] = seconds["classical"] + seconds["scratch-tiny"]
    return masks


def per_kind(photos, found, repeats: int, papers) -> dict[str, dict[str, Counts]]:
    table: dict[str, dict[str, Counts]] = {}
    for kind, pixels, truth in damaged_crops(photos, repeats, EVAL_SEED, papers):
        for name, mask in masks_of(found, pixels).items():
            table.setdefault(name, {k: Counts() for k in damage.KINDS})[kind].add(mask, truth)
    return table


def print_per_kind(table: dict[str, dict[str, Counts]]) -> dict:
    names = list(table)
    print("\n## Per damage kind, 512-px crops (P / R / F1, 2-px tolerance)\n")
    print("| kind | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for kind in damage.KINDS:
        print(f"| {kind} | " + " | ".join(table[name][kind].row() for name in names) + " |")
    overall = {}
    for name in names:
        overall[name] = Counts()
        for counts in table[name].values():
            overall[name].merge(counts)
    print("| **overall** | " + " | ".join(overall[name].row() for name in names) + " |", flush=True)
    return {
        name: {**{kind: c.as_json() for kind, c in table[name].items()}, "overall": overall[name].as_json()}
        for name in names
    }


def clean_area(pictures: dict[str, np.ndarray], found) -> dict:
    names = list(masks_of(found, np.zeros((64, 64, 3), np.uint8)))
    print("\n## Clean pictures: area marked (the bound is 0.1 %)\n")
    print("| picture | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    areas: dict[str, list[float]] = {name: [] for name in names}
    for label, pixels in pictures.items():
        cells = []
        for name, mask in masks_of(found, pixels).items():
            fraction = float(mask.mean())
            areas[name].append(fraction)
            cells.append(f"{fraction:.3%}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    summary = {}
    for name in names:
        values = np.array(areas[name])
        summary[name] = {
            "pictures": len(values),
            "marked": int((values > 0).sum()),
            "over_bound": int((values > CLEAN_BOUND).sum()),
            "over_half_percent": int((values > 0.005).sum()),
            "mean": float(values.mean()),
            "largest": float(values.max()),
        }
        counted = summary[name]
        print(
            f"{name}: {counted['marked']} of {len(values)} marked, {counted['over_bound']} over 0.1 %, "
            f"{counted['over_half_percent']} over 0.5 %, mean {values.mean():.3%}, largest {values.max():.3%}"
        )
    return summary


def thin_scratches(photos: dict[str, np.ndarray], found, sides: tuple[int, ...], papers) -> dict:
    print("\n## Thin scratches (1-5 px) on large scans (P / R / F1, 2-px tolerance; seconds)\n")
    rng = np.random.default_rng(EVAL_SEED + 2)
    counts: dict[str, Counts] = {}
    seconds: dict[str, float] = {}
    for side, (label, photo) in zip(sides, photos.items(), strict=False):
        pixels, truth = thin_picture(photo, side, rng, papers)
        print(f"{label} at {pixels.shape[1]}x{pixels.shape[0]}: {truth.mean():.3%} scratched", flush=True)
        for name, mask in masks_of(found, pixels, seconds).items():
            counts.setdefault(name, Counts()).add(mask, truth)
    print("\n| detector | P / R / F1 | seconds |\n|---|---|---|")
    for name in counts:
        print(f"| {name} | {counts[name].row()} | {seconds[name]:.0f} |")
    return {name: {**counts[name].as_json(), "seconds": round(seconds[name], 1)} for name in counts}


# --- calibration (on CALIBRATION photos only) ----------------------------------------------------------

GRID = {
    "threshold": (0.3, 0.45, 0.6, 0.75),
    "strong": (0.6, 0.8, 0.9, 0.95, 0.98),
    "min_length": (0, 20, 40, 80, 160),
    "line_width": (3.0, 5.0, 8.0),
    "min_area": (8, 40, 120, 320, 640, 1280, 4000),
    "max_step_ratio": (0.0, 0.35, 0.6),
    "min_surround_contrast": (0.0, 10.0, 20.0, 30.0, 45.0, 60.0),
}
"""Post-processing settings `--calibrate` tries (0 = that check off; min_length 0: area rule only)."""


@dataclasses.dataclass
class Regions:
    """The hysteresis regions of one picture at one (threshold, strong), measured once."""

    area: np.ndarray
    length: np.ndarray
    elongated: np.ndarray
    step: np.ndarray
    surround: np.ndarray
    right: np.ndarray
    """Pixels of each region within the tolerance of damage."""
    hit: np.ndarray | None
    """Per damaged pixel near some region, which region (index into the arrays above), -1 if none."""
    truth: int


def measure(probability, image, context, threshold: float, strong: float, truth) -> Regions:
    shapes = Shapes.of(probability >= np.float32(threshold))
    keep = shapes.holding(probability >= np.float32(strong))
    keep[0] = False
    stats = shapes.stats
    diagonal = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    elongated = diagonal**2 / np.maximum(shapes.area, 1) >= EDGE_ELONGATION
    step = np.zeros(shapes.count)
    if (keep & elongated).any():
        step = step_ratio(shapes.labels, shapes.count, keep & elongated, *context, EDGE_ELEMENT)
    # Both rules' compact regions are measured: the shape rule's and the elongation rule's.
    surround = surround_contrast(image, shapes.labels, stats, keep)
    index = np.flatnonzero(keep)
    remap = np.full(shapes.count, -1)
    remap[index] = np.arange(len(index))
    right = np.zeros(len(index), np.int64)
    hit = None
    total = 0
    if truth is not None:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * TOLERANCE + 1,) * 2)
        near_truth = cv2.dilate(truth.view(np.uint8), disk).view(bool)
        right = np.bincount(shapes.labels[near_truth], minlength=shapes.count)[index]
        # Each damaged pixel is credited to the largest region label within the tolerance (a max filter).
        labels = np.where(keep[shapes.labels], remap[shapes.labels] + 1, 0).astype(np.float32)
        hit = (cv2.dilate(labels, disk)[truth] - 1).astype(np.int64)
        total = int(truth.sum())
    return Regions(
        shapes.area[index],
        shapes.length[index],
        elongated[index],
        step[index],
        surround[index],
        right,
        hit,
        total,
    )


def kept(regions: Regions, settings: dict, short_side: int) -> np.ndarray:
    """Which regions survive `settings` (as `NetworkDetector.judge` decides)."""
    min_area = scaled_min_area(settings["min_area"], (short_side,) * 2, 0)
    if settings["min_length"]:
        line = (regions.length >= settings["min_length"]) & (
            regions.area / np.maximum(regions.length, 1) <= settings["line_width"]
        )
    else:
        line = np.zeros(len(regions.area), bool)
    keep = line | (regions.area >= min_area)
    if settings["max_step_ratio"]:
        keep &= ~(regions.elongated & (regions.step > settings["max_step_ratio"]))
    if settings["min_surround_contrast"]:
        compact = ~line if settings["min_length"] else ~regions.elongated
        keep &= ~(compact & (regions.surround < settings["min_surround_contrast"]))
    return keep


def score(entries, settings: dict) -> float:
    counts = Counts()
    for regions, short_side in entries:
        keep = kept(regions, settings, short_side)
        counts.right += int(regions.right[keep].sum())
        counts.found += int(regions.area[keep].sum())
        counts.hit += int(np.count_nonzero(keep[regions.hit[regions.hit >= 0]]))
        counts.truth += regions.truth
    return counts.f1


def calibrate(
    tiny: NetworkDetector, papers, repeats: int = 2, scene_lines: bool = False
) -> list[tuple[dict, float, float]]:
    """Every post-processing setting of GRID scored on the calibration photos: (settings, score,
    largest area marked on a clean picture), best first. `scene_lines`: the clean pictures include
    the photos with ropes, wires or striped cloth drawn in (`damage.scene_lines`), twice each."""
    photos = free_pictures(T.CALIBRATION, 1024)
    rng = np.random.default_rng(EVAL_SEED + 11)
    crops = damaged_crops(photos, repeats, EVAL_SEED + 10, papers)
    groups = {
        "f1": [(pixels, truth) for _, pixels, truth in crops],
        "thin_f1": [
            thin_picture(photo, 3000, rng, papers)
            for photo in free_pictures(T.CALIBRATION[:1], None).values()
        ],
        "clean": [
            (v, None) for photo in photos.values() for v in clean_variants(photo, rng, papers).values()
        ],
    }
    groups["clean"] += [
        (damage.scan(damage.age(p.astype(np.float32) / 255, rng, papers, heavy=True), rng), None)
        for p in photos.values()
    ]
    if scene_lines:  # lines a photograph has, which a scratch rule must leave
        groups["clean"] += [
            (damage.synthesize(p, [], rng, papers, lines=True)[0], None)
            for p in photos.values()
            for _ in range(2)
        ]
    maps = {
        group: [
            (tiny.probability(pixels, Mode.HIGH_RES), pixels, edge_context(pixels), truth)
            for pixels, truth in pictures
        ]
        for group, pictures in groups.items()
    }
    print("probability maps ready", flush=True)
    results = []
    others = {k: v for k, v in GRID.items() if k not in ("threshold", "strong")}
    for threshold, strong in itertools.product(GRID["threshold"], GRID["strong"]):
        if strong < threshold:
            continue
        measured = {
            group: [
                (measure(p, image, context, threshold, strong, truth), min(p.shape))
                for p, image, context, truth in entries
            ]
            for group, entries in maps.items()
        }
        for values in itertools.product(*others.values()):
            settings = {"threshold": threshold, "strong": strong, **dict(zip(others, values, strict=True))}
            if not settings["min_length"] and settings["line_width"] != GRID["line_width"][0]:
                continue
            scores = {group: round(score(measured[group], settings), 4) for group in ("f1", "thin_f1")}
            sizes = [p.size for p, *_ in maps["clean"]]
            worst = max(
                regions.area[kept(regions, settings, side)].sum() / size
                for (regions, side), size in zip(measured["clean"], sizes, strict=True)
            )
            results.append(({**settings, **scores}, sum(scores.values()), float(worst)))
        print(f"threshold {threshold} strong {strong} measured", flush=True)
    results.sort(key=lambda r: (r[2] < CLEAN_MARGIN, r[1] if r[2] < CLEAN_MARGIN else -r[2]), reverse=True)
    for settings, total, worst in results[:8]:
        print(f"{settings}: score {total:.3f}, largest clean area {worst:.3%}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", type=Path, default=TINY, help="scratch-tiny weights to evaluate")
    parser.add_argument("--before", type=Path, help="earlier scratch-tiny weights, a column of their own")
    parser.add_argument("--old", type=Path, help="BOPBtL's test_images/old/ folder (real undamaged prints)")
    parser.add_argument("--quick", action="store_true", help="one repeat, one large scan")
    parser.add_argument(
        "--calibrate", action="store_true", help="choose post-processing on the calibration photos"
    )
    parser.add_argument(
        "--scene-lines", action="store_true", help="with --calibrate: clean pictures with ropes and wires too"
    )
    parser.add_argument("--skip", nargs="*", default=[], help="detectors to leave out (e.g. classical)")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument("--sides", nargs="*", type=int, help="long sides of the large scans (3000 4500 6000)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    papers = textures()
    if args.calibrate:
        detector = NetworkDetector.from_file(args.tiny, "scratch-tiny")
        results = calibrate(detector, papers, 1 if args.quick else 2, args.scene_lines)
        if args.json:
            rows = [{**settings, "score": total, "clean": worst} for settings, total, worst in results]
            args.json.write_text(json.dumps(rows) + "\n")
        return
    found = {k: v for k, v in detectors(args.tiny, args.before).items() if k not in args.skip}
    photos = test_photos(1024)
    print(f"held-out photos: {', '.join(photos)}; detectors: {', '.join(found)}", flush=True)
    numbers = {"per_kind": print_per_kind(per_kind(photos, found, 1 if args.quick else 2, papers))}
    rng = np.random.default_rng(EVAL_SEED + 1)
    clean = {
        f"{name} ({variant})": pixels
        for name, photo in photos.items()
        for variant, pixels in clean_variants(photo, rng, papers).items()
    }
    clean.update(old_prints(args.old))
    numbers["clean"] = clean_area(clean, found)
    large = test_photos(None)
    sides = tuple(args.sides or ((3000,) if args.quick else (3000, 4500, 6000)))
    numbers["thin_large"] = thin_scratches(
        {k: large[k] for k in ("Volna", "Shell", "Path")}, found, sides, papers
    )
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")


if __name__ == "__main__":
    main()
