"""Named models: the manifest, the cache, verified downloads and the import of official files.

`weights_manifest.json` is the single source of truth: every named model lists its family,
licence and an ordered list of sources, each with its own size and checksum. Pulling a model
streams the first source that works into a `.part` file (resuming over HTTP Range), verifies it,
and converts it once into `<cache>/<name>.safetensors` (our layout, architecture in the metadata).
A small JSON index in the cache records the SHA-256 of each converted file, and every use compares
the file's size and mtime against it (re-hashing when they changed), so a damaged file is
re-fetched instead of loaded. Sources that publish no checksum are pinned on first download.

This module moves and checks bytes; turning a file into a network is `checkpoints.convert_checkpoint`.
Only the standard library talks HTTP; torch is imported only when a file is converted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Protocol

from inpaint_cli.atomic import atomic_path
from inpaint_cli.errors import CheckpointError, WeightsError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; atomic renames still keep every file whole.
    fcntl = None

MANIFEST_PATH = Path(__file__).with_name("weights_manifest.json")
BUNDLED_DIR = Path(__file__).with_name("bundled")
BUNDLED_SCHEME = "bundled:"
SOURCE_FORMATS = ("lightning-ckpt", "torch-pth", "torchscript", "safetensors")
CONVERTED_SUFFIX = ".safetensors"
INDEX_NAME = "index.json"
DOWNLOADS_DIR = "downloads"

DEFAULT_TIMEOUT_S = 60.0
"""Seconds without a byte from the server before a download counts as stalled (INPAINT_TIMEOUT)."""
DOWNLOAD_ATTEMPTS = 3
"""Failed connections per source before the next mirror; one that brought new bytes does not count."""
CHUNK_BYTES = 1 << 20
HASH_CHUNK_BYTES = 8 << 20
MAX_CONFIRMATION_PAGES = 2
"""Interstitial pages (Google Drive's virus-scan warning) followed before giving up on a source."""
MAX_PAGE_BYTES = 1 << 20
HTTP_RANGE_NOT_SATISFIABLE = 416
USER_AGENT = "inpaint-cli"

_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
_HEX_LENGTHS = {"sha256": 64, "md5": 32}
# Official checkpoint formats that the same reader handles, for matching an imported file to a source.
_READER_FORMATS = {
    "safetensors": {"safetensors"},
    "torchscript": {"torchscript"},
    "torch": {"lightning-ckpt", "torch-pth"},
}


# --------------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Source:
    """One place to get a model's official file, with what the publisher says about it."""

    url: str
    format: str
    member: str | None = None
    """Path of the checkpoint inside a zip archive, when the source is one."""
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    filename: str | None = None
    """File name of the download where the URL does not show it (Google Drive)."""
    manual: str | None = None
    """How to get the file by hand, for sources no program can download (a Drive folder)."""

    @property
    def is_bundled(self) -> bool:
        return self.url.startswith(BUNDLED_SCHEME)

    @property
    def file_name(self) -> str:
        if self.filename:
            return self.filename
        if self.is_bundled:
            return self.url[len(BUNDLED_SCHEME) :]
        return Path(urllib.parse.urlparse(self.url).path).name or "download"

    @property
    def host(self) -> str:
        return "package" if self.is_bundled else urllib.parse.urlparse(self.url).netloc or self.url

    def published_checksum(self) -> tuple[str, str] | None:
        """(algorithm, hex digest) the publisher gives, SHA-256 preferred."""
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        return None


@dataclass(frozen=True)
class ModelEntry:
    """A named model of the manifest."""

    name: str
    family: str
    variant: str
    license: str
    paper: str
    homepage: str
    sources: tuple[Source, ...]

    @property
    def bundled(self) -> Path | None:
        """The file shipped inside the package, if one of the sources is `bundled:<file>`."""
        for source in self.sources:
            if source.is_bundled:
                return BUNDLED_DIR / source.file_name
        return None

    @property
    def download_size(self) -> int | None:
        return next((s.size for s in self.sources if s.size), None)


_ENTRY_TEXT_FIELDS = ("family", "variant", "license", "paper", "homepage")
_SOURCE_FIELDS = ("url", "format", "member", "size", "sha256", "md5", "filename", "manual")


def _manifest_path(path: Path | None) -> Path:
    if path is not None:
        return Path(path)
    override = os.environ.get("INPAINT_MANIFEST")
    return Path(override).expanduser() if override else MANIFEST_PATH


def load_manifest(path: Path | None = None) -> dict[str, ModelEntry]:
    """Read and validate the manifest (`INPAINT_MANIFEST` replaces the shipped one)."""
    path = _manifest_path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WeightsError(f"cannot read the model manifest: {exc.strerror}", path=path) from None
    except json.JSONDecodeError as exc:
        raise WeightsError(
            f"the model manifest is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            path=path,
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise WeightsError("the model manifest must be an object with a 'models' object", path=path)
    return {name: _parse_entry(name, fields, path) for name, fields in raw["models"].items()}


def _invalid(path: Path, name: str, field: str, problem: str) -> WeightsError:
    return WeightsError(f"manifest entry '{name}': field '{field}' {problem}", path=path)


def _parse_entry(name: str, raw: Any, path: Path) -> ModelEntry:
    if not _NAME_PATTERN.fullmatch(name):
        raise WeightsError(
            f"manifest entry '{name}': names are lower-case letters, digits, '.', '_' and '-'", path=path
        )
    if not isinstance(raw, dict):
        raise _invalid(path, name, name, "must be an object")
    unknown = sorted(set(raw) - {*_ENTRY_TEXT_FIELDS, "sources"})
    if unknown:
        raise _invalid(path, name, unknown[0], "is not a known field")
    for field in _ENTRY_TEXT_FIELDS:
        if not isinstance(raw.get(field), str) or not raw[field]:
            raise _invalid(path, name, field, "must be a non-empty string")
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise _invalid(path, name, "sources", "must be a non-empty list")
    return ModelEntry(
        name=name,
        **{field: raw[field] for field in _ENTRY_TEXT_FIELDS},
        sources=tuple(_parse_source(name, i, s, path) for i, s in enumerate(sources)),
    )


def _parse_source(name: str, index: int, raw: Any, path: Path) -> Source:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise _invalid(path, name, where, "must be an object")
    unknown = sorted(set(raw) - set(_SOURCE_FIELDS))
    if unknown:
        raise _invalid(path, name, f"{where}.{unknown[0]}", "is not a known field")
    url = raw.get("url")
    if not isinstance(url, str) or not (
        url.startswith(BUNDLED_SCHEME) or urllib.parse.urlparse(url).scheme in ("http", "https", "file")
    ):
        raise _invalid(path, name, f"{where}.url", "must be an http(s), file or bundled: URL")
    if raw.get("format") not in SOURCE_FORMATS:
        raise _invalid(path, name, f"{where}.format", f"must be one of {', '.join(SOURCE_FORMATS)}")
    for field in ("member", "filename", "manual"):
        if raw.get(field) is not None and (not isinstance(raw[field], str) or not raw[field]):
            raise _invalid(path, name, f"{where}.{field}", "must be a non-empty string or null")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise _invalid(path, name, f"{where}.size", "must be a positive number of bytes or null")
    for algorithm, length in _HEX_LENGTHS.items():
        digest = raw.get(algorithm)
        if digest is not None and not (
            isinstance(digest, str) and re.fullmatch(f"[0-9a-f]{{{length}}}", digest)
        ):
            raise _invalid(
                path, name, f"{where}.{algorithm}", f"must be {length} lower-case hex digits or null"
            )
    if url.startswith(BUNDLED_SCHEME) and not raw.get("sha256"):
        raise _invalid(path, name, f"{where}.sha256", "is required for a bundled file")
    return Source(**{field: raw.get(field) for field in _SOURCE_FIELDS})


def get_entry(name: str, manifest: dict[str, ModelEntry] | None = None) -> ModelEntry:
    """The manifest entry of a named model, or an error that lists the known names."""
    manifest = load_manifest() if manifest is None else manifest
    if name not in manifest:
        raise WeightsError(
            f"unknown model '{name}'", hint=f"known models: {', '.join(manifest)}; see `inpaint models`"
        )
    return manifest[name]


# ------------------------------------------------------------------------------------------ cache


def cache_dir() -> Path:
    """Where converted models live: $INPAINT_HOME, else $XDG_CACHE_HOME/inpaint, else ~/.cache/inpaint."""
    home = os.environ.get("INPAINT_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "inpaint"


def converted_path(name: str) -> Path:
    """Where the converted file of a model lives (whether or not it is there)."""
    return cache_dir() / f"{name}{CONVERTED_SUFFIX}"


def _downloads_dir() -> Path:
    return cache_dir() / DOWNLOADS_DIR


def _empty_index() -> dict[str, Any]:
    return {"version": 1, "models": {}, "pins": {}}


def _read_index() -> dict[str, Any]:
    try:
        index = json.loads((cache_dir() / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        # A lost index only costs a re-hash or a re-download; it never makes an unverified file usable.
        return _empty_index()
    if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
        return _empty_index()
    index.setdefault("pins", {})
    return index


def _write_index(index: dict[str, Any]) -> None:
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / INDEX_NAME) as tmp:
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """Serialise changes to the cache between processes (a batch and a `weights pull`, say)."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as handle:
        if fcntl is None:
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_digests(path: Path, algorithms: tuple[str, ...] = ("sha256", "md5")) -> tuple[str, ...]:
    """Hex digests of a file, in the order asked for, from one read."""
    hashers = [hashlib.new(algorithm) for algorithm in algorithms]
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            for hasher in hashers:
                hasher.update(chunk)
    return tuple(hasher.hexdigest() for hasher in hashers)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file: what the cache index records and compares."""
    return file_digests(path, ("sha256",))[0]


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _record_converted(name: str, path: Path, source_url: str, source_sha256: str) -> None:
    size, mtime_ns = _stat_key(path)
    index = _read_index()
    index["models"][name] = {
        "file": path.name,
        "sha256": file_sha256(path),
        "size": size,
        "mtime_ns": mtime_ns,
        "source_url": source_url,
        "source_sha256": source_sha256,
    }
    _write_index(index)


def cached_path(name: str) -> Path | None:
    """The converted `<name>.safetensors` if it is present and still matches its recorded SHA-256."""
    path = converted_path(name)
    record = _read_index()["models"].get(name)
    if record is None or not path.is_file():
        return None
    if _stat_key(path) == (record["size"], record["mtime_ns"]):
        return path
    if file_sha256(path) != record["sha256"]:
        return None
    # Same bytes, new mtime (copied or touched): remember it so the next use is cheap again.
    with _cache_lock():
        _record_converted(name, path, record["source_url"], record["source_sha256"])
    return path


def cache_record(name: str) -> dict[str, Any] | None:
    """What the cache index knows about a converted model (sha256, size, source), if anything."""
    return _read_index()["models"].get(name)


# --------------------------------------------------------------------------------------- progress


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


# --------------------------------------------------------------------------------------- download


class _SourceFailed(Exception):
    """This source did not give us the file; the next mirror may."""


class _Interrupted(Exception):
    """The connection failed in the middle of the file; what arrived is kept for a resume."""


class _ConfirmationPage(HTMLParser):
    """Finds the way past a download interstitial: a form with hidden fields, or a `confirm=` link.

    Google Drive answers large files with a "can't scan for viruses" page whose form (action
    `.../download`, hidden `id`, `export`, `confirm`, `uuid`) leads to the file; older pages had a
    link carrying `confirm=<token>`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.form_action: str | None = None
        self.form_fields: dict[str, str] = {}
        self.confirm_link: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form" and self.form_action is None and values.get("action"):
            self.form_action = values["action"]
            self._in_form = True
        elif tag == "input" and self._in_form and values.get("type") == "hidden" and values.get("name"):
            self.form_fields[values["name"]] = values.get("value", "")
        elif tag == "a" and "confirm=" in values.get("href", "") and self.confirm_link is None:
            self.confirm_link = values["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False

    def next_url(self, base: str) -> str | None:
        if self.form_action and "confirm" in self.form_fields:
            query = urllib.parse.urlencode(self.form_fields)
            return f"{urllib.parse.urljoin(base, self.form_action)}?{query}"
        if self.confirm_link:
            return urllib.parse.urljoin(base, self.confirm_link)
        return None


def _timeout() -> float:
    raw = os.environ.get("INPAINT_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise WeightsError(f"INPAINT_TIMEOUT must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise WeightsError(f"INPAINT_TIMEOUT must be positive, not {raw!r}")
    return value


def offline_mode() -> bool:
    """True when INPAINT_OFFLINE forbids network access."""
    return os.environ.get("INPAINT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _is_transient(exc: BaseException) -> bool:
    """A dropped or stalled connection, worth retrying (as opposed to a refused connection or a bad host)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(
        reason, TimeoutError | ConnectionResetError | ConnectionAbortedError | http.client.HTTPException
    )


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"the server sent nothing for {timeout:g} s (download stalled)"
    return str(reason) or type(reason).__name__


def _announced_total(response: Any, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if offset and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _disk_error(exc: OSError, what: str, path: Path) -> WeightsError:
    hint = "free some disk space, or move the cache with INPAINT_HOME"
    if exc.errno != errno.ENOSPC:
        hint = "check that the cache folder is writable, or move it with INPAINT_HOME"
    return WeightsError(f"cannot write {what}: {exc.strerror or exc}", path=path, hint=hint)


def _write_chunks(
    response: Any, part: Path, append: bool, progress: DownloadProgress, timeout: float
) -> None:
    """Stream the body into `part`: network failures interrupt (resumable), disk failures abort."""
    try:
        with open(part, "ab" if append else "wb") as out:
            while True:
                try:
                    # read1: whatever has arrived, so a stall loses nothing already received.
                    chunk = response.read1(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(_describe(exc, timeout)) from exc
                if not chunk:
                    break
                out.write(chunk)
                progress.advance(len(chunk))
    except OSError as exc:
        # The disk, not the network: no mirror can help, and a partial file only takes space.
        part.unlink(missing_ok=True)
        raise _disk_error(exc, "the download", part.parent) from None


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float) -> Any:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)


def _download_once(
    opener: urllib.request.OpenerDirector,
    source: Source,
    part: Path,
    description: str,
    progress: DownloadProgress,
    timeout: float,
) -> None:
    """One connection: resume `part` if the server honours Range, else start over."""
    url = source.url
    for _ in range(MAX_CONFIRMATION_PAGES + 1):
        offset = part.stat().st_size if part.exists() else 0
        with _open(opener, url, offset, timeout) as response:
            if response.headers.get_content_type() == "text/html":
                page = _ConfirmationPage()
                page.feed(response.read(MAX_PAGE_BYTES).decode("utf-8", "replace"))
                url = page.next_url(response.geturl()) or ""
                if not url:
                    raise _SourceFailed(
                        "the server sent a web page instead of the file (quota exceeded or sign-in needed?)"
                    )
                continue
            resumed = offset > 0 and getattr(response, "status", None) == 206
            if not resumed:
                offset = 0
            total = _announced_total(response, offset)
            if source.size and total and total != source.size:
                raise _SourceFailed(f"the server offers {total} bytes, the manifest expects {source.size}")
            progress.start(description, total or source.size, offset)
            try:
                _write_chunks(response, part, resumed, progress, timeout)
            finally:
                progress.stop()
            received = part.stat().st_size
            if total and received < total:
                raise _Interrupted(f"the connection closed after {received} of {total} bytes")
            return
    raise _SourceFailed(f"more than {MAX_CONFIRMATION_PAGES} confirmation pages")


def _download(
    source: Source, part: Path, description: str, progress: DownloadProgress, timeout: float
) -> None:
    """Fetch a source into `part`, reconnecting and resuming after dropped or stalled connections."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _download_once(opener, source, part, description, progress, timeout)
            return
        except _Interrupted as exc:
            reason = str(exc)
        except urllib.error.HTTPError as exc:
            if exc.code != HTTP_RANGE_NOT_SATISFIABLE or not before:
                raise _SourceFailed(_describe(exc, timeout)) from None
            # The leftover `.part` is not a prefix of what the server has now: start over.
            part.unlink()
            reason = "the partial download does not fit the file on the server"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if not _is_transient(exc):
                raise _SourceFailed(_describe(exc, timeout)) from None
            reason = _describe(exc, timeout)
        progressed = part.exists() and part.stat().st_size > before
        failures = 0 if progressed else failures + 1
        if failures >= DOWNLOAD_ATTEMPTS:
            raise _SourceFailed(reason)
        done = part.stat().st_size if part.exists() else 0
        progress.note(f"{source.host}: {reason}; reconnecting at byte {done}")


def _verify_download(path: Path, source: Source, pinned: str | None) -> str:
    """Check size and checksum; return the file's SHA-256. A mismatch deletes the file."""
    size = path.stat().st_size
    if source.size and size != source.size:
        path.unlink()
        raise _SourceFailed(f"got {size} bytes, the manifest expects {source.size}; the download was deleted")
    sha256, md5 = file_digests(path)
    expected = source.published_checksum() or (("sha256", pinned) if pinned else None)
    if expected:
        algorithm, digest = expected
        actual = sha256 if algorithm == "sha256" else md5
        if actual != digest:
            path.unlink()
            origin = "published" if source.published_checksum() else "recorded at the first download"
            raise _SourceFailed(
                f"checksum mismatch: {algorithm} {actual}, {origin} {digest}; the download was deleted"
            )
    return sha256


def _part_path(name: str, source: Source) -> Path:
    # Stable per (model, URL) so that a later pull resumes what an interrupted one left.
    url_key = hashlib.sha256(source.url.encode()).hexdigest()[:12]
    return _downloads_dir() / f"{name}-{url_key}.part"


def _fetch(
    entry: ModelEntry, source: Source, progress: DownloadProgress, timeout: float
) -> tuple[Path, str, bool]:
    """The verified file of a source: (path, sha256, whether it is a temporary download)."""
    pinned = _read_index()["pins"].get(source.url)
    if source.is_bundled:
        path = BUNDLED_DIR / source.file_name
        if not path.is_file():
            raise _SourceFailed("the bundled file is missing from the installed package")
        sha256 = file_sha256(path)
        if sha256 != source.sha256:
            raise _SourceFailed(f"checksum mismatch: sha256 {sha256}, published {source.sha256}")
        return path, sha256, False
    part = _part_path(entry.name, source)
    part.parent.mkdir(parents=True, exist_ok=True)
    _download(source, part, f"{entry.name} ({source.host})", progress, timeout)
    sha256 = _verify_download(part, source, pinned)
    # Renamed only once verified: a `.part` file is never mistaken for a finished download.
    verified = part.with_name(f"{part.stem}-{source.file_name}")
    os.replace(part, verified)
    return verified, sha256, True


def _extract_member(archive_path: Path, member: str, destination_dir: Path) -> Path:
    try:
        with zipfile.ZipFile(archive_path) as archive:
            if member not in archive.namelist():
                found = [n for n in archive.namelist() if n.endswith(Path(member).name)]
                listed = f"; it has {', '.join(found[:3])}" if found else ""
                raise _SourceFailed(f"the archive has no {member}{listed}")
            target = destination_dir / f".{archive_path.name}-{Path(member).name}"
            try:
                with archive.open(member) as packed, target.open("wb") as out:
                    shutil.copyfileobj(packed, out, CHUNK_BYTES)
            except OSError as exc:
                target.unlink(missing_ok=True)
                raise _disk_error(exc, f"{member} from the archive", destination_dir) from None
            return target
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise _SourceFailed(f"not a valid zip archive: {exc}") from None


def _install(entry: ModelEntry, path: Path, member: str | None, source_sha256: str, source_url: str) -> Path:
    """Convert a verified file (or its zip member) into the cache and record the result's checksum."""
    # Imported here so that listing and verifying models never pays for importing torch.
    from inpaint_cli.checkpoints import convert_checkpoint

    destination = converted_path(entry.name)
    work_dir = _downloads_dir()
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_file = _extract_member(path, member, work_dir) if member else path
    try:
        convert_checkpoint(
            checkpoint_file,
            destination,
            family=entry.family,
            variant=entry.variant,
            source_url=source_url,
            source_sha256=source_sha256,
            license=entry.license,
        )
    finally:
        if checkpoint_file != path:
            checkpoint_file.unlink(missing_ok=True)
    _record_converted(entry.name, destination, source_url, source_sha256)
    return destination


def _by_hand_hint(entry: ModelEntry) -> str:
    manual = next((s.manual for s in entry.sources if s.manual), None)
    if manual:
        return manual
    url = next((s.url for s in entry.sources if not s.is_bundled), entry.homepage)
    return f"download {url} in a browser, then run `inpaint weights import {entry.name} FILE`"


def pull(
    name: str,
    *,
    progress: DownloadProgress | None = None,
    offline: bool | None = None,
    timeout: float | None = None,
) -> Path:
    """Fetch a model from its first working source, verify it, convert it into the cache."""
    entry = get_entry(name)
    progress = progress or SilentProgress()
    offline = offline_mode() if offline is None else offline
    timeout = _timeout() if timeout is None else timeout
    failures = []
    for number, source in enumerate(entry.sources, start=1):
        if source.manual:
            failures.append(f"source {number} ({source.host}) cannot be downloaded automatically")
            continue
        if offline and not source.is_bundled:
            failures.append(f"source {number} ({source.host}) needs the network and INPAINT_OFFLINE is set")
            continue
        with _cache_lock():
            try:
                path, sha256, temporary = _fetch(entry, source, progress, timeout)
                try:
                    destination = _install(entry, path, source.member, sha256, source.url)
                finally:
                    if temporary:
                        path.unlink(missing_ok=True)
            except (_SourceFailed, CheckpointError) as exc:
                message = exc.what if isinstance(exc, CheckpointError) else str(exc)
                failures.append(f"source {number} ({source.host}): {message}")
                progress.note(f"{entry.name}: {failures[-1]}")
                continue
            if not source.published_checksum() and not source.is_bundled:
                _pin(source.url, sha256)
                progress.note(
                    f"{source.host} publishes no checksum for {entry.name}; recorded sha256 {sha256} "
                    "(later downloads must match it)"
                )
            return destination
    raise WeightsError(f"could not get model '{name}': {'; '.join(failures)}", hint=_by_hand_hint(entry))


def _pin(url: str, sha256: str) -> None:
    index = _read_index()
    if index["pins"].get(url) != sha256:
        index["pins"][url] = sha256
        _write_index(index)


def ensure_model(name: str, *, progress: DownloadProgress | None = None, offline: bool | None = None) -> Path:
    """The verified converted file of a named model, pulled first when it is missing or damaged."""
    entry = get_entry(name)
    path = cached_path(name)
    if path is not None:
        return path
    offline = offline_mode() if offline is None else offline
    if offline and not entry.bundled:
        raise WeightsError(
            f"model '{name}' is not in the cache ({cache_dir()}) and INPAINT_OFFLINE forbids downloading it",
            hint=f"run `inpaint weights pull {name}` while online, or `inpaint weights import {name} FILE`",
        )
    if converted_path(name).exists() and progress is not None:
        progress.note(f"{name}: the cached file failed verification; fetching it again")
    return pull(name, progress=progress, offline=offline)


# ------------------------------------------------------------------------------- import, verify, rm


def _matching_source(entry: ModelEntry, sha256: str, md5: str) -> tuple[Source, str] | None:
    """The source whose published (or first-download) checksum this file has, and how it matched."""
    pins = _read_index()["pins"]
    for source in entry.sources:
        if source.sha256 == sha256:
            return source, "sha256 matches the published checksum"
        if source.md5 == md5:
            return source, "md5 matches the published checksum"
        if pins.get(source.url) == sha256:
            return source, "sha256 matches the one recorded at the first download"
    return None


def import_file(name: str, path: str | Path, *, progress: DownloadProgress | None = None) -> Path:
    """Convert a file the user already has (e.g. IOPaint's `big-lama.pt`) into the cache.

    A file that matches a source's published checksum is verified by it. A file whose format has a
    published checksum but does not match it is refused; other files (no published checksum for
    their format) are accepted once they load strictly into the family's network.
    """
    # Imported here so that listing and verifying models never pays for importing torch.
    from inpaint_cli.checkpoints import detect_format

    entry = get_entry(name)
    progress = progress or SilentProgress()
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError("no such file", path=path, hint=f"give the file to import as {name}")
    sha256, md5 = file_digests(path)
    match = _matching_source(entry, sha256, md5)
    if match is not None:
        source, how = match
        source_url, member = source.url, source.member
        progress.note(f"{path.name}: {how} of {source.url}")
    else:
        member = _unverified_member(entry, path, detect_format(path), sha256, md5)
        source_url = path.resolve().as_uri()
        progress.note(
            f"{path.name}: not verified (no published checksum for this kind of file); sha256 {sha256}"
        )
    with _cache_lock():
        try:
            return _install(entry, path, member, sha256, source_url)
        except _SourceFailed as exc:
            raise WeightsError(str(exc), path=path) from None


def _unverified_member(entry: ModelEntry, path: Path, file_format: str, sha256: str, md5: str) -> str | None:
    """The zip member to convert from a file no checksum vouches for; refuses a file that contradicts one.

    A file whose kind has no published checksum (a `best.ckpt` unzipped by hand, our own
    `.safetensors` from another machine) is accepted: the strict load into the network decides.
    """
    if file_format == "zip":
        members = [s.member for s in entry.sources if s.member]
        if not members:
            raise WeightsError(
                f"a zip archive, and no source of '{entry.name}' says which file inside to use",
                path=path,
                hint="unzip it and import the checkpoint inside",
            )
        return members[0]
    checked = [
        s
        for s in entry.sources
        if s.format in _READER_FORMATS[file_format] and not s.member and s.published_checksum()
    ]
    unchecked = [
        s for s in entry.sources if s.format in _READER_FORMATS[file_format] and not s.published_checksum()
    ]
    if checked and not unchecked:
        algorithm, digest = checked[0].published_checksum() or ("", "")
        raise WeightsError(
            f"not the published {entry.name} file: {algorithm} {sha256 if algorithm == 'sha256' else md5}, "
            f"expected {digest}",
            path=path,
            hint="to run other weights, use `inpaint run --checkpoint FILE --model FAMILY`",
        )
    return None


@dataclass(frozen=True)
class Verification:
    """The outcome of `verify`: whether a cached model is whole and what it is."""

    name: str
    path: Path
    ok: bool
    detail: str


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, read from its JSON header without torch."""
    with path.open("rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        if not 0 < header_length <= path.stat().st_size - 8:
            raise ValueError("bad header length")
        header = json.loads(handle.read(header_length))
    return dict(header.get("__metadata__") or {})


def verify(name: str) -> Verification:
    """Re-hash a cached model and compare it with the index and the manifest (always a full read)."""
    entry = get_entry(name)
    path = converted_path(name)
    record = cache_record(name)
    if not path.is_file():
        return Verification(name, path, False, "not downloaded")
    if record is None:
        return Verification(name, path, False, "not recorded in the cache index (pull or import it again)")
    sha256 = file_sha256(path)
    if sha256 != record["sha256"]:
        return Verification(
            name, path, False, f"sha256 {sha256} differs from the recorded {record['sha256']}"
        )
    try:
        metadata = _safetensors_metadata(path)
    except (ValueError, OSError) as exc:
        return Verification(name, path, False, f"unreadable safetensors header: {exc}")
    if metadata.get("family") != entry.family:
        return Verification(name, path, False, f"holds a {metadata.get('family')} model, not {entry.family}")
    with _cache_lock():
        _record_converted(name, path, record["source_url"], record["source_sha256"])
    return Verification(name, path, True, f"sha256 {sha256}")


def remove(name: str, *, unpin: bool = False) -> list[Path]:
    """Delete a model's converted file and leftover downloads; `unpin` also forgets recorded checksums."""
    entry = get_entry(name)
    removed = []
    with _cache_lock():
        candidates = [converted_path(name)]
        leftover = re.compile(re.escape(name) + r"-[0-9a-f]{12}(\.part|-.+)")
        if _downloads_dir().is_dir():
            candidates += [p for p in _downloads_dir().iterdir() if leftover.fullmatch(p.name)]
        for path in candidates:
            if path.is_file():
                path.unlink()
                removed.append(path)
        index = _read_index()
        index["models"].pop(name, None)
        if unpin:
            for source in entry.sources:
                index["pins"].pop(source.url, None)
        _write_index(index)
    return removed


# ------------------------------------------------------------------------------- other tools' files


def torch_hub_checkpoints_dir() -> Path:
    """torch.hub's download folder, where IOPaint and simple-lama keep `big-lama.pt`."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home).expanduser() / "hub" / "checkpoints"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch" / "hub" / "checkpoints"


def model_for_file(path: Path, manifest: dict[str, ModelEntry] | None = None) -> str | None:
    """The named model whose official file has this file name, if any."""
    manifest = load_manifest() if manifest is None else manifest
    for entry in manifest.values():
        if any(not s.is_bundled and s.file_name == path.name for s in entry.sources):
            return entry.name
    return None


def find_foreign_checkpoints() -> list[Path]:
    """Official weight files other tools downloaded that `inpaint weights import` could use."""
    folder = torch_hub_checkpoints_dir()
    if not folder.is_dir():
        return []
    manifest = load_manifest()
    return sorted(p for p in folder.iterdir() if p.is_file() and model_for_file(p, manifest))
