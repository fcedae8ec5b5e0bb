"""Which files a run reads and writes, checked before anything runs: nothing read is ever written,
no two writes share a target, and every write can happen.

Pure over the planned accesses (it only stats paths), so `run`, `detect`, review pages and
distributed batches plan their reads and writes and call the same `check_targets`.
Files are compared by identity: a hard link, a symlink or another spelling of a path that reaches
the same file is the same file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from inpaint_cli.errors import UsageError, display_path
from inpaint_cli.files import storage


@dataclass(frozen=True)
class Access:
    """One file (or folder) a run reads or writes, and the role it plays, for messages.

    `role` reads after "is"/"be": `the mask of p.png`, `the output`, `the report`.
    A write with `folder=True` may put anything inside that folder (intermediates).
    """

    path: Path
    role: str
    folder: bool = False
    option: str | None = None
    """The option that chose this path (`-o`, `--report`), named in the hint."""


class _Resolver:
    """Real paths as strings, resolving each folder once: a batch of 10,000 images has a few folders,
    and `os.path.realpath` on every file (one `lstat` per component) is most of a check's time."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: Path) -> str:
        if storage.is_remote(path):
            return str(path)  # an object-store URL is its own identity (no links there)
        # Not `abspath`: folding `link/..` by text would name another folder than the system does.
        text = os.path.join(os.getcwd(), os.fspath(path))
        folder, name = os.path.split(text)
        if name in ("", ".", "..") or os.path.islink(text):  # a folder, or a symlink: follow it all
            return os.path.realpath(text)
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = os.path.realpath(folder)
        return os.path.join(real_folder, name)


def _inode(path: Path) -> tuple[int, int] | None:
    if storage.is_remote(path):
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _ancestors(real: str) -> Iterator[str]:
    """The folders a real path lies in, innermost first."""
    while True:
        parent = os.path.dirname(real)
        if parent == real:
            return
        yield parent
        real = parent


def check_targets(reads: Iterable[Access], writes: Iterable[Access]) -> None:
    """Raise a UsageError naming both roles if a write hits a read or another write.

    `error: m.png: is the mask of p.png and cannot be the output`. Reads must exist (they are
    compared by device and inode, so hard links count); writes are compared by resolved path, and
    by inode where the target exists already (an old output that is a hard link to an input).
    """
    real = _Resolver()
    reads_by_inode: dict[tuple[int, int], Access] = {}
    reads_by_path: dict[str, Access] = {}
    for read in reads:
        inode = _inode(read.path)
        if inode is not None:
            reads_by_inode.setdefault(inode, read)
        reads_by_path.setdefault(real(read.path), read)
    writes = [(write, real(write.path)) for write in writes]
    folder_writes: dict[str, Access] = {}
    for write, path in writes:
        if write.folder:
            earlier = folder_writes.setdefault(path, write)
            if earlier is not write:
                _clash(earlier, write)
    if folder_writes:  # a read inside a folder that is written into
        for path, read in reads_by_path.items():
            for holder in (path, *_ancestors(path)):
                if holder in folder_writes:
                    _clash(read, folder_writes[holder])
    files_by_path: dict[str, Access] = {}
    for write, path in writes:
        read = reads_by_path.get(path)
        if read is None:
            inode = _inode(write.path)
            read = None if inode is None else reads_by_inode.get(inode)
        if read is not None:
            _clash(read, write)
        if write.folder:
            continue
        earlier = files_by_path.setdefault(path, write)
        if earlier is not write:
            _clash(earlier, write)
        if folder_writes:
            for holder in _ancestors(path):
                if holder in folder_writes:
                    _clash(folder_writes[holder], write)


def _clash(first: Access, second: Access) -> None:
    hint = f"choose another {second.option}" if second.option else "rename one of them"
    raise UsageError(f"is {first.role} and cannot be {second.role}", path=first.path, hint=hint)


# --- where writes may go -----------------------------------------------------------------------------


def check_writable(path: Path, *, role: str, option: str, folder: bool = False) -> None:
    """Refuse, before the run, a write that cannot happen: the target is a folder (or, for a
    `folder` write, a file), its parent folder is missing, or the folder it goes into is not
    writable (permissions, read-only mount). Only the last component may be missing: a typo in
    a parent never creates a tree of folders.
    """
    url = storage.folded_url(path)
    if url is not None:  # an option of local paths given a URL: never a folder named `memory:`
        raise UsageError(
            f"{role} must be a local path, not a URL", path=url, hint=f"give {option} a local path"
        )
    if storage.is_remote(path):
        storage.check_lasting(path)
        return  # an object store has no folders to create nor permissions to probe before a put
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{role} must be a folder, not a file", path=path, hint=f"choose another {option}")
    if not folder and path.is_dir():
        raise UsageError(f"{role} must be a file, not a folder", path=path, hint=f"give {option} a file name")
    into = path if folder and path.is_dir() else path.parent
    blocker = next((above for above in (into, *into.parents) if above.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UsageError(
            f"{display_path(blocker)} is a file, so {option} cannot be written inside it",
            path=path,
            hint=f"give another {option}",
        )
    if not into.exists():
        raise UsageError(
            f"folder {display_path(into)} does not exist",
            path=path,
            hint=f"create it first, or check {option} for a typo",
        )
    problem = _cannot_create_in(into)
    if problem is not None:
        raise UsageError(
            f"cannot write into {display_path(into)} ({problem})",
            path=path,
            hint=f"choose another {option}, or make the folder writable",
        )


def _cannot_create_in(folder: Path) -> str | None:
    """Why no file can be created in `folder`, or None. Tries it: an unnamed temporary file
    (O_TMPFILE where the system has it), so nothing appears in the folder even for a moment."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None
