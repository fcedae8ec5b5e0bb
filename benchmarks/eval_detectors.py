"""Evaluate the damage detectors on held-out photos with held-out synthetic damage; print the tables.

Photos: the wallpapers `tools/train_scratch_tiny.py` holds out (never trained on), fetched the same
way (Debian's plasma-workspace-wallpapers). Damage: the training generator with other seeds.

1. Per damage kind: pixel precision, recall, F1 and IoU against the ground truth (summed over all
   images of the kind), for `classical`, `scratch-tiny` and the BOPBtL architecture with the small
   fixture weights (random weights: a sanity floor, not the published detector).
2. Clean photos (plain, grainy, sepia): the detected area per photo (the bound is 0.1 %).
3. Thin scratches (1-3 px) on 3000-6000 px pictures: official scale vs high-res.

`--calibrate` instead chooses post-processing settings on the CALIBRATION photos (never the test
photos above): for scratch-tiny the threshold, hysteresis level, minimum region and the short side
below which it shrinks, edge check and surround check, scored by F1 on damaged crops plus F1 on
thin scratches over a 3000-px calibration picture plus F1 on small prints (256 and 384 px) made from
the same photos; for classical the threshold and the largest step across a defect. The best score
among the settings whose clean pictures (plain, grainy, sepia; photos and small prints) all stay
under half the 0.1 % bound. `--candidates` runs
it for several scratch-tiny weights (training snapshots), `--results` keeps every setting's scores.

    python benchmarks/eval_detectors.py [--data DIR] [--quick] [--calibrate] [--tiny FILE]
        [--candidates FILE ...] [--results FILE.jsonl]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
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
    edge_context,
    scaled_min_area,
    surround_contrast,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "scratch" / "small_detection.pt"
TINY = ROOT / "inpaint_cli" / "bundled" / "scratch-tiny.safetensors"
EVAL_SEED = 1_000_003
"""Damage seeds far from the training seed."""
CROP = 512


def _training_module():
    spec = importlib.util.spec_from_file_location(
        "train_scratch_tiny", ROOT / "tools" / "train_scratch_tiny.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


T = _training_module()


class Counts:
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def add(self, found: np.ndarray, truth: np.ndarray) -> None:
        self.tp += int(np.count_nonzero(found & truth))
        self.fp += int(np.count_nonzero(found & ~truth))
        self.fn += int(np.count_nonzero(~found & truth))

    def row(self) -> str:
        precision = self.tp / max(self.tp + self.fp, 1)
        recall = self.tp / max(self.tp + self.fn, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        iou = self.tp / max(self.tp + self.fp + self.fn, 1)
        return f"{precision:5.2f} {recall:5.2f} {f1:5.2f} {iou:5.2f}"

    @property
    def f1(self) -> float:
        precision = self.tp / max(self.tp + self.fp, 1)
        recall = self.tp / max(self.tp + self.fn, 1)
        return 2 * precision * recall / max(precision + recall, 1e-9)


def detectors(tiny_file: Path = TINY) -> dict[str, tuple[object, Mode]]:
    found: dict[str, tuple[object, Mode]] = {"classical": (ClassicalDetector(), Mode.HIGH_RES)}
    if tiny_file.is_file():
        tiny = NetworkDetector.from_file(tiny_file, "scratch-tiny")
        found["scratch-tiny"] = (tiny, Mode.HIGH_RES)
    small = NetworkDetector.from_file(FIXTURE, "bopbtl-arch (fixture weights)")
    found["bopbtl-arch full_size"] = (small, Mode.FULL_SIZE)
    found["bopbtl-arch high-res"] = (small, Mode.HIGH_RES)
    return found


def held_out_photos(
    data: Path, max_side: int | None, names: tuple[str, ...] = T.HELD_OUT
) -> dict[str, np.ndarray]:
    wallpapers = {w["name"]: w for w in T.list_wallpapers(T.fetch_wallpapers(data))}
    return {name: T.load_rgb(wallpapers[name]["file"], max_side) for name in names if name in wallpapers}


def damaged_crops(photos: dict[str, np.ndarray], repeats: int, seed: int):
    """(kind, damaged crop, truth) for each photo, kind and repeat; each crop carries one kind."""
    rng = np.random.default_rng(seed)
    for photo in photos.values():
        for kind in T.KINDS:
            for _ in range(repeats):
                y = rng.integers(0, photo.shape[0] - CROP + 1)
                x = rng.integers(0, photo.shape[1] - CROP + 1)
                crop = np.ascontiguousarray(photo[y : y + CROP, x : x + CROP])
                damaged, truths = T.synthesize(crop, [kind], rng)
                yield kind, damaged, truths[kind]


def per_kind(photos: dict[str, np.ndarray], found: dict, repeats: int) -> dict[str, dict[str, Counts]]:
    """Counts per detector and kind; each image carries one kind of damage."""
    table = {name: {kind: Counts() for kind in T.KINDS} for name in found}
    for kind, damaged, truth in damaged_crops(photos, repeats, EVAL_SEED):
        for name, (detector, mode) in found.items():
            table[name][kind].add(detector.detect(damaged, mode).mask, truth)
    return table


def print_per_kind(table: dict[str, dict[str, Counts]]) -> None:
    print("\n## Per damage kind (P R F1 IoU)\n")
    names = list(table)
    print("| kind | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for kind in T.KINDS:
        print(f"| {kind} | " + " | ".join(table[name][kind].row() for name in names) + " |")
    overall = {}
    for name in names:
        total = Counts()
        for counts in table[name].values():
            total.tp, total.fp, total.fn = total.tp + counts.tp, total.fp + counts.fp, total.fn + counts.fn
        overall[name] = total
    print("| **overall** | " + " | ".join(overall[name].row() for name in names) + " |")
    print("\noverall F1: " + ", ".join(f"{name} {overall[name].f1:.3f}" for name in names))


def clean_variants(photo: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    image = photo.astype(np.float32) / 255
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    sepia = np.clip(grey[..., None] * np.array([1.0, 0.87, 0.68], np.float32), 0, 1)
    grainy = np.clip(image + rng.normal(0, 0.04, (*image.shape[:2], 1)).astype(np.float32), 0, 1)
    return {
        "plain": photo,
        "grainy": np.round(grainy * 255).astype(np.uint8),
        "sepia": np.round(sepia * 255).astype(np.uint8),
    }


def clean_false_positives(photos: dict[str, np.ndarray], found: dict) -> None:
    print("\n## Clean photos: detected area (the bound is 0.1 %)\n")
    names = list(found)
    print("| photo | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    rng = np.random.default_rng(EVAL_SEED + 1)
    flagged = dict.fromkeys(names, 0)
    worst = dict.fromkeys(names, 0.0)
    total = 0
    for photo_name, photo in photos.items():
        for variant, pixels in clean_variants(photo, rng).items():
            cells = []
            total += 1
            for name, (detector, mode) in found.items():
                detection = detector.detect(pixels, mode)
                flagged[name] += not detection.no_damage
                worst[name] = max(worst[name], detection.fraction)
                cells.append(f"{detection.fraction:.3%}")
            print(f"| {photo_name} ({variant}) | " + " | ".join(cells) + " |")
    print("\nclean photos with damage reported: " + ", ".join(f"{n} {flagged[n]}/{total}" for n in names))
    print("largest area on a clean photo: " + ", ".join(f"{n} {worst[n]:.3%}" for n in names))


def thin_scratches(data: Path, found: dict, sizes: tuple[int, ...]) -> None:
    """Thin light and dark scratches (1-3 px) on large pictures: official scale vs high-res."""
    print("\n## Thin scratches on large pictures (P R F1 IoU, seconds)\n")
    wallpapers = {w["name"]: w for w in T.list_wallpapers(T.fetch_wallpapers(data))}
    rng = np.random.default_rng(EVAL_SEED + 2)
    runs = {}
    for name, (detector, _) in found.items():
        if isinstance(detector, NetworkDetector):
            runs[f"{name.split(' ')[0]} official"] = (detector, Mode.FULL_SIZE)
            runs[f"{name.split(' ')[0]} high-res"] = (detector, Mode.HIGH_RES)
        else:
            runs[name] = (detector, Mode.HIGH_RES)
    counts = {run: Counts() for run in runs}
    seconds = dict.fromkeys(runs, 0.0)
    for side, photo_name in zip(sizes, ("Volna", "Shell", "Path"), strict=False):
        photo = T.load_rgb(wallpapers[photo_name]["file"])
        scale = side / max(photo.shape[:2])
        photo = cv2.resize(
            photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)), cv2.INTER_AREA
        )
        image = photo.astype(np.float32) / 255
        truth = np.zeros(photo.shape[:2], bool)
        for kind in ("scratch_light", "scratch_dark"):
            image, mask = T.add_damage(image, kind, rng)
            truth |= mask
        damaged = T.to_u8(T.nuisances(image, rng), rng)
        print(f"{photo_name} at {photo.shape[1]}x{photo.shape[0]}: {truth.mean():.3%} scratched", flush=True)
        for run, (detector, mode) in runs.items():
            started = time.perf_counter()
            counts[run].add(detector.detect(damaged, mode).mask, truth)
            seconds[run] += time.perf_counter() - started
    print("\n| detector, mode | P R F1 IoU | seconds |\n|---|---|---|")
    for run in runs:
        print(f"| {run} | {counts[run].row()} | {seconds[run]:.1f} |")


# --- calibration (on CALIBRATION photos only) ----------------------------------------------------------

CLEAN_MARGIN = 0.0005
"""Calibrated settings keep every clean calibration photo under half the 0.1 % bound."""


def _calibration_images(data: Path, repeats: int) -> tuple[list, list]:
    photos = held_out_photos(data, 1024, T.CALIBRATION)
    print(f"calibration photos: {', '.join(photos)}", flush=True)
    damaged = list(damaged_crops(photos, repeats, EVAL_SEED + 10))
    rng = np.random.default_rng(EVAL_SEED + 11)
    clean = [pixels for photo in photos.values() for pixels in clean_variants(photo, rng).values()]
    return damaged, clean


def thin_picture(photo: np.ndarray, side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`photo` resized to `side` px on its long side with thin light and dark scratches (1-3 px)
    under the usual nuisances: (damaged uint8 RGB, truth)."""
    scale = side / max(photo.shape[:2])
    size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    image = cv2.resize(photo, size, interpolation=interpolation).astype(np.float32) / 255
    truth = np.zeros(image.shape[:2], bool)
    for kind in ("scratch_light", "scratch_dark"):
        image, mask = T.add_damage(image, kind, rng)
        truth |= mask
    return T.to_u8(T.nuisances(image, rng), rng), truth


THIN_CALIBRATION = ("Cascade", 3000)
"""A large calibration picture with thin scratches: the thresholds must also keep those."""


def _calibration_thin(data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    name, side = THIN_CALIBRATION
    photo = held_out_photos(data, None, (name,))[name]
    return [thin_picture(photo, side, np.random.default_rng(EVAL_SEED + 12))]


PRINT_SIDES = (256, 384)
"""Short sides (px) of the small-print calibration pictures: small scans and web-sized prints."""


def _resized(image: np.ndarray, short_side: int) -> np.ndarray:
    scale = short_side / min(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _calibration_prints(data: Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Small prints made from the CALIBRATION photos at each PRINT_SIDES short side: (picture, truth),
    truth None for the clean ones (plain, grainy, sepia). Two damaged prints per photo and side, with
    one to three kinds of damage: one damaged at the print's own size (damage drawn in its pixels, as
    the crops are), one damaged at 1024 px and then reduced (the same print scanned small)."""
    photos = held_out_photos(data, 1024, T.CALIBRATION)
    rng = np.random.default_rng(EVAL_SEED + 13)
    prints: list[tuple[np.ndarray, np.ndarray | None]] = []
    for photo in photos.values():
        for side in PRINT_SIDES:
            small = _resized(photo, side)
            prints += [(pixels, None) for pixels in clean_variants(small, rng).values()]
            for source in (small, photo):
                kinds = list(rng.choice(T.KINDS, size=rng.integers(1, 4), replace=False))
                damaged, truths = T.synthesize(source, kinds, rng)
                truth = np.logical_or.reduce(list(truths.values()))
                if source is photo:
                    damaged = _resized(damaged, side)
                    truth = _resized(truth.astype(np.float32), side) >= 0.5
                prints.append((damaged, truth))
    return prints


def _score(masks_damaged, truths, masks_clean) -> tuple[float, float]:
    counts = Counts()
    for found, truth in zip(masks_damaged, truths, strict=True):
        counts.add(found, truth)
    return counts.f1, max(float(m.mean()) for m in masks_clean)


def _best(results: list[tuple[dict, float, float]], label: str) -> dict:
    # Within the margin, the best score; when nothing is, the fewest false alarms.
    results.sort(key=lambda r: (r[2] < CLEAN_MARGIN, r[1] if r[2] < CLEAN_MARGIN else -r[2]), reverse=True)
    for settings, score, clean in results[:5]:
        print(f"{label} {settings}: score {score:.3f}, largest clean area {clean:.3%}", flush=True)
    return results[0][0]


TINY_GRID = {
    "threshold": (0.3, 0.5, 0.6, 0.7, 0.8, 0.9),
    "strong": (0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995),
    "min_area": (40, 80, 160, 320, 640, 960, 1280),
    "reference_side": (0, 512, 640, 768, 1024),
    "max_step_ratio": (0.0, 0.2, 0.35, 0.6),
    "min_surround_contrast": (0.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0),
}
"""The post-processing settings `--calibrate` tries for scratch-tiny (0 = that check off)."""


@dataclasses.dataclass
class Regions:
    """The hysteresis regions of one picture at one (threshold, strong), each measured once: every
    other setting only chooses among them, so the grid costs lookups, not image passes."""

    short_side: int
    area: np.ndarray
    step: np.ndarray
    """Edge-check ratio of thin regions (0 for compact ones: never dropped by it)."""
    surround: np.ndarray
    """Surround contrast of compact regions (infinity for thin ones: never dropped by it)."""
    hits: np.ndarray
    """Damaged pixels per region (0 without a truth)."""


def measure_regions(
    probability: np.ndarray,
    image: np.ndarray,
    context: tuple[np.ndarray, np.ndarray],
    threshold: float,
    strong: float,
    truth: np.ndarray | None,
    smallest: int,
) -> Regions:
    """The regions `NetworkDetector.detect` would judge at (threshold, strong), of at least `smallest` px."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (probability >= np.float32(threshold)).view(np.uint8), connectivity=8
    )
    keep = np.bincount(labels[probability >= np.float32(strong)], minlength=count) > 0
    keep &= stats[:, cv2.CC_STAT_AREA] >= smallest
    keep[0] = False
    length = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    thin = length**2 / np.maximum(stats[:, cv2.CC_STAT_AREA], 1) >= EDGE_ELONGATION
    step = np.zeros(count)
    if (keep & thin).any():
        step = step_ratio(labels, count, keep & thin, *context, EDGE_ELEMENT)
    surround = surround_contrast(image, labels, stats, keep & ~thin)
    hits = np.bincount(labels[truth], minlength=count) if truth is not None else np.zeros(count, np.int64)
    index = np.flatnonzero(keep)
    return Regions(
        min(probability.shape), stats[index, cv2.CC_STAT_AREA], step[index], surround[index], hits[index]
    )


def _kept_pixels(regions: Regions, settings: dict) -> tuple[int, int]:
    """(pixels kept, damaged pixels kept) of one picture under `settings`."""
    min_area = scaled_min_area(settings["min_area"], (regions.short_side,) * 2, settings["reference_side"])
    keep = regions.area >= min_area
    if settings["max_step_ratio"]:
        keep &= regions.step <= settings["max_step_ratio"]
    if settings["min_surround_contrast"]:
        keep &= regions.surround >= settings["min_surround_contrast"]
    return int(regions.area[keep].sum()), int(regions.hits[keep].sum())


def calibrate_tiny(
    tiny: NetworkDetector, damaged: list, clean: list, thin: list, prints: list | None = None
) -> list[tuple[dict, float, float]]:
    """Threshold, hysteresis level, minimum region (and the short side below which it shrinks), edge
    check and surround check of scratch-tiny, the network run once per image. Score: F1 on the damaged
    crops plus F1 on the thin scratches of the large picture plus F1 on the damaged small prints (each
    counts: the per-kind table, the thin-scratch table, small scans); kept only within the clean margin
    on every clean picture (calibration photos and small prints). Returns every (settings, score,
    largest clean area), with the F1s in the settings."""
    prints = prints or []
    groups = {
        "f1": [(image, truth) for _, image, truth in damaged],
        "thin_f1": list(thin),
        "print_f1": [(image, truth) for image, truth in prints if truth is not None],
        "clean": [(image, None) for image in clean] + [(image, t) for image, t in prints if t is None],
    }
    smallest = min(
        scaled_min_area(min(TINY_GRID["min_area"]), image.shape, max(TINY_GRID["reference_side"]))
        for pictures in groups.values()
        for image, _ in pictures
    )
    maps = {
        group: [
            (tiny.probability(image, Mode.HIGH_RES), image, edge_context(image), truth)
            for image, truth in pictures
        ]
        for group, pictures in groups.items()
    }
    results = []
    for threshold, strong in itertools.product(TINY_GRID["threshold"], TINY_GRID["strong"]):
        if strong < threshold:
            continue
        measured = {
            group: [
                (measure_regions(p, image, context, threshold, strong, truth, smallest), truth, p.size)
                for p, image, context, truth in entries
            ]
            for group, entries in maps.items()
        }
        others = {k: v for k, v in TINY_GRID.items() if k not in ("threshold", "strong")}
        for values in itertools.product(*others.values()):
            settings = {"threshold": threshold, "strong": strong, **dict(zip(others, values, strict=True))}
            scores = {}
            for group in ("f1", "thin_f1", "print_f1"):
                counts = Counts()
                for regions, truth, _ in measured[group]:
                    kept, hits = _kept_pixels(regions, settings)
                    counts.tp += hits
                    counts.fp += kept - hits
                    counts.fn += int(truth.sum()) - hits
                scores[group] = round(counts.f1, 4)
            worst = max(_kept_pixels(regions, settings)[0] / size for regions, _, size in measured["clean"])
            results.append(({**settings, **scores}, sum(scores.values()), worst))
    _best(results, "scratch-tiny")
    return results


def calibrate_classical(damaged: list, clean: list) -> dict:
    """The threshold (both hysteresis levels move with it) and the step ratio of classical."""
    truths = [truth for _, _, truth in damaged]
    results = []
    for threshold, ratio in itertools.product((0.35, 0.5, 0.7), (0.2, 0.3, 0.45, 10.0)):
        detector = dataclasses.replace(ClassicalDetector(), max_step_ratio=ratio)
        found = [detector.detect(image, threshold=threshold).mask for _, image, _ in damaged]
        on_clean = [detector.detect(image, threshold=threshold).mask for image in clean]
        f1, worst = _score(found, truths, on_clean)
        results.append(({"threshold": threshold, "max_step_ratio": ratio}, f1, worst))
        print(f"  classical {results[-1][0]}: F1 {f1:.3f}, clean {worst:.3%}", flush=True)
    return _best(results, "classical")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=T.DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="one repeat, smaller pictures")
    parser.add_argument(
        "--calibrate", action="store_true", help="choose thresholds on the calibration photos"
    )
    parser.add_argument("--tiny", type=Path, default=TINY, help="scratch-tiny weights to evaluate")
    parser.add_argument(
        "--candidates", nargs="*", type=Path, help="with --calibrate: scratch-tiny weights to choose among"
    )
    parser.add_argument(
        "--results", type=Path, help="with --calibrate: append every setting's scores (JSON lines)"
    )
    parser.add_argument("--skip", nargs="*", default=[], help="detectors to leave out (e.g. classical)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if args.calibrate:
        damaged, clean = _calibration_images(args.data, 1)
        if "scratch-tiny" not in args.skip:
            thin = _calibration_thin(args.data)
            prints = _calibration_prints(args.data)
            chosen = []
            for candidate in args.candidates or [args.tiny]:
                print(f"\n{candidate}:", flush=True)
                results = calibrate_tiny(
                    NetworkDetector.from_file(candidate, "scratch-tiny"), damaged, clean, thin, prints
                )
                chosen.append((candidate, *max(results, key=lambda r: (r[2] < CLEAN_MARGIN, r[1]))))
                if args.results:
                    rows = [
                        {**settings, "score": score, "clean": worst} for settings, score, worst in results
                    ]
                    with args.results.open("a") as handle:
                        handle.write(json.dumps({"candidate": str(candidate), "results": rows}) + "\n")
            if len(chosen) > 1:
                print("\nbest setting of each candidate (within the clean margin first):")
                for candidate, settings, score, worst in chosen:
                    print(f"{candidate}: {settings} score {score:.3f}, largest clean area {worst:.3%}")
        if "classical" not in args.skip:
            calibrate_classical(damaged, clean)
        return
    found = {k: v for k, v in detectors(args.tiny).items() if k.split(" ")[0] not in args.skip}
    photos = held_out_photos(args.data, 1024)
    print(f"held-out photos: {', '.join(photos)}; detectors: {', '.join(found)}")
    print_per_kind(per_kind(photos, found, repeats=1 if args.quick else 2))
    clean_false_positives(photos, found)
    thin_scratches(args.data, found, (3000,) if args.quick else (3000, 4500, 6000))


if __name__ == "__main__":
    main()
