"""Getting a named model into the cache: fetch a source, verify it, convert it once, record it.

Pulling streams the first source that works into a `.part` file (see `transfer`), takes the checkpoint
out of a zip (only the member's bytes are fetched where the server allows ranges, see `archive`),
verifies size and checksum, converts it into `<cache>/<name>.safetensors` (our layout, architecture
in the metadata) and checks the result against the entry's size of network. Sources that publish no
checksum are pinned on first download. Torch is imported only to convert.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inpaint_cli.errors import CheckpointError, WeightsError
from inpaint_cli.options import CLASSICAL_METHODS
from inpaint_cli.weights import archive, cache, formats, transfer, zipstream
from inpaint_cli.weights.limits import DownloadLimits, limits_from_env
from inpaint_cli.weights.manifest import BUNDLED_SCHEME, ModelEntry, Source, bundled_names, get_entry
from inpaint_cli.weights.progress import DownloadProgress, SilentProgress

PARAMETER_TOLERANCE = 0.02
"""How far a converted network's number of tensor values may be from the manifest's (buffers and
constant kernels a conversion keeps or drops); other variants differ by 2x or more."""


def offline_mode() -> bool:
    """True when INPAINT_OFFLINE forbids network access."""
    return os.environ.get("INPAINT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Verified:
    """A checkpoint file ready to convert, and the checksum that vouches for it."""

    path: Path
    sha256: str
    temporary: bool
    pin_key: str | None
    """Where to record `sha256` after a successful install: the unit had no published checksum."""


def _part_path(name: str, key: str) -> Path:
    # Stable per (model, URL[#member]) so that a later pull resumes what an interrupted one left.
    return cache.downloads_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.part"


def _check(path: Path, what: str, size: int | None, expected: tuple[str, str] | None, origin: str) -> str:
    """Check size and checksum of a file; return its SHA-256. A mismatch deletes the file."""
    actual_size = path.stat().st_size
    if size and actual_size != size:
        path.unlink()
        raise transfer.SourceFailed(f"{what}: got {actual_size} bytes, the manifest expects {size}; deleted")
    sha256, md5 = cache.file_digests(path)
    if expected:
        algorithm, digest = expected
        actual = sha256 if algorithm == "sha256" else md5
        if actual != digest:
            path.unlink()
            raise transfer.SourceFailed(
                f"checksum mismatch: {algorithm} {actual}, {origin} {digest}; the download was deleted"
            )
    return sha256


def _origin(source: Source, published: bool) -> str:
    if not published:
        return "recorded at the first download"
    return "third-party pin" if source.checksum_origin == "third-party" else "published"


def _verify_member(path: Path, source: Source) -> Verified:
    pinned = cache.pinned(source.pin_key)
    expected = ("sha256", source.member_sha256 or pinned) if source.member_sha256 or pinned else None
    what = source.member or path.name
    sha256 = _check(path, what, source.member_size, expected, _origin(source, bool(source.member_sha256)))
    return Verified(path, sha256, True, None if source.member_sha256 else source.pin_key)


def _fetch_whole(
    entry: ModelEntry, source: Source, progress: DownloadProgress, limits: DownloadLimits
) -> Path:
    part = _part_path(entry.name, source.url)
    cap = limits.cap(source.size, source.approx_size)
    reason = (
        "the manifest's size"
        if source.size
        else ("the manifest's approximate size with slack" if source.approx_size else "INPAINT_MAX_DOWNLOAD")
    )
    whole = transfer.Transfer(source.url, part, f"{entry.name} ({source.host})", cap, reason, source.size)
    transfer.download(whole, progress, limits)
    return part


def _member_cap(source: Source, limits: DownloadLimits) -> tuple[int, str]:
    cap = limits.cap(source.member_size, source.member_approx_size)
    if source.member_size:
        return cap, "the manifest's member size"
    return (
        cap,
        "the manifest's approximate member size with slack"
        if source.member_approx_size
        else "INPAINT_MAX_DOWNLOAD",
    )


def _fetch_member_by_ranges(
    entry: ModelEntry, source: Source, progress: DownloadProgress, limits: DownloadLimits
) -> Path | None:
    """Only the member's bytes of a remote zip; None when the server does not send byte ranges."""
    tail = transfer.fetch_bytes(source.url, archive.TAIL_BYTES, None, limits, suffix=True)
    if tail is None or tail[1] is None:
        return None

    def read(first: int, end: int) -> bytes:
        found = transfer.fetch_bytes(source.url, first, end - 1, limits)
        if found is None:
            raise transfer.SourceFailed(f"the server did not send bytes {first}-{end - 1} of the archive")
        return found[0]

    member = source.member or ""
    span = archive.locate_member((tail[0], tail[1]), member, read)
    archive.check_declared(member, span.size, span.compressed_size, *_member_cap(source, limits))
    part = _part_path(entry.name, source.pin_key)
    window = (span.data_start, span.data_start + span.compressed_size)
    description = f"{entry.name} ({source.host}, {Path(member).name} only)"
    member_bytes = transfer.Transfer(
        source.url, part, description, span.compressed_size, "the member's size", window=window
    )
    transfer.download(member_bytes, progress, limits)
    try:
        return archive.inflate(part, span, part.with_name(f"{part.stem}-{Path(member).name}"))
    finally:
        part.unlink(missing_ok=True)


def _stream_member(
    entry: ModelEntry, source: Source, progress: DownloadProgress, limits: DownloadLimits
) -> Path:
    """The member of a remote zip read front to back: the archive's other bytes are never stored."""
    member = source.member or ""
    part = _part_path(entry.name, source.pin_key)
    target = part.with_name(f"{part.stem}-{Path(member).name}")
    extractors: list[zipstream.StreamExtractor] = []

    def start() -> Callable[[bytes], bool]:
        if extractors:
            extractors[-1].close()
        extractors.append(zipstream.StreamExtractor(member, target, *_member_cap(source, limits)))
        return extractors[-1].feed

    cap = limits.cap(source.size, source.approx_size)
    reason = (
        "the manifest's size of the archive" if source.size or source.approx_size else "INPAINT_MAX_DOWNLOAD"
    )
    description = f"{entry.name} ({source.host}, {Path(member).name} out of the stream)"
    try:
        transfer.stream(source.url, description, cap, reason, start, progress, limits)
    finally:
        if extractors:
            extractors[-1].close()
    if not extractors or not extractors[-1].done:
        raise transfer.SourceFailed(f"the archive ended before {member} was complete")
    return target


def _fetch(entry: ModelEntry, source: Source, progress: DownloadProgress, limits: DownloadLimits) -> Verified:
    """The verified checkpoint of a source (a zip's member already taken out)."""
    if source.is_bundled:
        path = entry.bundled or Path(source.url[len(BUNDLED_SCHEME) :])
        if not path.is_file():
            raise transfer.SourceFailed("the bundled file is missing from the installed package")
        sha256 = cache.file_sha256(path)
        if sha256 != source.sha256:
            raise transfer.SourceFailed(f"checksum mismatch: sha256 {sha256}, published {source.sha256}")
        return Verified(path, sha256, False, None)
    cache.downloads_dir().mkdir(parents=True, exist_ok=True)
    if source.member and source.fetches_member_only:
        member = _fetch_member_by_ranges(entry, source, progress, limits)
        if member is None:  # no byte ranges: read the archive as a stream, keep only the member
            member = _stream_member(entry, source, progress, limits)
        return _verify_member(member, source)
    part = _fetch_whole(entry, source, progress, limits)
    pinned = cache.pinned(source.url)
    expected = source.published_checksum() or (("sha256", pinned) if pinned else None)
    sha256 = _check(
        part, "the download", source.size, expected, _origin(source, bool(source.published_checksum()))
    )
    # Renamed only once verified: a `.part` file is never mistaken for a finished download.
    verified = part.with_name(f"{part.stem}-{source.file_name}")
    os.replace(part, verified)
    if not source.member:
        return Verified(verified, sha256, True, None if source.published_checksum() else source.url)
    try:
        extracted = archive.extract_member(
            verified,
            source.member,
            verified.with_name(f"{part.stem}-{Path(source.member).name}"),
            *_member_cap(source, limits),
        )
    finally:
        verified.unlink(missing_ok=True)
    if source.fetches_member_only:
        return _verify_member(extracted, source)
    return Verified(extracted, sha256, True, None if source.published_checksum() else source.url)


def check_architecture(entry: ModelEntry, converted: Path, original: Path) -> None:
    """Refuse a converted file whose network is not the size the manifest gives for the entry."""
    if not entry.parameters:
        return
    values = formats.tensor_values(converted)
    if abs(values - entry.parameters) <= PARAMETER_TOLERANCE * entry.parameters:
        return
    from inpaint_cli.weights.manifest import load_manifest

    alike = [
        other.name
        for other in load_manifest().values()
        if other.family == entry.family
        and other.parameters
        and abs(values - other.parameters) <= PARAMETER_TOLERANCE * other.parameters
    ]
    looks = f" (it looks like {', '.join(alike)})" if alike else ""
    raise CheckpointError(
        f"holds a {entry.family} network of {values:,} tensor values, but {entry.name} ({entry.variant}) "
        f"has {entry.parameters:,}: not the {entry.name} weights{looks}",
        path=original,
        hint=f"use it as `--model {alike[0]}`"
        if alike
        else "to run other weights, use `inpaint run --checkpoint FILE`",
    )


def install(
    entry: ModelEntry, checkpoint: Path, source_sha256: str, source_url: str, source_format: str | None = None
) -> Path:
    """Convert a verified checkpoint into the cache, check it against the entry, record its checksum.
    `source_format`: the format the manifest gives the file (its name may not show it)."""
    problem = formats.not_a_checkpoint(checkpoint)
    if problem:
        raise CheckpointError(problem, path=checkpoint)
    # Imported here so that listing and verifying models never pays for importing torch.
    from inpaint_cli.checkpoints.loading import convert_checkpoint

    cache.downloads_dir().mkdir(parents=True, exist_ok=True)
    staged = cache.downloads_dir() / f".{entry.name}.staged{cache.CONVERTED_SUFFIX}"
    try:
        convert_checkpoint(
            checkpoint,
            staged,
            family=entry.family,
            variant=entry.variant,
            source_url=source_url,
            source_sha256=source_sha256,
            license=entry.license,
            source_format=source_format,
        )
        check_architecture(entry, staged, checkpoint)
        destination = cache.converted_path(entry.name)
        os.replace(staged, destination)
    finally:
        staged.unlink(missing_ok=True)
    cache.record_converted(entry.name, destination, source_url, source_sha256)
    return destination


def _by_hand_hint(entry: ModelEntry) -> str:
    """How to get a model by hand: a source's own steps, which always name its address."""
    by_hand = next((s for s in entry.sources if s.manual), None)
    if by_hand is not None and by_hand.manual is not None:
        return by_hand.manual if by_hand.url in by_hand.manual else f"{by_hand.url}: {by_hand.manual}"
    url = next((s.url for s in entry.sources if not s.is_bundled), entry.homepage)
    return f"download {url} in a browser, then run `inpaint weights import {entry.name} FILE`"


def pull(
    name: str,
    *,
    progress: DownloadProgress | None = None,
    offline: bool | None = None,
    timeout: float | None = None,
    limits: DownloadLimits | None = None,
) -> Path:
    """Fetch a model from its first working source, verify it, convert it into the cache."""
    entry = get_entry(name)
    progress = progress or SilentProgress()
    offline = offline_mode() if offline is None else offline
    limits = limits or limits_from_env(timeout=timeout)
    failures = []
    for number, source in enumerate(entry.sources, start=1):
        if source.manual:
            failures.append(f"source {number} ({source.host}) cannot be downloaded automatically")
            continue
        if offline and not source.is_bundled:
            failures.append(f"source {number} ({source.host}) needs the network and INPAINT_OFFLINE is set")
            continue
        with cache.cache_lock():
            try:
                verified = _fetch(entry, source, progress, limits)
                try:
                    destination = install(entry, verified.path, verified.sha256, source.url, source.format)
                finally:
                    if verified.temporary:
                        verified.path.unlink(missing_ok=True)
            except (transfer.SourceFailed, CheckpointError) as exc:
                message = exc.what if isinstance(exc, CheckpointError) else str(exc)
                failures.append(f"source {number} ({source.host}): {message}")
                progress.note(f"{entry.name}: {failures[-1]}")
                continue
            if verified.pin_key:
                cache.pin(verified.pin_key, verified.sha256)
                progress.note(
                    f"{source.host} publishes no checksum for {entry.name}; "
                    f"recorded sha256 {verified.sha256} "
                    "(later downloads must match it)"
                )
            return destination
    raise WeightsError(f"could not get model '{name}': {'; '.join(failures)}", hint=_by_hand_hint(entry))


def works_offline_hint() -> str:
    """What runs without any download, for the message of an inpainting model that cannot be fetched."""
    methods = ", ".join(f"`--model {m}`" for m in CLASSICAL_METHODS)
    bundled = ", ".join(f"`--model {n}`" for n in bundled_names() if not get_entry(n).is_detector)
    text = f"works without a download right now: {methods} (thin scratches and dust)"
    return f"{text}, or a bundled demo model: {bundled}" if bundled else text


def _older_bundled_copy(entry: ModelEntry) -> bool:
    """The cached copy of a bundled model was converted from another bundled file than the package
    ships now (the package was upgraded, new weights or post-processing): it is converted again."""
    shipped = {source.sha256 for source in entry.sources if source.is_bundled and source.sha256}
    record = cache.cache_record(entry.name) or {}
    return bool(shipped) and record.get("source_sha256") not in shipped


def ensure_model(name: str, *, progress: DownloadProgress | None = None, offline: bool | None = None) -> Path:
    """The verified converted file of a named model, pulled first when it is missing or damaged."""
    entry = get_entry(name)
    path = cache.cached_path(name)
    if path is not None and not _older_bundled_copy(entry):
        return path
    offline = offline_mode() if offline is None else offline
    alternatives = "" if entry.is_detector else f"; {works_offline_hint()}"
    if offline and not entry.bundled:
        raise WeightsError(
            f"model '{name}' is not in the cache ({cache.cache_dir()}) "
            "and INPAINT_OFFLINE forbids downloading it",
            hint=f"run `inpaint weights pull {name}` while online, or `inpaint weights import {name} FILE`"
            + alternatives,
        )
    if cache.converted_path(name).exists() and progress is not None:
        progress.note(f"{name}: the cached file failed verification; fetching it again")
    try:
        return pull(name, progress=progress, offline=offline)
    except WeightsError as exc:
        if exc.hint == cache.HOME_HINT:  # the folder is what to fix, whichever model is asked for
            raise
        raise WeightsError(exc.what, path=exc.path, hint=(exc.hint or "") + alternatives) from None
