"""`inpaint compare`: fill one hole with several models, draw the grid, print the table.

The command's parameters are the fields of `CompareOptions` (see `cli.command`); the library calls get
them one by one. Errors become one line through `console.fail`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from inpaint_cli.cli.console import console, fail, print_table, printable
from inpaint_cli.options import DEFAULT_COMPARE_MODELS, Panel, Precision, StrategyName, cli

if TYPE_CHECKING:
    from inpaint_cli.review.comparison import Comparison, FolderComparison

GRID_SUFFIX = "_compare.png"
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
            f"The grid picture (PNG); for a folder, a folder of grids. Default: <stem>{GRID_SUFFIX} "
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
            "Also write the table as JSON to this file (- for stdout).", "--json", metavar="FILE", panel=IO
        ),
    )
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


def compare(options: CompareOptions) -> None:
    """Fill one hole with several models: a labelled grid, and PSNR/SSIM per model with --original.

    Each model is loaded once. The grid shows the whole image and a crop around the hole at full size
    per model. A folder (with --original FOLDER) gives the mean per model over its images.
    """
    from inpaint_cli.errors import InpaintError, UsageError

    try:
        if not options.input.exists():
            raise UsageError("no such file or folder", path=options.input)
        if not options.mask.exists():
            raise UsageError("no such mask file or folder", path=options.mask)
        if options.input.is_dir():
            if options.original is None:
                raise UsageError(
                    "a folder needs --original FOLDER", path=options.input, hint="the clean images, by name"
                )
            result = _compare_folder(options, options.original)
        else:
            result = _compare_one(options)
        if options.json_path is not None:
            inputs = [options.input, options.mask, options.original]
            _write_json(options.json_path, result.as_dict(), inputs=inputs)
    except InpaintError as exc:
        fail(exc)
    if options.json_path is None or str(options.json_path) != "-":
        _print_table(result)


def _refuse_input_target(target: Path, inputs: list[Path | None], what: str) -> None:
    from inpaint_cli.errors import UsageError

    for path in inputs:
        if path is not None and path.exists() and path.resolve() == target.resolve():
            raise UsageError(f"is an input and cannot be the {what}", path=target, hint="give another path")


def _compare_one(options: CompareOptions) -> Comparison:
    from inpaint_cli.review import comparison as comparing
    from inpaint_cli.review.visualize import save_png

    image, mask, original = options.input, options.mask, options.original
    grid_path = options.output or image.with_name(image.stem + GRID_SUFFIX)
    _refuse_input_target(grid_path, [image, mask, original], "grid")
    result = comparing.compare(
        image,
        mask,
        options.models,
        original=original,
        device=options.device,
        precision=options.precision.value,
        strategy=options.strategy.value,
    )
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    save_png(grid_path, comparing.make_grid(result).picture)
    console.print(f"[green]wrote[/] {escape(printable(str(grid_path)))}", soft_wrap=True)
    return result


def _compare_folder(options: CompareOptions, originals: Path) -> FolderComparison:
    from inpaint_cli.review import comparison as comparing
    from inpaint_cli.review.visualize import save_png

    folder, mask, output = options.input, options.mask, options.output

    if output is not None:
        _refuse_input_target(output, [folder, mask, originals], "grid folder")
        if output.is_file():
            from inpaint_cli.errors import UsageError

            raise UsageError("-o must be a folder when the input is a folder", path=output)

    def draw(comparison: Comparison) -> None:
        if output is None:
            return
        relative = Path(comparison.name).relative_to(folder)
        target = output / relative.parent / f"{relative.stem}{GRID_SUFFIX}"
        target.parent.mkdir(parents=True, exist_ok=True)
        save_png(target, comparing.make_grid(comparison).picture)

    exclude = [output] if output is not None else []
    result = comparing.compare_folder(
        folder,
        mask,
        originals,
        options.models,
        recursive=options.recursive,
        exclude=exclude,
        on_image=draw,
        device=options.device,
        precision=options.precision.value,
        strategy=options.strategy.value,
    )
    for failure in result.failures:
        console.print(f"[bold red]error:[/] {escape(printable(failure))}", soft_wrap=True)
    if output is not None:
        where = escape(printable(str(output)))
        console.print(f"[green]wrote[/] {len(result.comparisons)} grid(s) to {where}", soft_wrap=True)
    return result


def _write_json(path: Path, data: dict[str, Any], *, inputs: list[Path | None]) -> None:
    from inpaint_cli.files.atomic import atomic_path

    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if str(path) == "-":
        typer.echo(text, nl=False)
        return
    _refuse_input_target(path, inputs, "JSON output")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


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
