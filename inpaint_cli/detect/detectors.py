"""Choosing a damage detector by name, on a device, and the pictures of what it found.

`load_detector` gives the network detectors (`network.py`) and the weight-free classical one
(`classical.py`) one face (`Detector`); `chosen_mode` is the mode a detector runs in unless told
otherwise. `overlay_picture` tints the damage red for review; `write_probability` saves the
probability map (a grey picture and a float32 tensor). Nothing here knows about batches: the batch
engine's detect job kind (`batch/kinds/detect.py`) and `run --mask auto` call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inpaint_cli.detect.detection import Detection, Mode
from inpaint_cli.errors import UsageError
from inpaint_cli.imaging.pixels import to_rgb8
from inpaint_cli.options import DetectorName

OVERLAY_COLOUR = np.array([255, 30, 30], dtype=np.uint16)
OVERLAY_ALPHA = 0.55
OVERLAY_QUALITY = 90


class Detector(Protocol):
    name: str
    threshold: float

    def detect(self, pixels: np.ndarray, mode: Mode = ..., threshold: float | None = None) -> Detection: ...


def load_detector(
    name: str, checkpoint: Path | None = None, *, device: Any = "cpu", progress: Any = None
) -> Detector:
    """The detector called `name` (see options.DetectorName), from `checkpoint` if given, with its
    network on `device` (a torch device or its name; the classical detector runs on the CPU)."""
    if name == DetectorName.CLASSICAL.value:
        if checkpoint is not None:
            raise UsageError("--detector classical has no weights and takes no --checkpoint")
        from inpaint_cli.detect.classical import ClassicalDetector

        return ClassicalDetector()
    if name not in {d.value for d in DetectorName}:
        raise UsageError(
            f"unknown detector {name!r}", hint=f"known: {', '.join(d.value for d in DetectorName)}"
        )
    from inpaint_cli.detect.network import NetworkDetector

    if checkpoint is not None:  # `logits_of` sends each batch to the network's device
        return NetworkDetector.from_file(checkpoint, name=detector_name(name, checkpoint), device=device)
    from inpaint_cli import weights

    return NetworkDetector.from_file(weights.ensure_model(name, progress=progress), name=name, device=device)


def detector_name(name: str, checkpoint: Path | None) -> str:
    """What a loaded detector calls itself (in reports and provenance): its weight file's name when
    one is given, else `name`."""
    return name if checkpoint is None else Path(checkpoint).name


def chosen_mode(detector: Detector, high_res: bool | None) -> Mode:
    """`--high-res` / `--official-scale` as typed; when neither was, grey networks (BOPBtL's) run as
    published, at the official scale, and the others in high-res."""
    if high_res is not None:
        return Mode.HIGH_RES if high_res else Mode.FULL_SIZE
    network = getattr(detector, "network", None)
    return Mode.FULL_SIZE if network is not None and network.in_channels == 1 else Mode.HIGH_RES


def overlay_picture(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image (8-bit RGB) with the damage tinted red."""
    rgb = to_rgb8(pixels).copy()
    tinted = rgb[mask].astype(np.uint16) * round((1 - OVERLAY_ALPHA) * 256)
    tinted += OVERLAY_COLOUR * round(OVERLAY_ALPHA * 256)
    rgb[mask] = (tinted >> 8).astype(np.uint8)
    return rgb


def write_overlay(path: Path, pixels: np.ndarray, mask: np.ndarray) -> Path:
    """The overlay picture as a JPEG, written atomically."""
    from PIL import Image

    from inpaint_cli.files.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(overlay_picture(pixels, mask), "RGB").save(
            tmp, format="JPEG", quality=OVERLAY_QUALITY
        )
    return path


def write_probability(folder: Path, probability: np.ndarray) -> list[Path]:
    """`probability.png` (grey, 255 = 1.0) and `probability.safetensors` (float32) in `folder`."""
    from PIL import Image
    from safetensors.numpy import save_file

    from inpaint_cli.files.atomic import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    picture = folder / "probability.png"
    with atomic_path(picture) as tmp:
        levels = np.round(probability * 255).astype(np.uint8)
        Image.fromarray(levels, "L").save(tmp, format="PNG")
    tensor = folder / "probability.safetensors"
    with atomic_path(tensor) as tmp:
        save_file({"probability": np.ascontiguousarray(probability, dtype=np.float32)}, str(tmp))
    return [picture, tensor]
