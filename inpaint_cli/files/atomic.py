"""Atomic file writes: a temporary file beside the target, renamed over it only when complete.

Each temporary file is held under an exclusive `flock` by the process writing it, for as long as it
exists. A batch starting on a folder may therefore delete only the temporary files nobody holds:
those a killed run left behind, never those of a second live batch on the same folder (a lock dies
with its process, whatever happens to the process; a PID in the name could be reused).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

PART_MARK = ".part"
TEMPORARY_NAME = re.compile(r"\.(?P<stem>.+)\.[0-9a-f]+\.part(?P<suffix>.*)")
"""Names `atomic_path` gives its temporary files: `.<stem>.<random hex>.part<suffix>`."""


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it over `final` only if the block succeeds.

    A crash, Ctrl-C or SIGKILL at any moment leaves either the old file or the complete new one,
    never a partial file under the final name (the temporary name starts with a dot). The
    temporary file is locked while it exists, so `remove_if_abandoned` leaves it alone.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.stem}.{secrets.token_hex(4)}{PART_MARK}{final.suffix}")
    # Created like any new file (0666 less the umask), not 0600 as tempfile.mkstemp would.
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        # A new file: nobody else can hold it. A cleanup that lists it in the microseconds before
        # this lock may delete it; the writer then recreates the name and at worst this one output
        # fails with a one-line error (never a lost or partial file under the final name).
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(handle)  # releases the lock, after the name is gone


def remove_if_abandoned(path: Path) -> bool:
    """Delete a temporary file of `atomic_path` if no live process holds it; True if deleted."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone already, or not ours to open
        return False
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer holds it
            return False
        # Still the same file under that name (not renamed into place meanwhile)?
        if not _same_inode(path, os.fstat(handle)):
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(handle)


def _same_inode(path: Path, stat: os.stat_result) -> bool:
    try:
        current = path.lstat()
    except OSError:
        return False
    return (current.st_dev, current.st_ino) == (stat.st_dev, stat.st_ino)
