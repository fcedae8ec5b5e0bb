"""Where the command line speaks: one stderr console, one-line errors and the exit codes.

Every CLI module renders through this module; library code never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from inpaint_cli.errors import InpaintError

console = Console(stderr=True, highlight=False)
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a file name) written as escapes."""
    from inpaint_cli.errors import display_path

    return display_path(text)


def fail(error: InpaintError) -> NoReturn:
    """Print a domain error as one line and exit with its code (2 for usage, else 1)."""
    from inpaint_cli.errors import UsageError

    console.print(f"[bold red]error:[/] {escape(printable(error.one_line()))}", soft_wrap=True)
    raise typer.Exit(EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED)
