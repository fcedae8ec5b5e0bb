"""Where batch files live: local paths, or fsspec URLs (`s3://bucket/scans`, `gs://…`) for archives in
object storage.

A URL becomes a `RemotePath`, a small path object with the subset of `pathlib.Path` that pairing and
resume use (join, name, stem, parent, relative_to, exists, stat), backed by the fsspec filesystem of
its protocol. Image codecs need local files, so a job reads through `local_copy` (the object is
downloaded into a private temporary folder) and writes through `staged_write`: a local file that is
uploaded in one put only when complete. An object store makes an object visible only when its upload
completes, so, like the write-then-rename of local files, no reader ever sees a partial output.

Credentials and endpoints are fsspec's (environment, `~/.aws`, `FSSPEC_S3_ENDPOINT_URL`, ...): this
module passes no options, so every node of a cluster configured the same way opens the same URL.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from types import SimpleNamespace
from typing import Any, Union

from inpaint_cli.errors import InpaintError, UsageError

URL = re.compile(r"(?P<protocol>[A-Za-z][A-Za-z0-9+.-]+):/+(?P<key>.*)")
"""`protocol://key`; also matches the `s3:/bucket` that `pathlib.Path("s3://bucket")` makes of a URL."""
LOCAL_PROTOCOLS = {"file", "local"}
FLEETING_PROTOCOLS = {"memory"}
"""Stores that live in the process: what is written there is gone when inpaint exits."""


@dataclass(frozen=True, order=True)
class RemotePath:
    """A file or folder of an fsspec filesystem: `s3://bucket/scans/a.jpg` has `key` `bucket/scans/a.jpg`.

    Pure operations never touch the network; `exists`, `is_dir`, `stat` ask the store.
    """

    protocol: str
    key: PurePosixPath

    def __str__(self) -> str:
        return f"{self.protocol}://{self.key}"

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of this protocol (fsspec caches instances)."""
        import fsspec

        return fsspec.filesystem(self.protocol)

    def _derived(self, key: PurePosixPath) -> RemotePath:
        return RemotePath(self.protocol, key)

    def __truediv__(self, other: str | PurePath) -> RemotePath:
        return self._derived(self.key / PurePosixPath(PurePath(other).as_posix()))

    def joinpath(self, *parts: str | PurePath) -> RemotePath:
        path = self
        for part in parts:
            path = path / part
        return path

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def stem(self) -> str:
        return self.key.stem

    @property
    def suffix(self) -> str:
        return self.key.suffix

    @property
    def parent(self) -> RemotePath:
        return self._derived(self.key.parent)

    @property
    def parents(self) -> list[RemotePath]:
        return [self._derived(parent) for parent in self.key.parents if str(parent) != "."]

    def with_suffix(self, suffix: str) -> RemotePath:
        return self._derived(self.key.with_suffix(suffix))

    def with_name(self, name: str) -> RemotePath:
        return self._derived(self.key.with_name(name))

    def relative_to(self, other: RemotePath) -> PurePosixPath:
        """The path below `other`, as a pure relative path (so it joins onto a local folder too)."""
        if not isinstance(other, RemotePath) or other.protocol != self.protocol:
            raise ValueError(f"{self} is not inside {other}")
        return self.key.relative_to(other.key)

    def resolve(self) -> RemotePath:
        """Object stores have no links or `..`: a remote path is its own identity."""
        return self

    def as_posix(self) -> str:
        return str(self)

    def exists(self) -> bool:
        return bool(self.fs.exists(str(self.key)))

    def is_dir(self) -> bool:
        return bool(self.fs.isdir(str(self.key)))

    def is_file(self) -> bool:
        return bool(self.fs.isfile(str(self.key)))

    def stat(self) -> SimpleNamespace:
        """`st_size` and `st_mtime` (seconds; 0 where the store does not say)."""
        try:
            info = self.fs.info(str(self.key))
        except FileNotFoundError as exc:
            raise FileNotFoundError(2, "No such file or object", str(self)) from exc
        return SimpleNamespace(st_size=int(info.get("size") or 0), st_mtime=_modified(info))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        # Object stores have no folders (a prefix exists once an object is under it); others do.
        self.fs.makedirs(str(self.key), exist_ok=True)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(str(self.key))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(str(self.key)))


AnyPath = Union[Path, RemotePath]  # noqa: UP007 - a runtime alias, evaluated on Python 3.10


def _modified(info: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        with contextlib.suppress(TypeError, ValueError):
            return float(value)
    return 0.0


def is_remote(path: object) -> bool:
    return isinstance(path, RemotePath)


def location(value: str | os.PathLike[str]) -> AnyPath:
    """A local `Path`, or a `RemotePath` for an fsspec URL (`file://` URLs are local paths).

    Accepts the `s3:/bucket` form a `pathlib.Path` makes of `s3://bucket`, since the CLI parses paths.
    A protocol that fsspec does not know, or whose package is not installed, is a usage error.
    """
    text = os.fspath(value)
    match = URL.fullmatch(text)
    if match is None or len(match["protocol"]) == 1:  # `C:/...` is a Windows drive, not a URL
        return Path(text)
    protocol = match["protocol"].lower()
    if protocol in LOCAL_PROTOCOLS:
        # file:///abs is /abs, file://name is ./name; file:/abs is what pathlib makes of file:///abs.
        rest = text[len(protocol) + 1 :]
        return Path(rest[2:] if rest.startswith("//") else rest)
    _require_protocol(protocol, text)
    return RemotePath(protocol, PurePosixPath(match["key"].rstrip("/") or "/"))


def _require_protocol(protocol: str, url: str) -> None:
    try:
        import fsspec
        from fsspec.registry import known_implementations
    except ImportError as exc:
        raise UsageError(
            "URLs need the fsspec package",
            path=url,
            hint='pip install "inpaint-cli[ray]" or pip install fsspec',
        ) from exc
    known = known_implementations.get(protocol)
    if known is None and protocol not in fsspec.registry:
        raise UsageError(f"unknown storage protocol {protocol}://", path=url, hint="see fsspec's protocols")
    try:
        implementation = fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        package = (known or {}).get("err") or f"the fsspec package for {protocol}://"
        raise UsageError(f"{protocol}:// needs another package", path=url, hint=package) from exc
    if _needs_options(implementation):
        raise UsageError(
            f"{protocol}:// cannot be opened from a URL alone",
            path=url,
            hint="give a folder, or an object store such as s3://",
        )


WRAPPING_PARAMETERS = {"fo", "fs", "target_protocol", "sync_fs"}
"""Constructor parameters of fsspec filesystems that read another file or store (zip://, tar://,
cached://, dir://, reference://): a `protocol://key` URL cannot say which."""


def _needs_options(implementation: type) -> bool:
    """Whether a filesystem needs constructor options a URL does not carry (ftp:// needs a host)."""
    parameters = list(inspect.signature(implementation.__init__).parameters.values())[1:]
    required = [
        p for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return bool(required) or any(p.name in WRAPPING_PARAMETERS for p in parameters)


def check_lasting(path: AnyPath) -> None:
    """Refuse to write to a store that keeps nothing once the process ends (`memory://`)."""
    if is_remote(path) and path.protocol in FLEETING_PROTOCOLS:
        raise UsageError(
            f"{path.protocol}:// keeps nothing once inpaint exits",
            path=path,
            hint="write to a folder, or to a lasting store such as s3://",
        )


def folded_url(path: object) -> str | None:
    """The URL a local `Path` was made from (`memory:/r.json` from `memory://r.json`), or None: for
    options that take local paths only, so a URL is refused rather than written as a folder `memory:`."""
    if is_remote(path):
        return None
    match = URL.fullmatch(os.fspath(path))  # type: ignore[arg-type]
    if match is None or len(match["protocol"]) == 1 or match["protocol"].lower() in LOCAL_PROTOCOLS:
        return None
    return f"{match['protocol']}://{match['key']}"


def walk(
    root: AnyPath, onerror: Callable[[OSError], None] | None = None
) -> Iterator[tuple[AnyPath, list, list]]:
    """`os.walk` for local and remote folders: `(folder, subfolder names, file names)`, top-down, and
    pruning `subfolder names` in place stops the descent as with `os.walk`. The folder is a path object."""
    if not is_remote(root):
        for folder, subfolders, files in os.walk(root, onerror=onerror):
            yield Path(folder), subfolders, files
        return

    def failed(error: Exception) -> None:
        if onerror is not None:
            onerror(error if isinstance(error, OSError) else OSError(5, str(error), str(root)))

    # fsspec yields `key`-style folders without the protocol; they are rebuilt into RemotePaths.
    for folder, subfolders, files in root.fs.walk(str(root.key), on_error=failed, detail=False):
        yield RemotePath(root.protocol, PurePosixPath(folder)), subfolders, files


@contextlib.contextmanager
def local_copies(paths: Iterable[AnyPath]) -> Iterator[list[Path]]:
    """Local paths to read `paths` from: local ones as they are, remote ones downloaded (with their
    names, so formats are recognised) into a private folder removed afterwards. Errors raised in the
    block name the remote path, not the temporary copy."""
    paths = list(paths)
    if not any(map(is_remote, paths)):
        yield list(paths)
        return
    folder = Path(tempfile.mkdtemp(prefix="inpaint-in-"))
    try:
        local: list[Path] = []
        names: dict[Path, AnyPath] = {}
        for index, path in enumerate(paths):
            if not is_remote(path):
                local.append(path)
                continue
            copy = folder / str(index) / path.name
            copy.parent.mkdir()
            try:
                path.fs.get_file(str(path.key), str(copy))
            except FileNotFoundError as exc:
                raise FileNotFoundError(2, "No such file or object", str(path)) from exc
            names[copy] = path
            local.append(copy)
        with _naming_originals(names):
            yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def staged_write(final: AnyPath) -> Iterator[Path]:
    """A local path to write `final` to. Local: `final` itself (the writers are atomic already).
    Remote: a temporary file, put as one object under `final` only if the block succeeds."""
    if not is_remote(final):
        yield final
        return
    folder = Path(tempfile.mkdtemp(prefix="inpaint-out-"))
    staged = folder / final.name
    try:
        with _naming_originals({staged: final}):
            yield staged
        final.fs.put_file(str(staged), str(final.key))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _naming_originals(originals: dict[Path, AnyPath]) -> Iterator[None]:
    """Rewrite the path of an error raised for a temporary copy to the file the user named."""
    try:
        yield
    except InpaintError as exc:
        if exc.path in originals:
            exc.path = originals[exc.path]  # type: ignore[assignment]
            exc.args = (exc.one_line(),)
        raise
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename) in originals:
            exc.filename = str(originals[Path(exc.filename)])
        raise
