"""`inpaint detect`: options from `DetectOptions`, the work from the detect job kind
(`batch.kinds.detect`), rendered on the console.

The command's parameters are the fields of `DetectOptions` (see `cli.command`); `detect_request` turns
them into the library's `DetectRequest` field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from inpaint_cli.cli.console import EXIT_FAILED, EXIT_INTERRUPTED, console, fail
from inpaint_cli.options import (
    DEFAULT_DETECTOR,
    DEFAULT_MAX_PIXELS,
    DetectorName,
    DistributedOptions,
    Panel,
    check_bounds,
    cli,
)

if TYPE_CHECKING:
    from inpaint_cli.batch.kinds.detect import DetectPlan, DetectRequest
    from inpaint_cli.batch.outcomes import JobOutcome

IO, MODEL, BATCH, REVIEW = Panel.INPUT_OUTPUT, Panel.MODEL, Panel.BATCH, Panel.REVIEW


@dataclass(frozen=True, kw_only=True)
class DetectOptions(DistributedOptions):
    """Everything `inpaint detect` was asked to do (the `--ray` options: `DistributedOptions`)."""

    input: Path = field(
        metadata=cli("An image, or a folder of images.", metavar="INPUT", argument=True, panel=IO)
    )
    output: Path | None = field(
        default=None,
        metadata=cli(
            "Folder for <stem>_mask.png and <stem>_overlay.jpg. Default: beside the image; "
            "for a folder, <folder>_masks/ mirroring it.",
            "--output",
            "-o",
            metavar="DIR",
            panel=IO,
        ),
    )
    overlay: bool = field(
        default=True,
        metadata=cli("Also write <stem>_overlay.jpg for review.", "--overlay/--no-overlay", panel=IO),
    )
    overwrite: bool | None = field(
        default=None,
        metadata=cli(
            "Replace existing masks, or skip their images. Default: skip in a folder, "
            "refuse for a single image.",
            "--overwrite/--skip-existing",
            panel=IO,
        ),
    )
    dry_run: bool = field(
        default=False, metadata=cli("Print which mask each image gets; load no detector.", panel=IO)
    )
    quiet: bool = field(
        default=False, metadata=cli("Print only the paths of the masks.", "--quiet", "-q", panel=IO)
    )
    detector: DetectorName = field(
        default=DEFAULT_DETECTOR,
        metadata=cli(
            "scratch-tiny (bundled), scratch-bopbtl (BOPBtL, downloaded) or classical (no weights).",
            metavar="NAME",
            panel=MODEL,
        ),
    )
    checkpoint: Path | None = field(
        default=None,
        metadata=cli(
            "Detector weights (BOPBtL's FT_Epoch_latest.pt or ours) instead of the registry.",
            metavar="FILE",
            panel=MODEL,
        ),
    )
    threshold: float | None = field(
        default=None,
        metadata=cli(
            "Damage where the probability is at least this. Default: the detector's.",
            metavar="0-1",
            minimum=0.0,
            maximum=1.0,
            panel=MODEL,
        ),
    )
    high_res: bool | None = field(
        default=None,
        metadata=cli(
            "Run on the image's own pixels in tiles, or as BOPBtL does at a short side of 256 px. "
            "Default: official for scratch-bopbtl, else high-res.",
            "--high-res/--official-scale",
            panel=MODEL,
        ),
    )
    recursive: bool = field(
        default=False, metadata=cli("Also look in subfolders.", "--recursive", "-r", panel=BATCH)
    )
    fail_fast: bool = field(default=False, metadata=cli("Stop at the first failed image.", panel=BATCH))
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata=cli(
            "Refuse images with more pixels (decompression bombs).", metavar="N", minimum=1, panel=BATCH
        ),
    )
    report: Path | None = field(
        default=None,
        metadata=cli(
            "Write a JSON report: status, mask, damaged fraction per image.", metavar="FILE", panel=REVIEW
        ),
    )
    html: Path | None = field(
        default=None,
        metadata=cli(
            "Write a review page: the input, the damage found and the status per image, failures first.",
            metavar="FILE",
            panel=REVIEW,
        ),
    )
    intermediates_dir: Path | None = field(
        default=None,
        metadata=cli(
            "Folder for each image's probability map (PNG and float32 safetensors).",
            "--save-intermediates",
            metavar="DIR",
            panel=REVIEW,
        ),
    )
    device: str = field(
        default="cpu",
        metadata=cli(
            "Where the detector network runs: cpu, auto (CUDA if available), cuda, cuda:N or mps.",
            metavar="DEVICE",
            panel=MODEL,
        ),
    )
    jobs: int = field(
        default=1,
        metadata=cli(
            "Threads that read images ahead and write masks behind.", metavar="N", minimum=1, panel=BATCH
        ),
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        super().__post_init__()


def detect_request(options: DetectOptions) -> DetectRequest:
    """The library's request for `options` (all but `dry_run` and `quiet`, which are the command's)."""
    from inpaint_cli.batch.kinds.detect import DetectRequest

    return DetectRequest(
        input=options.input,
        output=options.output,
        detector=options.detector.value,
        checkpoint=options.checkpoint,
        threshold=options.threshold,
        high_res=options.high_res,
        overlay=options.overlay,
        intermediates_dir=options.intermediates_dir,
        overwrite=options.overwrite,
        recursive=options.recursive,
        report=options.report,
        html=options.html,
        fail_fast=options.fail_fast,
        max_pixels=options.max_pixels,
        device=options.device,
        jobs=options.jobs,
        ray=options.ray,
        workers=options.workers,
        cpus_per_worker=options.cpus_per_worker,
        gpus_per_worker=options.gpus_per_worker,
    )


def detect_command(options: DetectOptions) -> None:
    """Find scratches, dust, cracks and tears: write a mask (white = damage) and an overlay per image.

    The masks are named so that `inpaint run PHOTOS --mask MASKS` pairs them: detect, fix a few
    masks by hand in any editor, then fill. Images where nothing survives the detector's
    post-processing are reported as "no damage found" and get an empty mask.
    """
    from inpaint_cli.batch.kinds import detect as detect_kind
    from inpaint_cli.batch.outcomes import Status
    from inpaint_cli.errors import InpaintError

    request = detect_request(options)
    quiet = options.quiet
    try:
        plan = detect_kind.plan_detection(request)
        if options.dry_run:
            _print_plan(plan)
            return
        for message in plan.unreadable:
            console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)
        run = detect_kind.run_detection(
            request,
            plan,
            on_outcome=lambda o: _render(o, quiet),
            progress=None if quiet else _progress(),
            on_workers=None if quiet else _say_workers,
        )
    except InpaintError as exc:
        fail(exc)
    if run.page is not None and not quiet:
        from inpaint_cli.cli.review import render_page_summary

        render_page_summary(run.page)
    outcomes = run.outcomes
    if plan.plan.batch and not quiet:
        counts = {status: sum(o.status is status for o in outcomes) for status in Status}
        no_damage = sum(o.status is Status.DONE and bool(o.details.get("no_damage")) for o in outcomes)
        console.print(
            f"{counts[Status.DONE]} done ({no_damage} without damage), "
            f"{counts[Status.SKIPPED]} skipped, {counts[Status.FAILED]} failed"
            + (f", {run.not_run} not run" if run.not_run else "")
        )
    if outcomes.interrupted:
        console.print("[bold red]interrupted:[/] masks written so far are complete; run again to finish")
        raise typer.Exit(EXIT_INTERRUPTED)
    if any(o.status is Status.FAILED for o in outcomes):
        raise typer.Exit(EXIT_FAILED)


def _render(outcome: JobOutcome, quiet: bool) -> None:
    from inpaint_cli.batch.outcomes import Status

    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if outcome.status is Status.FAILED:
        console.print(f"[bold red]error:[/] {escape(outcome.error or '')}", soft_wrap=True)
    elif outcome.status is Status.SKIPPED:
        if not quiet:
            console.print(
                f"skipped {outcome.job.image}: {outcome.job.output} exists", markup=False, soft_wrap=True
            )
    elif quiet:
        typer.echo(str(outcome.job.output))
    else:
        fraction = outcome.details["damage_fraction"]
        found = "no damage found" if outcome.details["no_damage"] else f"{fraction:.2%} damaged"
        console.print(
            f"[green]wrote[/] {escape(str(outcome.job.output))} ({found}, {outcome.seconds:.2f} s)",
            soft_wrap=True,
        )


def _say_workers(live: int) -> None:
    """With --ray: the workers with their detector loaded, whenever that changes (no download here)."""
    from inpaint_cli.cli.render import live_workers

    console.print(f"Ray: {live_workers(live)}", soft_wrap=True)


def _print_plan(plan: DetectPlan) -> None:
    """The --dry-run lines on stdout: image, mask, action (tab-separated)."""
    from inpaint_cli.batch.kinds.detect import dry_run_lines

    for image, mask, action in dry_run_lines(plan):
        typer.echo(f"{image}\t{mask}\t{action}")
    for message in plan.unreadable:
        typer.echo(f"-\t-\t{message}")


def _progress() -> object | None:
    try:
        from inpaint_cli.cli.weights import rich_download_progress
    except ImportError:
        return None
    return rich_download_progress(console)
