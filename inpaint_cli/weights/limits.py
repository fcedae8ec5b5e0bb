"""Bounds on every download: stall timeout, minimum rate, and the most bytes a transfer may bring.

A download is bounded by the manifest's size where it is known (exactly when published, with
`APPROX_SLACK` where only approximate), else by `INPAINT_MAX_DOWNLOAD`. The same bound applies to
what comes out of a zip. A connection whose average rate over `timeout` seconds falls below
`INPAINT_MIN_RATE` counts as stalled like a silent one, so a trickling server cannot hold a pull forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from inpaint_cli.errors import UsageError, WeightsError
from inpaint_cli.options import parse_size

DEFAULT_TIMEOUT_S = 60.0
"""Seconds without a byte from the server before a download counts as stalled (INPAINT_TIMEOUT)."""
DEFAULT_MIN_RATE = 10_000
"""Bytes per second, averaged over the timeout window, below which a transfer counts as stalled
(INPAINT_MIN_RATE): at this rate the smallest official model would take hours."""
DEFAULT_MAX_DOWNLOAD = 4_000_000_000
"""Most bytes a download or an extracted member of unknown size may have (INPAINT_MAX_DOWNLOAD): twice
the largest official archive (BOPBtL's ~2 GB zip)."""
APPROX_SLACK = 1.5
"""How far an approximate manifest size may be exceeded before a transfer is cut off."""


@dataclass(frozen=True)
class DownloadLimits:
    """The bounds one pull runs under."""

    timeout: float = DEFAULT_TIMEOUT_S
    min_rate: float = DEFAULT_MIN_RATE
    max_download: int = DEFAULT_MAX_DOWNLOAD

    def cap(self, exact: int | None, approximate: int | None = None) -> int:
        """Most bytes a transfer may bring: the exact size, an approximate one with slack, else the cap."""
        if exact:
            return exact
        if approximate:
            return int(approximate * APPROX_SLACK)
        return self.max_download


def _positive(variable: str, parse: type[float] | type[int], default: float) -> float:
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        value = parse_size(raw) if parse is int else float(raw)
    except (UsageError, ValueError):
        raise WeightsError(f"{variable} must be a positive number, not {raw!r}") from None
    if value <= 0:
        raise WeightsError(f"{variable} must be positive, not {raw!r}")
    return value


def limits_from_env(*, timeout: float | None = None, max_download: int | None = None) -> DownloadLimits:
    """The limits from INPAINT_TIMEOUT, INPAINT_MIN_RATE and INPAINT_MAX_DOWNLOAD, options first."""
    return DownloadLimits(
        timeout=timeout if timeout is not None else _positive("INPAINT_TIMEOUT", float, DEFAULT_TIMEOUT_S),
        min_rate=_positive("INPAINT_MIN_RATE", float, DEFAULT_MIN_RATE),
        max_download=(
            max_download
            if max_download is not None
            else int(_positive("INPAINT_MAX_DOWNLOAD", int, DEFAULT_MAX_DOWNLOAD))
        ),
    )
