"""Choices, defaults and option spellings shared by the command line and the library, torch-free.

The CLI builds its commands from options dataclasses whose fields carry a `Spelling` (so `inpaint
--help` stays instant), and the library validates against the same values and bounds, so a default
and a bound are written once. `parse_size` is the one reader of sizes (`4GB`, `512MiB`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from inpaint_cli.errors import UsageError


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
DEFAULT_PAGE_TITLE = "inpaint review"
"""Title of a review page (`--html`, `inpaint report`)."""

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


DEFAULT_MODEL = "lama"
"""The model `inpaint run` uses when neither --model nor --checkpoint says otherwise."""
DEFAULT_COMPARE_MODELS = ("lama-tiny", "gatedconv-tiny", "pconv-tiny", "telea", "ns")
"""The models `inpaint compare` runs when none are named: all that work offline."""
COMPARE_GRID_SUFFIX = "_compare.png"
"""`inpaint compare PHOTO` writes its grid beside the photo as `<stem>_compare.png` unless -o says."""
DEFAULT_RAY_ADDRESS = "auto"
"""`ray.init()`'s own choice: the cluster of RAY_ADDRESS or of `ray start` here, else a new local one."""
_RAY_ADDRESS = re.compile(r"auto|ray://[^\s/]+/?|(?:[\w.-]+|\[[0-9a-fA-F:.]+\]):\d{1,5}")
RAY_ADDRESS_HINT = "auto, HOST:PORT or ray://HOST:PORT"


def ray_address(text: str) -> str:
    """`text` if it is a Ray cluster address (`auto`, `HOST:PORT`, `[IPv6]:PORT`, `ray://HOST[:PORT]`),
    else a `UsageError`. The grammar also decides whether a bare `--ray` took the next word."""
    if _RAY_ADDRESS.fullmatch(text) is None:
        raise UsageError(f"--ray {text!r} is not a cluster address", hint=RAY_ADDRESS_HINT)
    return text


DEFAULT_DETECTOR = DetectorName.SCRATCH_TINY
"""Bundled, so `--mask auto` works offline on a fresh install."""
DETECTOR_DILATE = {"scratch-tiny": 2, "scratch-bopbtl": 3, "classical": 2}
"""Pixels a detected mask grows by before filling (`--dilate` overrides): the fill must cover the
soft edge of a scratch that the detector's threshold leaves out. BOPBtL's restoration dilates its
masks by 3 (`Global/test.py`, 3x3 kernel, 3 iterations, at --HR)."""


# LaMa feature refinement (`--refine`): the official defaults (advimman/lama,
# configs/prediction/default.yaml, section `refiner`), and the bounds the options accept.
DEFAULT_REFINE_ITERS = 15
"""Forward passes per refined scale (Adam steps: one fewer)."""
DEFAULT_REFINE_LR = 0.002
DEFAULT_REFINE_MIN_SIDE = 512
"""Sets the number of scales: two from a short side of sqrt(2) times this (725 px), three from twice that."""
DEFAULT_REFINE_MAX_SCALES = 3
DEFAULT_REFINE_PX_BUDGET = 1_800_000
"""Inputs with more pixels are shrunk to this many before they are refined."""
MAX_REFINE_ITERS = 1000
MAX_REFINE_SCALES = 8
MIN_REFINE_SIDE = 16
"""LaMa's smallest input side (a bottleneck of two pixels)."""
MIN_REFINE_PX_BUDGET = MIN_REFINE_SIDE**2

# --- sizes -------------------------------------------------------------------------------------------

MAX_SIZE = 1 << 60
"""Largest size `parse_size` accepts (an exabyte): anything more is a typo."""
SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
SIZE_UNITS |= {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"\s*(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*(?P<unit>[kmgt]i?)?b?\s*", re.I)
SIZE_HINT = "write it like 4GB, 512MiB or 2.5G"


def parse_size(text: str) -> int:
    """Bytes of a size: a number, then optionally a unit k, M, G or T (powers of 1000) or Ki, Mi, Gi,
    Ti (powers of 1024), then optionally B; case and spaces do not matter (`4GB`, `512 MiB`, `1.5g`,
    `800000000`). A `UsageError` for anything else, and for sizes under one byte or over `MAX_SIZE`."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise UsageError(f"cannot read size {text!r}", hint=SIZE_HINT)
    value = float(match["number"]) * SIZE_UNITS[(match["unit"] or "").lower()]
    if not math.isfinite(value):
        raise UsageError(f"size must be a finite number of bytes: {text!r}", hint=SIZE_HINT)
    if value < 1:
        raise UsageError(f"size must be at least one byte: {text!r}", hint=SIZE_HINT)
    if value > MAX_SIZE:
        raise UsageError(f"size {text!r} is larger than any machine's memory", hint=SIZE_HINT)
    return int(value)


# --- how the command line spells an option -------------------------------------------------------------


class Panel(str, Enum):
    """The help panels of the commands, in the order `--help` shows them."""

    INPUT_OUTPUT = "Input and output"
    MODEL = "Model"
    MASKS = "Masks"
    STRATEGY = "Strategy"
    REFINE = "Refinement (LaMa)"
    BATCH = "Batch"
    REVIEW = "Review"
    DISTRIBUTED = "Distributed (Ray)"
    OTHER = "Other"


@dataclass(frozen=True)
class Spelling:
    """How the command line writes one field of an options dataclass: flags, help, accepted values."""

    help: str
    flags: tuple[str, ...] = ()
    """Empty: `--<field-name>` (a bool becomes a plain flag)."""
    metavar: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    parse: Callable[[str], Any] | None = None
    """Turns the command line's text into the field's value (sizes like 4GB); raises `UsageError`."""
    argument: bool = False
    """A positional argument rather than an option."""
    bare: str | None = None
    """The value of the option given alone (`--ray` means `--ray auto`). Such an option takes the next
    word as its value only when `parse` accepts that word (`--ray 10.0.0.5:6379`); any other word is
    left to the rest of the command line (`--ray photos/` leaves the input folder alone)."""
    panel: Panel = Panel.OTHER
    """The group of options `--help` shows it in."""


def cli(help: str, *flags: str, **spelling: Any) -> dict[str, Spelling]:
    """A field's metadata: how the command line spells it (see `Spelling`)."""
    return {"cli": Spelling(help, flags, **spelling)}


def spelling_of(options_class: type, name: str) -> Spelling:
    """The `Spelling` of field `name` of an options dataclass."""
    spelling: Spelling = options_class.__dataclass_fields__[name].metadata["cli"]
    return spelling


def flag_of(options_class: type, name: str) -> str:
    """The long flag of a field as the command line writes it (`intermediates_dir` ->
    `--save-intermediates`); the metavar of a positional argument."""
    spelling = spelling_of(options_class, name)
    if spelling.argument:
        return spelling.metavar or name.upper()
    long = [flag for flag in spelling.flags if flag.startswith("--")]
    return long[0].split("/")[0] if long else "--" + name.replace("_", "-")


def describe_range(spelling: Spelling) -> str:
    """`at least 1`, `at most 256` or `between 1 and 100`."""
    low, high = spelling.minimum, spelling.maximum
    show = {value: _number(value) for value in (low, high) if value is not None}
    if low is not None and high is not None:
        return f"between {show[low]} and {show[high]}"
    return f"at least {show[low]}" if low is not None else f"at most {show[high]}"


def _number(value: float) -> str:
    """A bound as people read it: `16MiB` for a whole number of mebibytes, else the plain number."""
    if float(value).is_integer():
        value = int(value)
        if value >= 2**20 and value % 2**20 == 0:
            return f"{value // 2**20}MiB"
    return str(value)


def states_range(spelling: Spelling) -> bool:
    """Whether the metavar already shows the bounds (`1-100`), so the help need not repeat them."""
    low, high = spelling.minimum, spelling.maximum
    return low is not None and high is not None and spelling.metavar == f"{_number(low)}-{_number(high)}"


def check_bounds(options: Any) -> None:
    """A `UsageError` naming the flag of the first numeric field of `options` outside its bounds."""
    for spec in fields(options):
        spelling: Spelling = spec.metadata["cli"]
        value = getattr(options, spec.name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        low, high = spelling.minimum, spelling.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise UsageError(
                f"{flag_of(type(options), spec.name)} {value} is out of range", hint=describe_range(spelling)
            )


@dataclass(frozen=True, kw_only=True)
class DistributedOptions:
    """The `--ray` options of the batch commands that run on a cluster (`run`, `detect`), declared and
    checked once: each command's options class (and `detect`'s library request) derives from it."""

    ray: str | None = field(
        default=None,
        metadata=cli(
            'Run the batch on a Ray cluster (pip install "inpaint-cli\\[ray]"). ADDRESS: auto (the default), '
            "HOST:PORT or ray://HOST:PORT.",
            metavar="[ADDRESS]",
            bare=DEFAULT_RAY_ADDRESS,
            parse=ray_address,
            panel=Panel.DISTRIBUTED,
        ),
    )
    workers: int | None = field(
        default=None,
        metadata=cli(
            "Workers, each loading the model once. Default: as many as fit.",
            metavar="N",
            minimum=1,
            panel=Panel.DISTRIBUTED,
        ),
    )
    cpus_per_worker: float = field(
        default=1.0,
        metadata=cli("CPUs each worker reserves.", metavar="N", minimum=0, panel=Panel.DISTRIBUTED),
    )
    gpus_per_worker: float = field(
        default=0.0,
        metadata=cli("GPUs each worker reserves.", metavar="N", minimum=0, panel=Panel.DISTRIBUTED),
    )

    def __post_init__(self) -> None:
        asked = self.workers is not None or self.gpus_per_worker or self.cpus_per_worker != 1
        if self.ray is None and asked:
            raise UsageError("--workers, --cpus-per-worker and --gpus-per-worker need --ray")
