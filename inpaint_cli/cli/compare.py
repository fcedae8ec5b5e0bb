"""`inpaint compare`: fill one hole with several models, draw the grid, print the table.

The command's parameters are the fields of `CompareOptions` (see `cli.command`); `compare_request` turns them
into the library's `CompareRequest` field by field, and the compare job kind (`batch.kinds.compare`)
plans and runs it. Errors become one line through `console.fail`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from inpaint_cli.cli.console import EXIT_FAILED, console, fail, print_table, printable
from inpaint_cli.options import (
    COMPARE_GRID_SUFFIX,
    DEFAULT_COMPARE_MODELS,
    DEFAULT_MAX_PIXELS,
    Panel,
    Precision,
    StrategyName,
    cli,
)

if TYPE_CHECKING:
    from inpaint_cli.batch.kinds.compare import CompareRequest
    from inpaint_cli.batch.outcomes import JobOutcome
    from inpaint_cli.review.comparison import Comparison, FolderComparison

IO, MODEL = Panel.INPUT_OUTPUT, Panel.MODEL


def model_names(text: str) -> tuple[str, ...]:
    """`lama-tiny, telea` -> ("lama-tiny", "telea"); empty names are dropped (the library refuses none)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True, kw_only=True)
class CompareOptions:
    """What `inpaint compare` was asked to do."""

    input: Path = field(
        metadata=cli(
            "A damaged image, or a folder of them (with --original FOLDER).",
            metavar="INPUT",
            argument=True,
            panel=IO,
        )
    )
    mask: Path = field(
        metadata=cli(
            "Mask file (white = hole) or a folder of masks paired by name.",
            "--mask",
            "-m",
            metavar="MASK",
            panel=IO,
        )
    )
    original: Path | None = field(
        default=None,
        metadata=cli(
            "The clean image (or folder of them): adds PSNR and SSIM in the hole and overall.",
            metavar="PATH",
            panel=IO,
        ),
    )
    output: Path | None = field(
        default=None,
        metadata=cli(
            f"The grid picture (PNG); for a folder, a folder of grids. Default: <stem>{COMPARE_GRID_SUFFIX} "
            "beside a single image, none for a folder.",
            "--output",
            "-o",
            metavar="PATH",
            panel=IO,
        ),
    )
    json_path: Path | None = field(
        default=None,
        metadata=cli(
            "Also write the report (one entry per image, the mean per model) as JSON to this file "
            "(- for stdout).",
            "--json",
            metavar="FILE",
            panel=IO,
        ),
    )
    overwrite: bool = field(default=False, metadata=cli("Replace existing grids.", panel=IO))
    recursive: bool = field(
        default=False, metadata=cli("Folder: include subfolders.", "--recursive", "-r", panel=IO)
    )
    models: tuple[str, ...] = field(
        default=DEFAULT_COMPARE_MODELS,
        metadata=cli(
            "Comma-separated models, each loaded once.",
            metavar="NAMES",
            parse=model_names,
            panel=MODEL,
        ),
    )
    device: str = field(
        default="auto",
        metadata=cli("auto (CUDA if available), cpu, cuda, cuda:N or mps.", metavar="DEVICE", panel=MODEL),
    )
    precision: Precision = field(
        default=Precision.AUTO, metadata=cli("As `inpaint run --precision`.", metavar="NAME", panel=MODEL)
    )
    strategy: StrategyName = field(
        default=StrategyName.AUTO,
        metadata=cli("Resolution strategy of every model (as `inpaint run`).", metavar="NAME", panel=MODEL),
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata=cli(
            "Refuse images with more pixels (decompression bombs), as `inpaint run` does.",
            metavar="N",
            minimum=1,
            panel=IO,
        ),
    )


def compare_request(options: CompareOptions) -> CompareRequest:
    """The library's request for `options`."""
    from inpaint_cli.batch.kinds.compare import CompareRequest

    return CompareRequest(
        options.input,
        options.mask,
        options.models,
        original=options.original,
        output=options.output,
        json=options.json_path,
        device=options.device,
        precision=options.precision.value,
        strategy=options.strategy.value,
        recursive=options.recursive,
        overwrite=options.overwrite,
        max_pixels=options.max_pixels,
    )


def compare_command(options: CompareOptions) -> None:
    """Fill one hole with several models: a labelled grid, and PSNR/SSIM per model with --original.

    Each model is loaded once. The grid shows the whole image and a crop around the hole at full size
    per model. A folder (with --original FOLDER) gives the mean per model over its images.
    """
    from inpaint_cli.batch.kinds import compare as compare_kind
    from inpaint_cli.batch.outcomes import Status
    from inpaint_cli.errors import InpaintError
    from inpaint_cli.files.jsonfile import json_text

    request = compare_request(options)
    try:
        plan = compare_kind.plan_comparison(request)
        run = compare_kind.run_comparison_plan(request, plan, on_outcome=_render)
    except InpaintError as exc:
        fail(exc)
    folder = options.input.is_dir()
    if folder and options.output is not None:
        where = escape(printable(str(options.output)))
        console.print(f"[green]wrote[/] {len(run.result.comparisons)} grid(s) to {where}", soft_wrap=True)
    if options.json_path is not None and str(options.json_path) == "-":
        typer.echo(json_text(run.report, indent=2))
    elif run.result.comparisons:
        _print_table(run.result if folder else run.result.comparisons[0])
    if any(outcome.status is Status.FAILED for outcome in run.outcomes):
        raise typer.Exit(EXIT_FAILED)


def _render(outcome: JobOutcome) -> None:
    """Each image as it is compared: its error, or where a single image's grid went."""
    from inpaint_cli.batch.outcomes import Status

    if outcome.status is Status.FAILED:
        console.print(f"[bold red]error:[/] {escape(printable(outcome.error or ''))}", soft_wrap=True)
    elif outcome.job.relative is None and outcome.written:
        console.print(f"[green]wrote[/] {escape(printable(str(outcome.written[0])))}", soft_wrap=True)


def _cell(value: float | None, digits: int, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "identical"
    return f"{value:.{digits}f}{unit}"


def _print_table(result: Comparison | FolderComparison) -> None:
    """The comparison table on stdout: one row per model (means over images for a folder)."""
    from rich.table import Table

    from inpaint_cli.review.comparison import FolderComparison

    if isinstance(result, FolderComparison):
        rows = result.means()
        title = f"mean over {len(result.comparisons)} image(s)"
    else:
        rows = result.rows()
        title = f"{result.name} (hole {result.hole_fraction:.1%})"
    table = Table(title=title, title_justify="left")
    for column in ("model", "PSNR hole", "SSIM hole", "PSNR whole", "SSIM whole", "time", "load"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(
            escape(row["model"]),
            _cell(row["psnr_hole"], 2, " dB"),
            _cell(row["ssim_hole"], 4),
            _cell(row["psnr_whole"], 2, " dB"),
            _cell(row["ssim_whole"], 4),
            _cell(row["seconds"], 3, " s"),
            _cell(row["load_seconds"], 2, " s"),
        )
    print_table(table)
