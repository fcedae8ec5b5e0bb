"""Domain errors. The CLI alone turns them into one-line messages and exit codes."""

from __future__ import annotations

from pathlib import Path


class InpaintError(Exception):
    """A problem with one input, output or model that the user can act on.

    Rendered as `error: <file>: <what> (<hint>)`.
    """

    def __init__(self, what: str, *, path: str | Path | None = None, hint: str | None = None) -> None:
        self.what = what
        self.path = Path(path) if path is not None else None
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.what}" if self.path is not None else self.what
        return f"{text} ({self.hint})" if self.hint else text


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
