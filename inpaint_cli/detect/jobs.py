"""`inpaint detect` as a library: choose a detector, plan the masks of an image or a folder, write them.

Each image gets `<stem>_mask.png` (8-bit grey, 255 = damage, the image's size once turned upright
by EXIF), the name the batch pairing of `inpaint run --mask` looks for, and `<stem>_overlay.jpg`
(the damage tinted red) for review. A folder's masks mirror its tree under the output folder
(default `<folder>_masks/` beside it). Existing masks are kept (a rerun resumes) unless overwriting
is asked for; a problem with one image fails that image only.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from inpaint_cli.batch.jobs import Existing, walk_images
from inpaint_cli.batch.outcomes import Status
from inpaint_cli.batch.resume import output_complete, remove_stale_parts
from inpaint_cli.detect.detection import Detection, Mode, to_rgb8
from inpaint_cli.errors import InpaintError, OutputError, UsageError
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.imaging import imageio
from inpaint_cli.imaging.masks import grow_hole, write_mask
from inpaint_cli.options import DEFAULT_MAX_PIXELS, DetectorName

if TYPE_CHECKING:
    from inpaint_cli.review.page import PageSummary

MASK_SUFFIX = "_mask"
OVERLAY_SUFFIX = "_overlay"
MASKS_FOLDER_SUFFIX = "_masks"
OUR_OUTPUTS = re.compile(r"_(mask\d*|overlay)$")
"""Stems of files `detect` writes (and `run` pairs): never taken for photos when walking."""
OVERLAY_COLOUR = np.array([255, 30, 30], dtype=np.uint16)
OVERLAY_ALPHA = 0.55
OVERLAY_QUALITY = 90


class Detector(Protocol):
    name: str
    threshold: float

    def detect(self, pixels: np.ndarray, mode: Mode = ..., threshold: float | None = None) -> Detection: ...


def load_detector(name: str, checkpoint: Path | None = None, progress: Any = None) -> Detector:
    """The detector called `name` (see options.DetectorName), from `checkpoint` if given."""
    if name == DetectorName.CLASSICAL.value:
        if checkpoint is not None:
            raise UsageError("--detector classical has no weights and takes no --checkpoint")
        from inpaint_cli.detect.classical import ClassicalDetector

        return ClassicalDetector()
    if name not in {d.value for d in DetectorName}:
        raise UsageError(
            f"unknown detector {name!r}", hint=f"known: {', '.join(d.value for d in DetectorName)}"
        )
    from inpaint_cli.detect.network import NetworkDetector  # torch: only when a network is loaded

    if checkpoint is not None:
        return NetworkDetector.from_file(checkpoint, name=Path(checkpoint).name)
    from inpaint_cli import weights

    return NetworkDetector.from_file(weights.ensure_model(name, progress=progress), name=name)


def default_mode(detector: Detector) -> Mode:
    """Grey networks (BOPBtL's) run as published, at the official scale; the others in high-res."""
    network = getattr(detector, "network", None)  # a NetworkDetector's (the classical one has none)
    if network is not None and network.in_channels == 1:
        return Mode.FULL_SIZE
    return Mode.HIGH_RES


def chosen_mode(detector: Detector, high_res: bool | None) -> Mode:
    """`--high-res` / `--official-scale` as typed, or the detector's `default_mode` when neither was."""
    if high_res is None:
        return default_mode(detector)
    return Mode.HIGH_RES if high_res else Mode.FULL_SIZE


_LOADED: dict[str, Detector] = {}
_LOADING = threading.Lock()


def cached_detector(name: str) -> Detector:
    """The detector `name`, loaded once per process (batch readers share it)."""
    with _LOADING:
        if name not in _LOADED:
            _LOADED[name] = load_detector(name)
        return _LOADED[name]


def detected_hole(pixels: np.ndarray, detector: str, dilate: int = 0) -> np.ndarray:
    """`run --mask auto`: the damage the detector finds (empty when nothing survives its
    post-processing), grown by `dilate` pixels (`run` defaults it per detector: options.DETECTOR_DILATE)."""
    return detect_for_run(pixels, detector, dilate)[0]


def detect_for_run(pixels: np.ndarray, detector: str, dilate: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`detected_hole` and the detector's H×W float32 probability map (for `--save-intermediates`)."""
    found = cached_detector(detector)
    detection = found.detect(pixels, default_mode(found))
    hole = grow_hole(detection.mask, dilate) if dilate else detection.mask
    return hole, detection.probability


# --- planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectJob:
    image: Path
    mask: Path
    overlay: Path | None
    relative: Path | None = None
    problem: InpaintError | None = None


@dataclass
class DetectOutcome:
    job: DetectJob
    status: Status
    seconds: float = 0.0
    fraction: float | None = None
    """Fraction of the pixels marked as damage (after the no-damage rule)."""
    error: str | None = None
    written: list[Path] = field(default_factory=list)

    @property
    def no_damage(self) -> bool:
        return self.status is Status.DONE and self.fraction == 0

    def as_record(self) -> dict[str, Any]:
        return {
            "image": str(self.job.image),
            "mask": str(self.job.mask),
            "overlay": None if self.job.overlay is None else str(self.job.overlay),
            "status": self.status.value,
            "damage_fraction": None if self.fraction is None else round(self.fraction, 6),
            "no_damage": self.no_damage,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "written": [str(p) for p in self.written],
        }


def mask_path(folder: Path, relative: Path) -> Path:
    return folder / relative.parent / f"{relative.stem}{MASK_SUFFIX}.png"


def overlay_path(mask: Path) -> Path:
    return mask.with_name(mask.name.replace(f"{MASK_SUFFIX}.png", f"{OVERLAY_SUFFIX}.jpg"))


def default_masks_folder(folder: Path) -> Path:
    resolved = folder.resolve()
    return resolved.parent / f"{resolved.name}{MASKS_FOLDER_SUFFIX}"


def plan_detect(
    input: Path,
    output: Path | None = None,
    *,
    recursive: bool = False,
    overlay: bool = True,
    exclude: Iterable[Path] = (),
) -> tuple[list[DetectJob], list[str]]:
    """The jobs of `inpaint detect INPUT [-o DIR]` and the folders that could not be listed.

    One image: its mask goes to DIR (default: beside the image). A folder: masks mirror its tree
    under DIR (default `<folder>_masks/`); DIR may be the folder itself (masks beside the photos).
    Folders in `exclude` (a review page's thumbnails) are not walked.
    """
    if not input.exists():
        raise UsageError("no such file or folder", path=input)
    if output is not None and output.exists() and not output.is_dir():
        raise UsageError("-o must be a folder (masks are named after the images)", path=output)
    if input.is_file():
        mask = mask_path(output or input.parent, Path(input.name))
        jobs = [DetectJob(input, mask, overlay_path(mask) if overlay else None)]
        return _with_problems(jobs, {input.resolve()}), []
    folder = output or default_masks_folder(input)
    errors: list[str] = []
    images = [
        path
        for path in walk_images(input, recursive=recursive, exclude=[folder, *exclude], errors=errors)
        if not OUR_OUTPUTS.search(path.stem)
    ]
    if not images:
        hint = None if recursive else "use --recursive to look in subfolders"
        raise UsageError("no images found", path=input, hint=hint)
    jobs = []
    for image in images:
        relative = image.relative_to(input)
        mask = mask_path(folder, relative)
        jobs.append(DetectJob(image, mask, overlay_path(mask) if overlay else None, relative))
    return _with_problems(jobs, {path.resolve() for path in images}), errors


def _with_problems(jobs: list[DetectJob], inputs: set[Path]) -> list[DetectJob]:
    """Refuse outputs that are inputs, or that two images would share (`a.jpg` and `a.png`)."""
    claimed: dict[Path, Path] = {}
    checked = []
    for job in jobs:
        problem = None
        for target in filter(None, (job.mask, job.overlay)):
            resolved = target.resolve()
            if resolved in inputs:
                problem = OutputError("output would overwrite an input", path=target, hint="give another -o")
            elif resolved in claimed:
                problem = OutputError(
                    f"same output as {claimed[resolved]}", path=target, hint="rename one of them"
                )
            claimed.setdefault(resolved, job.image)
        checked.append(DetectJob(job.image, job.mask, job.overlay, job.relative, problem))
    return checked


def precheck(job: DetectJob, existing: Existing) -> DetectOutcome | None:
    """The outcome decided without reading the image: a planning problem or an existing mask."""
    if job.problem is not None:
        return DetectOutcome(job, Status.FAILED, error=job.problem.one_line())
    if job.mask.exists():
        if existing is Existing.SKIP and output_complete(job.mask):
            return DetectOutcome(job, Status.SKIPPED)
        if existing is Existing.ERROR:
            error = OutputError("mask exists", path=job.mask, hint="use --overwrite to replace it")
            return DetectOutcome(job, Status.FAILED, error=error.one_line())
    elif existing is not Existing.OVERWRITE and job.overlay is not None and job.overlay.exists():
        # No mask beside it: not an overlay of an earlier run of ours to resume.
        error = OutputError("overlay exists", path=job.overlay, hint="use --overwrite to replace it")
        return DetectOutcome(job, Status.FAILED, error=error.one_line())
    return None


# --- running --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectSettings:
    mode: Mode
    threshold: float | None = None
    existing: Existing = Existing.SKIP
    intermediates_dir: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


def overlay_picture(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image (8-bit RGB) with the damage tinted red."""
    rgb = to_rgb8(pixels).copy()
    tinted = rgb[mask].astype(np.uint16) * round((1 - OVERLAY_ALPHA) * 256)
    tinted += OVERLAY_COLOUR * round(OVERLAY_ALPHA * 256)
    rgb[mask] = (tinted >> 8).astype(np.uint8)
    return rgb


def write_overlay(path: Path, pixels: np.ndarray, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(overlay_picture(pixels, mask), "RGB").save(
            tmp, format="JPEG", quality=OVERLAY_QUALITY
        )
    return path


def write_intermediates(folder: Path, detection: Detection) -> list[Path]:
    """The probability map as a grey picture (255 = 1.0) and as a float32 tensor (safetensors)."""
    return write_probability(folder, detection.probability)


def write_probability(folder: Path, probability: np.ndarray) -> list[Path]:
    """`probability.png` (grey, 255 = 1.0) and `probability.safetensors` (float32) in `folder`."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    picture = folder / "probability.png"
    with atomic_path(picture) as tmp:
        levels = np.round(probability * 255).astype(np.uint8)
        Image.fromarray(levels, "L").save(tmp, format="PNG")
    tensor = folder / "probability.safetensors"
    with atomic_path(tensor) as tmp:
        save_file({"probability": np.ascontiguousarray(probability, dtype=np.float32)}, str(tmp))
    return [picture, tensor]


def detect_one(detector: Detector, job: DetectJob, settings: DetectSettings) -> DetectOutcome:
    """Read, detect, write; a problem with this image becomes a failed outcome."""
    outcome = DetectOutcome(job, Status.DONE)
    started = time.perf_counter()
    try:
        picture = imageio.read_image(job.image, max_pixels=settings.max_pixels)
        detection = detector.detect(picture.pixels, settings.mode, settings.threshold)
        outcome.fraction = detection.fraction
        outcome.written.append(write_mask(job.mask, detection.mask))
        if job.overlay is not None:
            outcome.written.append(write_overlay(job.overlay, picture.pixels, detection.mask))
        if settings.intermediates_dir is not None:
            name = (job.relative or Path(job.image.name)).with_suffix("")
            outcome.written += write_intermediates(settings.intermediates_dir / name, detection)
    except InpaintError as exc:
        outcome.status, outcome.error = Status.FAILED, exc.one_line()
    except OSError as exc:
        outcome.status = Status.FAILED
        outcome.error = f"{exc.filename or job.image}: {exc.strerror or exc}"
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_detect(
    detector: Detector,
    jobs: Iterable[DetectJob],
    settings: DetectSettings,
    on_outcome: Callable[[DetectOutcome], None] | None = None,
    fail_fast: bool = False,
) -> list[DetectOutcome]:
    jobs = list(jobs)
    remove_stale_parts(path for job in jobs for path in (job.mask, job.overlay) if path is not None)
    outcomes = []
    for job in jobs:
        outcome = precheck(job, settings.existing) or detect_one(detector, job, settings)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        if fail_fast and outcome.status is Status.FAILED:
            break
    return outcomes


def check_targets_of(
    jobs: list[DetectJob], *, report: Path | None, page: Path | None, intermediates: Path | None
) -> None:
    """Refuse (UsageError) a write that hits an input or another write: the masks, overlays and
    intermediates folders of every image, the report, the review page (`targets.check_targets`, as
    `run` plans them)."""
    from inpaint_cli.files.targets import Access, check_targets
    from inpaint_cli.review import page as review

    reads = [Access(job.image, "an input image") for job in jobs]
    writes = []
    for job in jobs:
        if job.problem is not None:  # a mask that clashes already fails its own image
            continue
        writes.append(Access(job.mask, f"the mask of {job.image}", option="-o"))
        if job.overlay is not None:
            writes.append(Access(job.overlay, f"the overlay of {job.image}", option="-o"))
        if intermediates is not None:
            folder = intermediates / (job.relative or Path(job.image.name)).with_suffix("")
            role = f"the intermediates folder of {job.image}"
            writes.append(Access(folder, role, folder=True, option="--save-intermediates"))
    if report is not None:
        writes.append(Access(report, "the report", option="--report"))
    check_targets(reads, [*writes, *(review.page_writes(page) if page is not None else [])])


def write_page(
    page: Path, jobs: list[DetectJob], outcomes: list[DetectOutcome], *, detector: str, mode: Mode
) -> PageSummary:
    """The review page of a detection batch (`review.rows_from_detection`); returns its `PageSummary`."""
    from inpaint_cli.review import page as review

    rows = review.rows_from_detection(
        (o.as_record() for o in outcomes), detector=detector, mode=mode.value, not_run=jobs[len(outcomes) :]
    )
    return review.build_page(rows, page, title="inpaint detect review")


def write_report(path: Path, outcomes: list[DetectOutcome], *, detector: str, mode: Mode) -> Path:
    counts = {status.value: sum(o.status is status for o in outcomes) for status in Status}
    report = {
        "detector": detector,
        "mode": mode.value,
        "summary": {**counts, "no_damage": sum(o.no_damage for o in outcomes)},
        "inputs": [o.as_record() for o in outcomes],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
