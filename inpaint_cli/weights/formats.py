"""What a weight file is, read from its first bytes and its safetensors header, without torch."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

SNIFF_BYTES = 4096
MAX_HEADER_BYTES = 100 << 20
"""safetensors caps its JSON header at 100 MB; a longer one is not a safetensors file."""
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = range(2, 6)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    return 0 < length <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"


def _as_text(head: bytes) -> str | None:
    """The bytes as UTF-8 text (a character cut at the end of the sample is allowed), else None."""
    for cut in range(4):
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def not_a_checkpoint(path: Path) -> str | None:
    """Why a file cannot be a checkpoint (zip, pickle or safetensors container), or None if it may be one."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if head.startswith(_ZIP_MAGIC) or _looks_like_safetensors(head, size):
        return None
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return None
    if not head:
        return "not a checkpoint: an empty file"
    text = _as_text(head)
    if text is not None and all(c.isprintable() or c.isspace() for c in text):
        kind = (
            "an HTML page" if text.lstrip().lower().startswith(("<!doctype html", "<html")) else "plain text"
        )
        return f"not a checkpoint: {kind}, no zip/pickle/safetensors header"
    return "not a checkpoint: unknown binary data, no zip/pickle/safetensors header"


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, `__metadata__`)."""
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if not 0 < length <= min(path.stat().st_size - 8, MAX_HEADER_BYTES):
            raise ValueError("bad header length")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file."""
    return dict(safetensors_header(path).get("__metadata__") or {})


def tensor_values(path: Path) -> int:
    """How many numbers the tensors of a safetensors file hold (from their shapes in the header)."""
    header = safetensors_header(path)
    return sum(math.prod(info["shape"]) for key, info in header.items() if key != "__metadata__")


def container(path: Path) -> str:
    """`safetensors`, `torchscript`, `torch` (a `torch.save` file, zip or legacy) or `zip` (any other
    zip, e.g. a release archive holding a checkpoint), from the file's first bytes and zip listing."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if _looks_like_safetensors(head, path.stat().st_size):
        return "safetensors"
    if not zipfile.is_zipfile(path):
        return "torch"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    top_level = [n for n in names if n.count("/") == 1]
    if any(n.endswith("/constants.pkl") for n in top_level) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in top_level):
        return "torch"
    return "zip"
