"""The `inpaint` command line: the application, its commands, and the console-script entry point.

Commands live in their own modules (`run`, `detect`, `compare`, `review`, `models`, `weights`), each
mounted here in one line, and render through `console`; heavy imports (torch, OpenCV) happen inside
the commands so `inpaint --help` stays instant. Domain errors become one-line messages in the CLI and
nowhere else: exit 1 for failed inputs, exit 2 for invalid usage.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from inpaint_cli.batch.run_options import RunOptions
from inpaint_cli.cli import compare as cli_compare
from inpaint_cli.cli import detect as cli_detect
from inpaint_cli.cli import edit as cli_edit
from inpaint_cli.cli import models as cli_models
from inpaint_cli.cli import review as cli_review
from inpaint_cli.cli import run as cli_run
from inpaint_cli.cli import weights as cli_weights
from inpaint_cli.cli.command import add_command, same_help_everywhere
from inpaint_cli.review.editor.options import EditOptions

app = typer.Typer(
    name="inpaint",
    help="Restore damaged photos by neural inpainting (LaMa, GatedConv / DeepFill v2, PConv, OpenCV).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def version_callback(value: bool) -> None:
    if value:
        from inpaint_cli import __version__

        typer.echo(f"inpaint {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Restore damaged photos by neural inpainting."""


# Each command adds itself here, one line each: generated from its options dataclass, or a plain function.
add_command(app, "run", RunOptions, cli_run.run_command)
app.command()(cli_models.models)
app.command()(cli_models.doctor)
app.add_typer(cli_weights.weights_app, name="weights")
add_command(app, "report", cli_review.ReportOptions, cli_review.report_command)
add_command(app, "compare", cli_compare.CompareOptions, cli_compare.compare_command)
add_command(app, "detect", cli_detect.DetectOptions, cli_detect.detect_command)
add_command(app, "edit", EditOptions, cli_edit.edit_command)
same_help_everywhere(app)  # after the last command: flags without `<bool>`, usage lines without braces


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
