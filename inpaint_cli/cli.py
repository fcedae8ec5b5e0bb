"""The `inpaint` command line: parse, call the library, render with rich.

Heavy imports (torch, OpenCV) happen inside the commands so `inpaint --help` stays instant.
Domain errors become one-line messages here and nowhere else: exit 1 for failed inputs,
exit 2 for invalid usage.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from inpaint_cli.console import EXIT_FAILED, EXIT_INTERRUPTED, console, fail
from inpaint_cli.options import OutputFormat, Precision, StrategyName

if TYPE_CHECKING:
    from inpaint_cli import batch
    from inpaint_cli.batch import JobOutcome

app = typer.Typer(
    name="inpaint",
    help="Restore damaged photos by neural inpainting (LaMa, GatedConv / DeepFill v2, PConv, OpenCV).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
SUMMARY_NOTES = 20
"""Failures and unused masks listed under the batch summary; the JSON report has them all."""


def version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"inpaint {version('inpaint')}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Restore damaged photos by neural inpainting."""


@app.command()
def run(
    input: Annotated[
        Path, typer.Argument(help="An image file, or a folder of images (batch).", show_default=False)
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
    model: Annotated[
        str,
        typer.Option(
            help="A model from `inpaint models` (lama, lama-fourier, gatedconv, pconv, ...), "
            "a family name with --checkpoint, or a classical method: telea, ns."
        ),
    ] = "lama",
    checkpoint: Annotated[
        Optional[Path],  # noqa: UP045 - Typer needs Optional on Python 3.10
        typer.Option(
            help="Use this weight file instead of the registry (official format or ours); "
            "the family comes from --model or the file's keys."
        ),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--output",
            "-o",
            help="Output file (single image) or folder (batch). "
            "Default: <stem>_inpainted.<ext> beside the input.",
        ),
    ] = None,
    output_format: Annotated[
        Optional[OutputFormat],  # noqa: UP045
        typer.Option(
            "--format", help="Output format; default: the output's extension, else the input's format."
        ),
    ] = None,
    quality: Annotated[int, typer.Option(min=1, max=100, help="Quality of lossy outputs (JPEG, WebP).")] = 95,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda, cuda:N or mps.")] = "auto",
    threads: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="CPU threads for the network (default: PyTorch's choice)."),
    ] = None,
    precision: Annotated[
        Precision,
        typer.Option(help="auto = fp32 on CPU, bf16/fp16 on CUDA. bf16 on CPU is faster on AVX-512 BF16."),
    ] = Precision.AUTO,
    strategy: Annotated[
        StrategyName,
        typer.Option(
            help="How big images are processed: full (one pass), crop (boxes around holes), tile, "
            "resize (to --max-side), auto (chosen per image from the model and the memory budget)."
        ),
    ] = StrategyName.AUTO,
    max_side: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=16, help="Longest side a pass may have; larger boxes are downscaled, filled, upscaled."
        ),
    ] = None,
    tile_size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=64, help="Side of the tiles of the tile strategy (default: from the model and memory budget)."
        ),
    ] = None,
    tile_overlap: Annotated[
        int, typer.Option(min=0, help="Overlap of neighbouring tiles, blended with feathered weights.")
    ] = 64,
    crop_margin: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=0,
            help="Context (pixels) kept around each hole by the crop strategy. "
            "Default: 1.5 hole widths, between 16 and 128.",
        ),
    ] = None,
    memory_budget: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Memory one network pass may use, e.g. 4GB (default: from free device memory/RAM)."
        ),
    ] = None,
    mask_threshold: Annotated[
        int,
        typer.Option(
            min=0, max=254, help="A mask pixel is a hole where its grey value (0-255) is above this."
        ),
    ] = 127,
    invert_mask: Annotated[bool, typer.Option(help="Black = hole instead of white = hole.")] = False,
    dilate: Annotated[int, typer.Option(min=0, help="Grow the hole by this many pixels.")] = 0,
    save_intermediates: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            help="Folder for per-input visualisations and raw tensors "
            "(PConv masks, GatedConv gates, LaMa features)."
        ),
    ] = None,
    panel: Annotated[
        bool, typer.Option(help="Also write <output stem>_panel.png: input | mask | result.")
    ] = False,
    overwrite: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--overwrite/--skip-existing",
            help="Replace existing outputs, or skip inputs whose output exists. "
            "Default: skip in a batch, refuse for a single image.",
            show_default=False,
        ),
    ] = None,
    report: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Write a JSON report (status, output, masks, time, error per input)."),
    ] = None,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first failed input.")] = False,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Batch: also process the input folder's subfolders.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Threads that decode the next images, and as many that write finished ones, "
            "while the model works (at most 2*jobs+1 images in memory).",
        ),
    ] = 2,
    dry_run: Annotated[
        bool,
        typer.Option(help="Print which mask(s) and output each image gets, or why not; load no model."),
    ] = False,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more pixels than this (decompression bombs).")
    ] = 250_000_000,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the paths of the results.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say more about each step.")] = False,
) -> None:
    """Fill the holes of an image (or a folder of images) given a mask.

    A folder is a batch: each image is paired with its mask(s) by name in the --mask folder (or
    the one --mask file is used for all), and the outputs mirror the input tree under -o
    (default: <folder>_inpainted/ beside it). Existing outputs are skipped, so a rerun resumes.
    """
    from inpaint_cli import batch
    from inpaint_cli.engine import Inpainter, parse_size
    from inpaint_cli.errors import InpaintError, UsageError

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    try:
        if not input.exists():
            raise UsageError("no such file or folder", path=input)
        if not mask.exists():
            raise UsageError("no such mask file or folder", path=mask)
        is_batch = input.is_dir()
        if overwrite is None:
            existing = batch.Existing.SKIP if is_batch else batch.Existing.ERROR
        else:
            existing = batch.Existing.OVERWRITE if overwrite else batch.Existing.SKIP
        settings = batch.RunSettings(
            mask_threshold=mask_threshold,
            invert_mask=invert_mask,
            dilate=dilate,
            output_format=output_format.value if output_format else None,
            quality=quality,
            existing=existing,
            panel=panel,
            intermediates_dir=save_intermediates,
            max_pixels=max_pixels,
        )
        plan = _plan_run(input, mask, output, recursive, settings)
        if dry_run:
            _print_plan(plan, settings)
            return
        inpainter = Inpainter.from_name(
            model,
            checkpoint=checkpoint,
            progress=None if quiet else _download_progress(),
            device=device,
            precision=precision.value,
            threads=threads,
            strategy=strategy.value,
            max_side=max_side,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            crop_margin=crop_margin,
            memory_budget=parse_size(memory_budget) if memory_budget else None,
        )
    except InpaintError as exc:
        fail(exc)
    display = _BatchProgress(len(plan.jobs), quiet=quiet, bar=is_batch)
    started = time.perf_counter()
    interrupted = True  # until run_jobs returns
    try:
        with display:
            batch.run_jobs(
                inpainter,
                plan.jobs,
                settings,
                on_outcome=display.finished,
                fail_fast=fail_fast,
                workers=jobs,
                on_start=display.started,
            )
        interrupted = False
    except KeyboardInterrupt:
        pass
    finally:
        # Even before an unexpected error's traceback, what was done is reported.
        elapsed = time.perf_counter() - started
        _report_batch(plan, display.outcomes, report, summary=is_batch and not quiet, seconds=elapsed)
    if interrupted:
        console.print("[bold red]interrupted:[/] outputs written so far are complete; run again to finish")
        raise typer.Exit(EXIT_INTERRUPTED)
    if any(o.status is batch.Status.FAILED for o in display.outcomes):
        raise typer.Exit(EXIT_FAILED)


def _report_batch(
    plan: batch.Plan, outcomes: list[JobOutcome], report: Path | None, *, summary: bool, seconds: float
) -> None:
    """The JSON report (if asked for) and the summary table, in input order."""
    from inpaint_cli import batch

    position = {job: index for index, job in enumerate(plan.jobs)}
    outcomes = sorted(outcomes, key=lambda outcome: position[outcome.job])
    seen = {outcome.job for outcome in outcomes}
    not_run = [job for job in plan.jobs if job not in seen]
    if report is not None:
        batch.write_report(report, outcomes, not_run=not_run, unused_masks=plan.unused_masks)
    if summary:
        _print_summary(plan, outcomes, not_run, seconds)


def _plan_run(
    input: Path, mask: Path, output: Path | None, recursive: bool, settings: batch.RunSettings
) -> batch.Plan:
    """Pair the input(s) with masks and outputs; a folder without images is a usage error."""
    from inpaint_cli import batch
    from inpaint_cli.errors import UsageError

    if not input.is_dir():
        return batch.plan_single(input, mask, output, settings.output_format)
    if output is not None and output.is_file():
        raise UsageError("-o must be a folder when the input is a folder", path=output)
    plan = batch.plan_folder(
        input,
        mask,
        output,
        recursive=recursive,
        output_format=settings.output_format,
        written_elsewhere=[settings.intermediates_dir] if settings.intermediates_dir else [],
    )
    if not plan.jobs:
        hint = None if recursive else "use --recursive to look in subfolders"
        raise UsageError("no images found", path=input, hint=hint)
    return plan


def _print_plan(plan: batch.Plan, settings: batch.RunSettings) -> None:
    """The --dry-run table on stdout: a rich table on a terminal, tab-separated lines elsewhere."""
    from rich.table import Table

    from inpaint_cli import batch

    rows = []
    for job in plan.jobs:
        decided = batch.precheck(job, settings)
        action = "run" if decided is None else decided.error or "skip: output exists"
        rows.append((str(job.image), ", ".join(map(str, job.masks)) or "-", str(job.output), action))
    rows += [("-", str(mask), "-", "unused: no image has this name") for mask in plan.unused_masks]
    rows += [("-", "-", "-", message) for message in plan.unreadable]
    out = Console(highlight=False)
    if not out.is_terminal:
        for row in rows:
            typer.echo("\t".join(row))
        return
    table = Table("image", "mask(s)", "output", "action", title=f"{len(plan.jobs)} image(s)")
    for row in rows:
        table.add_row(*row)
    out.print(table)


class _BatchProgress:
    """Progress on stderr: on a terminal, a bar (count, images/s, ETA, current file) with notes
    printed above it; elsewhere (or for one image), one plain line per input."""

    def __init__(self, total: int, *, quiet: bool, bar: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.quiet = quiet
        self.outcomes: list[JobOutcome] = []
        self.progress = None
        if bar and not quiet and console.is_terminal:
            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}", markup=False),
                console=console,
            )
            self.task = self.progress.add_task("inpainting", total=total, current="", rate="")

    def __enter__(self) -> _BatchProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def started(self, job: batch.Job) -> None:
        if self.progress is not None:
            self.progress.update(self.task, current=str(job.name))

    def finished(self, outcome: JobOutcome) -> None:
        self.outcomes.append(outcome)
        if self.progress is None:
            _render_outcome(outcome, self.quiet)
            return
        for warning in outcome.warnings:
            self.progress.console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        if outcome.error is not None:
            self.progress.console.print(f"[bold red]error:[/] {escape(outcome.error)}", soft_wrap=True)
        self.progress.advance(self.task)
        speed = self.progress.tasks[0].speed
        self.progress.update(self.task, rate=f"{speed:.2f} images/s" if speed else "")


def _print_summary(
    plan: batch.Plan, outcomes: list[JobOutcome], not_run: list[batch.Job], seconds: float
) -> None:
    """The end-of-batch table on stderr: counts, speed, and every input that needs attention."""
    from rich.table import Table

    from inpaint_cli.batch import Status

    counts = {status: sum(o.status is status for o in outcomes) for status in Status}
    done = counts[Status.DONE]
    table = Table(title="batch summary", show_header=False, title_justify="left")
    table.add_row("[green]done[/]", str(done))
    table.add_row("skipped (output exists)", str(counts[Status.SKIPPED]))
    table.add_row("[red]failed[/]" if counts[Status.FAILED] else "failed", str(counts[Status.FAILED]))
    if not_run:
        table.add_row("not run", str(len(not_run)))
    table.add_row("unused masks", str(len(plan.unused_masks)))
    table.add_row("time", f"{seconds:.1f} s ({done / seconds if seconds else 0:.2f} images/s)")
    console.print(table)
    notes = [f"[red]failed[/] {escape(o.error)}" for o in outcomes if o.status is Status.FAILED]
    notes += [
        f"[yellow]unused mask[/] {escape(str(mask))}: no image has this name" for mask in plan.unused_masks
    ]
    notes += [f"[yellow]unreadable[/] {escape(message)}" for message in plan.unreadable]
    for note in notes[:SUMMARY_NOTES]:
        console.print(f"  {note}", soft_wrap=True)
    if len(notes) > SUMMARY_NOTES:
        console.print(f"  ... and {len(notes) - SUMMARY_NOTES} more (all in --report)")


def _download_progress() -> object | None:
    """The rich download progress of the weights module, when it offers one."""
    try:
        from inpaint_cli.cli_weights import rich_download_progress
    except ImportError:
        return None
    return rich_download_progress(console)


def _render_outcome(outcome: JobOutcome, quiet: bool) -> None:
    from inpaint_cli.batch import Status

    for warning in outcome.warnings:
        if not quiet:
            console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if outcome.status is Status.FAILED:
        console.print(f"[bold red]error:[/] {escape(outcome.error)}", soft_wrap=True)
    elif outcome.status is Status.SKIPPED:
        if not quiet:
            console.print(
                f"skipped {outcome.job.image}: {outcome.job.output} exists", soft_wrap=True, markup=False
            )
    else:
        if quiet:
            typer.echo(str(outcome.written[0]))
        else:
            extra = "".join(f"\n  also wrote {escape(str(path))}" for path in outcome.written[1:])
            console.print(
                f"[green]wrote[/] {escape(str(outcome.written[0]))} ({outcome.seconds:.2f} s){extra}",
                soft_wrap=True,
            )


@app.command()
def models() -> None:
    """Registered models: family, variant, download size, licence, and whether they are cached."""
    from inpaint_cli.cli_weights import models_table
    from inpaint_cli.errors import InpaintError

    try:
        table = models_table()
    except InpaintError as exc:
        fail(exc)
    Console().print(table)


@app.command()
def doctor() -> None:
    """Versions, devices, cache folder, and which registered weights are cached."""
    import platform

    import cv2
    import numpy
    import PIL
    import torch
    from rich.table import Table

    from inpaint_cli import weights

    table = Table(title="inpaint doctor", show_header=False)
    table.add_row("python", platform.python_version())
    table.add_row("torch", torch.__version__)
    table.add_row("numpy / pillow / opencv", f"{numpy.__version__} / {PIL.__version__} / {cv2.__version__}")
    table.add_row("cpu threads", str(torch.get_num_threads()))
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    table.add_row("cuda", ", ".join(f"cuda:{i} {name}" for i, name in enumerate(cuda)) or "not available")
    mps = getattr(torch.backends, "mps", None)
    table.add_row("mps", "available" if mps is not None and mps.is_available() else "not available")
    table.add_row("cache folder", str(weights.cache_dir()))
    manifest = weights.load_manifest()
    bundled = weights.bundled_names()  # shipped in the package: they work offline
    cached = [name for name in manifest if name not in bundled and weights.cached_path(name) is not None]
    missing = [name for name in manifest if name not in cached and name not in bundled]
    table.add_row("bundled weights", ", ".join(bundled) or "none")
    table.add_row("cached weights", ", ".join(cached) or "none")
    table.add_row("not cached", ", ".join(missing) or "none")
    for found in weights.find_foreign_checkpoints():
        name = weights.model_for_file(found, manifest) or "NAME"
        table.add_row("importable file", f"{found}  (inpaint weights import {name} {found})")
    Console().print(table)


def _mount_subcommands() -> None:
    from inpaint_cli import cli_review
    from inpaint_cli.cli_weights import weights_app

    app.add_typer(weights_app, name="weights")
    app.command()(cli_review.report)
    app.command()(cli_review.compare)


_mount_subcommands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
