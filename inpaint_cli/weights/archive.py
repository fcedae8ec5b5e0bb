"""One member out of a zip archive, size-capped: from a local file, or from a remote one by byte ranges.

A remote archive's central directory is read from its tail (two or three small `Range` requests),
so that only the member's compressed bytes are downloaded: BOPBtL's 2 GB release zip is never
stored to get its 450 MB detector. Every member's declared size is checked against the cap before
a byte is written, and inflating stops at the declared size (and checks the CRC).
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inpaint_cli.weights.transfer import CHUNK_BYTES, SourceFailed, disk_error

TAIL_BYTES = 65_536 + 22
"""End of central directory record plus the longest possible comment."""
MAX_DIRECTORY_BYTES = 16 << 20
"""A central directory larger than this is not a model release (BOPBtL's lists a few dozen files)."""
MAX_RATIO = 100
"""Declared over compressed size above which a member is refused as a zip bomb (weights: ~1.1)."""
RATIO_FLOOR = 1 << 20
"""Members smaller than this are not checked for their ratio (a text file compresses 5-10x)."""
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_STORED, _DEFLATED = 0, 8
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


@dataclass(frozen=True)
class MemberSpan:
    """Where a member's compressed bytes are in the archive, and what they must inflate to."""

    name: str
    data_start: int
    compressed_size: int
    size: int
    method: int
    crc: int


def check_declared(name: str, size: int, compressed_size: int, cap: int, cap_reason: str) -> None:
    """Refuse a member before extraction when its declared size is over the cap or its ratio a bomb's."""
    if size > cap:
        raise SourceFailed(f"{name} declares {size} bytes, more than {cap} ({cap_reason})")
    if size > RATIO_FLOOR and size > MAX_RATIO * max(compressed_size, 1):
        raise SourceFailed(
            f"{name} declares {size} bytes from {compressed_size} compressed "
            f"(over {MAX_RATIO}:1: a zip bomb?)"
        )


def _missing(member: str, names: list[str]) -> SourceFailed:
    found = [n for n in names if n.endswith(Path(member).name)]
    listed = f"; it has {', '.join(found[:3])}" if found else ""
    return SourceFailed(f"the archive has no {member}{listed}")


def extract_member(archive_path: Path, member: str, target: Path, cap: int, cap_reason: str) -> Path:
    """Write one member of a local zip to `target`, refusing it if it declares more than `cap` bytes."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise _missing(member, archive.namelist()) from None
            check_declared(member, info.file_size, info.compress_size, cap, cap_reason)
            try:
                # ZipExtFile stops at the declared size and checks the CRC at the end.
                with archive.open(info) as packed, target.open("wb") as out:
                    while chunk := packed.read(CHUNK_BYTES):
                        out.write(chunk)
            except OSError as exc:
                target.unlink(missing_ok=True)
                raise disk_error(exc, f"{member} from the archive", target.parent) from None
            except zipfile.BadZipFile as exc:
                target.unlink(missing_ok=True)
                raise SourceFailed(f"{member} in the archive is corrupt: {exc}") from None
            return target
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise SourceFailed(f"not a valid zip archive: {exc}") from None


ReadRange = Callable[[int, int], bytes]
"""read(first, end): bytes [first, end) of the remote archive."""


def _directory(tail: bytes, tail_start: int, read: ReadRange) -> bytes:
    """The central directory of an archive whose last bytes are `tail` (starting at `tail_start`)."""
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise SourceFailed("not a zip archive (no end of central directory)")
    entries, size, offset = struct.unpack_from("<HLL", tail, at + 10)
    if 0xFFFFFFFF in (size, offset) or entries == 0xFFFF:
        locator = at - 20
        if locator < 0 or tail[locator : locator + 4] != _ZIP64_LOCATOR:
            raise SourceFailed("zip64 archive without its locator")
        (record_at,) = struct.unpack_from("<Q", tail, locator + 8)
        record = _slice(tail, tail_start, record_at, 56, read)
        if record[:4] != _ZIP64_EOCD:
            raise SourceFailed("zip64 end of central directory not found")
        size, offset = struct.unpack_from("<QQ", record, 40)
    if size > MAX_DIRECTORY_BYTES:
        raise SourceFailed(f"the archive's directory is {size} bytes, more than {MAX_DIRECTORY_BYTES}")
    return _slice(tail, tail_start, offset, size, read)


def _slice(tail: bytes, tail_start: int, first: int, length: int, read: ReadRange) -> bytes:
    if first >= tail_start and first + length <= tail_start + len(tail):
        return tail[first - tail_start : first - tail_start + length]
    return read(first, first + length)


def _zip64_extra(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, at + 4))
            if size == 0xFFFFFFFF:
                size = values.pop(0)
            if compressed == 0xFFFFFFFF:
                compressed = values.pop(0)
            if offset == 0xFFFFFFFF:
                offset = values.pop(0)
            break
        at += 4 + length
    return size, compressed, offset


def _find_in_directory(directory: bytes, member: str) -> tuple[int, int, int, int, int, int]:
    """(flags, method, crc, compressed size, size, local header offset) of `member`."""
    names, at = [], 0
    while at + _CENTRAL_HEADER.size <= len(directory) and directory[at : at + 4] == _CENTRAL:
        fields = _CENTRAL_HEADER.unpack_from(directory, at)
        flags, method, crc, compressed, size = fields[5], fields[6], fields[9], fields[10], fields[11]
        name_len, extra_len, comment_len, offset = fields[12], fields[13], fields[14], fields[18]
        name_at = at + _CENTRAL_HEADER.size
        name = directory[name_at : name_at + name_len].decode("utf-8", "replace")
        if name == member:
            extra = directory[name_at + name_len : name_at + name_len + extra_len]
            size, compressed, offset = _zip64_extra(extra, size, compressed, offset)
            return flags, method, crc, compressed, size, offset
        names.append(name)
        at = name_at + name_len + extra_len + comment_len
    raise _missing(member, names)


def locate_member(url_tail: tuple[bytes, int], member: str, read: ReadRange) -> MemberSpan:
    """Where `member` lies in a remote archive, from its tail (bytes, total size) and small range reads."""
    tail, total = url_tail
    directory = _directory(tail, total - len(tail), read)
    flags, method, crc, compressed, size, offset = _find_in_directory(directory, member)
    if flags & 0x1:
        raise SourceFailed(f"{member} is encrypted")
    if method not in (_STORED, _DEFLATED):
        raise SourceFailed(
            f"{member} uses zip compression method {method} (only stored and deflate are read)"
        )
    header = read(offset, offset + _LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL:
        raise SourceFailed(f"{member}: no local header at byte {offset}")
    data_start = offset + _LOCAL_HEADER.size + fields[10] + fields[11]
    if data_start + compressed > total:
        raise SourceFailed(f"{member} ends beyond the end of the archive")
    return MemberSpan(member, data_start, compressed, size, method, crc)


def inflate(packed: Path, span: MemberSpan, target: Path) -> Path:
    """Turn a member's compressed bytes into the member: at most its declared size, CRC checked."""
    crc, written = 0, 0
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS) if span.method == _DEFLATED else None
    try:
        with packed.open("rb") as source, target.open("wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                while chunk:
                    if decompressor is None:
                        data, chunk = chunk, b""
                    else:
                        # Never more out than the declared size allows, whatever the input says.
                        data = decompressor.decompress(chunk, span.size - written + 1)
                        chunk = decompressor.unconsumed_tail
                    written += len(data)
                    if written > span.size:
                        raise SourceFailed(f"{span.name} inflates beyond its declared {span.size} bytes")
                    crc = zlib.crc32(data, crc)
                    out.write(data)
                    if not data and chunk:
                        break
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise disk_error(exc, f"{span.name} from the archive", target.parent) from None
    except SourceFailed:
        target.unlink(missing_ok=True)
        raise
    except zlib.error as exc:
        target.unlink(missing_ok=True)
        raise SourceFailed(f"{span.name} in the archive is corrupt: {exc}") from None
    if written != span.size or crc != span.crc:
        target.unlink(missing_ok=True)
        raise SourceFailed(
            f"{span.name} in the archive is corrupt (size or CRC does not match its directory)"
        )
    return target
