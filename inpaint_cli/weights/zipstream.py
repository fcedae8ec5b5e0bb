"""One member out of a zip that arrives as a stream (a server that sends no byte ranges).

The archive is read front to back through its local headers: other members are skipped (by their
compressed size, or inflated into nothing when only a data descriptor after them gives it), and
only the member the manifest names is inflated into its file, size-capped and CRC-checked. So even
without ranges the 2 GB release zip never touches the disk; only its member does.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from inpaint_cli.weights.archive import check_declared
from inpaint_cli.weights.transfer import SourceFailed

_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_DESCRIPTOR = b"PK\x07\x08"
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_STORED, _DEFLATED = 0, 8
_UNKNOWN = 0xFFFFFFFF
_HAS_DESCRIPTOR = 0x8


class StreamExtractor:
    """Feed it the archive's bytes in order; it writes `member` to `target` and says when it is done."""

    def __init__(self, member: str, target: Path, cap: int, cap_reason: str) -> None:
        self.member, self.target, self.cap, self.cap_reason = member, target, cap, cap_reason
        self.done = False
        self._buffer = bytearray()
        self._names: list[str] = []
        self._entry: dict[str, int | str | bool] | None = None
        self._inflater: zlib._Decompress | None = None
        self._out: BinaryIO | None = None
        self._written = 0
        self._crc = 0

    def feed(self, data: bytes) -> bool:
        """Take the next bytes of the archive; True once the member is complete (stop downloading)."""
        self._buffer += data
        while not self.done and self._step():
            pass
        return self.done

    def close(self) -> None:
        """Release the member file; a member not completed is deleted."""
        if self._out is not None:
            self._out.close()
            self._out = None
        if not self.done:
            self.target.unlink(missing_ok=True)

    # --- one step of the state machine: False when more bytes are needed ---------------------------

    def _step(self) -> bool:
        if self._entry is None:
            return self._header()
        if self._entry["descriptor_pending"]:
            return self._descriptor()
        return self._data()

    def _header(self) -> bool:
        if len(self._buffer) < 4:
            return False
        if self._buffer[:4] == _CENTRAL:
            found = [n for n in self._names if n.endswith(Path(self.member).name)]
            listed = f"; it has {', '.join(found[:3])}" if found else ""
            raise SourceFailed(f"the archive has no {self.member}{listed}")
        if self._buffer[:4] != _LOCAL:
            raise SourceFailed("not a zip archive, or one that cannot be read as a stream")
        if len(self._buffer) < _LOCAL_HEADER.size:
            return False
        fields = _LOCAL_HEADER.unpack_from(self._buffer)
        flags, method, crc, compressed, size, name_len, extra_len = (*fields[3:5], *fields[7:12])
        end = _LOCAL_HEADER.size + name_len + extra_len
        if len(self._buffer) < end:
            return False
        name = bytes(self._buffer[_LOCAL_HEADER.size : _LOCAL_HEADER.size + name_len]).decode(
            "utf-8", "replace"
        )
        extra = bytes(self._buffer[_LOCAL_HEADER.size + name_len : end])
        zip64 = _UNKNOWN in (compressed, size)
        if zip64:
            size, compressed = _zip64_sizes(extra, size, compressed)
        del self._buffer[:end]
        self._names.append(name)
        self._start_entry(name, flags, method, crc, compressed, size, zip64)
        return True

    def _start_entry(
        self, name: str, flags: int, method: int, crc: int, compressed: int, size: int, zip64: bool
    ) -> None:
        described = bool(flags & _HAS_DESCRIPTOR)
        if described and method != _DEFLATED:
            raise SourceFailed(f"cannot find the end of {name} in a stream (stored with a data descriptor)")
        wanted = name == self.member
        if wanted:
            if flags & 0x1:
                raise SourceFailed(f"{name} is encrypted")
            if method not in (_STORED, _DEFLATED):
                raise SourceFailed(f"{name} uses zip compression method {method}")
            if not described:
                check_declared(name, size, compressed, self.cap, self.cap_reason)
            self._out = self.target.open("wb")
        self._entry = {
            "wanted": wanted,
            "described": described,
            "descriptor_pending": False,
            "remaining": -1 if described else compressed,
            "size": -1 if described else size,
            "crc": crc,
            "zip64": zip64,
        }
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS) if method == _DEFLATED else None

    def _data(self) -> bool:
        entry = self._entry or {}
        remaining = int(entry["remaining"])
        if not self._buffer and remaining != 0:
            return False
        take = len(self._buffer) if remaining < 0 else min(remaining, len(self._buffer))
        chunk = bytes(self._buffer[:take])
        if self._inflater is not None and (entry["wanted"] or remaining < 0):
            # Never more out than the member may have, whatever the compressed bytes say; another
            # member is inflated (into nothing) only to find where it ends.
            limit = self._limit() if entry["wanted"] else 1 << 24
            data = self._inflater.decompress(chunk, limit)
            while self._inflater.unconsumed_tail and not entry["wanted"]:
                data = self._inflater.decompress(self._inflater.unconsumed_tail, limit)
            used = take - len(self._inflater.unconsumed_tail) - len(self._inflater.unused_data)
        else:
            data, used = chunk, take
        del self._buffer[:used]
        if remaining >= 0:
            entry["remaining"] = remaining - used
        if entry["wanted"]:
            self._emit(data)
        finished = (
            entry["remaining"] == 0 if remaining >= 0 else self._inflater is not None and self._inflater.eof
        )
        if finished:
            if entry["described"]:
                entry["descriptor_pending"] = True
            else:
                self._finish_entry(int(entry["crc"]), int(entry["size"]))
            return True
        return used > 0

    def _limit(self) -> int:
        size = int((self._entry or {})["size"])
        return (size if size >= 0 else self.cap) - self._written + 1

    def _emit(self, data: bytes) -> None:
        self._written += len(data)
        size = int((self._entry or {})["size"])
        if self._written > (size if size >= 0 else self.cap):
            limit = f"its declared {size} bytes" if size >= 0 else f"{self.cap} bytes ({self.cap_reason})"
            raise SourceFailed(f"{self.member} inflates beyond {limit}")
        self._crc = zlib.crc32(data, self._crc)
        if self._out is not None:
            self._out.write(data)

    def _descriptor(self) -> bool:
        entry = self._entry or {}
        signed = self._buffer[:4] == _DESCRIPTOR
        sizes = 16 if entry["zip64"] else 8
        length = (4 if signed else 0) + 4 + sizes
        if len(self._buffer) < length:
            return False
        start = 4 if signed else 0
        (crc,) = struct.unpack_from("<L", self._buffer, start)
        (size,) = struct.unpack_from("<Q" if entry["zip64"] else "<L", self._buffer, start + 4 + sizes // 2)
        del self._buffer[:length]
        self._finish_entry(crc, size)
        return True

    def _finish_entry(self, crc: int, size: int) -> None:
        entry = self._entry or {}
        if entry["wanted"]:
            if self._written != size or self._crc != crc:
                raise SourceFailed(f"{self.member} in the archive is corrupt (size or CRC does not match)")
            if self._out is not None:
                self._out.close()
                self._out = None
            self.done = True
        self._entry, self._inflater = None, None


def _zip64_sizes(extra: bytes, size: int, compressed: int) -> tuple[int, int]:
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, at + 4))
            if size == _UNKNOWN and values:
                size = values.pop(0)
            if compressed == _UNKNOWN and values:
                compressed = values.pop(0)
            break
        at += 4 + length
    return size, compressed
