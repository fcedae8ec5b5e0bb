"""The options of one `inpaint run`: one frozen object, declared once, with its command-line spelling.

Each field carries how the command line writes it (flags, help, bounds) as plain metadata, so the CLI
builds the `run` command from this class (adding an option is adding a field here) and the library
validates the same bounds for Python callers. Torch-free and Typer-free: `inpaint --help` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from inpaint_cli.errors import UsageError
from inpaint_cli.files import storage
from inpaint_cli.options import (
    DEFAULT_DETECTOR,
    DEFAULT_MASK_THRESHOLD,
    DEFAULT_MAX_PIXELS,
    DEFAULT_QUALITY,
    DEFAULT_TILE_OVERLAP,
    DetectorName,
    OutputFormat,
    Precision,
    StrategyName,
    TensorFormat,
)

DEFAULT_MODEL = "lama"
"""The model used when neither --model nor --checkpoint says otherwise."""
MAX_DILATE = 256
"""Largest hole growth (pixels): wider than any scratch needs (a 100000 px disc kernel would take 40 GB)."""
MIN_MEMORY_BUDGET = 16 * 2**20
"""Smallest --memory-budget: below it no pass of any family fits, and "needs 0.0 GB" helps nobody."""
DEFAULT_JOBS = 2


@dataclass(frozen=True)
class Spelling:
    """How the command line writes one option: flags, help and the values it accepts."""

    help: str
    flags: tuple[str, ...] = ()
    """Empty: `--<field-name>` (a bool becomes a plain flag)."""
    metavar: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    parse: Callable[[str], Any] | None = None
    """Turns the command line's text into the field's value (sizes like 4GB)."""
    argument: bool = False
    """A positional argument rather than an option."""
    bare: str | None = None
    """The value of an option given without one (`--ray` alone means `--ray auto`)."""


def cli(help: str, *flags: str, **spelling: Any) -> dict[str, Spelling]:
    """A field's metadata: how the command line spells it (see `Spelling`)."""
    return {"cli": Spelling(help, flags, **spelling)}


def parse_memory_size(text: str) -> int:
    """`4GB`, `512MiB` -> bytes, at least `MIN_MEMORY_BUDGET`; the error names --memory-budget."""
    from inpaint_cli.engine.inpainter import parse_size  # the one size parser (engine owns it)

    try:
        value = parse_size(text)
    except UsageError as error:
        raise UsageError(f"--memory-budget {text!r}: {error.what}", hint=error.hint) from None
    if value < MIN_MEMORY_BUDGET:
        raise UsageError(
            f"--memory-budget {text!r} is too small", hint="no network pass fits in less than 16MiB"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Everything `inpaint run` was asked to do. Invalid values raise `UsageError` on construction."""

    # Input and mask may be fsspec URLs (s3://bucket/scans). -o stays the text as typed: the planner
    # (`jobs.plan_run`) reads a trailing `/` as "a folder", which a `Path` would drop.
    input: Path = field(
        metadata=cli(
            "An image file, or a folder of images (batch); a folder may be a URL (s3://...).",
            metavar="INPUT",
            argument=True,
            parse=storage.location,
        )
    )
    mask: Path = field(
        metadata=cli(
            "Mask file (white = hole), a folder of masks paired by name, or auto: "
            "find the damage with --detector.",
            "--mask",
            "-m",
            metavar="MASK",
            parse=storage.location,
        )
    )
    model: str | None = field(
        default=None,
        metadata=cli(
            "A model from `inpaint models` (lama, lama-fourier, gatedconv, pconv, ...), a family name with "
            "--checkpoint, or a classical method: telea, ns. Default: lama, or the family of --checkpoint.",
            metavar="NAME",
        ),
    )
    checkpoint: Path | None = field(
        default=None,
        metadata=cli(
            "Use this weight file instead of the registry (official format or ours); "
            "the family comes from --model or is recognised from the file.",
            metavar="FILE",
        ),
    )
    output: str | Path | None = field(
        default=None,
        metadata=cli(
            "Output file (single image) or folder (batch; a name ending in / is a folder for a single "
            "image too). Default: <stem>_inpainted.<ext> beside the input.",
            "--output",
            "-o",
            metavar="PATH",
            parse=str,
        ),
    )
    output_format: OutputFormat | None = field(
        default=None,
        metadata=cli("Output format; default: the output's extension, else the input's format.", "--format"),
    )
    quality: int = field(
        default=DEFAULT_QUALITY,
        metadata=cli("Quality of lossy outputs (JPEG, WebP).", metavar="1-100", minimum=1, maximum=100),
    )
    device: str = field(
        default="auto", metadata=cli("auto (CUDA if available), cpu, cuda, cuda:N or mps.", metavar="DEVICE")
    )
    threads: int | None = field(
        default=None,
        metadata=cli("CPU threads for the network (default: PyTorch's choice).", metavar="N", minimum=1),
    )
    precision: Precision = field(
        default=Precision.AUTO,
        metadata=cli(
            "auto = bf16/fp16 on CUDA; on CPU fp32, or bf16/int8 where a measurement at the first load "
            "shows them faster. int8: CPU only."
        ),
    )
    strategy: StrategyName = field(
        default=StrategyName.AUTO,
        metadata=cli(
            "How big images are processed: full (one pass), crop (boxes around holes), tile, "
            "resize (to --max-side), auto (chosen per image from the model and the memory budget)."
        ),
    )
    max_side: int | None = field(
        default=None,
        metadata=cli(
            "Longest side a pass may have; larger boxes are downscaled, filled, upscaled.",
            metavar="PX",
            minimum=16,
        ),
    )
    tile_size: int | None = field(
        default=None,
        metadata=cli(
            "Side of the tiles of the tile strategy (default: from the model and memory budget).",
            metavar="PX",
            minimum=64,
        ),
    )
    tile_overlap: int = field(
        default=DEFAULT_TILE_OVERLAP,
        metadata=cli(
            "Overlap of neighbouring tiles, blended with feathered weights.", metavar="PX", minimum=0
        ),
    )
    crop_margin: int | None = field(
        default=None,
        metadata=cli(
            "Context (pixels) kept around each hole by the crop strategy. "
            "Default: 1.5 hole widths, between 16 and 128.",
            metavar="PX",
            minimum=0,
        ),
    )
    memory_budget: int | None = field(
        default=None,
        metadata=cli(
            "Memory one network pass may use, e.g. 4GB (default: from free device memory/RAM).",
            metavar="SIZE",
            minimum=MIN_MEMORY_BUDGET,
            parse=parse_memory_size,
        ),
    )
    mask_threshold: int = field(
        default=DEFAULT_MASK_THRESHOLD,
        metadata=cli(
            "A mask pixel is a hole where its grey value (0-255) is above this.",
            metavar="0-254",
            minimum=0,
            maximum=254,
        ),
    )
    invert_mask: bool = field(default=False, metadata=cli("Black = hole instead of white = hole."))
    dilate: int | None = field(
        default=None,
        metadata=cli(
            "Grow the hole by this many pixels. Default: 0 for mask files; with --mask auto, "
            "2 for scratch-tiny and classical, 3 for scratch-bopbtl.",
            metavar="PX",
            minimum=0,
            maximum=MAX_DILATE,
        ),
    )
    detector: DetectorName = field(
        default=DEFAULT_DETECTOR,
        metadata=cli(
            "With --mask auto: scratch-tiny (bundled), scratch-bopbtl (BOPBtL, downloaded) or classical.",
        ),
    )
    save_mask: bool = field(
        default=False,
        metadata=cli(
            "Also write <output stem>_mask.png: the hole that was filled (the detected one with auto)."
        ),
    )
    intermediates_dir: Path | None = field(
        default=None,
        metadata=cli(
            "Folder for per-input visualisations and raw tensors "
            "(PConv masks, GatedConv gates, LaMa features).",
            "--save-intermediates",
            metavar="DIR",
        ),
    )
    intermediate_tensors: TensorFormat = field(
        default=TensorFormat.NONE,
        metadata=cli(
            "With --save-intermediates: also the raw tensors (intermediates.safetensors), in fp16 or fp32; "
            "default: pictures and stats only.",
            "--save-tensors",
        ),
    )
    panel: bool = field(
        default=False, metadata=cli("Also write <output stem>_panel.png: input | mask | result.")
    )
    overwrite: bool | None = field(
        default=None,
        metadata=cli(
            "Replace existing outputs, or skip inputs whose output exists. "
            "Default: skip in a batch, refuse for a single image.",
            "--overwrite/--skip-existing",
        ),
    )
    report: Path | None = field(
        default=None,
        metadata=cli(
            "Write a JSON report (status, output, masks, time, error per input).", metavar="FILE.json"
        ),
    )
    html: Path | None = field(
        default=None,
        metadata=cli(
            "Write a review page: per image the input, mask and result thumbnails, status, time; "
            "failures and suspicious results first (a rerun updates it).",
            metavar="FILE.html",
        ),
    )
    fail_fast: bool = field(default=False, metadata=cli("Stop at the first failed input."))
    ray: str | None = field(
        default=None,
        metadata=cli(
            'Run the batch on a Ray cluster (pip install "inpaint-cli\\[ray]"): auto (RAY_ADDRESS, else a '
            "cluster of `ray start` here, else a new local one), HOST:PORT or ray://HOST:10001.",
            metavar="[ADDRESS]",
            bare="auto",
        ),
    )
    workers: int | None = field(
        default=None,
        metadata=cli(
            "With --ray: workers, each loading the model once (default: as many as the cluster holds).",
            metavar="N",
            minimum=1,
        ),
    )
    cpus_per_worker: float = field(
        default=1.0, metadata=cli("With --ray: CPUs each worker reserves.", metavar="N", minimum=0)
    )
    gpus_per_worker: float = field(
        default=0.0,
        metadata=cli(
            "With --ray: GPUs each worker reserves (1: one worker per GPU).", metavar="N", minimum=0
        ),
    )
    recursive: bool = field(
        default=False, metadata=cli("Batch: also process the input folder's subfolders.", "--recursive", "-r")
    )
    jobs: int = field(
        default=DEFAULT_JOBS,
        metadata=cli(
            "Threads that decode the next images, and as many that write finished ones, "
            "while the model works (at most 2*jobs+1 images in memory).",
            "--jobs",
            "-j",
            metavar="N",
            minimum=1,
        ),
    )
    dry_run: bool = field(
        default=False,
        metadata=cli("Print which mask(s) and output each image gets, or why not; load no model."),
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata=cli(
            "Refuse images with more pixels than this (decompression bombs).", metavar="N", minimum=1
        ),
    )
    quiet: bool = field(default=False, metadata=cli("Print only the paths of the results.", "--quiet", "-q"))
    verbose: bool = field(
        default=False,
        metadata=cli(
            "Say more: device, precision, threads, model load time, "
            "the plan and time per stage of each image.",
            "--verbose",
            "-v",
        ),
    )

    def __post_init__(self) -> None:
        for spec in fields(self):
            spelling: Spelling = spec.metadata["cli"]
            value = getattr(self, spec.name)
            if value is None or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            low, high = spelling.minimum, spelling.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                raise UsageError(
                    f"{flag_of(spec.name)} {value} is out of range", hint=describe_range(spelling)
                )
        if self.ray is None and (
            self.workers is not None or self.gpus_per_worker or self.cpus_per_worker != 1
        ):
            raise UsageError("--workers, --cpus-per-worker and --gpus-per-worker need --ray")
        if self.quiet and self.verbose:
            raise UsageError("--quiet and --verbose contradict each other", hint="give one of them")

    @property
    def is_batch(self) -> bool:
        return self.input.is_dir()


def describe_range(spelling: Spelling) -> str:
    """`at least 1`, `at most 256` or `between 1 and 100`."""
    low, high = spelling.minimum, spelling.maximum
    show = {value: format(value, ",").replace(",", "") for value in (low, high) if value is not None}
    if low is not None and high is not None:
        return f"between {show[low]} and {show[high]}"
    return f"at least {show[low]}" if low is not None else f"at most {show[high]}"


def flag_of(name: str) -> str:
    """The long flag the command line gives a field (`intermediates_dir` -> `--save-intermediates`)."""
    spelling: Spelling = RUN_FIELDS[name].metadata["cli"]
    if spelling.argument:
        return spelling.metavar or name.upper()
    long = [flag for flag in spelling.flags if flag.startswith("--")]
    return long[0].split("/")[0] if long else "--" + name.replace("_", "-")


RUN_FIELDS = {spec.name: spec for spec in fields(RunOptions)}
