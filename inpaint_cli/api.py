"""The public Python API: list models, load one, fill numpy images, find the damage.

    import inpaint_cli
    model = inpaint_cli.load_model("lama-tiny", device="cpu")
    filled = model.inpaint(pixels, mask)          # numpy in, numpy out

Re-exported lazily by `inpaint_cli/__init__.py`, so `import inpaint_cli` stays light.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from inpaint_cli.detect.detection import Detection
from inpaint_cli.engine.inpainter import Inpainter, InpaintResult, Progress
from inpaint_cli.engine.strategies import InpaintOptions, Plan
from inpaint_cli.errors import UsageError
from inpaint_cli.imaging.masks import hole_from_array
from inpaint_cli.options import DEFAULT_DETECTOR

CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt", ".safetensors", ".bin", ".tar")
"""A `load_model` argument ending like this, or naming an existing file, is a weight file."""


def available_models() -> list[str]:
    """Names `load_model` accepts: the manifest's models (bundled, cached or downloadable) and the
    classical methods `telea` and `ns`. Detectors are not listed."""
    from inpaint_cli import weights

    manifest = weights.load_manifest()
    return [
        name
        for name in weights.known_model_names()
        if name not in manifest or not getattr(manifest[name], "is_detector", False)
    ]


def find_damage(
    image: np.ndarray,
    *,
    detector: str = DEFAULT_DETECTOR.value,
    checkpoint: str | Path | None = None,
    high_res: bool | None = None,
    threshold: float | None = None,
) -> Detection:
    """The damage in an H×W(×C) uint8/uint16 image, as `inpaint detect` finds it: `.mask` (H×W
    bool, True = damage; empty when nothing survives the detector's post-processing), `.probability`
    and `.fraction`. `high_res` None is the detector's own mode; see `DetectRequest` for folders."""
    from inpaint_cli.detect.detectors import chosen_mode, load_detector

    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8 or uint16 pixels, not {image.dtype}")
    found = load_detector(detector, None if checkpoint is None else Path(checkpoint))
    mode = chosen_mode(found, high_res)
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[..., : image.shape[2] - 1]  # alpha is not the photo
    return found.detect(image, mode, threshold)


def load_model(
    name_or_checkpoint: str | Path,
    *,
    device: str = "auto",
    precision: str = "auto",
    family: str | None = None,
    progress: Any = None,
    **options: Any,
) -> Model:
    """A model ready to fill images: a name from `available_models()` (downloaded and verified once
    if it is not bundled) or a weight file (official format or ours; `family` names it when the
    file's layout is not recognised). `options` are `InpaintOptions` fields (strategy, max_side,
    tile_size, tile_overlap, crop_margin, memory_budget) used by every `inpaint` call."""
    settings = {"device": device, "precision": precision, "options": _options(None, options)}
    path = Path(name_or_checkpoint)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or path.is_file():
        return Model(Inpainter.from_checkpoint(path, family, **settings))
    if family is not None:
        raise UsageError("family= is only for weight files", hint="a named model knows its family")
    return Model(Inpainter.from_name(str(name_or_checkpoint), progress=progress, **settings))


class Model:
    """A loaded model: `inpaint` fills numpy images; `inpainter` is the engine underneath."""

    def __init__(self, inpainter: Inpainter) -> None:
        self.inpainter = inpainter
        self.last_result: InpaintResult | None = None
        """The last call's result: `plan.describe()`, `seconds` per stage, `passes`."""

    @property
    def name(self) -> str:
        return self.inpainter.name

    @property
    def device(self) -> str:
        return str(self.inpainter.device)

    def __repr__(self) -> str:
        precision = self.inpainter.dtype_label
        family = self.inpainter.network.family
        return f"Model({self.name!r}, family={family!r}, device={self.device!r}, precision={precision!r})"

    def plan(self, mask: np.ndarray, **options: Any) -> Plan:
        """What `inpaint` would do with this mask (boxes, scales, tiles, cost), without doing it."""
        return self.inpainter.plan(hole_from_array(mask), options=_options(self.inpainter.options, options))

    def inpaint(
        self, image: np.ndarray, mask: np.ndarray, *, progress: Progress | None = None, **options: Any
    ) -> np.ndarray:
        """The image with its hole filled; every pixel outside the hole is returned unchanged.

        image: H×W, H×W×1, H×W×3 or H×W×4 (alpha is kept), uint8 or uint16.
        mask: H×W bool (True = hole), or uint8/uint16 levels (H×W, or H×W×C with C = 1 to 4) read
        by the rule of mask files (`masks.hole_from_array`): grey above 127 (8-bit scale) is the
        hole. `options`: `InpaintOptions` fields for this call (strategy="crop", max_side=1024, ...).
        `progress(done, total)` hears each network pass.
        """
        pixels, alpha = _split(image)
        hole = hole_from_array(mask)
        if hole.shape != pixels.shape[:2]:
            raise ValueError(
                f"mask is {hole.shape[1]}x{hole.shape[0]} but image is {pixels.shape[1]}x{pixels.shape[0]}"
            )
        result = self.inpainter.inpaint(
            pixels, hole, options=_options(self.inpainter.options, options), progress=progress
        )
        self.last_result = result
        filled = result.pixels
        if alpha is not None:
            filled = np.concatenate([filled, alpha[..., None]], axis=-1)
        return filled.reshape(image.shape)


def _split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """H×W×1 or H×W×3 pixels, and the alpha channel if there is one."""
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8 or uint16 pixels, not {image.dtype}")
    if image.ndim == 2:
        return image[..., None], None
    if image.ndim == 3 and image.shape[2] in (1, 3):
        return image, None
    if image.ndim == 3 and image.shape[2] in (2, 4):
        return image[..., :-1], image[..., -1]
    raise ValueError(f"expected an H×W or H×W×C image (C = 1 to 4), not {image.shape}")


def _options(base: InpaintOptions | None, changes: dict[str, Any]) -> InpaintOptions:
    known = {spec.name for spec in fields(InpaintOptions)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r}; expected one of {', '.join(sorted(known))}")
    values = {spec.name: getattr(base, spec.name) for spec in fields(InpaintOptions)} if base else {}
    return InpaintOptions(**(values | changes))
