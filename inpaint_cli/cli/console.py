"""Where the command line speaks: one stderr console, one-line errors and the exit codes.

Every CLI module renders through this module; library code never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from inpaint_cli.errors import InpaintError

console = Console(stderr=True, highlight=False)
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
FOLDED_WORD_SHARE = 3
"""A word longer than a third of the screen (a URL, a digest) is folded; shorter ones stay whole."""


def printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a file name) written as escapes."""
    from inpaint_cli.errors import display_path

    return display_path(text)


def fail(error: InpaintError) -> NoReturn:
    """Print a domain error as one line and exit with its code (2 for usage, else 1)."""
    from inpaint_cli.errors import UsageError

    console.print(f"[bold red]error:[/] {escape(printable(error.one_line()))}", soft_wrap=True)
    raise typer.Exit(EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED)


def print_table(table: Table, screen: Console | None = None) -> None:
    """Print `table` on stdout (or `screen`) with cells wrapped only between words.

    Rich shrinks the widest columns of a table that is too wide without regard to words, so that
    `Apache-2.0` becomes `Apache-2.` and `0`. Here, each column keeps at least its longest word (words
    longer than a third of the screen, such as URLs, are folded); where the columns do not fit with
    their borders, the borders give way to single spaces; and the columns with the most room to spare
    are narrowed first.
    """
    screen = screen or Console(highlight=False)
    natural, least = [], []
    for column in table.columns:
        cells = [_plain(cell) for cell in [column.header, *column.cells]]
        natural.append(max((len(line) for cell in cells for line in cell.splitlines()), default=0))
        longest = max((len(word) for cell in cells for word in cell.split()), default=0)
        if longest > screen.width // FOLDED_WORD_SHARE:
            column.overflow = "fold"
            longest = screen.width // FOLDED_WORD_SHARE
        least.append(longest)
    framed = 3 * len(table.columns) + 1  # a border and a space either side of each column
    if sum(natural) + framed <= screen.width:
        screen.print(table)
        return
    overhead = framed
    if sum(least) + framed > screen.width:
        table.box, table.padding, table.show_edge = box.SIMPLE_HEAD, 0, False
        overhead = len(table.columns) - 1  # the box's blank separators: one space between columns
    widths = _narrowed(natural, least, screen.width - overhead)
    for column, width in zip(table.columns, widths, strict=True):
        column.width = width
    screen.print(table)


def _narrowed(natural: list[int], least: list[int], room: int) -> list[int]:
    """`natural` widths narrowed, one column at a time where the most is to spare, until they fit
    `room` or every column is down to its `least`."""
    widths = list(natural)
    while sum(widths) > room:
        spare = [width - low for width, low in zip(widths, least, strict=True)]
        widest = max(range(len(widths)), key=spare.__getitem__)
        if spare[widest] <= 0:
            break
        widths[widest] -= 1
    return widths


def _plain(cell: object) -> str:
    if isinstance(cell, Text):
        return cell.plain
    return Text.from_markup(cell).plain if isinstance(cell, str) else ""
