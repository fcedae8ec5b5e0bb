"""The model cache: where converted files live, the index of their checksums, and the lock.

A small JSON index records the SHA-256 of each converted file, and every use compares the file's
size and mtime against it (re-hashing when they changed), so a damaged file is re-fetched instead
of loaded. It also holds the checksums pinned at first download for sources that publish none.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inpaint_cli.errors import InputError, WeightsError
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.files.jsonfile import json_text, read_json

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; atomic renames still keep every file whole.
    fcntl = None

CONVERTED_SUFFIX = ".safetensors"
INDEX_NAME = "index.json"
DOWNLOADS_DIR = "downloads"
HASH_CHUNK_BYTES = 8 << 20
HOME_HINT = "set INPAINT_HOME to a folder you can write"


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


def downloads_dir() -> Path:
    """Partial and verified downloads, and extracted members, before conversion."""
    return cache_dir() / DOWNLOADS_DIR


def _empty_index() -> dict[str, Any]:
    return {"version": 1, "models": {}, "pins": {}}


MODEL_RECORD_TYPES = {
    "file": str,
    "sha256": str,
    "size": int,
    "mtime_ns": int,
    "source_url": str,
    "source_sha256": str,
}
"""The fields of a converted model's record and their types; a record lacking one is forgotten."""


def read_index() -> dict[str, Any]:
    """The index, with every record of the wrong shape left out.

    A lost or damaged index (even a FIFO or /dev/zero in its place) only costs a re-hash or a
    re-download; it never makes an unverified file usable.
    """
    try:
        index = read_json(cache_dir() / INDEX_NAME)
    except InputError:
        return _empty_index()
    if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
        return _empty_index()
    pins = index.get("pins")
    index["models"] = {name: record for name, record in index["models"].items() if _well_formed(record)}
    index["pins"] = (
        {key: sha for key, sha in pins.items() if isinstance(sha, str)} if isinstance(pins, dict) else {}
    )
    return index


def _well_formed(record: object) -> bool:
    return isinstance(record, dict) and all(
        type(record.get(field)) is kind for field, kind in MODEL_RECORD_TYPES.items()
    )


def write_index(index: dict[str, Any]) -> None:
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / INDEX_NAME) as tmp:
            tmp.write_text(json_text(index, indent=2, sort_keys=True), encoding="utf-8")
    except OSError as exc:
        raise _unusable(directory, exc) from None


def _unusable(directory: Path, exc: OSError) -> WeightsError:
    """The one-line error for a cache folder that cannot hold files (read-only, a file, /dev/null)."""
    reason = "not a folder" if directory.exists() and not directory.is_dir() else exc.strerror or str(exc)
    return WeightsError(f"cannot keep models here: {reason}", path=directory, hint=HOME_HINT)


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Serialise changes to the cache between processes (a batch and a `weights pull`, say).

    Every change to the cache takes this lock first, so a folder that cannot hold the cache is one
    `WeightsError` here, before anything is downloaded or converted.
    """
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        opened = (directory / ".lock").open("a")
    except OSError as exc:
        raise _unusable(directory, exc) from None
    with opened as handle:
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


def record_converted(name: str, path: Path, source_url: str, source_sha256: str) -> None:
    """Remember a converted file's SHA-256, size and mtime (call under `cache_lock`)."""
    size, mtime_ns = _stat_key(path)
    index = read_index()
    index["models"][name] = {
        "file": path.name,
        "sha256": file_sha256(path),
        "size": size,
        "mtime_ns": mtime_ns,
        "source_url": source_url,
        "source_sha256": source_sha256,
    }
    write_index(index)


def cached_path(name: str) -> Path | None:
    """The converted `<name>.safetensors` if it is present and still matches its recorded SHA-256."""
    path = converted_path(name)
    record = read_index()["models"].get(name)
    if record is None or not path.is_file():
        return None
    if _stat_key(path) == (record["size"], record["mtime_ns"]):
        return path
    if file_sha256(path) != record["sha256"]:
        return None
    # Same bytes, new mtime (copied or touched): remember it so the next use is cheap again.
    with cache_lock():
        record_converted(name, path, record["source_url"], record["source_sha256"])
    return path


def cache_record(name: str) -> dict[str, Any] | None:
    """What the cache index knows about a converted model (sha256, size, source), if anything."""
    return read_index()["models"].get(name)


def pinned(key: str) -> str | None:
    """The SHA-256 recorded at the first download of a source without a published checksum."""
    return read_index()["pins"].get(key)


def pin(key: str, sha256: str) -> None:
    index = read_index()
    if index["pins"].get(key) != sha256:
        index["pins"][key] = sha256
        write_index(index)
