"""`--help` of a command, readable in an 80-column terminal.

Typer's own layout puts names, short flags, negations, types and help in five columns and cuts the
names when they do not fit (`--mask-thresho…`). Here each option is one cell, never cut: its flags and
metavar (`-m, --mask MASK`), and beside it the help, wrapped at whole words; where the names leave too
little room, the help goes under them. Options are grouped in panels (`Spelling.panel`, Typer's
`rich_help_panel`) in the order of `options.Panel`, then any others in the order they come.
"""

from __future__ import annotations

import enum
import inspect
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from inpaint_cli.options import Panel as PanelName

if TYPE_CHECKING:
    import click

MIN_HELP_WIDTH = 30
"""Narrower than this beside the names, the help goes under them instead."""
PANEL_FRAME = 4
"""Columns a panel's border and padding take."""
COLUMN_GAP = 2
ARGUMENTS, OPTIONS = "Arguments", "Options"


def print_help(command: click.Command, ctx: click.Context) -> None:
    """Usage line, description, then one panel per group of parameters, on stdout."""
    console = Console(highlight=False)
    console.print(Padding(Text(command.get_usage(ctx), style="bold"), (1, 1, 0, 1)))
    if command.help:
        console.print(Padding(description(command.help), (1, 1, 0, 1)))
    console.print()
    for title, params in panels(command.get_params(ctx)):
        rows = [(names_of(param), help_of(param)) for param in params]
        console.print(
            Panel(_layout(rows, console.width), title=title, title_align="left", border_style="dim")
        )


def description(docstring: str) -> Text:
    """A command's docstring with each paragraph on one logical line (the terminal wraps it)."""
    paragraphs = [" ".join(part.split()) for part in inspect.cleandoc(docstring).split("\n\n")]
    return Text.from_markup("\n\n".join(paragraphs))


def panels(params: list[click.Parameter]) -> list[tuple[str, list[click.Parameter]]]:
    """The parameters grouped by panel: arguments first, then `options.Panel`'s order, then others."""
    grouped: dict[str, list[click.Parameter]] = {}
    for param in params:
        if getattr(param, "hidden", False):
            continue
        default = ARGUMENTS if param.param_type_name == "argument" else OPTIONS
        grouped.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(param)
    known = [ARGUMENTS, *(panel.value for panel in PanelName)]
    order = {title: index for index, title in enumerate(known)}
    return sorted(grouped.items(), key=lambda item: order.get(item[0], len(known)))


def names_of(param: click.Parameter) -> str:
    """`-m, --mask MASK`, `--overwrite / --skip-existing`, `INPUT`: how the parameter is typed."""
    if param.param_type_name == "argument":
        return param.metavar or (param.name or "").upper()
    flags = sorted(param.opts, key=lambda flag: flag.startswith("--"))  # short ones first
    names = ", ".join(flags)
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return names
    return f"{names} {_metavar(param)}"


def _metavar(param: click.Parameter) -> str:
    if param.metavar:
        return param.metavar
    choices = _choices(param)
    if choices:
        return "[" + "|".join(choices) + "]"
    annotation = _annotation(param)
    if isinstance(annotation, type):
        return annotation.__name__.upper()
    return str(getattr(getattr(param, "type", None), "name", "value")).upper()


def _annotation(param: click.Parameter) -> Any:
    """The Python type Typer (0.2x) made the parameter from; None for older Typers."""
    return getattr(getattr(param, "type_descriptor", None), "annotation", None)


def _choices(param: click.Parameter) -> list[str]:
    """The values of a closed choice: an Enum parameter (Typer 0.2x) or a click `Choice` (older)."""
    annotation = _annotation(param)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    return [str(getattr(c, "value", c)) for c in getattr(getattr(param, "type", None), "choices", None) or ()]


def help_of(param: click.Parameter) -> Text:
    """The help text, then the choices (unless the text names every one), default and `required`."""
    text = Text.from_markup(getattr(param, "help", None) or "")
    extras = []
    choices = _choices(param)
    if choices and not all(choice in text.plain for choice in choices):
        extras.append("one of: " + ", ".join(choices))
    default = _shown_default(param)
    if default is not None:
        extras.append(f"default: {default}")
    if param.required and param.param_type_name != "argument":
        extras.append("required")
    for extra in extras:
        text.append(f" [{escape(extra)}]", style="dim")
    return text


def _shown_default(param: click.Parameter) -> str | None:
    """The default as the user would type it, when the parameter shows one."""
    shown = getattr(param, "show_default", False)
    if isinstance(shown, str):  # the text of a default kept elsewhere (the options dataclass)
        return shown or None
    if not shown or getattr(param, "is_flag", False):
        return None
    value: Any = param.default
    if value is None or callable(value):
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return str(value)


def _layout(rows: list[tuple[str, Text]], width: int) -> Table:
    """Names beside help when the help keeps `MIN_HELP_WIDTH` columns, else help under the names."""
    names_width = max(len(names) for names, _ in rows)
    table = Table.grid(padding=(0, COLUMN_GAP))
    beside = width - PANEL_FRAME - names_width - COLUMN_GAP >= MIN_HELP_WIDTH
    if beside:
        table.add_column(no_wrap=True, min_width=names_width, style="bold cyan")
        table.add_column(ratio=1)
        for names, text in rows:
            table.add_row(names, text)
        return table
    table.add_column(ratio=1)
    for names, text in rows:
        names_text = Text(names, style="bold cyan", overflow="fold")  # folded, never cut
        table.add_row(Group(names_text, Padding(text, (0, 0, 0, 4))))
    return table
