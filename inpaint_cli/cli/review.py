"""`inpaint report` and `inpaint compare`: parse, call `review` / `compare` once, render.

Registered on the main app by `cli.py`; errors become one line through `console.fail`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from inpaint_cli.cli.console import console, fail, printable

if TYPE_CHECKING:
    from inpaint_cli.review.comparison import Comparison, FolderComparison
    from inpaint_cli.review.page import PageSummary

DEFAULT_MODELS = "lama-tiny,gatedconv-tiny,pconv-tiny,telea,ns"
"""The models `compare` runs when none are named: all that work offline (kept equal to
`comparison.DEFAULT_MODELS`, which this module does not import so that `--help` stays fast)."""
GRID_SUFFIX = "_compare.png"


def report(
    report_file: Annotated[
        Path, typer.Argument(help="A JSON report of `inpaint run --report`.", show_default=False)
    ],
    html: Annotated[
        Path, typer.Option("--html", help="The review page to write (.html).", show_default=False)
    ],
    *,
    title: Annotated[str, typer.Option(help="Title of the page.")] = "inpaint review",
    model: Annotated[str, typer.Option(help="Model shown for records that do not name one.")] = "",
    overwrite: Annotated[
        bool, typer.Option(help="Replace a page (and its _files folder) that inpaint did not make.")
    ] = False,
) -> None:
    """Build the review page of a batch from its JSON report, without running anything again."""
    from inpaint_cli.errors import InpaintError
    from inpaint_cli.review import page as review

    try:
        summary = review.rebuild_page(report_file, html, title=title, model=model, overwrite=overwrite)
    except InpaintError as exc:
        fail(exc)
    except OSError as exc:
        from inpaint_cli.errors import OutputError

        fail(OutputError(f"cannot write the page ({exc.strerror or exc})", path=exc.filename or html))
    render_page_summary(summary)


def render_page_summary(summary: PageSummary) -> None:
    """One line on stderr: where the page is and what it holds (used by `run --html` too)."""
    counts = ", ".join(f"{status} {number}" for status, number in sorted(summary.counts.items()))
    console.print(
        f"[green]wrote[/] {escape(printable(str(summary.page)))}: {summary.rows} image(s) ({escape(counts)}"
        f", suspicious {summary.suspicious}), {summary.thumbnails_written} new thumbnail(s), "
        f"{summary.seconds:.1f} s",
        soft_wrap=True,
    )


def compare(
    input: Annotated[
        Path,
        typer.Argument(
            help="A damaged image, or a folder of them (with --original FOLDER).", show_default=False
        ),
    ],
    mask: Annotated[
        Path,
        typer.Option(
            "--mask",
            "-m",
            help="Mask file (white = hole) or a folder of masks paired by name.",
            show_default=False,
        ),
    ],
    *,
    models: Annotated[str, typer.Option(help="Comma-separated models, each loaded once.")] = DEFAULT_MODELS,
    original: Annotated[
        Optional[Path],  # noqa: UP045 - Typer needs Optional on Python 3.10
        typer.Option(help="The clean image (or folder of them): adds PSNR and SSIM in the hole and overall."),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--output",
            "-o",
            help=f"The grid picture (PNG); for a folder, a folder of grids. Default: <stem>{GRID_SUFFIX} "
            "beside a single image, none for a folder.",
        ),
    ] = None,
    json_path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--json", help="Also write the table as JSON to this file (- for stdout)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, fp16, bf16, int8 (`inpaint run`).")] = "auto",
    strategy: Annotated[
        str, typer.Option(help="Resolution strategy of every model (see `inpaint run`).")
    ] = "auto",
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Folder: include subfolders.")] = False,
) -> None:
    """Fill one hole with several models: a labelled grid, and PSNR/SSIM per model with --original.

    Each model is loaded once. The grid shows the whole image and a crop around the hole at full size
    per model. A folder (with --original FOLDER) gives the mean per model over its images.
    """
    from inpaint_cli.errors import InpaintError, UsageError

    names = [name.strip() for name in models.split(",") if name.strip()]
    options = {"device": device, "precision": precision, "strategy": strategy}
    try:
        if not input.exists():
            raise UsageError("no such file or folder", path=input)
        if not mask.exists():
            raise UsageError("no such mask file or folder", path=mask)
        if input.is_dir():
            if original is None:
                raise UsageError(
                    "a folder needs --original FOLDER", path=input, hint="the clean images, by name"
                )
            result = _compare_folder(input, mask, original, names, output, recursive, options)
        else:
            result = _compare_one(input, mask, original, names, output, options)
        if json_path is not None:
            _write_json(json_path, result.as_dict(), inputs=[input, mask, original])
    except InpaintError as exc:
        fail(exc)
    if json_path is None or str(json_path) != "-":
        _print_table(result)


def _refuse_input_target(target: Path, inputs: list[Path | None], what: str) -> None:
    from inpaint_cli.errors import UsageError

    for path in inputs:
        if path is not None and path.exists() and path.resolve() == target.resolve():
            raise UsageError(f"is an input and cannot be the {what}", path=target, hint="give another path")


def _compare_one(
    image: Path, mask: Path, original: Path | None, names: list[str], output: Path | None, options: dict
) -> Comparison:
    from inpaint_cli.review import comparison as comparing
    from inpaint_cli.review.visualize import save_png

    grid_path = output or image.with_name(image.stem + GRID_SUFFIX)
    _refuse_input_target(grid_path, [image, mask, original], "grid")
    result = comparing.compare(image, mask, names, original=original, **options)
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    save_png(grid_path, comparing.make_grid(result).picture)
    console.print(f"[green]wrote[/] {escape(printable(str(grid_path)))}", soft_wrap=True)
    return result


def _compare_folder(
    folder: Path,
    mask: Path,
    originals: Path,
    names: list[str],
    output: Path | None,
    recursive: bool,
    options: dict,
) -> FolderComparison:
    from inpaint_cli.review import comparison as comparing
    from inpaint_cli.review.visualize import save_png

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
        folder, mask, originals, names, recursive=recursive, exclude=exclude, on_image=draw, **options
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
    from rich.console import Console
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
    Console(highlight=False).print(table)
