"""Help and tables in an 80-column terminal: option names whole, panels, words never cut."""

from __future__ import annotations

import re

import pytest
import typer
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from inpaint_cli.cli.app import app
from inpaint_cli.cli.console import print_table
from inpaint_cli.cli.models import models_table

runner = CliRunner()
COLUMNS = 80
RUN_PANELS = [
    "Input and output",
    "Model",
    "Masks",
    "Strategy",
    "Refinement (LaMa)",
    "Batch",
    "Review",
    "Distributed (Ray)",
]


def command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_paths(sub, (*prefix, name))
    return found


def help_of(path: tuple[str, ...], columns: int = COLUMNS) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, (path, result.output)
    return result.output


def every_flag(command: object) -> list[str]:
    """Every flag and negation of a command, as its parameters declare them."""
    return [
        flag
        for param in command.params
        for flag in (*param.opts, *param.secondary_opts)
        if flag.startswith("-")
    ]


COMMANDS = [path for path in command_paths(typer.main.get_command(app)) if path]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_at_80_columns_every_option_name_is_whole_and_no_line_is_longer(path: tuple[str, ...]) -> None:
    command = typer.main.get_command(app)
    for word in path:
        command = command.commands[word]
    text = help_of(path)
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= COLUMNS
    words = set(re.findall(r"(?<![\w-])-{1,2}[a-z][a-z0-9-]*", text))
    for flag in every_flag(command):
        assert flag in words, (path, flag, text)


def test_run_help_groups_its_options_in_panels_and_is_short() -> None:
    text = help_of(("run",))
    titles = re.findall(r"╭─ (.+?) ─", text)
    assert titles == [*RUN_PANELS, "Options"]  # --help last
    assert len(text.splitlines()) < 120  # it was 304 lines at 80 columns
    panel_of: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("╭─ "):
            current = re.findall(r"╭─ (.+?) ─", line)[0]
        if not line.startswith("│"):
            continue
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line[:34]):
            panel_of.setdefault(flag, current)
    assert panel_of["--mask-threshold"] == "Masks" and panel_of["--save-intermediates"] == "Review"
    assert panel_of["--tile-size"] == "Strategy" and panel_of["--ray"] == "Distributed (Ray)"
    assert panel_of["--checkpoint"] == "Model" and panel_of["--jobs"] == "Batch"


def test_defaults_and_bounds_are_shown_once_from_the_options_class() -> None:
    text = " ".join(help_of(("run",), columns=200).split())
    assert "--quality 1-100 Quality of JPEG and WebP outputs. [default: 95]" in text  # the metavar says 1-100
    assert "[at least 16MiB]" in text  # --memory-budget
    assert "--detector NAME" in text and "[default: scratch-tiny]" in text
    assert "[one of: png, jpg, tiff, webp]" in text  # --format's help does not name them itself
    compare = " ".join(help_of(("compare",), columns=200).split())
    assert "[default: lama-tiny,gatedconv-tiny,pconv-tiny,telea,ns]" in compare


def test_a_narrow_terminal_puts_the_help_under_the_names() -> None:
    text = help_of(("run",), columns=44)
    assert "--overwrite / --skip-existing" in text
    assert max(len(line) for line in text.splitlines()) <= 44


def table_words(table: Table) -> list[str]:
    return [word for column in table.columns for cell in column.cells for word in str(cell).split()]


def rendered(table: Table, width: int) -> str:
    screen = Console(width=width, record=True, highlight=False)
    print_table(table, screen)
    return screen.export_text()


def test_the_models_table_keeps_every_word_whole_at_80_columns() -> None:
    table = models_table()
    words = table_words(table)
    assert "Apache-2.0" in words and "CC-BY-NC-4.0" in words and "weight-free" in words
    text = rendered(table, COLUMNS)
    tokens = set(text.split())
    assert max(len(line) for line in text.splitlines()) <= COLUMNS
    missing = [word for word in words if word not in tokens]
    assert missing == [], text


def test_a_table_that_fits_keeps_its_borders_and_a_long_url_folds() -> None:
    table = Table()
    for name in ("name", "licence", "source"):
        table.add_column(name)
    table.add_row("lama", "Apache-2.0", "https://example.org/" + "a" * 90 + "/big-lama.zip")
    text = rendered(table, COLUMNS)
    assert "│ lama │ Apache-2.0 │" in text
    assert "…" not in text and "big-lama.zip" in text.replace("│", "").replace("\n", "").replace(" ", "")
    assert max(len(line) for line in text.splitlines()) <= COLUMNS
    wide = Table()
    for name in ("a", "b", "c", "d", "e", "f"):
        wide.add_column(name)
    wide.add_row(*(f"word{index}-" + "x" * 5 + " tail" for index in range(6)))
    narrow = rendered(wide, 80)
    assert "│" not in narrow  # 6 x 11 + borders do not fit: one space between columns
    assert set(table_words(wide)) <= set(narrow.split())


def test_the_compare_table_keeps_every_word_whole_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    from inpaint_cli.cli import compare as cli_compare

    class Result:
        name = "scans/photo.png"
        hole_fraction = 0.034

        def rows(self) -> list[dict[str, object]]:
            row = {"psnr_hole": 23.4812, "ssim_hole": 0.91, "psnr_whole": 40.1, "ssim_whole": 0.99}
            return [
                {"model": name, **row, "seconds": 0.5, "load_seconds": 1.25}
                for name in ("gatedconv-celebahq", "lama-fourier", "telea")
            ]

    screen = Console(width=COLUMNS, record=True, highlight=False)
    monkeypatch.setattr(cli_compare, "print_table", lambda table: print_table(table, screen))
    cli_compare._print_table(Result())  # type: ignore[arg-type]
    text = screen.export_text()
    for word in ("gatedconv-celebahq", "lama-fourier", "23.48", "0.9100", "PSNR", "hole", "whole", "load"):
        assert word in text.split(), (word, text)
    assert max(len(line) for line in text.splitlines()) <= COLUMNS
