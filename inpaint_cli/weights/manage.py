"""Files the user brings (`weights import`), and checking (`verify`) or deleting (`rm`) cached models."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from inpaint_cli.errors import CheckpointError, WeightsError
from inpaint_cli.weights import archive, cache, formats, transfer
from inpaint_cli.weights.install import install
from inpaint_cli.weights.limits import DownloadLimits, limits_from_env
from inpaint_cli.weights.manifest import ModelEntry, Source, get_entry
from inpaint_cli.weights.progress import DownloadProgress, SilentProgress

# Official checkpoint formats that the same reader handles, for matching an imported file to a source.
_READER_FORMATS = {
    "safetensors": {"safetensors"},
    "torchscript": {"torchscript"},
    "torch": {"lightning-ckpt", "torch-pth"},
}


def _matching_source(entry: ModelEntry, sha256: str, md5: str) -> tuple[Source, str] | None:
    """The source whose published (or first-download) checksum this file has, and how it matched."""
    pins = cache.read_index()["pins"]
    for source in entry.sources:
        if source.sha256 == sha256:
            return source, "sha256 matches the published checksum"
        if source.md5 == md5:
            return source, "md5 matches the published checksum"
        if pins.get(source.url) == sha256:
            return source, "sha256 matches the one recorded at the first download"
    return None


def _member_match(entry: ModelEntry, member: str, sha256: str) -> tuple[Source, str] | None:
    pins = cache.read_index()["pins"]
    for source in entry.sources:
        if source.member != member:
            continue
        if source.member_sha256 == sha256:
            kind = "third-party pin" if source.checksum_origin == "third-party" else "published checksum"
            return source, f"sha256 of {member} matches the {kind}"
        if pins.get(source.pin_key) == sha256:
            return source, f"sha256 of {member} matches the one recorded at the first download"
    return None


def _release_member(entry: ModelEntry, path: Path) -> Source:
    """The source whose zip member this archive holds."""
    with zipfile.ZipFile(path) as opened:
        names = set(opened.namelist())
    sources = [s for s in entry.sources if s.member]
    if not sources:
        raise WeightsError(
            f"a zip archive, and no source of '{entry.name}' says which file inside to use",
            path=path,
            hint="unzip it and import the checkpoint inside",
        )
    return next((s for s in sources if s.member in names), sources[0])


def _refuse_contradicted(entry: ModelEntry, path: Path, kind: str, sha256: str, md5: str) -> None:
    """Refuse a file whose kind only has sources with published checksums, none of which it matches.

    A file whose kind has no published checksum (a `best.ckpt` unzipped by hand, our own
    `.safetensors` from another machine) is accepted: the strict load and the size check decide.
    """
    readers = _READER_FORMATS[kind]
    checked = [s for s in entry.sources if s.format in readers and not s.member and s.published_checksum()]
    unchecked = [s for s in entry.sources if s.format in readers and not s.published_checksum()]
    if checked and not unchecked:
        algorithm, digest = checked[0].published_checksum() or ("", "")
        raise WeightsError(
            f"not the published {entry.name} file: {algorithm} {sha256 if algorithm == 'sha256' else md5}, "
            f"expected {digest}",
            path=path,
            hint="to run other weights, use `inpaint run --checkpoint FILE --model FAMILY`",
        )


def _import_archive(
    entry: ModelEntry, path: Path, progress: DownloadProgress, limits: DownloadLimits
) -> Path:
    source = _release_member(entry, path)
    member = source.member or ""
    cap = limits.cap(source.member_size, source.member_approx_size)
    target = cache.downloads_dir() / f".{entry.name}-import-{Path(member).name}"
    cache.downloads_dir().mkdir(parents=True, exist_ok=True)
    try:
        archive.extract_member(
            path, member, target, cap, "the manifest's member size or INPAINT_MAX_DOWNLOAD"
        )
    except transfer.SourceFailed as exc:
        raise WeightsError(str(exc), path=path) from None
    try:
        sha256 = cache.file_sha256(target)
        match = _member_match(entry, member, sha256)
        if match is not None:
            progress.note(f"{path.name}: {match[1]} of {match[0].url}")
            return install(entry, target, sha256, match[0].url, match[0].format)
        if source.member_sha256:
            raise WeightsError(
                f"not the published {entry.name} file: sha256 of {member} {sha256}, "
                f"expected {source.member_sha256}",
                path=path,
            )
        installed = install(entry, target, sha256, path.resolve().as_uri())
        progress.note(f"{path.name}: {member} not verified (no checksum to compare with); sha256 {sha256}")
        return installed
    finally:
        target.unlink(missing_ok=True)


def import_file(
    name: str,
    path: str | Path,
    *,
    progress: DownloadProgress | None = None,
    limits: DownloadLimits | None = None,
) -> Path:
    """Convert a file the user already has (e.g. IOPaint's `big-lama.pt`) into the cache.

    A file that matches a source's published checksum is verified by it. A file whose format has a
    published checksum but does not match it is refused; other files (no published checksum for
    their format) are accepted once they load strictly into the family's network and have the
    entry's size of network. A release zip is reduced to the member the manifest names.
    """
    entry = get_entry(name)
    progress = progress or SilentProgress()
    limits = limits or limits_from_env()
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError("no such file", path=path, hint=f"give the file to import as {name}")
    problem = formats.not_a_checkpoint(path)
    if problem:
        raise CheckpointError(problem, path=path, hint=f"give a checkpoint file of {name}")
    sha256, md5 = cache.file_digests(path)
    match = _matching_source(entry, sha256, md5)
    with cache.cache_lock():
        if match is None and formats.container(path) == "zip":
            return _import_archive(entry, path, progress, limits)
        if match is not None:
            source, how = match
            progress.note(f"{path.name}: {how} of {source.url}")
            if not source.member:
                return install(entry, path, sha256, source.url, source.format)
            target = cache.downloads_dir() / f".{entry.name}-import-{Path(source.member).name}"
            cache.downloads_dir().mkdir(parents=True, exist_ok=True)
            try:
                cap = limits.cap(source.member_size, source.member_approx_size)
                archive.extract_member(path, source.member, target, cap, "the manifest's member size")
                return install(entry, target, sha256, source.url, source.format)
            except transfer.SourceFailed as exc:
                raise WeightsError(str(exc), path=path) from None
            finally:
                target.unlink(missing_ok=True)
        _refuse_contradicted(entry, path, formats.container(path), sha256, md5)
        installed = install(entry, path, sha256, path.resolve().as_uri())
        progress.note(
            f"{path.name}: not verified (no published checksum for this kind of file); sha256 {sha256}"
        )
        return installed


@dataclass(frozen=True)
class Verification:
    """The outcome of `verify`: whether a cached model is whole and what it is."""

    name: str
    path: Path
    ok: bool
    detail: str


def verify(name: str) -> Verification:
    """Re-hash a cached model and compare it with the index and the manifest (always a full read)."""
    entry = get_entry(name)
    path = cache.converted_path(name)
    record = cache.cache_record(name)
    if not path.is_file():
        return Verification(name, path, False, "not downloaded")
    if record is None:
        return Verification(name, path, False, "not recorded in the cache index (pull or import it again)")
    sha256 = cache.file_sha256(path)
    if sha256 != record["sha256"]:
        return Verification(
            name, path, False, f"sha256 {sha256} differs from the recorded {record['sha256']}"
        )
    try:
        metadata = formats.safetensors_metadata(path)
    except (ValueError, OSError) as exc:
        return Verification(name, path, False, f"unreadable safetensors header: {exc}")
    if metadata.get("family") != entry.family:
        return Verification(name, path, False, f"holds a {metadata.get('family')} model, not {entry.family}")
    with cache.cache_lock():
        cache.record_converted(name, path, record["source_url"], record["source_sha256"])
    return Verification(name, path, True, f"sha256 {sha256}")


def remove(name: str, *, unpin: bool = False) -> list[Path]:
    """Delete a model's converted file and leftover downloads; `unpin` also forgets recorded checksums."""
    entry = get_entry(name)
    removed = []
    with cache.cache_lock():
        candidates = [cache.converted_path(name)]
        leftover = re.compile(re.escape(name) + r"-[0-9a-f]{12}(\.part|-.+)")
        if cache.downloads_dir().is_dir():
            candidates += [p for p in cache.downloads_dir().iterdir() if leftover.fullmatch(p.name)]
        for path in candidates:
            if path.is_file():
                path.unlink()
                removed.append(path)
        index = cache.read_index()
        index["models"].pop(name, None)
        if unpin:
            for source in entry.sources:
                index["pins"].pop(source.url, None)
                index["pins"].pop(source.pin_key, None)
        cache.write_index(index)
    return removed
