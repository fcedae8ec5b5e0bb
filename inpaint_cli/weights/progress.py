"""What a download reports to the person waiting for it; the CLI draws it, the library stays silent."""

from __future__ import annotations

from typing import Protocol


class DownloadProgress(Protocol):
    """What a download reports to the person waiting for it (the CLI draws a rich bar)."""

    def start(self, description: str, total: int | None, completed: int) -> None:
        """A transfer begins (again, after a reconnection) with `completed` bytes already on disk."""

    def advance(self, nbytes: int) -> None: ...

    def stop(self) -> None:
        """The transfer ended, successfully or not."""

    def note(self, message: str) -> None:
        """A one-line remark: a mirror failed, a download resumed, a checksum was recorded."""


class SilentProgress:
    """A `DownloadProgress` that reports nothing (library use without a console)."""

    def start(self, description: str, total: int | None, completed: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def stop(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass
