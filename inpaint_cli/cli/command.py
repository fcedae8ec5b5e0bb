"""Commands built from an options dataclass, with a plain usage line and one-line usage errors.

`options_command(RunOptions, body)` declares one command-line parameter per field of the dataclass
(flags, help and metavar from the field's `Spelling`), builds the object from what was typed and hands
it to `body`; so an option is added by adding a field. `OptionsCommand` renders help without
`<bool>` after flags and `{input}` in the usage line, and prints usage errors as one line.
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from importlib import import_module
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar, Union

import typer
import typer.core
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # only for annotations: Typer 0.2x vendors click and does not install it
    import click

from inpaint_cli.cli.console import EXIT_USAGE, console, fail, printable

T = TypeVar("T")

# Typer 0.2x vendors its own click (`typer._click`) and no longer installs click: its exceptions are the
# ones raised while parsing. Older Typers depend on click itself.
_CLICK: Any = getattr(typer.core, "_click", None) or import_module("click")

OTHER_TOOLS_OPTIONS = {
    "--image": "the image or folder is the first argument: inpaint run IMAGE --mask MASK",
    "--input": "the image or folder is the first argument: inpaint run IMAGE --mask MASK",
    "--model-dir": "models are cached by `inpaint weights pull NAME`; use --checkpoint FILE for a file",
}
"""Options of similar tools (IOPaint, lama's predict.py) answered with what to type here."""


def _flags_without_metavar(params: list[click.Parameter]) -> list[click.Parameter]:
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""  # a flag takes no value: no `<bool>` in the help
    return params


class OptionsGroup(TyperGroup):
    """A Typer group (the app, `weights`) whose help shows flags without `<bool>`."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _flags_without_metavar(super().get_params(ctx))


class OptionsCommand(TyperCommand):
    """A Typer command whose help and usage errors read like the rest of the tool's messages."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        """`INPUT --mask MASK [OPTIONS]`: the required parameters as typed, then the optional ones."""
        pieces = []
        for param in self.get_params(ctx):
            if not param.required:
                continue
            if param.param_type_name == "argument":
                pieces.append(param.metavar or param.name.upper())
            else:
                pieces.append(f"{param.opts[0]} {param.metavar or param.name.upper()}")
        return [*pieces, "[OPTIONS]"]

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _flags_without_metavar(super().get_params(ctx))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, _with_bare_values(args))
        except _CLICK.exceptions.NoSuchOption as error:
            hint = OTHER_TOOLS_OPTIONS.get(error.option_name)
            _usage_error(f"no such option {error.option_name}", hint or f"see {ctx.command_path} --help")
        except _CLICK.exceptions.UsageError as error:
            _usage_error(error.format_message().rstrip("."), f"see {ctx.command_path} --help")


BARE_VALUES: dict[str, str] = {}
"""Options that may be given without a value, and the value they then take (`Spelling.bare`)."""


def _with_bare_values(args: list[str]) -> list[str]:
    """`--ray` alone becomes `--ray auto` (Typer's click has no optional values). The next word is the
    option's value unless it is another option or names an existing file or folder (the input)."""
    filled = []
    for index, arg in enumerate(args):
        filled.append(arg)
        if arg in BARE_VALUES:
            following = args[index + 1] if index + 1 < len(args) else None
            if following is None or following.startswith("-") or os.path.exists(following):
                filled.append(BARE_VALUES[arg])
    return filled


def same_help_everywhere(app: typer.Typer) -> None:
    """Every command and group of `app` (registered so far) gets the tool's help and usage errors."""
    if not isinstance(app.info.cls, type) or app.info.cls is TyperGroup:  # unset: Typer's default
        app.info.cls = OptionsGroup
    for command in app.registered_commands:
        if not isinstance(command.cls, type) or command.cls is TyperCommand:
            command.cls = OptionsCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            same_help_everywhere(group.typer_instance)


def _usage_error(message: str, hint: str) -> typing.NoReturn:
    console.print(f"[bold red]error:[/] {printable(message)} ({hint})", soft_wrap=True, markup=True)
    raise typer.Exit(EXIT_USAGE)


def options_command(options_class: type[T], body: Callable[[T], None]) -> Callable[..., None]:
    """A function Typer can register whose parameters are the fields of `options_class`.

    Each call builds the options object (parsing text with the field's `parse`, validating bounds
    in the class) and calls `body` with it; invalid values end as one-line usage errors.
    """
    from inpaint_cli.errors import InpaintError

    hints = typing.get_type_hints(options_class)
    specs = fields(options_class)

    def command(**values: Any) -> None:
        try:
            for spec in specs:
                parse = spec.metadata["cli"].parse
                if parse is not None and values[spec.name] is not None:
                    values[spec.name] = parse(values[spec.name])
            options = options_class(**values)
        except InpaintError as error:
            fail(error)
        body(options)

    parameters = [_parameter(spec, hints[spec.name]) for spec in specs]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    command.__doc__ = body.__doc__
    command.__name__ = body.__name__
    return command


def _parameter(spec: Any, hint: Any) -> inspect.Parameter:
    """The Typer parameter of one dataclass field."""
    from inpaint_cli.batch.run_options import describe_range

    spelling = spec.metadata["cli"]
    value_type = str if spelling.parse is not None else _unwrap_optional(hint)
    optional = spec.default is None or _unwrap_optional(hint) is not hint
    annotation = Optional[value_type] if optional else value_type  # noqa: UP045 - Typer needs Optional on 3.10
    help_text = spelling.help
    if spelling.minimum is not None or spelling.maximum is not None:
        help_text += f" ({describe_range(spelling)})"
    if spelling.argument:
        info = typer.Argument(help=help_text, metavar=spelling.metavar, show_default=False)
    else:
        flags = spelling.flags
        if not flags and value_type is bool:
            flags = ("--" + spec.name.replace("_", "-"),)  # a plain flag, without a --no- twin
        info = typer.Option(
            *flags, help=help_text, metavar=spelling.metavar, show_default=spec.default not in (None, False)
        )
        if spelling.bare is not None:
            BARE_VALUES.update(dict.fromkeys(flags or ("--" + spec.name.replace("_", "-"),), spelling.bare))
    default = inspect.Parameter.empty if spec.default is MISSING else spec.default
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info]
    )


def _unwrap_optional(hint: Any) -> Any:
    """`X | None` -> X; other types unchanged."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint
