"""`inpaint run`: options from `RunOptions`, the work from `pipeline.run`, the text from `cli.render`.

The command declares nothing itself: its parameters are the fields of `RunOptions` (see
`cli.command`), so a new option is a new field there, read by the library.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import typer

from inpaint_cli.batch.pipeline import RunEvents
from inpaint_cli.batch.run_options import RunOptions
from inpaint_cli.cli import render as cli_render
from inpaint_cli.cli.console import EXIT_FAILED, EXIT_INTERRUPTED, console, fail

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from inpaint_cli.batch.jobs import Job
    from inpaint_cli.batch.outcomes import JobOutcome
    from inpaint_cli.batch.pipeline import ModelInfo, RunResult
    from inpaint_cli.review.page import PageSummary

LONG_PLAN_SECONDS = 60
"""Plans estimated to take longer than this get their estimate said (before, or after a first pass)."""


def run_command(options: RunOptions) -> None:
    """Fill the holes of an image (or a folder of images) given a mask.

    A folder is a batch: each image is paired with its mask(s) by name in the --mask folder (or
    the one --mask file is used for all), and the outputs mirror the input tree under -o
    (default: <folder>_inpainted/ beside it). Existing outputs are skipped, so a rerun resumes.
    """
    from inpaint_cli.batch import pipeline
    from inpaint_cli.errors import InpaintError

    _configure_logging(options.verbose)
    display = Display(options)
    try:
        with display:
            result = pipeline.run(options, display)
    except InpaintError as error:
        fail(error)
    _finish(options, result)


def _finish(options: RunOptions, result: RunResult) -> None:
    """The dry-run table or the batch summary, then the exit code."""
    if result.dry_run is not None:
        cli_render.print_dry_run(result.dry_run)
        if result.failed:  # an input that would fail (no mask, wrong size, truncated) fails the dry run
            raise typer.Exit(EXIT_FAILED)
        return
    if options.is_batch and not options.quiet:
        cli_render.print_summary(result)
    if result.report_error is not None:
        console.print(f"[bold red]error:[/] {cli_render.text(result.report_error)}", soft_wrap=True)
    if result.interrupted:
        console.print("[bold red]interrupted:[/] outputs written so far are complete; run again to finish")
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.failed:
        raise typer.Exit(EXIT_FAILED)


def _configure_logging(verbose: bool) -> None:
    """Library log records (out-of-memory retries, cleaned temporary files) through the console."""
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_time=False, show_path=False, show_level=False)
    handler.setFormatter(logging.Formatter("%(message)s"))  # else basicConfig prefixes `INFO:<logger>:`
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    # -v: the package's own notes; other libraries stay at warnings.
    logging.getLogger("inpaint_cli").setLevel(logging.INFO if verbose else logging.WARNING)


def _process_seconds() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included)."""
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # an exotic platform without process times: say nothing rather than fail
        return None


class Display(RunEvents):
    """Renders the events of a run on stderr (result paths on stdout with --quiet).

    On a terminal, a batch shows a bar (count, images/s, ETA, current file) with each outcome's lines
    printed above it, and a single image a bar over its boxes or tiles; elsewhere, plain lines. The bar
    starts once the model is loaded, so it never competes with a download's bar.
    """

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.download_progress = None if options.quiet else _download_progress()
        self._single = not options.is_batch
        self._jobs: int | None = None
        self._plan = ""
        """The plan of the job the model is filling (said again with its estimate)."""

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def say(self, line: str) -> None:
        target = self.progress.console if self.progress is not None else console
        target.print(line, soft_wrap=True)

    # --- RunEvents --------------------------------------------------------------------------------

    def jobs_planned(self, jobs: list[Job]) -> None:
        self._jobs = len(jobs)

    def model_loaded(self, model: ModelInfo) -> None:
        if self.options.quiet:
            return
        for line in cli_render.model_lines(model, verbose=self.options.verbose):
            self.say(line)
        if console.is_terminal:
            self.progress = _make_progress()
            total = None if self._single else self._jobs
            self.task = self.progress.add_task("inpainting", total=total, current="", rate="")
            self.progress.start()

    def workers_changed(self, live: int) -> None:
        """With --ray: the bar (no model loads here) shows the live workers instead of the current file."""
        if self.options.quiet:
            return
        if self.progress is None and console.is_terminal:
            self.progress = _make_progress()
            self.task = self.progress.add_task("inpainting on Ray", total=self._jobs, current="", rate="")
            self.progress.start()
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, current=cli_render.live_workers(live))
        else:
            self.say(f"Ray: {cli_render.live_workers(live)}")

    def job_started(self, job: Job) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, current=str(job.name))

    def job_planned(self, job: Job, description: str, seconds: float | None) -> None:
        """Before a long plan: its estimate, so a silent minute is expected."""
        self._plan = description
        if seconds is not None and seconds >= LONG_PLAN_SECONDS and not self.options.quiet:
            self.say(
                f"[cyan]estimate:[/] {cli_render.text(job.image)}: {cli_render.text(description)} "
                f"will take about {_duration(seconds)} (a smaller --max-side or another --strategy is faster)"
            )

    def job_estimated(self, job: Job, seconds: float) -> None:
        """After the first pass of a long plan: how long the rest should take, from that pass."""
        if seconds >= LONG_PLAN_SECONDS and not self.options.quiet:
            self.say(
                f"[cyan]estimate:[/] {cli_render.text(job.image)}: {cli_render.text(self._plan)} "
                f"will take about {_duration(seconds)} more, at the speed of its first pass "
                "(a smaller --max-side or another --strategy is faster)"
            )

    def job_progress(self, job: Job, done: int, total: int) -> None:
        if self.progress is not None and self.task is not None and self._single:
            self.progress.update(self.task, completed=done, total=total, rate="passes")

    def job_finished(self, outcome: JobOutcome) -> None:
        from inpaint_cli.batch.outcomes import Status

        if self.options.quiet and outcome.status is Status.DONE:
            typer.echo(str(outcome.written[0]))  # stdout: the result paths, for scripts
        lines = cli_render.outcome_lines(
            outcome,
            quiet=self.options.quiet,
            verbose=self.options.verbose,
            intermediates=self.options.intermediates_dir,
            whole_seconds=_process_seconds() if self._single and not self.options.quiet else None,
        )
        for line in lines:
            self.say(line)
        if self.progress is not None and self.task is not None and not self._single:
            self.progress.advance(self.task)
            speed = self.progress.tasks[0].speed
            self.progress.update(self.task, rate=f"{speed:.2f} images/s" if speed else "")

    def page_written(self, summary: PageSummary) -> None:
        if not self.options.quiet:
            from inpaint_cli.cli.review import render_page_summary

            render_page_summary(summary)


def _make_progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[current]}", markup=False),
        console=console,
        transient=True,
    )


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _download_progress() -> object | None:
    """The rich download progress of the weights commands, when they offer one."""
    try:
        from inpaint_cli.cli.weights import rich_download_progress
    except ImportError:
        return None
    return rich_download_progress(console)
