"""How `inpaint run` shows what happened: one renderer per kind of thing, all through `console`.

`outcome_lines` is the one place an outcome becomes text, whether it is printed above a progress bar
or on its own; `print_summary` the one place a batch's statuses are shown (counted by `batch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from inpaint_cli.cli.console import console, printable

if TYPE_CHECKING:
    from inpaint_cli.batch.outcomes import JobOutcome
    from inpaint_cli.batch.pipeline import DryRunRow, ModelInfo, RunResult

SUMMARY_NOTES = 20
"""Failures and unused masks listed under the batch summary; the JSON report has them all."""


def text(value: object) -> str:
    """A path or message as safe rich markup on one line."""
    return escape(printable(str(value)))


def live_workers(live: int) -> str:
    """`2 workers live`: how a `--ray` run (`run`, `detect`) shows its workers with a model loaded."""
    return f"{live} worker{'s' if live != 1 else ''} live"


def outcome_lines(
    outcome: JobOutcome,
    *,
    quiet: bool = False,
    verbose: bool = False,
    intermediates: Path | None = None,
    whole_seconds: float | None = None,
) -> list[str]:
    """The lines (rich markup) of one finished input: warnings, then what was written or why not.

    Files under `intermediates` are summed up in one line; `whole_seconds` (a single image) is the
    time since the command started, which the line reports beside this image's own time. `quiet`
    keeps errors only (the result paths go to stdout).
    """
    from inpaint_cli.batch.outcomes import Status

    error = [f"[bold red]error:[/] {text(outcome.error)}"] if outcome.status is Status.FAILED else []
    if quiet:
        return error
    lines = [f"[yellow]warning:[/] {text(warning)}" for warning in outcome.warnings]
    if outcome.status is Status.FAILED:
        return [*lines, *error]
    if outcome.status is Status.SKIPPED:
        return [*lines, f"skipped {text(outcome.job.image)}: {text(outcome.job.output)} exists"]
    if whole_seconds is None:
        timing = f"({outcome.seconds:.2f} s)"
    else:
        timing = f"in {whole_seconds:.2f} s (this image {outcome.seconds:.2f} s, the rest start-up and model)"
    undamaged = outcome.details.get("no_damage")
    found = " [yellow](no damage found: the photo copied through)[/]" if undamaged else ""
    lines.append(f"[green]wrote[/] {text(outcome.written[0])}{found} {timing}")
    extra = outcome.written[1:]
    pictures = [path for path in extra if intermediates is None or intermediates not in path.parents]
    lines += [f"  also wrote {text(path)}" for path in pictures]
    kept = [path for path in extra if path not in pictures]
    if kept:
        lines.append(f"  intermediates: {files_and_size(kept)} in {text(common_folder(kept))}")
    if verbose:
        lines += verbose_lines(outcome)
    return lines


def verbose_lines(outcome: JobOutcome) -> list[str]:
    """`-v`: the plan of one image and the time of each stage."""
    lines = []
    if outcome.strategy:
        lines.append(f"  plan: {text(outcome.strategy)}")
    steps = {name: seconds for name, seconds in outcome.stages.items() if ": " not in name}
    parts = []
    for step, seconds in steps.items():
        inner = [
            (name.partition(": ")[2], s) for name, s in outcome.stages.items() if name.startswith(f"{step}: ")
        ]
        detail = f" ({', '.join(f'{name} {s:.2f} s' for name, s in inner)})" if inner else ""
        parts.append(f"{step} {seconds:.2f} s{detail}")
    if parts:
        lines.append(f"  time: {', '.join(parts)}")
    return lines


def files_and_size(paths: list[Path]) -> str:
    """`40 files, 146.2 MB`."""
    size = sum(path.stat().st_size for path in paths if path.exists())
    return f"{len(paths)} file{'s' if len(paths) != 1 else ''}, {size / 1e6:.1f} MB"


def common_folder(paths: list[Path]) -> Path:
    folder = paths[0].parent
    while not all(folder == path.parent or folder in path.parents for path in paths):
        folder = folder.parent
    return folder


def model_lines(model: ModelInfo, *, verbose: bool) -> list[str]:
    """The demo-model note, and with `-v` where and how the model runs."""
    lines = [f"[cyan]note:[/] {text(model.demo_note)}"] if model.demo_note else []
    lines += [f"[yellow]warning:[/] {text(model.precision_note)}"] if model.precision_note else []
    if verbose:
        lines.append(
            f"model {text(model.name)} ({model.family}) on {model.device}, {model.precision}, "
            f"{model.threads} thread{'s' if model.threads != 1 else ''}: loaded in {model.load_seconds:.2f} s"
        )
    return lines


def print_dry_run(rows: list[DryRunRow]) -> None:
    """The --dry-run table on stdout: a rich table on a terminal, tab-separated lines elsewhere."""
    from rich.table import Table

    out = Console(highlight=False)
    if not out.is_terminal:
        for row in rows:
            typer.echo("\t".join(printable(cell) for cell in (row.image, row.masks, row.output, row.action)))
        return
    table = Table("image", "mask(s)", "output", "action", title=f"{len(rows)} row(s)")
    for row in rows:
        table.add_row(*(text(cell) for cell in (row.image, row.masks, row.output, row.action)))
    out.print(table)


def print_summary(result: RunResult) -> None:
    """The end-of-batch table on stderr: counts, speed, and every input that needs attention."""
    from rich.table import Table

    from inpaint_cli.batch.outcomes import Status

    counts = result.counts()
    done, seconds = counts[Status.DONE], result.seconds
    table = Table(title="batch summary", show_header=False, title_justify="left")
    table.add_row("[green]done[/]", str(done))
    table.add_row("skipped (output exists)", str(counts[Status.SKIPPED]))
    table.add_row("[red]failed[/]" if counts[Status.FAILED] else "failed", str(counts[Status.FAILED]))
    if result.not_run:
        table.add_row("not run", str(len(result.not_run)))
    table.add_row("unused masks", str(len(result.plan.unused_masks)))
    undamaged = sum(bool(outcome.details.get("no_damage")) for outcome in result.outcomes)
    if undamaged:
        table.add_row("[yellow]no damage found[/] (copied through)", str(undamaged))
    table.add_row("time", f"{seconds:.1f} s ({done / seconds if seconds else 0:.2f} images/s)")
    console.print(table)
    notes = [f"[red]failed[/] {text(o.error)}" for o in result.outcomes if o.status is Status.FAILED]
    notes += [
        f"[yellow]unused mask[/] {text(mask)}: no image has this name" for mask in result.plan.unused_masks
    ]
    notes += [f"[yellow]unreadable[/] {text(message)}" for message in result.plan.unreadable]
    for note in notes[:SUMMARY_NOTES]:
        console.print(f"  {note}", soft_wrap=True)
    if len(notes) > SUMMARY_NOTES:
        console.print(f"  ... and {len(notes) - SUMMARY_NOTES} more (all in --report)")
