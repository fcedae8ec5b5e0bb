"""MkDocs hook: the command reference from the Typer app, the API reference from the package's exports.

`commands.md` holds `<!-- commands -->`, replaced at build time by every command's usage, help and
options in the panels of its `--help`; `api.md` holds `<!-- api -->`, replaced by one mkdocstrings block
per module that `inpaint_cli` exports from. Neither can drift from the code: nothing is copied.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

COMMANDS_MARKER = "<!-- commands -->"
API_MARKER = "<!-- api -->"
DEFAULT_PANEL = "Options"  # what --help calls an option declared without a panel


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Expand the markers of the two generated pages (MkDocs calls this for every page)."""
    if COMMANDS_MARKER in markdown:
        markdown = markdown.replace(COMMANDS_MARKER, command_reference())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, api_reference())
    return markdown


def command_reference() -> str:
    """Every command of `inpaint`, depth first, as Markdown."""
    import typer

    from inpaint_cli.cli.app import app

    root = typer.main.get_command(app)
    context = typer.Context(root, info_name="inpaint")
    return "\n".join(section for command, ctx in walk(root, context) for section in describe(command, ctx))


def walk(command: Any, context: Any) -> Iterator[tuple[Any, Any]]:
    """The command and its visible subcommands in `--help`'s order, each with the context it gets."""
    yield command, context
    names = command.list_commands(context) if hasattr(command, "list_commands") else []
    for name in names:
        sub = command.get_command(context, name)
        if not sub.hidden:
            yield from walk(sub, type(context)(sub, info_name=name, parent=context))


def describe(command: Any, context: Any) -> Iterator[str]:
    """One command: heading, usage, help, then a table per help panel (option texts as `--help` has them)."""
    from inpaint_cli.cli.help import help_of
    from inpaint_cli.options import Panel

    yield f"## `{context.command_path}`\n"
    yield f"```text\n{command.get_usage(context)}\n```\n"
    if command.help:
        yield "\n\n".join(text_of(paragraph) for paragraph in plain(command.help).split("\n\n")) + "\n"
    panels: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is not None:
            panel = getattr(param, "rich_help_panel", None) or DEFAULT_PANEL
            panels.setdefault(panel, []).append((record[0], help_of(param).plain))
    order = {panel.value: index for index, panel in enumerate(Panel)}  # `--help`'s order, not the fields'
    for panel, records in sorted(panels.items(), key=lambda item: order.get(item[0], len(order))):
        yield f"**{panel}**\n\n| option | what it does |\n|---|---|"
        yield "\n".join(f"| `{' '.join(name.split())}` | {text_of(text)} |" for name, text in records) + "\n"


def plain(text: str) -> str:
    """Help text without Rich markup (`\\[ray]` is a literal `[ray]` there)."""
    from rich.text import Text

    return Text.from_markup(text.strip()).plain


def text_of(help_text: str) -> str:
    """Help text as Markdown on one line: outside code spans `<stem>` is a placeholder, not an HTML tag,
    a pipe is not a table's and `[default: 95]` is not a link; inside them all are literal already."""
    parts = " ".join(help_text.split()).split("`")
    return "`".join(
        part if inside % 2 else html.escape(part, quote=False).replace("|", "\\|").replace("[", "\\[")
        for inside, part in enumerate(parts)
    )


def api_reference() -> str:
    """A mkdocstrings block per module of the public API, listing the names `inpaint_cli` exports."""
    from inpaint_cli import _EXPORTS

    modules: dict[str, list[str]] = {}
    for name, module in _EXPORTS.items():
        modules.setdefault(module, []).append(name)
    blocks = []
    for module, names in modules.items():
        members = "\n".join(f"        - {name}" for name in sorted(names))
        blocks.append(f"::: {module}\n    options:\n      members:\n{members}\n")
    return "\n".join(blocks)
