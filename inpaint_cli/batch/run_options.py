"""The options of one `inpaint run`: one frozen object, declared once, with its command-line spelling.

Each field carries how the command line writes it (`options.Spelling`: flags, help, bounds, panel) as
plain metadata, so the CLI builds the `run` command from this class (adding an option is adding a
field here) and the library validates the same bounds for Python callers. `planning_options` and
`run_settings` turn it into the engine's and the jobs' options, field by field. Torch-free and
Typer-free: `inpaint --help` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from inpaint_cli.batch.provenance import REFINE_SETTINGS
from inpaint_cli.engine.refine_plan import Refinement
from inpaint_cli.errors import UsageError
from inpaint_cli.files import storage
from inpaint_cli.options import (
    DEFAULT_DETECTOR,
    DEFAULT_MASK_THRESHOLD,
    DEFAULT_MAX_PIXELS,
    DEFAULT_QUALITY,
    DEFAULT_REFINE_ITERS,
    DEFAULT_REFINE_LR,
    DEFAULT_REFINE_MAX_SCALES,
    DEFAULT_REFINE_MIN_SIDE,
    DEFAULT_REFINE_PX_BUDGET,
    DEFAULT_TILE_OVERLAP,
    DETECTOR_DILATE,
    MAX_REFINE_ITERS,
    MAX_REFINE_SCALES,
    DetectorName,
    DistributedOptions,
    OutputFormat,
    Panel,
    Precision,
    StrategyName,
    TensorFormat,
    check_bounds,
    cli,
    flag_of,
    parse_size,
)

if TYPE_CHECKING:
    from inpaint_cli.batch.kinds.inpaint import RunSettings
    from inpaint_cli.engine.strategies import InpaintOptions

MAX_DILATE = 256
"""Largest hole growth (pixels): wider than any scratch needs (a 100000 px disc kernel would take 40 GB)."""
MIN_MEMORY_BUDGET = 16 * 2**20
"""Smallest --memory-budget: below it no pass of any family fits, and "needs 0.0 GB" helps nobody."""
DEFAULT_JOBS = 2


def parse_memory_size(text: str) -> int:
    """`4GB`, `512MiB` -> bytes, at least `MIN_MEMORY_BUDGET`; the error names --memory-budget."""
    try:
        value = parse_size(text)
    except UsageError as error:
        raise UsageError(f"--memory-budget {text!r}: {error.what}", hint=error.hint) from None
    if value < MIN_MEMORY_BUDGET:
        raise UsageError(
            f"--memory-budget {text!r} is too small", hint="no network pass fits in less than 16MiB"
        )
    return value


IO, MODEL, MASKS, STRATEGY = Panel.INPUT_OUTPUT, Panel.MODEL, Panel.MASKS, Panel.STRATEGY
REFINE, BATCH, REVIEW = Panel.REFINE, Panel.BATCH, Panel.REVIEW


@dataclass(frozen=True, kw_only=True)
class RunOptions(DistributedOptions):
    """Everything `inpaint run` was asked to do (the `--ray` options: `DistributedOptions`). Invalid
    values raise `UsageError` on construction."""

    # Input and mask may be fsspec URLs (s3://bucket/scans). -o stays the text as typed: the planner
    # (`jobs.plan_run`) reads a trailing `/` as "a folder", which a `Path` would drop.
    input: Path = field(
        metadata=cli(
            "An image, or a folder of images (a batch; may be a URL: s3://...).",
            metavar="INPUT",
            argument=True,
            parse=storage.location,
            panel=IO,
        )
    )
    mask: Path = field(
        metadata=cli(
            "Mask file (white = hole), a folder of masks paired by name, or auto (find the damage).",
            "--mask",
            "-m",
            metavar="MASK",
            parse=storage.location,
            panel=IO,
        )
    )
    output: str | Path | None = field(
        default=None,
        metadata=cli(
            "Output file, or folder (a batch, or a name ending in /). "
            "Default: <stem>_inpainted.<ext> beside the input.",
            "--output",
            "-o",
            metavar="PATH",
            parse=str,
            panel=IO,
        ),
    )
    output_format: OutputFormat | None = field(
        default=None,
        metadata=cli(
            "Output format. Default: the output's extension, else the input's format.",
            "--format",
            metavar="FORMAT",
            panel=IO,
        ),
    )
    quality: int = field(
        default=DEFAULT_QUALITY,
        metadata=cli("Quality of JPEG and WebP outputs.", metavar="1-100", minimum=1, maximum=100, panel=IO),
    )
    save_mask: bool = field(
        default=False,
        metadata=cli("Also write <stem>_mask.png: the hole that was filled.", panel=IO),
    )
    panel: bool = field(
        default=False, metadata=cli("Also write <stem>_panel.png: input | mask | result.", panel=IO)
    )
    overwrite: bool | None = field(
        default=None,
        metadata=cli(
            "Replace existing outputs, or skip their inputs. Default: skip in a batch, "
            "refuse for a single image.",
            "--overwrite/--skip-existing",
            panel=IO,
        ),
    )
    dry_run: bool = field(
        default=False,
        metadata=cli("Print the mask(s) and output of each image, or why not; load no model.", panel=IO),
    )
    quiet: bool = field(
        default=False, metadata=cli("Print only the paths of the results.", "--quiet", "-q", panel=IO)
    )
    verbose: bool = field(
        default=False,
        metadata=cli(
            "Say more: device, precision, load time, the plan and time per stage.",
            "--verbose",
            "-v",
            panel=IO,
        ),
    )
    model: str | None = field(
        default=None,
        metadata=cli(
            "A model of `inpaint models`, a family with --checkpoint, or telea / ns (classical). "
            "Default: lama, or the family of --checkpoint.",
            metavar="NAME",
            panel=MODEL,
        ),
    )
    checkpoint: Path | None = field(
        default=None,
        metadata=cli(
            "A weight file (official format or ours) instead of the registry.", metavar="FILE", panel=MODEL
        ),
    )
    device: str = field(
        default="auto",
        metadata=cli("auto (CUDA if available), cpu, cuda, cuda:N or mps.", metavar="DEVICE", panel=MODEL),
    )
    precision: Precision = field(
        default=Precision.AUTO,
        metadata=cli(
            "auto: bf16/fp16 on CUDA; on CPU fp32, or bf16/int8 where measured faster. int8: CPU only.",
            metavar="NAME",
            panel=MODEL,
        ),
    )
    threads: int | None = field(
        default=None,
        metadata=cli("CPU threads of the network. Default: PyTorch's.", metavar="N", minimum=1, panel=MODEL),
    )
    mask_threshold: int = field(
        default=DEFAULT_MASK_THRESHOLD,
        metadata=cli(
            "A mask pixel is a hole where its grey level is above this.",
            metavar="0-254",
            minimum=0,
            maximum=254,
            panel=MASKS,
        ),
    )
    invert_mask: bool = field(default=False, metadata=cli("Black = hole instead of white.", panel=MASKS))
    dilate: int | None = field(
        default=None,
        metadata=cli(
            "Grow the hole by this many pixels. Default: 0; with --mask auto, the detector's (2 or 3).",
            metavar="PX",
            minimum=0,
            maximum=MAX_DILATE,
            panel=MASKS,
        ),
    )
    detector: DetectorName = field(
        default=DEFAULT_DETECTOR,
        metadata=cli(
            "With --mask auto: scratch-tiny (bundled), scratch-bopbtl (downloaded) or classical.",
            metavar="NAME",
            panel=MASKS,
        ),
    )
    strategy: StrategyName = field(
        default=StrategyName.AUTO,
        metadata=cli(
            "full (one pass), crop (boxes around holes), tile, resize (to --max-side), "
            "or auto (per image, from the model and the memory).",
            metavar="NAME",
            panel=STRATEGY,
        ),
    )
    max_side: int | None = field(
        default=None,
        metadata=cli(
            "Longest side of a pass; larger boxes are downscaled, filled, upscaled.",
            metavar="PX",
            minimum=16,
            panel=STRATEGY,
        ),
    )
    tile_size: int | None = field(
        default=None,
        metadata=cli(
            "Side of the tiles. Default: from the model and the memory budget.",
            metavar="PX",
            minimum=64,
            panel=STRATEGY,
        ),
    )
    tile_overlap: int = field(
        default=DEFAULT_TILE_OVERLAP,
        metadata=cli("Overlap of neighbouring tiles, blended.", metavar="PX", minimum=0, panel=STRATEGY),
    )
    crop_margin: int | None = field(
        default=None,
        metadata=cli(
            "Context kept around each hole by crop. Default: 1.5 hole widths, 16 to 128.",
            metavar="PX",
            minimum=0,
            panel=STRATEGY,
        ),
    )
    memory_budget: int | None = field(
        default=None,
        metadata=cli(
            "Memory one pass may use, e.g. 4GB. Default: from the free memory.",
            metavar="SIZE",
            minimum=MIN_MEMORY_BUDGET,
            parse=parse_memory_size,
            panel=STRATEGY,
        ),
    )
    refine: bool = field(
        default=False, metadata=cli("LaMa feature refinement (official algorithm).", panel=REFINE)
    )
    refine_iters: int = field(
        default=DEFAULT_REFINE_ITERS,
        metadata=cli(
            "Passes per refined scale.", metavar="N", minimum=1, maximum=MAX_REFINE_ITERS, panel=REFINE
        ),
    )
    refine_lr: float = field(
        default=DEFAULT_REFINE_LR, metadata=cli("Adam's learning rate.", metavar="LR", panel=REFINE)
    )
    refine_min_side: int = field(
        default=DEFAULT_REFINE_MIN_SIDE,
        metadata=cli("Two scales from 1.41x this short side.", metavar="PX", panel=REFINE),
    )
    refine_max_scales: int = field(
        default=DEFAULT_REFINE_MAX_SCALES,
        metadata=cli("Most scales.", metavar="N", minimum=1, maximum=MAX_REFINE_SCALES, panel=REFINE),
    )
    refine_px_budget: int = field(
        default=DEFAULT_REFINE_PX_BUDGET,
        metadata=cli("Shrink larger inputs to this.", metavar="PIXELS", panel=REFINE),
    )
    recursive: bool = field(
        default=False,
        metadata=cli("Also process the input folder's subfolders.", "--recursive", "-r", panel=BATCH),
    )
    jobs: int = field(
        default=DEFAULT_JOBS,
        metadata=cli(
            "Threads decoding and as many encoding while the model works.",
            "--jobs",
            "-j",
            metavar="N",
            minimum=1,
            panel=BATCH,
        ),
    )
    fail_fast: bool = field(default=False, metadata=cli("Stop at the first failed input.", panel=BATCH))
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata=cli(
            "Refuse images with more pixels (decompression bombs).", metavar="N", minimum=1, panel=BATCH
        ),
    )
    report: Path | None = field(
        default=None,
        metadata=cli("Write a JSON report: status, output, time per input.", metavar="FILE", panel=REVIEW),
    )
    html: Path | None = field(
        default=None,
        metadata=cli(
            "Write a review page: thumbnails and status per image, failures first.",
            metavar="FILE",
            panel=REVIEW,
        ),
    )
    intermediates_dir: Path | None = field(
        default=None,
        metadata=cli(
            "Folder for each network's inner pictures: PConv masks, GatedConv gates, LaMa features.",
            "--save-intermediates",
            metavar="DIR",
            panel=REVIEW,
        ),
    )
    intermediate_tensors: TensorFormat = field(
        default=TensorFormat.NONE,
        metadata=cli(
            "With --save-intermediates: also the raw tensors, in fp16 or fp32.",
            "--save-tensors",
            metavar="NAME",
            panel=REVIEW,
        ),
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        super().__post_init__()
        if self.quiet and self.verbose:
            raise UsageError("--quiet and --verbose contradict each other", hint="give one of them")
        defaults = {spec.name: spec.default for spec in fields(self)}
        tuned = [name for name in REFINE_SETTINGS if getattr(self, name) != defaults[name]]
        if tuned and not self.refine:
            raise UsageError(f"{flag_of(RunOptions, tuned[0])} needs --refine")
        Refinement(  # the refine settings' own checks, as the engine makes them
            self.refine_iters,
            self.refine_lr,
            self.refine_min_side,
            self.refine_max_scales,
            self.refine_px_budget,
        )

    @property
    def is_batch(self) -> bool:
        return self.input.is_dir()


def planning_options(options: RunOptions) -> InpaintOptions:
    """How the engine cuts each image into passes, as `options` asks."""
    from inpaint_cli.engine.strategies import InpaintOptions

    return InpaintOptions(
        strategy=options.strategy,
        max_side=options.max_side,
        tile_size=options.tile_size,
        tile_overlap=options.tile_overlap,
        crop_margin=options.crop_margin,
        memory_budget=options.memory_budget,
        refine=options.refine,
        refine_iters=options.refine_iters,
        refine_lr=options.refine_lr,
        refine_min_side=options.refine_min_side,
        refine_max_scales=options.refine_max_scales,
        refine_px_budget=options.refine_px_budget,
    )


def run_settings(options: RunOptions) -> RunSettings:
    """The per-input settings of the jobs. Existing outputs are skipped in a batch and refused for a
    single image unless --overwrite/--skip-existing says; with `--mask auto` the detector is named (for
    the provenance) and its masks grow by its own dilation unless --dilate says otherwise."""
    from inpaint_cli.batch.jobs import Existing
    from inpaint_cli.batch.kinds.inpaint import RunSettings, is_auto

    if options.overwrite is None:
        existing = Existing.SKIP if options.is_batch else Existing.ERROR
    else:
        existing = Existing.OVERWRITE if options.overwrite else Existing.SKIP
    auto = is_auto(options.mask)
    dilate = options.dilate
    if dilate is None:
        dilate = DETECTOR_DILATE[options.detector.value] if auto else 0
    return RunSettings(
        mask_threshold=options.mask_threshold,
        invert_mask=options.invert_mask,
        dilate=dilate,
        detector=options.detector.value if auto else None,  # recorded in the outputs' provenance
        save_mask=options.save_mask,
        output_format=None if options.output_format is None else options.output_format.value,
        quality=options.quality,
        existing=existing,
        panel=options.panel,
        intermediates_dir=options.intermediates_dir,
        intermediate_tensors=options.intermediate_tensors.value,
        max_pixels=options.max_pixels,
    )
