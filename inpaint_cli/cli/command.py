"""Commands generated from options dataclasses, with a plain usage line, 80-column help, one-line errors.

A command is an options dataclass plus a body: `add_command(app, "run", RunOptions, run_command)`. Each
field of the dataclass carries its command-line spelling as metadata (`options.cli(...)`, a `Spelling`:
flags, help, metavar, bounds, a `parse` function for text such as sizes, a `bare` value for an option
given alone, the help panel). `options_command` declares one Typer parameter per field, builds the
frozen options object from what was typed (bounds and cross-field rules are checked by the class's
`__post_init__`, so Python callers get the same checks) and calls the body with it. So adding an option
is adding a field. Library calls take either that object (`run`) or a library object built from it by an
explicit, typed conversion in the command's module (`detect`, `compare`): a renamed field then fails at
once instead of silently yielding a default. The pattern for a new command `NAME`:

    @dataclass(frozen=True, kw_only=True)
    class NameOptions:
        input: Path = field(metadata=cli("The photo.", metavar="INPUT", argument=True, panel=Panel.MODEL))
        port: int = field(default=8000, metadata=cli("Port to listen on.", metavar="N", minimum=1))

        def __post_init__(self) -> None:
            check_bounds(self)

    def name_command(options: NameOptions) -> None:
        \"\"\"What `inpaint NAME` does (its help).\"\"\"

    add_command(app, "name", NameOptions, name_command)

An option with a `bare` value (`--ray`) may be given alone; it takes the next word as its value only
when its `parse` accepts that word, so `--ray photos/` leaves the input folder alone while
`--ray 10.0.0.5:6379` and `--ray=auto` set the address. The rule is the value's grammar, not
whether a file of that name exists. No state outside the command: each command reads its own
options class from its callback.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from importlib import import_module
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar, Union

import typer
import typer.core
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # only for annotations: Typer 0.2x vendors click and does not install it
    import click

from inpaint_cli.cli.console import EXIT_USAGE, console, fail, printable
from inpaint_cli.errors import InpaintError
from inpaint_cli.options import Spelling, describe_range, states_range

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
    """A Typer command whose help fits 80 columns and whose usage errors read like the tool's messages."""

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

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from inpaint_cli.cli.help import print_help

        print_help(self, ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options_class = (
            getattr(inspect.unwrap(self.callback), "options_class", None) if self.callback else None
        )
        if options_class is not None:
            args = with_bare_values(args, options_class)
        try:
            return super().parse_args(ctx, args)
        except _CLICK.exceptions.NoSuchOption as error:
            hint = OTHER_TOOLS_OPTIONS.get(error.option_name)
            _usage_error(f"no such option {error.option_name}", hint or f"see {ctx.command_path} --help")
        except _CLICK.exceptions.UsageError as error:
            message = error.format_message().rstrip(".").replace("Value error, ", "")  # pydantic's prefix
            _usage_error(message, f"see {ctx.command_path} --help")


def with_bare_values(args: list[str], options_class: type) -> list[str]:
    """`args` with the `bare` value after each option of `options_class` given alone (Typer's click
    has no optional values): `--ray` stays alone unless the next word is a value its `parse` accepts."""
    bare = {
        flag: spelling
        for spec, spelling in _spellings(options_class)
        if spelling.bare
        for flag in _flags(spec)
    }
    filled: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":  # the rest are arguments, whatever they look like
            return [*filled, *args[index:]]
        filled.append(arg)
        spelling = bare.get(arg)
        if spelling is not None and spelling.bare is not None:
            following = args[index + 1] if index + 1 < len(args) else None
            if following is None or not _accepts(spelling, following):
                filled.append(spelling.bare)
    return filled


def _accepts(spelling: Spelling, word: str) -> bool:
    if spelling.parse is None:  # no grammar: only the bare value is known to be one
        return word == spelling.bare
    try:
        spelling.parse(word)
    except InpaintError:
        return False
    return True


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


def add_command(app: typer.Typer, name: str, options_class: type[T], body: Callable[[T], None]) -> None:
    """Register `inpaint NAME`: its parameters are the fields of `options_class`, its work `body`."""
    app.command(name, cls=OptionsCommand)(options_command(options_class, body))


def options_command(options_class: type[T], body: Callable[[T], None]) -> Callable[..., None]:
    """A function Typer can register whose parameters are the fields of `options_class`.

    Each call builds the options object (parsing text with the field's `parse`, validating bounds
    in the class) and calls `body` with it; invalid values end as one-line usage errors.
    """
    hints = typing.get_type_hints(options_class)
    spellings = _spellings(options_class)

    def command(**typed: Any) -> None:
        values = {name: value for name, value in typed.items() if value is not None}  # the rest: defaults
        try:
            for spec, spelling in spellings:
                if spelling.parse is not None and spec.name in values:
                    values[spec.name] = spelling.parse(values[spec.name])
            options = options_class(**values)
        except InpaintError as error:
            fail(error)
        body(options)

    parameters = [_parameter(spec, spelling, hints[spec.name]) for spec, spelling in spellings]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    command.__doc__ = body.__doc__
    command.__name__ = body.__name__
    command.options_class = options_class  # type: ignore[attr-defined]  # read by OptionsCommand.parse_args
    return command


def _spellings(options_class: type) -> list[tuple[Field[Any], Spelling]]:
    return [(spec, spec.metadata["cli"]) for spec in fields(options_class)]


def _flags(spec: Field[Any]) -> tuple[str, ...]:
    """The flags of a field: its spelling's, else `--field-name`."""
    spelling: Spelling = spec.metadata["cli"]
    return spelling.flags or ("--" + spec.name.replace("_", "-"),)


def _parameter(spec: Field[Any], spelling: Spelling, hint: Any) -> inspect.Parameter:
    """The Typer parameter of one dataclass field. Typer's default is None ("not typed"): the value then
    comes from the dataclass, the one place a default is written; the help shows it as text."""
    value_type = str if spelling.parse is not None else _unwrap_optional(hint)
    required = spec.default is MISSING and spec.default_factory is MISSING
    annotation = value_type if required else Optional[value_type]  # noqa: UP045 - Typer needs Optional on 3.10
    help_text = spelling.help
    if (spelling.minimum is not None or spelling.maximum is not None) and not states_range(spelling):
        help_text += f" \\[{describe_range(spelling)}]"  # escaped: rich markup would read [...] as a style
    panel = spelling.panel.value
    if spelling.argument:
        info = typer.Argument(
            help=help_text, metavar=spelling.metavar, show_default=False, rich_help_panel=panel
        )
    else:
        info = typer.Option(
            *_flags(spec),
            help=help_text,
            metavar=spelling.metavar,
            show_default=_default_text(spec.default) or False,
            rich_help_panel=panel,
        )
    default = inspect.Parameter.empty if required else None
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info]
    )


def _default_text(value: Any) -> str:
    """A default as the user would type it; empty for none, for flags and for computed ones."""
    if value is None or isinstance(value, bool) or value is MISSING:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return str(value)


def _unwrap_optional(hint: Any) -> Any:
    """`X | None` -> X; other types unchanged."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint
