"""One editor per masks folder: a lock file that a second `inpaint edit` finds taken.

`MASKS/.inpaint-edit.lock` is held under an exclusive `flock` while a server runs (the lock dies with
its process, however it ends) and holds, readable by its owner only, where that server is: a second
`inpaint edit` on the same folder opens that page instead of starting a second writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from inpaint_cli.errors import InpaintError

LOCK_NAME = ".inpaint-edit.lock"
MAX_LOCK_BYTES = 4096


class EditorRunning(InpaintError):
    """Another `inpaint edit` serves this masks folder; `url` is its page (None while it starts)."""

    def __init__(self, folder: Path, url: str | None, photos: str | None) -> None:
        self.url = url
        self.photos = photos
        where = f"at {url.split('?')[0]}" if url else "(starting)"
        super().__init__(
            f"another inpaint edit has this masks folder open {where} for {photos or 'some photos'}",
            path=folder,
            hint="close it first (Ctrl-C in its terminal), or use its page",
        )


@dataclass
class FolderLock:
    """The held lock of one masks folder; `announce` tells a second editor where this one is."""

    path: Path
    handle: int

    def announce(self, url: str, photos: Path) -> None:
        text = json.dumps({"pid": os.getpid(), "url": url, "photos": str(photos.resolve())})
        os.ftruncate(self.handle, 0)
        os.pwrite(self.handle, text.encode(), 0)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[FolderLock]:
    """Hold the masks folder's lock for the block; `EditorRunning` if another editor holds it."""
    path = Path(folder) / LOCK_NAME
    handle = _acquire(path, folder)
    try:
        yield FolderLock(path, handle)
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: a newcomer never locks a removed file
        os.close(handle)


def _acquire(path: Path, folder: Path) -> int:
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            os.close(handle)
            raise EditorRunning(folder, holder.get("url"), holder.get("photos")) from None
        try:
            same = os.path.samestat(path.lstat(), os.fstat(handle))
        except OSError:
            same = False
        if same:
            return handle
        os.close(handle)  # its holder removed it between our open and our lock: take the new one


def _holder(handle: int) -> dict[str, str]:
    try:
        found = json.loads(os.pread(handle, MAX_LOCK_BYTES, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {key: value for key, value in found.items() if key in ("url", "photos") and isinstance(value, str)}
