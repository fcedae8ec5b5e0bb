"""`inpaint detect`: parse, call `detect_jobs`, render through `console`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from inpaint_cli.cli.console import EXIT_FAILED, console, fail
from inpaint_cli.options import DEFAULT_DETECTOR, DEFAULT_MAX_PIXELS, DetectorName

if TYPE_CHECKING:
    from inpaint_cli.detect.jobs import DetectOutcome
    from inpaint_cli.detect.pipeline import DetectPlan


def detect(
    input: Annotated[Path, typer.Argument(help="An image file, or a folder of images.", show_default=False)],
    output: Annotated[
        Optional[Path],  # noqa: UP045 - Typer needs Optional on Python 3.10
        typer.Option(
            "--output",
            "-o",
            help="Folder for <stem>_mask.png and <stem>_overlay.jpg. Default: beside the image; "
            "for a folder, <folder>_masks/ mirroring its tree.",
        ),
    ] = None,
    *,
    detector: Annotated[
        DetectorName,
        typer.Option(
            help="scratch-tiny (bundled), scratch-bopbtl (BOPBtL, downloaded), classical (no weights)."
        ),
    ] = DEFAULT_DETECTOR,
    checkpoint: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Detector weights (BOPBtL's FT_Epoch_latest.pt or ours) instead of the registry."),
    ] = None,
    threshold: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            min=0.0, max=1.0, help="Damage where the probability is at least this (default: the detector's)."
        ),
    ] = None,
    high_res: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--high-res/--official-scale",
            help="Run the network on the image's own pixels in tiles, or as BOPBtL does at a short side "
            "of 256 px. Default: official for scratch-bopbtl, high-res otherwise.",
            show_default=False,
        ),
    ] = None,
    overlay: Annotated[bool, typer.Option(help="Also write <stem>_overlay.jpg for review.")] = True,
    save_intermediates: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Folder for the probability map of each image (PNG and float32 safetensors)."),
    ] = None,
    overwrite: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--overwrite/--skip-existing",
            help="Replace existing masks, or skip images that have one. Default: skip in a folder, "
            "refuse for a single image.",
            show_default=False,
        ),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also look in subfolders.")] = False,
    report: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Write a JSON report (status, mask, damaged fraction per image)."),
    ] = None,
    html: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--html",
            help="Write a review page: per image the input, the detected damage and the status; "
            "failures first (see `inpaint run --html`).",
            metavar="FILE.html",
        ),
    ] = None,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first failed image.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Print which mask each image gets; load no detector.")
    ] = False,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more pixels than this (decompression bombs).")
    ] = DEFAULT_MAX_PIXELS,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the paths of the masks.")] = False,
) -> None:
    """Find scratches, dust, cracks and tears: write a mask (white = damage) and an overlay per image.

    The masks are named so that `inpaint run PHOTOS --mask MASKS` pairs them: detect, fix a few
    masks by hand in any editor, then fill. Images where nothing survives the detector's
    post-processing are reported as "no damage found" and get an empty mask.
    """
    from inpaint_cli.batch.engine import Status
    from inpaint_cli.detect.pipeline import DetectRequest, plan_detection, run_detection
    from inpaint_cli.errors import InpaintError

    request = DetectRequest(
        input=input,
        output=output,
        detector=detector.value,
        checkpoint=checkpoint,
        threshold=threshold,
        high_res=high_res,
        overlay=overlay,
        intermediates_dir=save_intermediates,
        overwrite=overwrite,
        recursive=recursive,
        report=report,
        html=html,
        fail_fast=fail_fast,
        max_pixels=max_pixels,
    )
    try:
        plan = plan_detection(request)
        if dry_run:
            _print_plan(plan)
            return
        for message in plan.unreadable:
            console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)
        run = run_detection(
            request, plan, on_outcome=lambda o: _render(o, quiet), progress=None if quiet else _progress()
        )
    except InpaintError as exc:
        fail(exc)
    if run.page is not None and not quiet:
        from inpaint_cli.cli.review import render_page_summary

        render_page_summary(run.page)
    outcomes = run.outcomes
    if plan.is_batch and not quiet:
        counts = {status: sum(o.status is status for o in outcomes) for status in Status}
        console.print(
            f"{counts[Status.DONE]} done ({sum(o.no_damage for o in outcomes)} without damage), "
            f"{counts[Status.SKIPPED]} skipped, {counts[Status.FAILED]} failed"
            + (f", {run.not_run} not run" if run.not_run else "")
        )
    if any(o.status is Status.FAILED for o in outcomes):
        raise typer.Exit(EXIT_FAILED)


def _render(outcome: DetectOutcome, quiet: bool) -> None:
    from inpaint_cli.batch.engine import Status

    if outcome.status is Status.FAILED:
        console.print(f"[bold red]error:[/] {escape(outcome.error or '')}", soft_wrap=True)
    elif outcome.status is Status.SKIPPED:
        if not quiet:
            console.print(
                f"skipped {outcome.job.image}: {outcome.job.mask} exists", markup=False, soft_wrap=True
            )
    elif quiet:
        typer.echo(str(outcome.job.mask))
    else:
        found = "no damage found" if outcome.no_damage else f"{outcome.fraction:.2%} damaged"
        console.print(
            f"[green]wrote[/] {escape(str(outcome.job.mask))} ({found}, {outcome.seconds:.2f} s)",
            soft_wrap=True,
        )


def _print_plan(plan: DetectPlan) -> None:
    """The --dry-run lines on stdout: image, mask, action (tab-separated)."""
    from inpaint_cli.detect import jobs as detect_jobs

    for job in plan.jobs:
        decided = detect_jobs.precheck(job, plan.existing)
        action = "detect" if decided is None else decided.error or "skip: mask exists"
        typer.echo(f"{job.image}\t{job.mask}\t{action}")
    for message in plan.unreadable:
        typer.echo(f"-\t-\t{message}")


def _progress() -> object | None:
    try:
        from inpaint_cli.cli.weights import rich_download_progress
    except ImportError:
        return None
    return rich_download_progress(console)
