"""`inpaint report`: the review page of a batch from its JSON report; and the one-line page summary.

The command's parameters are the fields of `ReportOptions` (see `cli.command`); errors become one
line through `console.fail`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from inpaint_cli.cli.console import console, fail, printable
from inpaint_cli.options import DEFAULT_MAX_PIXELS, DEFAULT_PAGE_TITLE, Panel, cli

if TYPE_CHECKING:
    from inpaint_cli.review.page import PageSummary


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """What `inpaint report` was asked to do."""

    report_file: Path = field(
        metadata=cli(
            "A JSON report of `inpaint run`, `detect` or `compare` (--report, --json).",
            metavar="REPORT",
            argument=True,
            panel=Panel.INPUT_OUTPUT,
        )
    )
    html: Path = field(
        metadata=cli("The review page to write (.html).", "--html", metavar="FILE", panel=Panel.INPUT_OUTPUT)
    )
    title: str = field(
        default=DEFAULT_PAGE_TITLE, metadata=cli("Title of the page.", metavar="TEXT", panel=Panel.REVIEW)
    )
    model: str = field(
        default="",
        metadata=cli("Model shown for records that do not name one.", metavar="NAME", panel=Panel.REVIEW),
    )
    overwrite: bool = field(
        default=False,
        metadata=cli(
            "Replace a page (and its _files folder) that inpaint did not make.", panel=Panel.INPUT_OUTPUT
        ),
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata=cli(
            "Show no picture with more pixels (decompression bombs), as `inpaint run` refuses them.",
            metavar="N",
            minimum=1,
            panel=Panel.REVIEW,
        ),
    )


def report_command(options: ReportOptions) -> None:
    """Build the review page of a batch from its JSON report, without running anything again."""
    from inpaint_cli.errors import InpaintError, OutputError
    from inpaint_cli.review import page as review

    html = options.html
    try:
        summary = review.rebuild_page(
            options.report_file,
            html,
            title=options.title,
            model=options.model,
            overwrite=options.overwrite,
            max_pixels=options.max_pixels,
        )
    except InpaintError as exc:
        fail(exc)
    except OSError as exc:
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
