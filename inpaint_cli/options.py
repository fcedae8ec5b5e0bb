"""Choices and defaults shared by the command line and the library, with no heavy imports.

The CLI builds its options from these (so `inpaint --help` stays instant) and the library
validates against the same values, so a default is written once.
"""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class StrategyName(str, Enum):
    AUTO = "auto"
    FULL = "full"
    CROP = "crop"
    TILE = "tile"
    RESIZE = "resize"


class TensorFormat(str, Enum):
    """How `--save-intermediates` keeps raw tensors: not at all (pictures and stats only), or in
    `intermediates.safetensors` at half or full precision."""

    NONE = "none"
    FP16 = "fp16"
    FP32 = "fp32"


class OutputFormat(str, Enum):
    PNG = "png"
    JPG = "jpg"
    TIFF = "tiff"
    WEBP = "webp"


DEFAULT_MAX_PIXELS = 250_000_000
"""Refuse larger images: a 10000 px scan fits with room to spare, a decompression bomb does not."""
DEFAULT_MASK_THRESHOLD = 127
"""A mask pixel is a hole where its grey value (8-bit scale) is above this."""
DEFAULT_QUALITY = 95
"""JPEG/WebP quality of lossy outputs."""
DEFAULT_TILE_OVERLAP = 64
"""Pixels shared by neighbouring tiles of the tile strategy, blended with feathered weights."""

CLASSICAL_METHODS = {
    "telea": "fast marching (Telea 2004): thin scratches and dust",
    "ns": "Navier-Stokes (Bertalmio et al. 2001): thin scratches and dust",
}
"""Weight-free OpenCV methods, by name: valid `--model` values that need no download."""
MODEL_FAMILIES = ("lama", "gatedconv", "pconv")
"""Inpainting network families a manifest entry may name."""
DETECTOR_FAMILIES = ("scratch",)
"""Damage-detector network families a manifest entry may name."""


class DetectorName(str, Enum):
    """Damage detectors of `inpaint detect` and `inpaint run --mask auto`."""

    SCRATCH_TINY = "scratch-tiny"
    SCRATCH_BOPBTL = "scratch-bopbtl"
    CLASSICAL = "classical"


DEFAULT_DETECTOR = DetectorName.SCRATCH_TINY
"""Bundled, so `--mask auto` works offline on a fresh install."""
DETECTOR_DILATE = {"scratch-tiny": 2, "scratch-bopbtl": 3, "classical": 2}
"""Pixels a detected mask grows by before filling (`--dilate` overrides): the fill must cover the
soft edge of a scratch that the detector's threshold leaves out. BOPBtL's restoration dilates its
masks by 3 (`Global/test.py`, 3x3 kernel, 3 iterations, at --HR)."""
