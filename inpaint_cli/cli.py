"""The `inpaint` command line: the application, its commands, and the console-script entry point.

Commands live in their own modules (`cli_run`, `cli_weights`, `cli_review`) and render through
`console`; heavy imports (torch, OpenCV) happen inside the commands so `inpaint --help` stays
instant. Domain errors become one-line messages in the CLI and nowhere else: exit 1 for failed
inputs, exit 2 for invalid usage.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from inpaint_cli import cli_detect, cli_review, cli_run, cli_weights
from inpaint_cli.cli_command import same_help_everywhere
from inpaint_cli.console import fail

app = typer.Typer(
    name="inpaint",
    help="Restore damaged photos by neural inpainting (LaMa, GatedConv / DeepFill v2, PConv, OpenCV).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


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


# Each command module adds itself here, one line each.
cli_run.register(app)
app.add_typer(cli_weights.weights_app, name="weights")
app.command()(cli_review.report)
app.command()(cli_review.compare)
app.command()(cli_detect.detect)
same_help_everywhere(app)  # after the last command: flags without `<bool>`, usage lines without braces


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
