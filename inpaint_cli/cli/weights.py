"""`inpaint weights ...`: the named-model cache from the command line.

Progress bars and notes go to stderr; the commands that answer with a path (`pull`, `import`,
`path`) print only that path on stdout, so `$(inpaint weights path lama)` works in scripts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from inpaint_cli.cli.console import console, fail, print_table
from inpaint_cli.errors import InpaintError, UsageError, WeightsError
from inpaint_cli.options import parse_size

if TYPE_CHECKING:
    from inpaint_cli import weights

weights_app = typer.Typer(
    help="Download, import, verify and remove the weights of named models.", no_args_is_help=True
)

SHORT_DIGEST = 12


class RichDownloadProgress:
    """A download bar with bytes, speed and time left; notes print above it."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None, completed: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=completed)

    def advance(self, nbytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, nbytes)

    def stop(self) -> None:
        self._progress.stop()
        self._task = None

    def note(self, message: str) -> None:
        self._progress.console.print(message, soft_wrap=True)


class PlainDownloadProgress:
    """One line when a download starts and one when it ends, for logs and pipes."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._description = ""
        self._received = 0
        self._started = 0.0

    def start(self, description: str, total: int | None, completed: int) -> None:
        self._description, self._received, self._started = description, 0, time.monotonic()
        size = decimal(total) if total else "unknown size"
        resumed = f", resuming at {decimal(completed)}" if completed else ""
        self._console.print(f"downloading {description} ({size}{resumed})", soft_wrap=True)

    def advance(self, nbytes: int) -> None:
        self._received += nbytes

    def stop(self) -> None:
        seconds = time.monotonic() - self._started
        self._console.print(
            f"{self._description}: {decimal(self._received)} in {seconds:.1f} s", soft_wrap=True
        )

    def note(self, message: str) -> None:
        self._console.print(message, soft_wrap=True)


def rich_download_progress(console: Console) -> weights.DownloadProgress:
    """The progress display for downloads: a live bar on a terminal, plain lines otherwise."""
    return RichDownloadProgress(console) if console.is_terminal else PlainDownloadProgress(console)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Domain errors become the CLI's one-line message and exit code."""
    try:
        yield
    except InpaintError as exc:
        fail(exc)


def cached_size_text(name: str) -> str:
    """`yes (400.0 MB)` for a cached model, else `no`."""
    from inpaint_cli import weights

    path = weights.cached_path(name)
    return f"yes ({decimal(path.stat().st_size)})" if path else "no"


@weights_app.command("list")
def list_weights() -> None:
    """Named models with their cache state, file and checksum."""
    from inpaint_cli import weights

    with reported():
        table = Table(title=f"cache: {weights.cache_dir()}", title_justify="left")
        table.add_column("name", no_wrap=True)
        for column in ("cached", "sha256", "source"):
            table.add_column(column, overflow="fold")
        for entry in weights.load_manifest().values():
            record = weights.cache_record(entry.name)
            cached = weights.cached_path(entry.name) is not None
            digest = record["sha256"][:SHORT_DIGEST] if record and cached else ""
            source = record["source_url"] if record and cached else entry.sources[0].url
            state = cached_size_text(entry.name) if cached else "bundled" if entry.bundled else "no"
            table.add_row(entry.name, state, digest, source)
        print_table(table)


def _parse_size(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except UsageError:
        raise UsageError(f"--max-size must be a size like 4GB or 500MB, not {text!r}") from None


@weights_app.command("pull")
def pull_weights(
    name: Annotated[str, typer.Argument(help="A model name from `inpaint models`.")],
    *,
    force: Annotated[bool, typer.Option("--force", help="Download again even when cached.")] = False,
    timeout: Annotated[
        Optional[float],  # noqa: UP045 - typer reads the annotation at runtime (Python 3.10)
        typer.Option(
            min=0.1, metavar="SECONDS", help="Seconds without data before a download counts as stalled."
        ),
    ] = None,
    max_size: Annotated[
        Optional[str],  # noqa: UP045 - typer reads the annotation at runtime (Python 3.10)
        typer.Option(
            "--max-size",
            metavar="SIZE",
            help="Most bytes a download of unknown size may bring, e.g. 4GB (default: INPAINT_MAX_DOWNLOAD).",
        ),
    ] = None,
) -> None:
    """Download a model (resuming, verified, bounded, following mirrors) and convert it once."""
    from inpaint_cli import weights

    with reported():
        weights.get_entry(name)
        limits = weights.limits_from_env(timeout=timeout, max_download=_parse_size(max_size))
        path = None if force else weights.cached_path(name)
        if path is None:
            path = weights.pull(name, progress=rich_download_progress(console), limits=limits)
        else:
            console.print(f"{name} is already cached (use --force to download it again)")
        typer.echo(str(path))


@weights_app.command("import")
def import_weights(
    name: Annotated[str, typer.Argument(help="The model name the file is an official release of.")],
    file: Annotated[Path, typer.Argument(help="Official checkpoint: .ckpt, .pth, TorchScript .pt, .zip.")],
) -> None:
    """Convert a weight file you already have (e.g. IOPaint's big-lama.pt) into the cache."""
    from inpaint_cli import weights

    with reported():
        path = weights.import_file(name, file, progress=rich_download_progress(console))
        typer.echo(str(path))


@weights_app.command("verify")
def verify_weights(
    name: Annotated[
        Optional[str],  # noqa: UP045 - typer reads the annotation at runtime (Python 3.10)
        typer.Argument(help="A model name; all cached models when left out."),
    ] = None,
) -> None:
    """Re-hash cached models and compare them with the recorded checksums (exit 1 on a mismatch)."""
    from inpaint_cli import weights

    with reported():
        names = (
            [weights.get_entry(name).name]
            if name
            else [n for n in weights.load_manifest() if weights.converted_path(n).exists()]
        )
        results = [weights.verify(n) for n in names]
    if not results:
        console.print("no cached models")
    for result in results:
        status = "[green]ok[/]" if result.ok else "[bold red]failed[/]"
        console.print(f"{status} {result.name}: {result.detail}", soft_wrap=True)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@weights_app.command("path")
def weights_path(name: Annotated[str, typer.Argument(help="A model name.")]) -> None:
    """Print the path of a cached model (exit 1 if it is not cached)."""
    from inpaint_cli import weights

    with reported():
        cached = weights.cached_path(weights.get_entry(name).name)
        if cached is None:
            raise WeightsError(
                f"model '{name}' is not cached",
                hint=f"`inpaint weights pull {name}` or `inpaint weights import {name} FILE`",
            )
        typer.echo(str(cached))


@weights_app.command("rm")
def remove_weights(
    name: Annotated[str, typer.Argument(help="A model name.")],
    *,
    unpin: Annotated[
        bool, typer.Option("--unpin", help="Also forget checksums recorded at first download.")
    ] = False,
) -> None:
    """Delete a cached model and its leftover downloads."""
    from inpaint_cli import weights

    with reported():
        removed = weights.remove(name, unpin=unpin)
    for removed_path in removed:
        console.print(f"removed {removed_path}", soft_wrap=True)
    if not removed:
        console.print(f"nothing cached for {name}")
