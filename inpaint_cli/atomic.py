"""Atomic file writes: a temporary file beside the target, renamed over it only when complete."""

from __future__ import annotations

import contextlib
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
    never a partial file under the final name (the temporary name starts with a dot).
    """
    final = Path(final)
    tmp = final.with_name(f".{final.stem}.{secrets.token_hex(4)}{PART_MARK}{final.suffix}")
    # Created like any new file (0666 less the umask), not 0600 as tempfile.mkstemp would.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
