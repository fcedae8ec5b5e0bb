"""Domain errors. The CLI alone turns them into one-line messages and exit codes."""

from __future__ import annotations

import os
import re
from pathlib import Path

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as one line of safe text: control characters (a newline in a file name, a terminal
    escape) and lone surrogates (undecodable bytes of a name) are shown as Python escapes (`\\n`,
    `\\x1b`, `\\udcff`), so a message stays one line and can always be printed."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)  # str: a RemotePath
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def _is_url(path: object) -> bool:
    """A URL (`s3://...` text or a `storage.RemotePath`) stays as written: a `Path` would fold its `//`."""
    return not isinstance(path, os.PathLike) and "://" in str(path)


class InpaintError(Exception):
    """A problem with one input, output or model that the user can act on.

    Rendered as `error: <file>: <what> (<hint>)`, always on one line.
    """

    def __init__(self, what: str, *, path: str | Path | None = None, hint: str | None = None) -> None:
        self.what = what
        self.path = path if path is None or _is_url(path) else Path(path)
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{display_path(self.path)}: {self.what}" if self.path is not None else self.what
        text = f"{text} ({self.hint})" if self.hint else text
        return display_path(text)


class InputError(InpaintError):
    """An image or mask that cannot be used."""


class OutputError(InpaintError):
    """An output that cannot or must not be written."""


class CheckpointError(InpaintError):
    """A weight file that is unsafe, corrupt or of an unknown layout."""


class WeightsError(InpaintError):
    """A named model that cannot be found, downloaded or verified."""


class UsageError(InpaintError):
    """Options that contradict each other or name something that does not exist (exit code 2)."""
