"""Bounded, resumable HTTP downloads with the standard library.

A transfer streams into a `.part` file, resumes over HTTP `Range` after a dropped or stalled
connection (checking that `Content-Range` starts where it was asked to, else starting over), never
writes more than its cap, and counts a trickle below the minimum rate as a stall. A transfer may
also be a byte window of a remote file (one member of a zip), fetched and resumed the same way.
"""

from __future__ import annotations

import errno
import http.client
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from inpaint_cli.errors import WeightsError
from inpaint_cli.weights.drive import ConfirmationPage, is_followed
from inpaint_cli.weights.limits import DownloadLimits
from inpaint_cli.weights.progress import DownloadProgress

DOWNLOAD_ATTEMPTS = 3
"""Failed connections per source before the next mirror; one that brought new bytes does not count
(unless it was too slow: a trickle always counts)."""
CHUNK_BYTES = 1 << 20
MAX_CONFIRMATION_PAGES = 2
"""Interstitial pages (Google Drive's virus-scan warning) followed before giving up on a source."""
MAX_PAGE_BYTES = 1 << 20
HTTP_PARTIAL = 206
HTTP_RANGE_NOT_SATISFIABLE = 416
USER_AGENT = "inpaint-cli"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class SourceFailed(Exception):
    """This source did not give us the file; the next mirror may."""


class Interrupted(Exception):
    """The connection failed in the middle of the file; what arrived is kept for a resume."""

    def __init__(self, reason: str, *, slow: bool = False) -> None:
        super().__init__(reason)
        self.slow = slow


@dataclass(frozen=True)
class Transfer:
    """One file (or byte window of a remote file) to bring into `part`."""

    url: str
    part: Path
    description: str
    cap: int
    """Most bytes `part` may hold."""
    cap_reason: str
    """Where the cap comes from, for the message when a server exceeds it."""
    expected: int | None = None
    """The exact size, when the manifest publishes it."""
    window: tuple[int, int] | None = None
    """[start, end) of the remote file to fetch instead of all of it."""


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib also follows ftp)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if not is_followed(newurl):
            raise urllib.error.HTTPError(newurl, code, f"refused redirect to {newurl}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def opener() -> urllib.request.OpenerDirector:
    """An opener with cookies (Drive's confirmation needs them) that redirects only to http(s)."""
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), _HttpOnlyRedirects())


def _is_transient(exc: BaseException) -> bool:
    """A dropped or stalled connection, worth retrying (as opposed to a refused connection or a bad host)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(
        reason, TimeoutError | ConnectionResetError | ConnectionAbortedError | http.client.HTTPException
    )


def describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"the server sent nothing for {timeout:g} s (download stalled)"
    return str(reason) or type(reason).__name__


def disk_error(exc: OSError, what: str, path: Path) -> WeightsError:
    hint = "free some disk space, or move the cache with INPAINT_HOME"
    if exc.errno != errno.ENOSPC:
        hint = "check that the cache folder is writable, or move it with INPAINT_HOME"
    return WeightsError(f"cannot write {what}: {exc.strerror or exc}", path=path, hint=hint)


def content_range(response: Any) -> tuple[int, int, int | None] | None:
    """(first, last, total or None) of a 206 response's `Content-Range`, None if absent or malformed."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match:
        return None
    total = match.group(3)
    return int(match.group(1)), int(match.group(2)), None if total == "*" else int(total)


def _announced_total(response: Any, offset: int) -> int | None:
    if offset:
        found = content_range(response)
        return found[2] if found else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _request(url: str, first: int, last: int | None = None, *, suffix: bool = False) -> Any:
    headers = {"User-Agent": USER_AGENT}
    if suffix:
        headers["Range"] = f"bytes=-{first}"
    elif first or last is not None:
        headers["Range"] = f"bytes={first}-{'' if last is None else last}"
    return urllib.request.Request(url, headers=headers)


def _pump(
    response: Any,
    consume: Callable[[bytes], bool],
    budget: int,
    over_budget: Callable[[], SourceFailed],
    progress: DownloadProgress,
    limits: DownloadLimits,
) -> None:
    """Pass the body to `consume` (which may say it has all it needs) within a byte budget and a
    minimum rate: network failures interrupt, a budget overrun fails the source."""
    window_start, window_bytes = time.monotonic(), 0
    while True:
        try:
            # read1: whatever has arrived, so a stall loses nothing already received.
            chunk = response.read1(CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise Interrupted(describe(exc, limits.timeout)) from exc
        if not chunk:
            return
        budget -= len(chunk)
        if budget < 0:
            raise over_budget()
        done = consume(chunk)
        progress.advance(len(chunk))
        if done:
            return
        window_bytes += len(chunk)
        elapsed = time.monotonic() - window_start
        if elapsed >= limits.timeout:
            if window_bytes < limits.min_rate * elapsed:
                raise Interrupted(
                    f"the server sent {window_bytes} bytes in {elapsed:.1f} s, below the minimum "
                    f"of {limits.min_rate:g} bytes/s (download stalled)",
                    slow=True,
                )
            window_start, window_bytes = time.monotonic(), 0


def _write_chunks(
    response: Any, transfer: Transfer, append: bool, progress: DownloadProgress, limits: DownloadLimits
) -> None:
    """Stream the body into `part`: network failures interrupt (resumable), disk failures abort."""
    part = transfer.part
    budget = transfer.cap - (part.stat().st_size if append and part.exists() else 0)

    def over_budget() -> SourceFailed:
        part.unlink(missing_ok=True)
        return SourceFailed(
            f"the server sent more than {transfer.cap} bytes ({transfer.cap_reason}); "
            "the download was deleted"
        )

    try:
        with open(part, "ab" if append else "wb") as out:

            def write(chunk: bytes) -> bool:
                out.write(chunk)
                return False

            _pump(response, write, budget, over_budget, progress, limits)
    except OSError as exc:
        # The disk, not the network: no mirror can help, and a partial file only takes space.
        part.unlink(missing_ok=True)
        raise disk_error(exc, "the download", part.parent) from None


def _follow_page(response: Any) -> str:
    page = ConfirmationPage()
    page.feed(response.read(MAX_PAGE_BYTES).decode("utf-8", "replace"))
    url = page.next_url(response.geturl())
    if not url:
        raise SourceFailed(
            "the server sent a web page instead of the file (quota exceeded or sign-in needed?)"
        )
    if not is_followed(url):
        raise SourceFailed(
            f"the server's web page leads to {url.split(':', 1)[0]}: (only http(s) is followed)"
        )
    return url


def _check_resume(response: Any, transfer: Transfer, start: int) -> bool:
    """Whether the response continues `part` at `start`; a 206 that starts elsewhere restarts from zero."""
    if transfer.window is None and start == 0:
        return False
    if getattr(response, "status", None) != HTTP_PARTIAL:
        if transfer.window is not None:
            raise SourceFailed("the server does not send byte ranges")
        return False  # the whole file again: start over
    found = content_range(response)
    if found is None or found[0] != start:
        transfer.part.unlink(missing_ok=True)
        got = f"Content-Range {response.headers.get('Content-Range')!r}" if found else "no Content-Range"
        if transfer.window is not None:
            raise SourceFailed(f"asked for bytes from {start}, the server sent {got}")
        raise Interrupted(f"asked for bytes from {start}, the server sent {got}; starting again from zero")
    return True


def _download_once(
    opener: urllib.request.OpenerDirector,
    transfer: Transfer,
    progress: DownloadProgress,
    limits: DownloadLimits,
) -> None:
    """One connection: resume `part` if the server honours Range (and says so correctly), else start over."""
    url = transfer.url
    base, end = transfer.window or (0, None)
    for _ in range(MAX_CONFIRMATION_PAGES + 1):
        offset = transfer.part.stat().st_size if transfer.part.exists() else 0
        last = None if end is None else end - 1
        with opener.open(_request(url, base + offset, last), timeout=limits.timeout) as response:
            if response.headers.get_content_type() == "text/html" and transfer.window is None:
                url = _follow_page(response)
                continue
            resumed = _check_resume(response, transfer, base + offset)
            offset = offset if resumed else 0
            total = (end - base) if end is not None else _announced_total(response, offset)
            if transfer.expected and total and total != transfer.expected:
                raise SourceFailed(
                    f"the server offers {total} bytes, the manifest expects {transfer.expected}"
                )
            if total and total > transfer.cap:
                raise SourceFailed(
                    f"the server offers {total} bytes, more than {transfer.cap} ({transfer.cap_reason})"
                )
            progress.start(transfer.description, total or transfer.expected, offset)
            try:
                _write_chunks(response, transfer, resumed, progress, limits)
            finally:
                progress.stop()
            received = transfer.part.stat().st_size
            if total and received < total:
                raise Interrupted(f"the connection closed after {received} of {total} bytes")
            return
    raise SourceFailed(f"more than {MAX_CONFIRMATION_PAGES} confirmation pages")


def download(transfer: Transfer, progress: DownloadProgress, limits: DownloadLimits) -> None:
    """Fetch a transfer into its `part`, reconnecting and resuming after dropped or stalled connections."""
    connection = opener()
    failures = 0
    part = transfer.part
    while True:
        before = part.stat().st_size if part.exists() else 0
        slow = False
        try:
            _download_once(connection, transfer, progress, limits)
            return
        except Interrupted as exc:
            reason, slow = str(exc), exc.slow
        except urllib.error.HTTPError as exc:
            if exc.code != HTTP_RANGE_NOT_SATISFIABLE or not before:
                raise SourceFailed(describe(exc, limits.timeout)) from None
            # The leftover `.part` is not a prefix of what the server has now: start over.
            part.unlink()
            reason = "the partial download does not fit the file on the server"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if not _is_transient(exc):
                raise SourceFailed(describe(exc, limits.timeout)) from None
            reason = describe(exc, limits.timeout)
        progressed = part.exists() and part.stat().st_size > before and not slow
        failures = 0 if progressed else failures + 1
        if failures >= DOWNLOAD_ATTEMPTS:
            raise SourceFailed(reason)
        done = part.stat().st_size if part.exists() else 0
        progress.note(f"{transfer.description}: {reason}; reconnecting at byte {done}")


def stream(
    url: str,
    description: str,
    cap: int,
    cap_reason: str,
    start: Callable[[], Callable[[bytes], bool]],
    progress: DownloadProgress,
    limits: DownloadLimits,
) -> None:
    """Read a whole response through a consumer, with no file of its own: for a zip member taken out
    on the fly. There is no resume: each reconnection calls `start` for a fresh consumer."""
    connection = opener()
    failures = 0
    while True:
        consume = start()
        try:
            with connection.open(_request(url, 0), timeout=limits.timeout) as response:
                if response.headers.get_content_type() == "text/html":
                    raise SourceFailed("the server sent a web page instead of the archive")
                total = _announced_total(response, 0)
                if total and total > cap:
                    raise SourceFailed(f"the server offers {total} bytes, more than {cap} ({cap_reason})")
                progress.start(description, total, 0)
                try:

                    def over_budget() -> SourceFailed:
                        return SourceFailed(f"the server sent more than {cap} bytes ({cap_reason})")

                    _pump(response, consume, cap, over_budget, progress, limits)
                finally:
                    progress.stop()
                return
        except Interrupted as exc:
            reason = str(exc)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if isinstance(exc, urllib.error.HTTPError) or not _is_transient(exc):
                raise SourceFailed(describe(exc, limits.timeout)) from None
            reason = describe(exc, limits.timeout)
        failures += 1
        if failures >= DOWNLOAD_ATTEMPTS:
            raise SourceFailed(reason)
        progress.note(f"{description}: {reason}; starting again (a stream cannot resume)")


def fetch_bytes(
    url: str, first: int, last: int | None, limits: DownloadLimits, *, suffix: bool = False
) -> tuple[bytes, int | None] | None:
    """A small byte range of a remote file (at most `first`/`last - first + 1` bytes) and the file's size.

    `suffix` asks for the last `first` bytes. None when the server does not answer with that range.
    """
    wanted = first if suffix else (last or 0) - first + 1
    try:
        with opener().open(_request(url, first, last, suffix=suffix), timeout=limits.timeout) as response:
            found = content_range(response)
            if getattr(response, "status", None) != HTTP_PARTIAL or found is None:
                return None
            if not suffix and found[0] != first:
                return None
            data = response.read(wanted + 1)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise SourceFailed(describe(exc, limits.timeout)) from None
    if len(data) > wanted or len(data) != found[1] - found[0] + 1:
        raise SourceFailed(f"the server sent {len(data)} bytes for a range of {found[1] - found[0] + 1}")
    return data, found[2]
