"""What a hand edit leaves beside a mask, so that it can be undone and a run can say it was made.

Beside `a_mask.png`, hidden so that neither `run` nor `detect` takes them for masks or photos:

- `.a_mask.original.png`: the mask file as it was before the first edit (the detector's), kept once.
  Every file that made up the hole gets one (`a_mask1.png` -> `.a_mask1.original.png`).
- `.a_mask.png.inpaint.json` (the record name `run` gives its outputs): format `inpaint-mask-edit`,
  the mask file's SHA-256, whether the photo was marked as having no damage, the originals kept.

A record describes the mask only while the file still has the recorded SHA-256: a mask that
`detect --overwrite` or another program rewrote since is no longer "edited by hand".
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inpaint_cli.batch.provenance import record_path, tool_version
from inpaint_cli.errors import InputError
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.files.jsonfile import read_json
from inpaint_cli.weights.cache import file_sha256

EDIT_RECORD_FORMAT = "inpaint-mask-edit"
EDIT_RECORD_VERSION = 1
ORIGINAL_MARK = ".original"
MAX_EDIT_RECORD_BYTES = 64 * 1024
"""A record is a few hundred bytes; a larger file is not one of ours and is not parsed."""


def original_path(mask: Path) -> Path:
    """Where the mask file as it was before the first edit is kept: `.<stem>.original<suffix>`."""
    return mask.with_name(f".{mask.stem}{ORIGINAL_MARK}{mask.suffix}")


@dataclass(frozen=True)
class EditRecord:
    """The record of a mask edited by hand."""

    sha256: str
    """Of the mask file this record describes."""
    no_damage: bool
    """Marked "no damage here" (an empty mask confirmed by a person), not merely left empty."""
    originals: tuple[str, ...]
    """Names (in the mask's folder) of the files kept as they were before the first edit."""
    saved: str
    version: str

    def as_json(self) -> str:
        return json.dumps(
            {
                "format": EDIT_RECORD_FORMAT,
                "format_version": EDIT_RECORD_VERSION,
                "edited_by_hand": True,
                **asdict(self),
            },
            indent=2,
        )


def new_record(mask: Path, *, no_damage: bool, originals: tuple[str, ...]) -> EditRecord:
    """The record of the mask file just written."""
    saved = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return EditRecord(file_sha256(mask), no_damage, originals, saved, tool_version())


def write_edit_record(mask: Path, record: EditRecord) -> None:
    with atomic_path(record_path(mask)) as tmp:
        tmp.write_text(record.as_json(), encoding="utf-8")


def read_edit_record(mask: Path) -> EditRecord | None:
    """The record beside `mask`, or None where there is none or it is not a valid one (untrusted:
    a damaged record only means the edit is not known)."""
    try:
        fields = read_json(record_path(mask), max_bytes=MAX_EDIT_RECORD_BYTES)  # a FIFO there must not hang
    except InputError:
        return None
    return _valid(fields)


def _valid(fields: Any) -> EditRecord | None:
    if not isinstance(fields, dict) or fields.get("format") != EDIT_RECORD_FORMAT:
        return None
    originals = fields.get("originals")
    if not (
        isinstance(fields.get("sha256"), str)
        and isinstance(fields.get("no_damage"), bool)
        and isinstance(originals, list)
        and all(isinstance(name, str) for name in originals)
    ):
        return None
    return EditRecord(
        fields["sha256"],
        fields["no_damage"],
        tuple(originals),
        str(fields.get("saved", "")),
        str(fields.get("version", "")),
    )


def hand_edit(mask: Path) -> EditRecord | None:
    """The record of `mask` if it describes the file as it is now (edited by hand, not since rewritten)."""
    record = read_edit_record(mask)
    if record is None:
        return None
    try:
        current = file_sha256(mask)
    except OSError:
        return None
    return record if current == record.sha256 else None
